// The gateway behind Deno.serve when the HTTP client leaves before the
// backend's answer: the backend connection closes and the slot frees at
// once, a queued request is dropped without reaching a backend, and the
// handler answers 499 (nginx's "client closed request"), which is what an
// access log then shows.

import assert from "node:assert/strict";
import { scgiProxy, type ScgiProxyOptions } from "../gateway.ts";

const encoder = new TextEncoder();

/** A raw SCGI backend: `answer` runs per request with its REQUEST_URI. */
interface RawBackend extends AsyncDisposable {
  readonly port: number;
  /** The REQUEST_URI of every request received, in order. */
  readonly uris: string[];
}

function rawBackend(
  answer: (conn: Deno.Conn, uri: string) => Promise<void>,
): RawBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const uris: string[] = [];
  const handled: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      handled.push((async () => {
        try {
          const uri = await readUri(conn);
          uris.push(uri);
          await answer(conn, uri);
        } catch {
          // The gateway closed the connection first.
        } finally {
          try {
            conn.close();
          } catch {
            // Already closed.
          }
        }
      })());
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    uris,
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(handled);
    },
  };
}

// Reads the netstring of CGI variables and returns REQUEST_URI.
async function readUri(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(65536);
  let text = "";
  while (true) {
    const n = await conn.read(buffer.subarray(text.length));
    if (n === null) throw new Error("closed before the request head");
    text += new TextDecoder().decode(
      buffer.subarray(text.length, text.length + n),
    );
    const colon = text.indexOf(":");
    if (colon > 0 && text.length > colon + Number(text.slice(0, colon))) {
      const fields = text.slice(colon + 1).split("\0");
      return fields[fields.indexOf("REQUEST_URI") + 1]!;
    }
  }
}

// Waits for the gateway to close the connection: "closed" or the error.
async function untilClosed(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(1024);
  try {
    while ((await conn.read(buffer)) !== null) {
      // Nothing more is expected.
    }
    return "closed";
  } catch (error) {
    return (error as Error).name;
  }
}

function ok(conn: Deno.Conn, uri: string): Promise<number> {
  return conn.write(
    encoder.encode(
      `Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nok ${uri}`,
    ),
  );
}

/**
 * The gateway behind Deno.serve, with a record of when each path's handler
 * was entered and which status it answered with.
 */
interface Front extends AsyncDisposable {
  readonly base: string;
  entered(path: string): Promise<void>;
  answered(path: string): Promise<number>;
}

function front(options: ScgiProxyOptions): Front {
  const handler = scgiProxy(options);
  const entered = new Map<string, PromiseWithResolvers<void>>();
  const answered = new Map<string, PromiseWithResolvers<number>>();
  const slot = <T>(map: Map<string, PromiseWithResolvers<T>>, key: string) => {
    let entry = map.get(key);
    if (!entry) map.set(key, entry = Promise.withResolvers<T>());
    return entry;
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request, info) => {
      const path = new URL(request.url).pathname;
      const answering = handler(request, info);
      slot(entered, path).resolve();
      answering.then(
        (response) => slot(answered, path).resolve(response.status),
        (error) => slot(answered, path).reject(error),
      );
      return answering;
    },
  );
  return {
    base: `http://127.0.0.1:${server.addr.port}`,
    entered: (path) => slot(entered, path).promise,
    answered: (path) => slot(answered, path).promise,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A fetch whose client leaves when `leave()` is called. */
function leavingFetch(url: string): { leave(): void; left: Promise<string> } {
  const controller = new AbortController();
  const left = fetch(url, { signal: controller.signal }).then(
    async (response) => {
      await response.body?.cancel();
      return `answered ${response.status}`;
    },
    (error) => (error as Error).name,
  );
  return { leave: () => controller.abort(), left };
}

Deno.test("gateway: a client that leaves before the head closes the backend connection, frees the slot, answers 499", async () => {
  const hung = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<string>();
  await using app = rawBackend(async (conn, uri) => {
    if (uri === "/hang") {
      hung.resolve();
      closed.resolve(await untilClosed(conn));
      return;
    }
    await ok(conn, uri);
  });
  await using http = front({
    backends: [{ port: app.port }],
    maxConcurrent: 1,
    queueTimeout: 0,
    // Only a safety net: the client's departure must end the call first.
    headTimeout: 5_000,
  });
  const client = leavingFetch(`${http.base}/hang`);
  await hung.promise;
  client.leave();
  assert.equal(await client.left, "AbortError");
  // Without noticing the departure the gateway waits for the head timeout
  // and answers 504 to nobody.
  assert.equal(await http.answered("/hang"), 499);
  assert.equal(await closed.promise, "closed");
  // The slot is free: with maxConcurrent 1 and no queue this would be 503.
  const next = await fetch(`${http.base}/next`);
  assert.equal(next.status, 200);
  assert.equal(await next.text(), "ok /next");
  assert.deepEqual(app.uris, ["/hang", "/next"]);
});

Deno.test("gateway: a queued request whose client left is dropped with 499, never sent to a backend", async () => {
  const held = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  await using app = rawBackend(async (conn, uri) => {
    if (uri === "/hold") {
      held.resolve();
      await release.promise;
    }
    await ok(conn, uri);
  });
  await using http = front({
    backends: [{ port: app.port }],
    maxConcurrent: 1,
    queueTimeout: 30_000,
  });
  const holding = fetch(`${http.base}/hold`);
  await held.promise;
  const client = leavingFetch(`${http.base}/queued`);
  // Entered while the only slot is taken: it waits in the queue.
  await http.entered("/queued");
  client.leave();
  assert.equal(await client.left, "AbortError");
  // Give the gateway time to notice (a safety net, not a measurement);
  // then the slot frees, and a request still queued would be sent.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    http.answered("/queued").catch(() => {}),
    new Promise((resolve) => (timer = setTimeout(resolve, 5_000))),
  ]);
  clearTimeout(timer);
  release.resolve();
  assert.equal(await (await holding).text(), "ok /hold");
  assert.equal(await http.answered("/queued"), 499);
  const next = await fetch(`${http.base}/next`);
  assert.equal(await next.text(), "ok /next");
  assert.deepEqual(app.uris, ["/hold", "/next"]);
});

Deno.test("gateway: a client that leaves mid-body frees the slot for the next request", async () => {
  const closed = Promise.withResolvers<string>();
  await using app = rawBackend(async (conn, uri) => {
    await ok(conn, uri);
    if (uri === "/long") closed.resolve(await untilClosed(conn));
  });
  await using http = front({
    backends: [{ port: app.port }],
    maxConcurrent: 1,
    queueTimeout: 0,
  });
  const controller = new AbortController();
  const response = await fetch(`${http.base}/long`, {
    signal: controller.signal,
  });
  assert.equal(await http.answered("/long"), 200);
  const reader = response.body!.getReader();
  assert.equal(
    new TextDecoder().decode((await reader.read()).value),
    "ok /long",
  );
  controller.abort();
  await reader.closed.catch(() => {});
  assert.equal(await closed.promise, "closed");
  const next = await fetch(`${http.base}/next`);
  assert.equal(next.status, 200);
  assert.equal(await next.text(), "ok /next");
});

Deno.test("gateway: request.signal aborting after the handler returned (Deno.serve's legacy abort) does not cut the body", async () => {
  const more = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<string>();
  await using app = rawBackend(async (conn, uri) => {
    await ok(conn, uri);
    await more.promise;
    await conn.write(encoder.encode(" and the rest"));
    conn.closeWrite();
    closed.resolve(await untilClosed(conn));
  });
  const handler = scgiProxy({ backends: [{ port: app.port }] });
  const controller = new AbortController();
  const response = await handler(
    new Request("http://h/stream", { signal: controller.signal }),
  );
  assert.equal(response.status, 200);
  // What Deno.serve does once it has delivered a response; a host may do it
  // as soon as the handler returns. The answer is still being produced.
  controller.abort();
  more.resolve();
  assert.equal(await response.text(), "ok /stream and the rest");
  assert.equal(await closed.promise, "closed");
});
