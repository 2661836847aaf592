import assert from "node:assert/strict";
import {
  encodeRequestHead,
  scgiFetch,
  type ScgiHandler,
  type ScgiHandlerInfo,
  scgiUrl,
  serve,
  type ServeOptions,
} from "../mod.ts";

const encoder = new TextEncoder();

function connectTo(addr: Deno.Addr): Promise<Deno.Conn> {
  if ("path" in addr) {
    return Deno.connect({ transport: "unix", path: addr.path });
  }
  const { hostname, port } = addr as Deno.NetAddr;
  return Deno.connect({ hostname, port });
}

/** Sends raw bytes to a server and returns everything it answers. */
async function rawExchange(
  addr: Deno.Addr,
  bytes: Uint8Array,
  options: { closeWrite?: boolean } = {},
): Promise<string> {
  const conn = await connectTo(addr);
  const writer = conn.writable.getWriter();
  await writer.write(bytes);
  writer.releaseLock();
  if (options.closeWrite) await conn.closeWrite();
  const text = await new Response(conn.readable).text();
  return text;
}

function quietServer(handler: ScgiHandler, options: ServeOptions = {}) {
  return serve({ port: 0, onListen() {}, ...options }, handler);
}

Deno.test("serve: the three Deno.serve call shapes and addr/finished/shutdown", async () => {
  const handler = () => new Response("ok");
  const a = serve({ port: 0, onListen() {}, handler });
  const b = serve({ port: 0, onListen() {} }, handler);
  const c = serve({ port: 0, onListen() {}, fetch: handler });
  for (const server of [a, b, c]) {
    assert.equal(server.addr.transport, "tcp");
    const response = await scgiFetch(scgiUrl(server.addr));
    assert.equal(await response.text(), "ok");
    await server.shutdown();
    await server.finished;
  }
});

Deno.test("serve: defaults to 127.0.0.1, reports the address to onListen", async () => {
  let listened: Deno.Addr | undefined;
  await using server = serve(
    { port: 0, onListen: (addr) => (listened = addr) },
    () => new Response(),
  );
  const addr = server.addr as Deno.NetAddr;
  assert.equal(addr.hostname, "127.0.0.1");
  assert.deepEqual(listened, server.addr);
  assert.equal(scgiUrl(addr), `scgi://127.0.0.1:${addr.port}/`);
});

Deno.test("serve: handler gets a Request and every CGI variable, in wire order with repeats", async () => {
  let seen:
    | { request: Request; info: ScgiHandlerInfo; body: string }
    | undefined;
  await using server = quietServer(async (request, info) => {
    seen = { request, info, body: await request.text() };
    return new Response("done");
  });
  // What nginx 1.22 sends for a request with two Cookie headers, plus
  // variables a Request can't carry.
  const head = encodeRequestHead([
    ["REQUEST_METHOD", "POST"],
    ["REQUEST_URI", "/app/x?q=%C3%A9"],
    ["QUERY_STRING", "q=%C3%A9"],
    ["SCRIPT_NAME", "/app"],
    ["PATH_INFO", "/x"],
    ["HTTPS", "on"],
    ["REMOTE_ADDR", "203.0.113.9"],
    ["REMOTE_PORT", "51234"],
    ["REMOTE_USER", "alice"],
    ["SERVER_NAME", "example.com"],
    ["SERVER_PORT", "443"],
    ["CONTENT_TYPE", "text/plain"],
    ["HTTP_HOST", "example.com"],
    ["HTTP_COOKIE", "a=1"],
    ["HTTP_X_EMPTY", ""],
  ], 5);
  // encodeRequestHead refuses duplicates, so splice a repeated name in by hand.
  const text = new TextDecoder().decode(head);
  const block = text.slice(text.indexOf(":") + 1, -1) + "HTTP_COOKIE\0b=2\0";
  const wire = encoder.encode(`${encoder.encode(block).length}:${block},hello`);
  const answer = await rawExchange(server.addr, wire);
  assert.match(answer, /^Status: 200 OK\r\n/);
  assert.ok(seen);
  const { request, info, body } = seen;
  assert.equal(request.method, "POST");
  assert.equal(request.url, "https://example.com/app/x?q=%C3%A9");
  assert.equal(body, "hello");
  assert.equal(request.headers.get("cookie"), "a=1; b=2");
  assert.equal(request.headers.get("content-type"), "text/plain");
  assert.equal(request.headers.get("x-empty"), "");
  assert.deepEqual(info.remoteAddr, {
    transport: "tcp",
    hostname: "203.0.113.9",
    port: 51234,
  });
  assert.equal(info.env.REMOTE_USER, "alice");
  assert.equal(info.env.PATH_INFO, "/x");
  assert.equal(info.env.HTTP_COOKIE, "a=1; b=2");
  assert.deepEqual(
    info.envList.filter(([name]) => name === "HTTP_COOKIE"),
    [["HTTP_COOKIE", "a=1"], ["HTTP_COOKIE", "b=2"]],
  );
  assert.deepEqual(info.envList[0], ["CONTENT_LENGTH", "5"]);
  assert.deepEqual(info.envList.at(-1), ["HTTP_COOKIE", "b=2"]);
  await info.completed;
});

Deno.test("serve: lighttpd order (SCGI last) and no SCGI at all are accepted", async () => {
  await using server = quietServer((request) =>
    new Response(new URL(request.url).pathname)
  );
  for (
    const block of [
      "CONTENT_LENGTH\x000\x00REQUEST_URI\x00/last\x00SCGI\x001\x00",
      "CONTENT_LENGTH\x000\x00REQUEST_URI\x00/none\x00",
    ]
  ) {
    const answer = await rawExchange(
      server.addr,
      encoder.encode(`${block.length}:${block},`),
    );
    assert.match(answer, /^Status: 200 OK\r\n/);
    assert.ok(answer.endsWith(block.includes("SCGI") ? "/last" : "/none"));
  }
});

Deno.test("serve: protocol errors are answered with their status and the handler is not called", async () => {
  let calls = 0;
  await using server = quietServer(() => {
    calls++;
    return new Response("no");
  }, { maxHeaderBytes: 200, maxBodyBytes: 10 });
  const netstring = (block: string, end = ",") =>
    `${block.length}:${block}${end}`;
  const cases: [string, number][] = [
    ["hello", 400],
    ["05:ab\0c\0,", 400],
    [netstring("REQUEST_URI\0"), 400],
    [netstring("SCGI\x001\x00", ";"), 400],
    [netstring("\x00x\x00CONTENT_LENGTH\x000\x00"), 400],
    [netstring("SCGI\x001\x00"), 411],
    [netstring("CONTENT_LENGTH\x00abc\x00SCGI\x001\x00"), 400],
    [netstring("CONTENT_LENGTH\x001\x00CONTENT_LENGTH\x001\x00"), 400],
    [netstring("CONTENT_LENGTH\x00100\x00SCGI\x001\x00"), 413],
    ["999:", 431],
  ];
  for (const [wire, status] of cases) {
    const answer = await rawExchange(server.addr, encoder.encode(wire));
    assert.match(
      answer,
      new RegExp(`^Status: ${status} `),
      `${JSON.stringify(wire)} -> ${answer}`,
    );
    assert.match(answer, /content-type: text\/plain/);
  }
  assert.equal(calls, 0);
  assert.equal(server.stats.protocolErrors, cases.length);
});

Deno.test("serve: a request cut short inside the body aborts request.signal", async () => {
  const aborted = Promise.withResolvers<unknown>();
  const bodyFailed = Promise.withResolvers<unknown>();
  await using server = quietServer(async (request) => {
    request.signal.addEventListener(
      "abort",
      () => aborted.resolve(request.signal.reason),
    );
    try {
      await request.arrayBuffer();
    } catch (error) {
      bodyFailed.resolve(error);
    }
    return new Response("late");
  });
  const conn = await connectTo(server.addr);
  const writer = conn.writable.getWriter();
  await writer.write(encodeRequestHead({ REQUEST_METHOD: "POST" }, 100));
  await writer.write(encoder.encode("only ten b"));
  conn.close();
  const reason = await aborted.promise;
  assert.ok(reason instanceof Error);
  assert.match(
    String((await bodyFailed.promise as Error).message),
    /ended after 10 of 100 bytes/,
  );
});

Deno.test("serve: a half-close after the body is not an abort", async () => {
  const { promise: release, resolve } = Promise.withResolvers<void>();
  let signal: AbortSignal | undefined;
  await using server = quietServer(async (request) => {
    signal = request.signal;
    await request.text();
    await release;
    return new Response(`aborted=${request.signal.aborted}`);
  });
  const conn = await connectTo(server.addr);
  const writer = conn.writable.getWriter();
  await writer.write(encodeRequestHead({ REQUEST_METHOD: "POST" }, 3));
  await writer.write(encoder.encode("abc"));
  writer.releaseLock();
  await conn.closeWrite();
  // Give the server every chance to misread the half-close as an abort.
  while (!signal) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  resolve();
  const answer = await new Response(conn.readable).text();
  assert.ok(answer.endsWith("aborted=false"), answer);
});

Deno.test("serve: request.signal does not abort after a successful response", async () => {
  const seen = Promise.withResolvers<AbortSignal>();
  await using server = quietServer((request, info) => {
    info.completed.then(() => seen.resolve(request.signal));
    return new Response("ok");
  });
  await (await scgiFetch(scgiUrl(server.addr))).text();
  const signal = await seen.promise;
  assert.equal(signal.aborted, false);
});

Deno.test("serve: a front end that goes away mid-response aborts the request and rejects completed", async () => {
  const aborted = Promise.withResolvers<void>();
  const completed = Promise.withResolvers<unknown>();
  let produced = 0;
  await using server = quietServer((request, info) => {
    request.signal.addEventListener("abort", () => aborted.resolve());
    info.completed.then(
      () => completed.resolve("delivered"),
      (error) => completed.resolve(error),
    );
    const chunk = new Uint8Array(64 * 1024);
    return new Response(
      new ReadableStream({
        pull(controller) {
          produced++;
          controller.enqueue(chunk);
        },
      }),
    );
  });
  const response = await scgiFetch(scgiUrl(server.addr));
  const reader = response.body!.getReader();
  await reader.read();
  await reader.cancel();
  await aborted.promise;
  assert.notEqual(await completed.promise, "delivered");
  assert.ok(produced < 10_000, "the stream stopped being pulled");
  assert.equal(server.stats.aborted, 1);
});

Deno.test("serve: a throwing handler goes through onError; default is 500", async () => {
  const errors: unknown[] = [];
  await using custom = quietServer(() => {
    throw new Error("boom");
  }, {
    onError: (error) => {
      errors.push(error);
      return new Response("custom", { status: 503 });
    },
  });
  const response = await scgiFetch(scgiUrl(custom.addr));
  assert.equal(response.status, 503);
  assert.equal(await response.text(), "custom");
  assert.equal((errors[0] as Error).message, "boom");

  const originalError = console.error;
  console.error = () => {};
  try {
    await using plain = quietServer(() => Promise.reject(new Error("boom")));
    const fallback = await scgiFetch(scgiUrl(plain.addr));
    assert.equal(fallback.status, 500);
    assert.equal(await fallback.text(), "Internal Server Error\n");
    assert.equal(plain.stats.handlerErrors, 1);
  } finally {
    console.error = originalError;
  }
});

Deno.test("serve: many connections at once", async () => {
  let inFlight = 0;
  let peak = 0;
  await using server = quietServer(async (request) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setTimeout(r, 20));
    inFlight--;
    return new Response(new URL(request.url).search);
  });
  const url = scgiUrl(server.addr);
  const answers = await Promise.all(
    Array.from(
      { length: 100 },
      (_, i) => scgiFetch(`${url}?n=${i}`).then((r) => r.text()),
    ),
  );
  assert.deepEqual(answers, Array.from({ length: 100 }, (_, i) => `?n=${i}`));
  assert.ok(peak > 1, `requests overlapped (peak ${peak})`);
});

Deno.test("serve: Unix socket, and the socket file is removed on shutdown", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/app.sock`;
  const server = serve(
    { path, onListen() {} },
    (request) => new Response(new URL(request.url).pathname),
  );
  assert.deepEqual(server.addr, { transport: "unix", path });
  const response = await scgiFetch(
    `scgi+unix://${encodeURIComponent(path)}/over/unix`,
  );
  assert.equal(await response.text(), "/over/unix");
  await server.shutdown();
  await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("serve: Deno.serve-style apps run unchanged (an object with fetch)", async () => {
  const app = {
    port: 0,
    onListen() {},
    greeting: "self",
    fetch(request: Request): Response {
      return Response.json({
        path: new URL(request.url).pathname,
        self: this.greeting,
      });
    },
  };
  await using server = serve(app);
  const response = await scgiFetch(`${scgiUrl(server.addr)}users/7`);
  assert.deepEqual(await response.json(), { path: "/users/7", self: "self" });
});

Deno.test("serve: signal shuts the server down", async () => {
  const controller = new AbortController();
  const server = serve(
    { port: 0, onListen() {}, signal: controller.signal },
    () => new Response(),
  );
  controller.abort();
  await server.finished;
  await assert.rejects(scgiFetch(scgiUrl(server.addr)), {
    code: "connection_refused",
  });
});

Deno.test("serve: HEAD gets the head only; 204 and 304 have no body", async () => {
  await using server = quietServer((request) => {
    const path = new URL(request.url).pathname;
    if (path === "/204") return new Response(null, { status: 204 });
    if (path === "/304") {
      return new Response(null, { status: 304, headers: { etag: '"x"' } });
    }
    return new Response("body that HEAD must not send");
  });
  const head = encodeRequestHead(
    { REQUEST_METHOD: "HEAD", REQUEST_URI: "/" },
    0,
  );
  const answer = await rawExchange(server.addr, head);
  assert.equal(
    answer,
    "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n\r\n",
  );
  assert.equal(
    await rawExchange(
      server.addr,
      encodeRequestHead({ REQUEST_URI: "/204" }, 0),
    ),
    "Status: 204 No Content\r\n\r\n",
  );
  assert.equal(
    await rawExchange(
      server.addr,
      encodeRequestHead({ REQUEST_URI: "/304" }, 0),
    ),
    'Status: 304 Not Modified\r\netag: "x"\r\n\r\n',
  );
});

Deno.test("serve: a GET with an unread body still gets its answer", async () => {
  await using server = quietServer(() => new Response("ignored your body"));
  const body = new Uint8Array(1024 * 1024).fill(65);
  const head = encodeRequestHead({ REQUEST_METHOD: "GET" }, body.length);
  const wire = new Uint8Array(head.length + body.length);
  wire.set(head);
  wire.set(body, head.length);
  const answer = await rawExchange(server.addr, wire);
  assert.ok(answer.endsWith("ignored your body"), answer.slice(0, 200));
});

Deno.test("serve: abortOnHangUp aborts request.signal when the front end closes before the answer", async () => {
  const aborted = Promise.withResolvers<unknown>();
  const release = Promise.withResolvers<void>();
  await using server = quietServer(async (request) => {
    request.signal.addEventListener(
      "abort",
      () => aborted.resolve(request.signal.reason),
    );
    await release.promise;
    return new Response("too late");
    // Should the hang-up go unnoticed, the handler timeout aborts instead
    // (a TimeoutError), so the test fails rather than hangs.
  }, { abortOnHangUp: true, handlerTimeout: 5000 });
  const conn = await connectTo(server.addr);
  await conn.write(encodeRequestHead({ REQUEST_METHOD: "GET" }, 0));
  // nginx closes its upstream connection like this when its client leaves.
  conn.close();
  const reason = await aborted.promise;
  assert.ok(reason instanceof DOMException);
  assert.equal(reason.name, "AbortError");
  release.resolve();
  assert.equal(server.stats.aborted, 1);
});

Deno.test("serve: abortOnHangUp also ends an answer that streams nothing (server-sent events) when the front end closes", async () => {
  const cancelled = Promise.withResolvers<unknown>();
  const aborted = Promise.withResolvers<unknown>();
  await using server = quietServer((request) => {
    request.signal.addEventListener(
      "abort",
      () => aborted.resolve(request.signal.reason),
    );
    return new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("event: hello\n\n"));
          // Then nothing, for a long time.
        },
        cancel(reason) {
          cancelled.resolve(reason);
        },
      }),
      { headers: { "content-type": "text/event-stream" } },
    );
  }, { abortOnHangUp: true });
  const conn = await connectTo(server.addr);
  await conn.write(encodeRequestHead({ REQUEST_METHOD: "GET" }, 0));
  const buffer = new Uint8Array(4096);
  assert.ok((await conn.read(buffer))! > 0, "the head and the first event");
  conn.close();
  // A safety net, not a timed assertion: should the hang-up go unnoticed,
  // fail instead of hanging.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const unnoticed = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error("the hang-up went unnoticed")),
      10_000,
    );
  });
  try {
    const reason = await Promise.race([aborted.promise, unnoticed]);
    assert.equal((reason as DOMException).name, "AbortError");
    await Promise.race([cancelled.promise, unnoticed]);
  } finally {
    clearTimeout(timer);
  }
  while (server.stats.active > 0) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.equal(server.stats.aborted, 1);
});
