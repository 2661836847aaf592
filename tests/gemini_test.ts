// Gemini over SCGI, both ways: our server in the role of a Gemini app behind
// Xitzin (raw bytes in, raw bytes compared), and our client in the role of
// Xitzin calling a raw Gemini backend, byte for byte against the formats in
// Xitzin's SCGI documentation.

import assert from "node:assert/strict";
import {
  createClient,
  encodeGeminiHead,
  encodeRequestHead,
  gemini,
  geminiHeadFor,
  geminiResponse,
  httpStatusFromGemini,
  parseGeminiHead,
  readGeminiStatus,
  readRequestHead,
  ScgiClientError,
  scgiFetch,
  type ScgiHandler,
  type ScgiRequestInit,
  serve,
  type ServeOptions,
} from "../mod.ts";
import type { CgiEnv } from "../codec/request_head.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What Xitzin sends for `gemini://example.com/api/test?search=hello`. */
const XITZIN_ENV = {
  PATH_INFO: "/test",
  QUERY_STRING: "search=hello",
  SCRIPT_NAME: "/api",
  SERVER_NAME: "example.com",
  SERVER_PORT: "1965",
  GEMINI_URL: "gemini://example.com/api/test?search=hello",
  TLS_CLIENT_HASH: "abc123",
  TLS_CLIENT_AUTHORISED: "1",
  XITZIN_DB_URL: "postgres://localhost/mydb",
};

function quietServer(handler: ScgiHandler, options: ServeOptions = {}) {
  return serve({ port: 0, onListen() {}, ...options }, handler);
}

/** Plays Xitzin: sends raw SCGI bytes and returns every byte of the answer. */
async function asXitzin(
  server: { addr: Deno.Addr },
  env: Record<string, string> = XITZIN_ENV,
): Promise<string> {
  const { port } = server.addr as Deno.NetAddr;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const writer = conn.writable.getWriter();
  await writer.write(encodeRequestHead(env, 0));
  writer.releaseLock();
  return decoder.decode(await new Response(conn.readable).arrayBuffer());
}

const isMalformed = (error: unknown) =>
  error instanceof ScgiClientError && error.code === "malformed_response";

Deno.test("gemini server: the exact answers of Xitzin's documentation", async () => {
  const seen: CgiEnv[] = [];
  await using server = quietServer((request, info) => {
    seen.push(info.env);
    switch (info.env.PATH_INFO) {
      case "/hello":
        return gemini.success("# Hello World");
      case "/name":
        return gemini.input("Enter your name:");
      case "/old":
        return gemini.redirect("gemini://example.com/new-location");
      case "/env":
        return gemini.success(
          [
            request.url,
            info.env.TLS_CLIENT_HASH,
            info.env.TLS_CLIENT_AUTHORISED,
            info.env.XITZIN_DB_URL,
          ].join("\n"),
          "text/plain",
        );
      default:
        return gemini.notFound();
    }
  });
  const ask = (path: string) =>
    asXitzin(server, { ...XITZIN_ENV, PATH_INFO: path });
  assert.equal(await ask("/hello"), "20 text/gemini\r\n# Hello World");
  assert.equal(await ask("/name"), "10 Enter your name:\r\n");
  assert.equal(await ask("/old"), "30 gemini://example.com/new-location\r\n");
  assert.equal(await ask("/missing"), "51 Not found\r\n");
  assert.equal(
    await ask("/env"),
    "20 text/plain\r\ngemini://example.com/api/test?search=hello\nabc123\n1\npostgres://localhost/mydb",
  );
  assert.equal(seen.length, 5);
  assert.equal(seen[0]!.SCGI, "1");
  assert.equal(seen[0]!.CONTENT_LENGTH, "0");
});

Deno.test("gemini server: plain HTTP responses to a Gemini request are translated", async () => {
  const answers: Record<string, () => Response> = {
    "/ok": () =>
      new Response("# hi\n", { headers: { "content-type": "text/gemini" } }),
    "/text": () => new Response("plain"),
    "/empty": () => new Response(null, { status: 204 }),
    "/found": () => Response.redirect("gemini://example.com/b", 302),
    "/moved": () => Response.redirect("gemini://example.com/c", 301),
    "/perm": () => Response.redirect("gemini://example.com/d", 308),
    "/bad": () => new Response("no", { status: 400 }),
    "/auth": () => new Response("no", { status: 401 }),
    "/forbidden": () => new Response("no", { status: 403 }),
    "/gone": () => new Response("no", { status: 410 }),
    "/slow": () =>
      new Response("no", { status: 429, headers: { "retry-after": "30" } }),
    "/teapot": () => new Response("no", { status: 418 }),
    "/down": () => new Response("no", { status: 503 }),
    "/gateway": () => new Response("no", { status: 502 }),
    "/odd": () => new Response("no", { status: 507 }),
    "/reason": () =>
      new Response("no", { status: 404, statusText: "No such page" }),
    "/throw": () => {
      throw new Error("boom");
    },
  };
  await using server = quietServer(
    (_request, info) =>
      answers[info.env.PATH_INFO!]?.() ?? new Response("?", { status: 404 }),
    { onError: () => new Response("oops", { status: 500 }) },
  );
  const ask = (path: string) =>
    asXitzin(server, { ...XITZIN_ENV, PATH_INFO: path });
  assert.equal(await ask("/ok"), "20 text/gemini\r\n# hi\n");
  assert.equal(await ask("/text"), "20 text/plain;charset=UTF-8\r\nplain");
  assert.equal(await ask("/empty"), "20 text/gemini\r\n");
  assert.equal(await ask("/found"), "30 gemini://example.com/b\r\n");
  assert.equal(await ask("/moved"), "31 gemini://example.com/c\r\n");
  assert.equal(await ask("/perm"), "31 gemini://example.com/d\r\n");
  assert.equal(await ask("/bad"), "59 Bad Request\r\n");
  assert.equal(await ask("/auth"), "60 Unauthorized\r\n");
  assert.equal(await ask("/forbidden"), "61 Forbidden\r\n");
  assert.equal(await ask("/gone"), "52 Gone\r\n");
  assert.equal(await ask("/slow"), "44 30\r\n");
  assert.equal(await ask("/teapot"), "50 I'm a Teapot\r\n");
  assert.equal(await ask("/down"), "41 Service Unavailable\r\n");
  assert.equal(await ask("/gateway"), "43 Bad Gateway\r\n");
  assert.equal(await ask("/odd"), "40 Insufficient Storage\r\n");
  assert.equal(await ask("/reason"), "51 No such page\r\n");
  assert.equal(await ask("/throw"), "42 Internal Server Error\r\n");
});

Deno.test("gemini server: protocol option: auto, cgi, gemini", async () => {
  const handler = () => gemini.notFound();
  const plain = { ...XITZIN_ENV } as Record<string, string>;
  delete plain.GEMINI_URL;
  {
    await using server = quietServer(handler);
    assert.equal(await asXitzin(server), "51 Not found\r\n");
    // auto without GEMINI_URL: an HTTP front end gets CGI.
    const cgi = await asXitzin(server, plain);
    assert.match(cgi, /^Status: 404 Not Found\r\n/);
    assert.match(cgi, /\r\nx-gemini-status: 51\r\n/);
  }
  {
    await using server = quietServer(handler, { protocol: "cgi" });
    assert.match(await asXitzin(server), /^Status: 404 Not Found\r\n/);
  }
  {
    await using server = quietServer(handler, { protocol: "gemini" });
    assert.equal(await asXitzin(server, plain), "51 Not found\r\n");
    // A malformed request gets a Gemini answer too.
    const { port } = server.addr as Deno.NetAddr;
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const writer = conn.writable.getWriter();
    await writer.write(encoder.encode("not a netstring"));
    writer.releaseLock();
    await conn.closeWrite();
    const answer = decoder.decode(
      await new Response(conn.readable).arrayBuffer(),
    );
    assert.equal(answer, "59 Bad Request\r\n");
  }
});

Deno.test("gemini server: a bad Gemini answer goes to onError", async () => {
  const errors: unknown[] = [];
  await using server = quietServer(
    () => new Response("x", { headers: { "x-gemini-status": "99" } }),
    {
      onError: (error) => {
        errors.push(error);
        return new Response(null, { status: 500 });
      },
    },
  );
  assert.equal(await asXitzin(server), "42 Internal Server Error\r\n");
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /not a Gemini status/);
});

/** Plays a raw Gemini SCGI backend (Xitzin's mock server): one answer each. */
function rawBackend(answers: (string | Uint8Array)[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: CgiEnv[] = [];
  const done = (async () => {
    for (const answer of answers) {
      const conn = await listener.accept();
      const reader = conn.readable.getReader();
      const head = await readRequestHead({ read: () => reader.read() });
      received.push(head.env);
      reader.releaseLock();
      const writer = conn.writable.getWriter();
      await writer.write(
        typeof answer === "string" ? encoder.encode(answer) : answer,
      );
      writer.releaseLock();
      conn.close();
    }
    listener.close();
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return { url: `scgi://127.0.0.1:${port}`, received, done };
}

Deno.test("gemini client: scgiFetch reads Xitzin's documented answers", async () => {
  const backend = rawBackend([
    "20 text/gemini\r\n# Mock Response\n",
    "30 gemini://example.com/new-location\r\n",
    "51 Not found\r\n",
    "10 Enter your name:\r\n",
    "11 Password:\r\n",
    "31 gemini://example.com/permanent\r\n",
    "20 text/gemini\r\n",
    "44 30\r\n",
  ]);
  const env = { ...XITZIN_ENV };
  const fetchOne = () =>
    scgiFetch(`${backend.url}/api/test?search=hello`, { env });

  const ok = await fetchOne();
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get("content-type"), "text/gemini");
  assert.equal(ok.headers.get("x-gemini-status"), "20");
  assert.equal(ok.headers.get("x-gemini-meta"), "text/gemini");
  assert.equal(await ok.text(), "# Mock Response\n");

  const redirect = await fetchOne();
  assert.equal(redirect.status, 302);
  assert.equal(
    redirect.headers.get("location"),
    "gemini://example.com/new-location",
  );
  assert.deepEqual(readGeminiStatus(redirect), {
    status: 30,
    meta: "gemini://example.com/new-location",
  });
  assert.equal(redirect.body, null);

  const missing = await fetchOne();
  assert.equal(missing.status, 404);
  assert.deepEqual(readGeminiStatus(missing), {
    status: 51,
    meta: "Not found",
  });

  const input = await fetchOne();
  assert.equal(input.status, 200);
  assert.deepEqual(readGeminiStatus(input), {
    status: 10,
    meta: "Enter your name:",
  });
  assert.equal(input.body, null);

  assert.deepEqual(readGeminiStatus(await fetchOne()), {
    status: 11,
    meta: "Password:",
  });
  assert.equal((await fetchOne()).status, 301);
  const empty = await fetchOne();
  assert.equal(await empty.text(), "");
  const slow = await fetchOne();
  assert.equal(slow.status, 429);
  assert.equal(readGeminiStatus(slow)?.meta, "30");

  await backend.done;
  // What the backend received: Xitzin's variables, app state included.
  const first = backend.received[0]!;
  assert.equal(first.SCGI, "1");
  assert.equal(first.CONTENT_LENGTH, "0");
  assert.equal(first.GEMINI_URL, "gemini://example.com/api/test?search=hello");
  assert.equal(first.PATH_INFO, "/test");
  assert.equal(first.QUERY_STRING, "search=hello");
  assert.equal(first.TLS_CLIENT_HASH, "abc123");
  assert.equal(first.TLS_CLIENT_AUTHORISED, "1");
  assert.equal(first.XITZIN_DB_URL, "postgres://localhost/mydb");
  assert.equal(first.SERVER_PORT, "1965");
});

Deno.test("gemini client: protocol option and malformed answers", async () => {
  const backend = rawBackend([
    "20 text/gemini\r\nhi",
    "Status: 200 OK\r\n\r\nhi",
    "51 Not found", // no line end before the close: still a status line
    "7 bad\r\n",
    "",
    `20 ${"x".repeat(3000)}\r\nbody`,
  ]);
  await assert.rejects(
    scgiFetch(`${backend.url}/`, { protocol: "cgi" }),
    isMalformed,
  );
  await assert.rejects(
    scgiFetch(`${backend.url}/`, { protocol: "gemini" }),
    isMalformed,
  );
  assert.equal(
    (await scgiFetch(`${backend.url}/`, { protocol: "gemini" })).status,
    404,
  );
  await assert.rejects(
    scgiFetch(`${backend.url}/`),
    isMalformed,
  );
  await assert.rejects(
    scgiFetch(`${backend.url}/`, { protocol: "gemini" }),
    isMalformed,
  );
  await assert.rejects(
    scgiFetch(`${backend.url}/`, { maxHeadBytes: 2048 }),
    (error) =>
      error instanceof ScgiClientError && error.code === "head_too_large",
  );
  await backend.done;
});

Deno.test("gemini: our server and our client, UTF-8 meta and a streamed body", async () => {
  await using server = quietServer((request) => {
    const query = new URL(request.url).search.slice(1);
    if (!query) return gemini.input("Wie heißt du?");
    const stream = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(encoder.encode("# Grüß dich, "));
        await new Promise((resolve) => setTimeout(resolve, 5));
        controller.enqueue(encoder.encode(decodeURIComponent(query)));
        controller.close();
      },
    });
    return gemini.success(stream, "text/gemini; lang=de");
  });
  const { port } = server.addr as Deno.NetAddr;
  const ask = await scgiFetch(`scgi://127.0.0.1:${port}/greet`, {
    env: { GEMINI_URL: "gemini://example.com/greet" },
  });
  assert.deepEqual(readGeminiStatus(ask), {
    status: 10,
    meta: "Wie heißt du?",
  });
  const answer = await scgiFetch(`scgi://127.0.0.1:${port}/greet`, {
    env: { GEMINI_URL: "gemini://example.com/greet?J%C3%BCrgen" },
  });
  assert.equal(answer.headers.get("content-type"), "text/gemini; lang=de");
  assert.equal(await answer.text(), "# Grüß dich, Jürgen");
});

Deno.test("gemini: status tables and validation", () => {
  assert.equal(httpStatusFromGemini(10), 200);
  assert.equal(httpStatusFromGemini(20), 200);
  assert.equal(httpStatusFromGemini(30), 302);
  assert.equal(httpStatusFromGemini(31), 301);
  assert.equal(httpStatusFromGemini(42), 500);
  assert.equal(httpStatusFromGemini(43), 502);
  assert.equal(httpStatusFromGemini(51), 404);
  assert.equal(httpStatusFromGemini(59), 400);
  assert.equal(httpStatusFromGemini(62), 403);
  assert.equal(httpStatusFromGemini(45), 500);
  assert.equal(httpStatusFromGemini(57), 400);

  assert.deepEqual(geminiHeadFor(new Response("x")), {
    status: 20,
    meta: "text/plain;charset=UTF-8",
  });
  assert.deepEqual(geminiHeadFor(new Response(null, { status: 302 })), {
    status: 40,
    meta: "Found without a Location",
  });
  assert.deepEqual(geminiHeadFor(new Response(null, { status: 429 })), {
    status: 44,
    meta: "60",
  });

  assert.deepEqual(parseGeminiHead("20 text/gemini"), {
    status: 20,
    meta: "text/gemini",
  });
  assert.deepEqual(parseGeminiHead("40"), { status: 40, meta: "" });
  assert.equal(parseGeminiHead("200 OK"), undefined);
  assert.equal(parseGeminiHead("Status: 200"), undefined);
  assert.equal(parseGeminiHead("70 x"), undefined);
  assert.equal(
    decoder.decode(encodeGeminiHead({ status: 20, meta: "text/gemini" })),
    "20 text/gemini\r\n",
  );

  assert.throws(() => geminiResponse(9, "x"), TypeError);
  assert.throws(() => geminiResponse(70, "x"), TypeError);
  assert.throws(() => geminiResponse(20, "a\r\nb"), TypeError);
  assert.throws(() => geminiResponse(20, "x".repeat(1025)), TypeError);
  assert.throws(() => geminiResponse(51, "Not found", "body"), TypeError);
  assert.throws(() => gemini.temporaryFailure("x", 51), TypeError);
  assert.equal(
    gemini.permanentFailure("gone", 52).headers.get("x-gemini-status"),
    "52",
  );
  assert.equal(
    gemini.input("pw", { sensitive: true }).headers.get("x-gemini-status"),
    "11",
  );
  assert.equal(gemini.redirect("gemini://x/", { permanent: true }).status, 301);
  assert.equal(gemini.certificateRequired().status, 401);
  assert.equal(gemini.badRequest().headers.get("x-gemini-status"), "59");
});

/**
 * Captures the exact bytes of each request (a netstring and no body: Gemini
 * requests have none) and answers `20 text/gemini`.
 */
function capturingBackend() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const requests: Uint8Array[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      let wire = new Uint8Array(0);
      const reader = conn.readable.getReader();
      // Up to the netstring's comma.
      while (true) {
        const colon = wire.indexOf(0x3a);
        if (colon > 0) {
          const length = Number(decoder.decode(wire.subarray(0, colon)));
          if (wire.length >= colon + 1 + length + 1) break;
        }
        const { value, done } = await reader.read();
        if (done) break;
        const next = new Uint8Array(wire.length + value.length);
        next.set(wire);
        next.set(value, wire.length);
        wire = next;
      }
      reader.releaseLock();
      requests.push(wire);
      await conn.write(encoder.encode("20 text/gemini\r\n# ok\n"));
      conn.close();
    }
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return {
    port,
    requests,
    async [Symbol.asyncDispose]() {
      listener.close();
      await done;
    },
  };
}

/** The SCGI netstring for these variables, as bytes. */
function netstring(variables: [string, string][]): Uint8Array {
  const block = encoder.encode(
    variables.map(([name, value]) => `${name}\0${value}\0`).join(""),
  );
  return encoder.encode(`${block.length}:${decoder.decode(block)},`);
}

/** The variables of a netstring, decoded by hand. */
function variablesOf(wire: Uint8Array): [string, string][] {
  const text = decoder.decode(wire);
  const colon = text.indexOf(":");
  const parts = text.slice(colon + 1, -1).split("\0");
  const out: [string, string][] = [];
  for (let i = 0; i + 1 < parts.length; i += 2) {
    out.push([parts[i]!, parts[i + 1]!]);
  }
  return out;
}

Deno.test("gemini client: a gemini: URL sends exactly Xitzin's variables", async () => {
  await using backend = capturingBackend();
  // Xitzin mounted at /api, a client with a certificate, app state.
  const response = await scgiFetch(
    "gemini://example.com/api/test?search=hello",
    {
      backend: { hostname: "127.0.0.1", port: backend.port },
      scriptName: "/api",
      remoteAddr: { hostname: "192.0.2.7" },
      clientCertificate: { hash: "abc123" },
      env: { XITZIN_DB_URL: "postgres://localhost/mydb" },
    },
  );
  assert.equal(response.url, "gemini://example.com/api/test?search=hello");
  assert.deepEqual(readGeminiStatus(response), {
    status: 20,
    meta: "text/gemini",
  });
  assert.equal(await response.text(), "# ok\n");
  const expected: [string, string][] = [
    ["CONTENT_LENGTH", "0"],
    ["SCGI", "1"],
    ["GATEWAY_INTERFACE", "CGI/1.1"],
    ["SERVER_PROTOCOL", "GEMINI"],
    ["SERVER_SOFTWARE", "deno-scgi"],
    ["GEMINI_URL", "gemini://example.com/api/test?search=hello"],
    ["SCRIPT_NAME", "/api"],
    ["PATH_INFO", "/test"],
    ["QUERY_STRING", "search=hello"],
    ["SERVER_NAME", "example.com"],
    ["SERVER_PORT", "1965"],
    ["REMOTE_ADDR", "192.0.2.7"],
    ["REMOTE_HOST", "192.0.2.7"],
    ["TLS_CLIENT_HASH", "abc123"],
    ["TLS_CLIENT_AUTHORISED", "1"],
    ["AUTH_TYPE", "CERTIFICATE"],
    ["XITZIN_DB_URL", "postgres://localhost/mydb"],
  ];
  assert.deepEqual(variablesOf(backend.requests[0]!), expected);
  assert.deepEqual(backend.requests[0], netstring(expected));
  // Every variable of Xitzin's table, and nothing an HTTP front end adds.
  const byName = new Map(expected);
  for (
    const name of [
      "SCGI",
      "CONTENT_LENGTH",
      "PATH_INFO",
      "QUERY_STRING",
      "SERVER_NAME",
      "SERVER_PORT",
      "GEMINI_URL",
      "TLS_CLIENT_HASH",
      "TLS_CLIENT_AUTHORISED",
    ]
  ) assert.ok(byName.has(name), name);
});

Deno.test("gemini client: a gemini: URL without certificate, on another port, bound client, Xitzin's empty SCRIPT_NAME", async () => {
  await using backend = capturingBackend();
  const client = createClient({ port: backend.port });
  const ask = async (url: string, init: ScgiRequestInit = {}) => {
    const response = await client.fetch(url, init);
    await response.body?.cancel();
    return variablesOf(backend.requests[backend.requests.length - 1]!);
  };
  const base = (
    url: string,
    path: string,
    query: string,
    port: string,
  ): [string, string][] => [
    ["CONTENT_LENGTH", "0"],
    ["SCGI", "1"],
    ["GATEWAY_INTERFACE", "CGI/1.1"],
    ["SERVER_PROTOCOL", "GEMINI"],
    ["SERVER_SOFTWARE", "deno-scgi"],
    ["GEMINI_URL", url],
    ["SCRIPT_NAME", ""],
    ["PATH_INFO", path],
    ["QUERY_STRING", query],
    ["SERVER_NAME", "example.com"],
    ["SERVER_PORT", port],
    ["TLS_CLIENT_AUTHORISED", "0"],
  ];
  assert.deepEqual(
    await ask("gemini://example.com:1966/caf%C3%A9?J%C3%BCrgen#top"),
    base(
      "gemini://example.com:1966/caf%C3%A9?J%C3%BCrgen",
      "/café",
      "J%C3%BCrgen",
      "1966",
    ),
  );
  assert.deepEqual(
    await ask("gemini://example.com"),
    base("gemini://example.com", "/", "", "1965"),
  );
  // Xitzin sends SCRIPT_NAME empty and PATH_INFO after its mount: an env
  // entry replaces SCRIPT_NAME in place.
  const mounted = await ask("gemini://example.com/api/test", {
    scriptName: "/api",
    env: { SCRIPT_NAME: "" },
  });
  assert.deepEqual(
    mounted,
    base("gemini://example.com/api/test", "/test", "", "1965"),
  );
  // A Gemini request has no body.
  await assert.rejects(
    client.fetch("gemini://example.com/", { method: "POST", body: "x" }),
    TypeError,
  );
  // A gemini: URL needs to be told where the backend is.
  await assert.rejects(scgiFetch("gemini://example.com/"), TypeError);
});

Deno.test("gemini: our client as Xitzin in front of our server", async () => {
  await using server = quietServer((request, info) =>
    gemini.success(
      [
        request.url,
        info.env.PATH_INFO,
        info.env.QUERY_STRING,
        info.env.TLS_CLIENT_HASH,
        info.env.REQUEST_METHOD ?? "(no method)",
      ].join("\n"),
    )
  );
  const { port } = server.addr as Deno.NetAddr;
  const response = await scgiFetch("gemini://example.com/api/hi?there", {
    backend: { port },
    scriptName: "/api",
    clientCertificate: { hash: "abc123" },
  });
  assert.equal(response.headers.get("x-gemini-status"), "20");
  assert.equal(
    await response.text(),
    "gemini://example.com/api/hi?there\n/hi\nthere\nabc123\n(no method)",
  );
});
