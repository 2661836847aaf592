import assert from "node:assert/strict";
import { scgiProxy, type ScgiProxyOptions } from "../gateway.ts";
import { type ScgiHandler, type ScgiServer, serve } from "../server.ts";
import { freePort, peerTest, startPeer, waitForListen } from "./_peer.ts";

const quiet = { port: 0, onListen() {} };

function backend(handler: ScgiHandler, port = 0): ScgiServer {
  return serve({ ...quiet, port }, handler);
}

function portOf(server: ScgiServer | Deno.HttpServer): number {
  return (server.addr as Deno.NetAddr).port;
}

/** An HTTP front end on a free port with the gateway as its handler. */
function front(options: ScgiProxyOptions): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    scgiProxy(options),
  );
}

const envReport: ScgiHandler = async (request, info) =>
  Response.json({
    env: info.env,
    url: request.url,
    body: await request.text(),
  });

Deno.test("gateway: mount sets SCRIPT_NAME and PATH_INFO, passes client and headers", async () => {
  await using app = backend(envReport);
  await using http = front({
    backends: [`127.0.0.1:${portOf(app)}`],
    mount: "/app/",
  });
  const base = `http://127.0.0.1:${portOf(http)}`;
  const response = await fetch(`${base}/app/users/caf%C3%A9?x=1&y=2`, {
    method: "POST",
    headers: { "x-custom": "yes", "content-type": "text/plain" },
    body: "hello",
  });
  assert.equal(response.status, 200);
  const { env, body } = await response.json();
  assert.equal(env.SCRIPT_NAME, "/app");
  assert.equal(env.PATH_INFO, "/users/café");
  assert.equal(env.QUERY_STRING, "x=1&y=2");
  assert.equal(env.REQUEST_URI, "/app/users/caf%C3%A9?x=1&y=2");
  assert.equal(env.REQUEST_METHOD, "POST");
  assert.equal(env.CONTENT_LENGTH, "5");
  assert.equal(env.CONTENT_TYPE, "text/plain");
  assert.equal(env.HTTP_X_CUSTOM, "yes");
  assert.equal(env.HTTP_HOST, `127.0.0.1:${portOf(http)}`);
  assert.equal(env.REMOTE_ADDR, "127.0.0.1");
  assert.match(env.REMOTE_PORT, /^[0-9]+$/);
  assert.notEqual(env.REMOTE_PORT, "0");
  assert.equal(env.SERVER_NAME, "127.0.0.1");
  assert.equal(env.SERVER_PORT, String(portOf(http)));
  assert.equal(env.HTTPS, undefined);
  assert.equal(body, "hello");

  const root = await fetch(`${base}/app`);
  const rootEnv = (await root.json()).env;
  assert.equal(rootEnv.SCRIPT_NAME, "/app");
  assert.equal(rootEnv.PATH_INFO, "");

  for (const outside of ["/", "/application", "/other/app"]) {
    const miss = await fetch(base + outside);
    assert.equal(miss.status, 404, outside);
    assert.equal(await miss.text(), "not found\n");
  }
});

Deno.test("gateway: HTTPS, SERVER_NAME and SERVER_PORT options, extra env", async () => {
  await using app = backend(envReport);
  const handler = scgiProxy({
    backends: [{ port: portOf(app) }],
    serverName: "example.org",
    serverPort: 8443,
    env: { APP_STAGE: "test" },
  });
  const response = await handler(new Request("https://example.org:8443/x"), {
    remoteAddr: { transport: "tcp", hostname: "192.0.2.7", port: 5555 },
  });
  const { env, url } = await response.json();
  assert.equal(env.HTTPS, "on");
  assert.equal(env.SERVER_NAME, "example.org");
  assert.equal(env.SERVER_PORT, "8443");
  assert.equal(env.REMOTE_ADDR, "192.0.2.7");
  assert.equal(env.REMOTE_PORT, "5555");
  assert.equal(env.APP_STAGE, "test");
  assert.equal(env.SCRIPT_NAME, "");
  assert.equal(env.PATH_INFO, "/x");
  assert.equal(url, "https://example.org:8443/x");
});

Deno.test("gateway: fallback answers outside the mount", async () => {
  await using app = backend(() => new Response("from scgi"));
  const handler = scgiProxy({
    backends: [{ port: portOf(app) }],
    mount: "/api",
    fallback: (request) =>
      new Response(`static ${new URL(request.url).pathname}`),
  });
  assert.equal(
    await (await handler(new Request("http://h/index.html"))).text(),
    "static /index.html",
  );
  assert.equal(
    await (await handler(new Request("http://h/api/x"))).text(),
    "from scgi",
  );
});

Deno.test("gateway: bad options are refused", () => {
  assert.throws(() => scgiProxy({ backends: [] }), /at least one backend/);
  assert.throws(
    () => scgiProxy({ backends: ["nohost"] }),
    /not HOST:PORT or unix:PATH/,
  );
  assert.throws(
    () => scgiProxy({ backends: ["127.0.0.1:99999"] }),
    /not HOST:PORT/,
  );
  assert.throws(
    () => scgiProxy({ backends: ["127.0.0.1:1"], mount: "app" }),
    /must start with/,
  );
  assert.throws(
    () => scgiProxy({ backends: ["127.0.0.1:1"], maxConcurrent: 0 }),
    /maxConcurrent/,
  );
});

Deno.test("gateway: refused, timeout and malformed backends map to 502 and 504", async () => {
  const down = freePort();
  const refused = await scgiProxy({ backends: [`127.0.0.1:${down}`] })(
    new Request("http://h/"),
  );
  assert.equal(refused.status, 502);
  assert.match(
    await refused.text(),
    /^no SCGI backend reachable: connection refused by 127\.0\.0\.1:\d+\n$/,
  );

  const missing = await scgiProxy({ backends: ["unix:/nonexistent/app.sock"] })(
    new Request("http://h/"),
  );
  assert.equal(missing.status, 502);
  assert.match(await missing.text(), /no socket at \/nonexistent\/app\.sock/);

  // Accepts and never answers: the head timeout gives 504.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  const slow = await scgiProxy({
    backends: [{ port: (silent.addr as Deno.NetAddr).port }],
    headTimeout: 100,
  })(
    new Request("http://h/"),
  );
  assert.equal(slow.status, 504);
  assert.match(await slow.text(), /timed out/);
  silent.close();
  await accepting;
  for (const conn of held) conn.close();

  // Answers with garbage: 502.
  const garbage = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const answering = (async () => {
    const conn = await garbage.accept();
    await conn.write(
      new TextEncoder().encode("this is not a CGI response\r\n\r\n"),
    );
    conn.close();
  })();
  const bad = await scgiProxy({
    backends: [{ port: (garbage.addr as Deno.NetAddr).port }],
  })(new Request("http://h/"));
  assert.equal(bad.status, 502);
  assert.match(await bad.text(), /^bad SCGI backend: /);
  await answering;
  garbage.close();
});

Deno.test("gateway: round robin over several backends, skipping one that is down until it recovers", async () => {
  const downPort = freePort();
  await using a = backend(() => new Response("a"));
  await using b = backend(() => new Response("b"));
  const handler = scgiProxy({
    backends: [
      `127.0.0.1:${portOf(a)}`,
      `127.0.0.1:${downPort}`,
      `127.0.0.1:${portOf(b)}`,
    ],
    retryInterval: 200,
  });
  const answers: string[] = [];
  for (let i = 0; i < 9; i++) {
    const response = await handler(new Request("http://h/"));
    assert.equal(response.status, 200);
    answers.push(await response.text());
  }
  // Every request is served; the down one never answers; both up ones share.
  assert.equal(
    answers.filter((x) => x === "a").length +
      answers.filter((x) => x === "b").length,
    9,
  );
  assert.ok(answers.includes("a") && answers.includes("b"));

  // It comes back: after the retry interval it takes its share again.
  await using _c = backend(() => new Response("c"), downPort);
  await new Promise((resolve) => setTimeout(resolve, 250));
  const later: string[] = [];
  for (let i = 0; i < 6; i++) {
    later.push(await (await handler(new Request("http://h/"))).text());
  }
  assert.ok(later.includes("c"), later.join(","));
  assert.ok(later.includes("a") && later.includes("b"), later.join(","));
});

Deno.test("gateway: maxConcurrent makes excess requests wait, or 503 after queueTimeout", async () => {
  let release!: () => void;
  let entered!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const inside = new Promise<void>((resolve) => (entered = resolve));
  await using app = backend(async (request) => {
    if (new URL(request.url).pathname === "/hold") {
      entered();
      await gate;
    }
    return new Response("done");
  });
  const now = scgiProxy({
    backends: [{ port: portOf(app) }],
    maxConcurrent: 1,
    queueTimeout: 0,
  });
  const first = now(new Request("http://h/hold"));
  await inside;
  const busy = await now(new Request("http://h/quick"));
  assert.equal(busy.status, 503);
  assert.equal(await busy.text(), "every SCGI backend is busy\n");
  release();
  assert.equal(await (await first).text(), "done");
  // The slot is free again once the body was read.
  assert.equal(await (await now(new Request("http://h/quick"))).text(), "done");

  let release2!: () => void;
  const gate2 = new Promise<void>((resolve) => (release2 = resolve));
  let entered2!: () => void;
  const inside2 = new Promise<void>((resolve) => (entered2 = resolve));
  await using app2 = backend(async (request) => {
    if (new URL(request.url).pathname === "/hold") {
      entered2();
      await gate2;
    }
    return new Response("ok " + new URL(request.url).pathname);
  });
  const waiting = scgiProxy({
    backends: [{ port: portOf(app2) }],
    maxConcurrent: 1,
    queueTimeout: 10_000,
  });
  const held = waiting(new Request("http://h/hold"));
  await inside2;
  let queuedDone = false;
  const queued = waiting(new Request("http://h/queued")).then((r) => {
    queuedDone = true;
    return r;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(queuedDone, false);
  release2();
  assert.equal(await (await held).text(), "ok /hold");
  assert.equal(await (await queued).text(), "ok /queued");
});

Deno.test("gateway: bodies stream both ways", async () => {
  const encoder = new TextEncoder();
  await using app = backend((request) => {
    // Answers with each request chunk as soon as it arrives.
    const reader = request.body!.getReader();
    return new Response(
      new ReadableStream({
        async pull(controller) {
          const { done, value } = await reader.read();
          if (done) controller.close();
          else controller.enqueue(encoder.encode(`got ${value.length};`));
        },
      }),
    );
  });
  const handler = scgiProxy({ backends: [{ port: portOf(app) }] });
  let sendMore!: ReadableStreamDefaultController<Uint8Array>;
  const upload = new ReadableStream<Uint8Array>({
    start(controller) {
      sendMore = controller;
      controller.enqueue(new Uint8Array(3));
    },
  });
  const response = await handler(
    new Request("http://h/", {
      method: "POST",
      body: upload,
      headers: { "content-length": "8" },
    }),
  );
  const reader = response.body!.pipeThrough(new TextDecoderStream())
    .getReader();
  // The first answer arrives while the upload is still open: both stream.
  assert.equal((await reader.read()).value, "got 3;");
  sendMore.enqueue(new Uint8Array(5));
  sendMore.close();
  let rest = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += value;
  }
  assert.equal(rest, "got 5;");
});

Deno.test("gateway: a chunked upload (no content-length) is buffered, over the limit 413", async () => {
  await using app = backend(async (request, info) =>
    new Response(
      `${info.env.CONTENT_LENGTH} ${(await request.arrayBuffer()).byteLength}`,
    )
  );
  await using http = front({
    backends: [{ port: portOf(app) }],
    maxBufferedBodyBytes: 1000,
  });
  const base = `http://127.0.0.1:${portOf(http)}`;
  const chunks = (n: number) =>
    ReadableStream.from([new Uint8Array(n), new Uint8Array(n)]);
  const ok = await fetch(base, { method: "POST", body: chunks(300) });
  assert.equal(await ok.text(), "600 600");
  const big = await fetch(base, { method: "POST", body: chunks(600) });
  assert.equal(big.status, 413);
  assert.match(await big.text(), /over 1000 bytes/);
});

Deno.test("gateway: a large response streams through Deno.serve intact", async () => {
  const size = 4 * 1024 * 1024;
  await using app = backend(() => new Response(new Uint8Array(size).fill(7)));
  await using http = front({ backends: [{ port: portOf(app) }] });
  const response = await fetch(`http://127.0.0.1:${portOf(http)}/`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  assert.equal(bytes.length, size);
  assert.ok(bytes.every((b) => b === 7));
});

peerTest(
  ["uwsgi"],
  "gateway: in front of uWSGI with a mount and a streamed upload",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(
        `${dir}/app.py`,
        `import json
def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    keys = ["SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR", "REQUEST_METHOD", "HTTP_X_TEST", "SERVER_PORT"]
    report = {k: environ.get(k) for k in keys}
    report["length"] = len(body)
    report["sum"] = sum(body)
    out = json.dumps(report).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
`,
      );
      const port = freePort();
      await using peer = startPeer("uwsgi", [
        "--plugin",
        "python3",
        "--scgi-socket",
        `127.0.0.1:${port}`,
        "--wsgi-file",
        `${dir}/app.py`,
        "--processes",
        "1",
        "--disable-logging",
      ], { cwd: dir });
      await waitForListen({ port }, 15_000, peer.alive);
      const down = freePort();
      await using http = front({
        backends: [`127.0.0.1:${down}`, `127.0.0.1:${port}`],
        mount: "/py",
      });
      const size = 300_000;
      const data = new Uint8Array(size).map((_, i) => i % 251);
      const upload = ReadableStream.from(
        (function* () {
          for (let i = 0; i < size; i += 65536) yield data.slice(i, i + 65536);
        })(),
      );
      for (let i = 0; i < 3; i++) {
        const response = await fetch(
          `http://127.0.0.1:${portOf(http)}/py/hello/world?q=1`,
          {
            method: "PUT",
            headers: { "x-test": "uwsgi", "content-length": String(size) },
            body: i === 0 ? upload : data,
          },
        );
        assert.equal(response.status, 201, peer.output());
        const report = await response.json();
        assert.equal(report.SCRIPT_NAME, "/py");
        assert.equal(report.PATH_INFO, "/hello/world");
        assert.equal(report.QUERY_STRING, "q=1");
        assert.equal(report.REMOTE_ADDR, "127.0.0.1");
        assert.equal(report.REQUEST_METHOD, "PUT");
        assert.equal(report.HTTP_X_TEST, "uwsgi");
        assert.equal(report.SERVER_PORT, String(portOf(http)));
        assert.equal(report.length, size);
        assert.equal(report.sum, data.reduce((a, b) => a + b, 0));
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("gateway: an HTTP client that goes away closes the backend connection", async () => {
  // A raw backend: answers a head and one chunk, then waits for the
  // gateway to close the connection.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const backendSaw = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(65536);
    await conn.read(buffer); // The request (small, one read).
    await conn.write(
      new TextEncoder().encode(
        "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst",
      ),
    );
    try {
      while ((await conn.read(buffer)) !== null) {
        // Nothing more is expected.
      }
      return "closed";
    } catch (error) {
      return (error as Error).name;
    } finally {
      conn.close();
    }
  })();
  await using http = front({
    backends: [{ port: (listener.addr as Deno.NetAddr).port }],
  });
  const controller = new AbortController();
  const response = await fetch(`http://127.0.0.1:${portOf(http)}/`, {
    signal: controller.signal,
  });
  const reader = response.body!.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), "first");
  controller.abort();
  await reader.closed.catch(() => {});
  assert.match(await backendSaw, /^(closed|ConnectionReset)$/);
  listener.close();
});
