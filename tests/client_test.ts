import assert from "node:assert/strict";
import {
  createClient,
  readRequestHead,
  ScgiClientError,
  scgiFetch,
  type ScgiHandler,
  scgiUrl,
  serve,
} from "../mod.ts";

const encoder = new TextEncoder();

function quietServer(handler: ScgiHandler) {
  return serve({ port: 0, onListen() {} }, handler);
}

/** A backend that records what it received and echoes the body. */
function echoServer() {
  return quietServer(async (request, info) => {
    const body = new Uint8Array(await request.arrayBuffer());
    return Response.json({
      method: request.method,
      url: request.url,
      contentType: request.headers.get("content-type"),
      length: body.length,
      text: new TextDecoder().decode(body),
      env: info.envList,
    });
  });
}

/** A raw TCP backend: hands the accepted connection to `answer`. */
function rawBackend(answer: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    for await (const conn of listener) {
      try {
        await answer(conn);
      } finally {
        try {
          conn.close();
        } catch {
          // Closed by answer().
        }
      }
    }
  })();
  return {
    url: `scgi://127.0.0.1:${(listener.addr as Deno.NetAddr).port}/`,
    async [Symbol.asyncDispose]() {
      listener.close();
      await done;
    },
  };
}

Deno.test("scgiFetch: sends CONTENT_LENGTH first, SCGI=1 second, then what nginx would", async () => {
  const captured = Promise.withResolvers<[string, string][]>();
  await using backend = rawBackend(async (conn) => {
    const head = await readRequestHead(conn.readable);
    captured.resolve([...head.envList] as [string, string][]);
    await conn.write(encoder.encode("Status: 200 OK\r\n\r\n"));
  });
  const response = await scgiFetch(`${backend.url}rpc?x=%20y`, {
    method: "POST",
    body: "<xml/>",
    headers: { "content-type": "text/xml", "x-custom": "1" },
  });
  assert.equal(response.status, 200);
  await response.body?.cancel();
  const env = await captured.promise;
  assert.deepEqual(env[0], ["CONTENT_LENGTH", "6"]);
  assert.deepEqual(env[1], ["SCGI", "1"]);
  const byName = new Map(env);
  assert.equal(byName.get("REQUEST_METHOD"), "POST");
  assert.equal(byName.get("REQUEST_URI"), "/rpc?x=%20y");
  assert.equal(byName.get("QUERY_STRING"), "x=%20y");
  assert.equal(byName.get("PATH_INFO"), "/rpc");
  assert.equal(byName.get("CONTENT_TYPE"), "text/xml");
  assert.equal(byName.get("HTTP_X_CUSTOM"), "1");
  assert.equal(byName.get("SERVER_NAME"), "127.0.0.1");
  assert.equal(byName.get("SERVER_PROTOCOL"), "HTTP/1.1");
  // rtorrent refuses header blocks of about 2000 bytes or more.
  const size = env.reduce(
    (sum, [name, value]) => sum + name.length + value.length + 2,
    0,
  );
  assert.ok(size < 1000, `header block of ${size} bytes`);
});

Deno.test("scgiFetch: every BodyInit kind arrives with its length and type", async () => {
  await using server = echoServer();
  const url = `${scgiUrl(server.addr)}upload`;
  const form = new FormData();
  form.set("field", "value");
  const cases: [BodyInit, string | null, number | null][] = [
    ["text é", "text/plain;charset=UTF-8", 7],
    [new Uint8Array([0, 1, 2, 255]), null, 4],
    [new Uint8Array([9, 9]).buffer, null, 2],
    [
      new Blob(["blob"], { type: "application/x-blob" }),
      "application/x-blob",
      4,
    ],
    [
      new URLSearchParams({ a: "1", b: "2" }),
      "application/x-www-form-urlencoded;charset=UTF-8",
      7,
    ],
    [form, null, null],
  ];
  for (const [body, type, length] of cases) {
    const answer = await (await scgiFetch(url, { method: "PUT", body })).json();
    assert.equal(answer.method, "PUT");
    if (type !== null) assert.equal(answer.contentType, type);
    if (length !== null) assert.equal(answer.length, length);
    assert.equal(
      new Map(answer.env).get("CONTENT_LENGTH"),
      String(answer.length),
    );
  }
  const multipart = await (await scgiFetch(url, { method: "POST", body: form }))
    .json();
  assert.match(multipart.contentType, /^multipart\/form-data; boundary=/);
  assert.match(multipart.text, /name="field"\r\n\r\nvalue\r\n/);
});

Deno.test("scgiFetch: a stream with a stated length is sent as it is produced", async () => {
  const firstChunkArrived = Promise.withResolvers<void>();
  await using server = quietServer(async (request) => {
    const reader = request.body!.getReader();
    const first = await reader.read();
    firstChunkArrived.resolve();
    let total = first.value!.length;
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
    }
    return new Response(String(total));
  });
  // The second chunk is only produced once the backend has the first: a
  // client that buffered the stream would wait forever.
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new Uint8Array(1000));
    },
    async pull(controller) {
      await firstChunkArrived.promise;
      controller.enqueue(new Uint8Array(500));
      controller.close();
    },
  });
  const response = await scgiFetch(scgiUrl(server.addr), {
    method: "POST",
    body,
    headers: { "content-length": "1500" },
  });
  assert.equal(await response.text(), "1500");
});

Deno.test("scgiFetch: a stream of unknown length is buffered up to the limit", async () => {
  await using server = echoServer();
  const url = scgiUrl(server.addr);
  const chunks = () =>
    ReadableStream.from([encoder.encode("abc"), encoder.encode("def")]);
  const answer =
    await (await scgiFetch(url, { method: "POST", body: chunks() })).json();
  assert.equal(answer.text, "abcdef");
  await assert.rejects(
    scgiFetch(url, { method: "POST", body: chunks(), maxBufferedBodyBytes: 4 }),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "request_too_large",
  );
});

Deno.test("scgiFetch: a stream shorter or longer than its content-length is an error", async () => {
  await using server = quietServer(async (request) => {
    await request.arrayBuffer().catch(() => {});
    return new Response("unreachable");
  });
  const url = scgiUrl(server.addr);
  for (const [stated, actual] of [[10, 5], [3, 5]] as const) {
    await assert.rejects(
      scgiFetch(url, {
        method: "POST",
        body: ReadableStream.from([new Uint8Array(actual)]),
        headers: { "content-length": String(stated) },
      }),
      (error: unknown) =>
        error instanceof ScgiClientError &&
        error.code === "request_body_mismatch",
    );
  }
});

Deno.test("scgiFetch: a backend that answers before reading the body can't deadlock it", async () => {
  await using server = quietServer(() =>
    new Response("early", { status: 413 })
  );
  const body = new Uint8Array(16 * 1024 * 1024);
  const response = await scgiFetch(scgiUrl(server.addr), {
    method: "POST",
    body: ReadableStream.from([
      body.subarray(0, 8 << 20),
      body.subarray(8 << 20),
    ]),
    headers: { "content-length": String(body.length) },
  });
  assert.equal(response.status, 413);
  assert.equal(await response.text(), "early");
});

Deno.test("scgiFetch: the response body streams as it arrives", async () => {
  const received = Promise.withResolvers<void>();
  await using server = quietServer(() =>
    new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(encoder.encode("first "));
        },
        async pull(controller) {
          await received.promise;
          controller.enqueue(encoder.encode("second"));
          controller.close();
        },
      }),
    )
  );
  const response = await scgiFetch(scgiUrl(server.addr));
  const reader = response.body!.pipeThrough(new TextDecoderStream())
    .getReader();
  assert.equal((await reader.read()).value, "first ");
  received.resolve();
  let rest = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += value;
  }
  assert.equal(rest, "second");
});

Deno.test("scgiFetch: status, reason, repeated Set-Cookie and url come back like fetch", async () => {
  await using server = quietServer(() => {
    const headers = new Headers({ location: "/next" });
    headers.append("set-cookie", "a=1; Path=/");
    headers.append("set-cookie", "b=2; HttpOnly");
    return new Response(null, { status: 303, headers });
  });
  const url = `${scgiUrl(server.addr)}form`;
  const response = await scgiFetch(url, { method: "POST", body: "x" });
  assert.equal(response.status, 303);
  assert.equal(response.statusText, "See Other");
  assert.equal(response.headers.get("location"), "/next");
  assert.deepEqual(response.headers.getSetCookie(), [
    "a=1; Path=/",
    "b=2; HttpOnly",
  ]);
  assert.equal(response.url, url);
  await response.body?.cancel();
});

Deno.test("scgiFetch: http URL with init.backend, a Request input, and extra env", async () => {
  await using server = echoServer();
  const backend = server.addr as Deno.NetAddr;
  const request = new Request("https://example.com/api/items?page=2", {
    method: "POST",
    body: "payload",
    headers: { "content-type": "application/json", "content-length": "7" },
  });
  const answer = await (await scgiFetch(request, {
    backend: { hostname: backend.hostname, port: backend.port },
    scriptName: "/api",
    env: {
      XITZIN_DB_URL: "postgres://localhost/db",
      SERVER_SOFTWARE: "gateway",
    },
    remoteAddr: { hostname: "198.51.100.7", port: 40000 },
  })).json();
  assert.equal(answer.url, "https://example.com/api/items?page=2");
  assert.equal(answer.text, "payload");
  const env = new Map(answer.env);
  assert.equal(env.get("HTTPS"), "on");
  assert.equal(env.get("SCRIPT_NAME"), "/api");
  assert.equal(env.get("PATH_INFO"), "/items");
  assert.equal(env.get("XITZIN_DB_URL"), "postgres://localhost/db");
  assert.equal(env.get("SERVER_SOFTWARE"), "gateway");
  assert.equal(env.get("REMOTE_ADDR"), "198.51.100.7");
  assert.equal(env.get("REMOTE_PORT"), "40000");
  await assert.rejects(scgiFetch("https://example.com/"), TypeError);
});

Deno.test("createClient: a bound backend on a Unix socket, paths relative to it", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/backend.sock`;
  const server = serve(
    { path, onListen() {} },
    (request) => new Response(new URL(request.url).pathname),
  );
  try {
    const byUrl = createClient(`scgi+unix://${encodeURIComponent(path)}`);
    assert.deepEqual(byUrl.backend, { path });
    assert.equal(await (await byUrl.fetch("/a/b")).text(), "/a/b");
    const byObject = createClient({ path });
    assert.equal(await (await byObject.fetch("/c")).text(), "/c");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
  await assert.rejects(
    createClient({ path }).fetch("/"),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "connection_refused",
  );
});

Deno.test("scgiFetch: a malformed answer is a malformed_response error", async () => {
  await using backend = rawBackend(async (conn) => {
    await readRequestHead(conn.readable);
    await conn.write(encoder.encode("this is not a CGI head\r\n\r\n"));
  });
  await assert.rejects(
    scgiFetch(backend.url),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "malformed_response" &&
      /is not a header/.test(error.message),
  );
});

Deno.test("scgiFetch: signal aborts with the signal's reason, like fetch", async () => {
  const started = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  await using server = quietServer(async () => {
    started.resolve();
    await release.promise;
    return new Response("too late");
  });
  const controller = new AbortController();
  const pending = scgiFetch(scgiUrl(server.addr), {
    signal: controller.signal,
  });
  await started.promise;
  controller.abort();
  await assert.rejects(pending, { name: "AbortError" });
  release.resolve();
});

Deno.test("createClient: a call's env merges with the client's, the call's names winning", async () => {
  await using server = echoServer();
  const { port } = server.addr as Deno.NetAddr;
  const client = createClient({ port }, {
    env: { A: "1", B: "2", SERVER_SOFTWARE: "client" },
  });
  const names = async (init: Parameters<typeof client.fetch>[1]) => {
    const answer = await (await client.fetch("/", init)).json();
    return (answer.env as [string, string][]).filter(([name]) =>
      ["A", "B", "C", "SERVER_SOFTWARE"].includes(name)
    );
  };
  // A standard variable replaced in place, extras after the standard ones
  // in the client's order, then the call's new ones.
  assert.deepEqual(await names({ env: { B: "3", C: "4" } }), [
    ["SERVER_SOFTWARE", "client"],
    ["A", "1"],
    ["B", "3"],
    ["C", "4"],
  ]);
  assert.deepEqual(await names({ env: { SERVER_SOFTWARE: "call" } }), [
    ["SERVER_SOFTWARE", "call"],
    ["A", "1"],
    ["B", "2"],
  ]);
  assert.deepEqual(await names({}), [
    ["SERVER_SOFTWARE", "client"],
    ["A", "1"],
    ["B", "2"],
  ]);
  // scgiFetch has no client env: the call's alone.
  const alone = await (await scgiFetch(`scgi://127.0.0.1:${port}/`, {
    env: { B: "3" },
  })).json();
  assert.deepEqual(
    (alone.env as [string, string][]).filter(([name]) =>
      name === "A" || name === "B"
    ),
    [["B", "3"]],
  );
});
