// The server's limits: header bytes, variables, body bytes, connections and
// handler time. Each is exceeded on purpose: the answer must be the limit's
// status, the handler must not run (or must be aborted), and everything must
// be released (the resource and op sanitizers are on).

import assert from "node:assert/strict";
import { serve, type ServeOptions } from "../server.ts";
import { scgiFetch } from "../client.ts";
import {
  delay,
  rawExchange,
  rawRequest,
  statusOf,
  trackUnhandledRejections,
  until,
  utf8,
} from "./_fuzz.ts";

const quiet = { port: 0, onListen() {} } satisfies ServeOptions;

function url(server: { addr: Deno.Addr }, path = "/"): string {
  return `scgi://127.0.0.1:${(server.addr as Deno.NetAddr).port}${path}`;
}

Deno.test("a header block over maxHeaderBytes is a 431, handler not called", async () => {
  using unhandled = trackUnhandledRejections();
  let calls = 0;
  await using server = serve({ ...quiet, maxHeaderBytes: 200 }, () => {
    calls++;
    return new Response("ok");
  });
  // Within the limit: served.
  const small = rawRequest([["CONTENT_LENGTH", "0"], ["PAD", "x".repeat(150)]]);
  assert.equal(statusOf((await rawExchange(server.addr, small)).bytes), 200);
  // The declared length alone is enough to refuse: no body of it is sent.
  const declared = utf8("201:");
  assert.equal(statusOf((await rawExchange(server.addr, declared)).bytes), 431);
  // A whole block over the limit.
  const big = rawRequest([["CONTENT_LENGTH", "0"], ["PAD", "x".repeat(300)]]);
  const answer = await rawExchange(server.addr, big);
  assert.equal(statusOf(answer.bytes), 431);
  // An endless length prefix is cut off after a few digits.
  const endless = utf8("9".repeat(10_000));
  assert.equal(statusOf((await rawExchange(server.addr, endless)).bytes), 431);
  assert.equal(calls, 1);
  assert.equal(server.stats.protocolErrors, 3);
  unhandled.check();
});

Deno.test("more than maxVariables is a 431, handler not called", async () => {
  using unhandled = trackUnhandledRejections();
  let calls = 0;
  await using server = serve({ ...quiet, maxVariables: 10 }, () => {
    calls++;
    return new Response("ok");
  });
  const pairs = (n: number): [string, string][] => [
    ["CONTENT_LENGTH", "0"],
    ...Array.from(
      { length: n - 1 },
      (_, i): [string, string] => [`V${i}`, "1"],
    ),
  ];
  assert.equal(
    statusOf((await rawExchange(server.addr, rawRequest(pairs(10)))).bytes),
    200,
  );
  assert.equal(
    statusOf((await rawExchange(server.addr, rawRequest(pairs(11)))).bytes),
    431,
  );
  assert.equal(calls, 1);
  unhandled.check();
});

Deno.test("the default variable limit is 1000", async () => {
  using unhandled = trackUnhandledRejections();
  await using server = serve(quiet, () => new Response("ok"));
  const pairs: [string, string][] = [["CONTENT_LENGTH", "0"]];
  for (let i = 0; i < 1000; i++) pairs.push([`V${i}`, ""]);
  assert.equal(
    statusOf((await rawExchange(server.addr, rawRequest(pairs))).bytes),
    431,
  );
  pairs.pop();
  assert.equal(
    statusOf((await rawExchange(server.addr, rawRequest(pairs))).bytes),
    200,
  );
  unhandled.check();
});

Deno.test("a body over maxBodyBytes is a 413 before the handler runs", async () => {
  using unhandled = trackUnhandledRejections();
  let calls = 0;
  await using server = serve(
    { ...quiet, maxBodyBytes: 1000 },
    async (request) => {
      calls++;
      return new Response(String((await request.arrayBuffer()).byteLength));
    },
  );
  const fits = await scgiFetch(url(server), {
    method: "POST",
    body: new Uint8Array(1000),
  });
  assert.equal(await fits.text(), "1000");
  const over = await scgiFetch(url(server), {
    method: "POST",
    body: new Uint8Array(1001),
  });
  assert.equal(over.status, 413);
  assert.match(await over.text(), /larger than the limit of 1000/);
  // A front end still sending a big body gets the 413, not a reset: the
  // server reads the rest away after answering.
  const big = rawRequest(
    [["CONTENT_LENGTH", String(4 << 20)]],
    new Uint8Array(4 << 20),
  );
  const answer = await rawExchange(server.addr, big);
  assert.equal(statusOf(answer.bytes), 413);
  assert.equal(answer.error, undefined);
  assert.equal(calls, 1);
  unhandled.check();
});

Deno.test("past maxConnections a connection waits in the backlog and is served after one ends", async () => {
  using unhandled = trackUnhandledRejections();
  const release = Promise.withResolvers<void>();
  const seen: string[] = [];
  await using server = serve(
    { ...quiet, maxConnections: 1 },
    async (request) => {
      const path = new URL(request.url).pathname;
      seen.push(path);
      if (path === "/first") await release.promise;
      return new Response(path);
    },
  );
  const first = scgiFetch(url(server, "/first"));
  await until(() => seen.length === 1, "the first request");
  // The second connects (the kernel queues it) but is not accepted yet.
  const second = scgiFetch(url(server, "/second"));
  let secondDone = false;
  second.then(() => (secondDone = true), () => (secondDone = true));
  await delay(100);
  assert.deepEqual(seen, ["/first"]);
  assert.equal(server.stats.accepted, 1);
  assert.equal(secondDone, false);
  release.resolve();
  assert.equal(await (await first).text(), "/first");
  // Not refused: served once the first connection is done.
  assert.equal(await (await second).text(), "/second");
  assert.deepEqual(seen, ["/first", "/second"]);
  assert.equal(server.stats.accepted, 2);
  unhandled.check();
});

Deno.test("handlerTimeout answers 503 and aborts request.signal", async () => {
  using unhandled = trackUnhandledRejections();
  let reason: unknown;
  let lateBodyCancelled = false;
  await using server = serve(
    { ...quiet, handlerTimeout: 100 },
    async (request) => {
      if (new URL(request.url).pathname === "/fast") {
        return new Response(
          "fast",
        );
      }
      await new Promise<void>((resolve) =>
        request.signal.addEventListener("abort", () => resolve(), {
          once: true,
        })
      );
      reason = request.signal.reason;
      // A response returned after the deadline is released, never written.
      return new Response(
        new ReadableStream({
          cancel() {
            lateBodyCancelled = true;
          },
        }),
      );
    },
  );
  const fast = await scgiFetch(url(server, "/fast"));
  assert.equal(await fast.text(), "fast");
  const slow = await scgiFetch(url(server, "/slow"));
  assert.equal(slow.status, 503);
  await slow.body?.cancel();
  assert.ok(reason instanceof DOMException);
  assert.equal((reason as DOMException).name, "TimeoutError");
  await until(() => lateBodyCancelled, "the late body to be cancelled");
  assert.equal(server.stats.timeouts, 1);
  unhandled.check();
});

Deno.test("a handler that never settles after handlerTimeout still frees its connection", async () => {
  using unhandled = trackUnhandledRejections();
  await using server = serve(
    { ...quiet, handlerTimeout: 50 },
    () => new Promise<Response>(() => {}),
  );
  const response = await scgiFetch(url(server));
  assert.equal(response.status, 503);
  await response.body?.cancel();
  await until(() => server.stats.active === 0, "the connection to close");
  unhandled.check();
});

// Errors: onError sees every handler failure, and none becomes an unhandled
// rejection or a second head.

Deno.test("onError sees every handler failure; one after the head ends the connection without a second head", async () => {
  using unhandled = trackUnhandledRejections();
  const seen: string[] = [];
  await using server = serve({
    ...quiet,
    onError(error) {
      seen.push((error as Error).message);
      return new Response("custom", { status: 502 });
    },
  }, (request): Response | Promise<Response> => {
    switch (new URL(request.url).pathname) {
      case "/throw":
        throw new Error("thrown");
      case "/reject":
        return Promise.reject(new Error("rejected"));
      case "/not-response":
        return "text" as unknown as Response;
      case "/body-before-head":
        return new Response(
          new ReadableStream({
            pull() {
              throw new Error("body failed first");
            },
          }),
        );
      default:
        return new Response(
          new ReadableStream({
            async start(controller) {
              controller.enqueue(utf8("partial"));
              await delay(10);
              controller.error(new Error("body failed later"));
            },
          }),
        );
    }
  });
  const request = (path: string) =>
    rawRequest([["CONTENT_LENGTH", "0"], ["REQUEST_URI", path], [
      "REQUEST_METHOD",
      "GET",
    ]]);
  for (
    const path of ["/throw", "/reject", "/not-response", "/body-before-head"]
  ) {
    const answer = new TextDecoder().decode(
      (await rawExchange(server.addr, request(path))).bytes,
    );
    assert.match(answer, /^Status: 502 Bad Gateway\r\n/, path);
    assert.match(answer, /\r\n\r\ncustom$/, path);
  }
  const late = new TextDecoder().decode(
    (await rawExchange(server.addr, request("/late"))).bytes,
  );
  assert.match(late, /^Status: 200 OK\r\n/);
  assert.equal(late.split("Status:").length, 2, "exactly one head");
  assert.match(late, /\r\n\r\npartial$/);
  assert.equal(seen.length, 5);
  assert.match(seen[2]!, /did not return a Response/);
  assert.equal(seen[4], "body failed later");
  assert.equal(server.stats.handlerErrors, 5);
  unhandled.check();
});

Deno.test("an onError that fails itself still answers 500", async () => {
  using unhandled = trackUnhandledRejections();
  const logged: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    await using server = serve({
      ...quiet,
      onError() {
        throw new Error("onError broke");
      },
    }, () => {
      throw new Error("handler broke");
    });
    const response = await scgiFetch(url(server));
    assert.equal(response.status, 500);
    await response.body?.cancel();
  } finally {
    console.error = original;
  }
  assert.ok(logged.some((args) => String(args[1]).includes("onError broke")));
  unhandled.check();
});

Deno.test("the front end going away mid-response aborts the request, rejects completed, and is no handler error", async () => {
  using unhandled = trackUnhandledRejections();
  const outcome = Promise.withResolvers<unknown>();
  let cancelled = false;
  let onErrorCalls = 0;
  let signal: AbortSignal | undefined;
  await using server = serve({
    ...quiet,
    onError() {
      onErrorCalls++;
      return new Response("", { status: 500 });
    },
  }, (request, info) => {
    signal = request.signal;
    info.completed.then(
      () => outcome.resolve("completed"),
      (error) => outcome.resolve(error),
    );
    // An event stream with a heartbeat: the server learns that the front end
    // is gone from a failed write (a FIN alone may be a half-close).
    let timer: ReturnType<typeof setInterval> | undefined;
    return new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(utf8("first"));
          timer = setInterval(() => controller.enqueue(utf8(".")), 5);
        },
        cancel() {
          clearInterval(timer);
          cancelled = true;
        },
      }),
    );
  });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: (server.addr as Deno.NetAddr).port,
  });
  await conn.write(rawRequest([["CONTENT_LENGTH", "0"]]));
  const buffer = new Uint8Array(1024);
  assert.ok((await conn.read(buffer))! > 0);
  conn.close();
  assert.ok((await outcome.promise) instanceof Error);
  await until(() => cancelled, "the response body to be cancelled");
  await until(() => server.stats.active === 0, "the connection to be released");
  assert.equal(signal?.aborted, true);
  assert.equal(onErrorCalls, 0);
  assert.equal(server.stats.handlerErrors, 0);
  unhandled.check();
});
