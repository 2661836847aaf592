import assert from "node:assert/strict";
import {
  gemini,
  readGeminiStatus,
  scgiFetch,
  type ScgiHandler,
  type ScgiHandlerInfo,
  serve,
} from "../mod.ts";
import { testClient } from "../testing.ts";

const report: ScgiHandler = async (request, info) =>
  Response.json({
    method: request.method,
    url: request.url,
    body: await request.text(),
    contentType: request.headers.get("content-type"),
    remote: info.remoteAddr,
    envList: info.envList,
  });

Deno.test("testClient: the handler sees exactly what serve() shows it for scgiFetch", async () => {
  const init = {
    method: "POST",
    body: "a=1",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      "x-test": "yes",
    },
    remoteAddr: { hostname: "192.0.2.7", port: 5555 },
    env: { REMOTE_USER: "alice" },
  };
  const viaTest =
    await (await testClient(report).fetch("http://app.example/p?q=1", init))
      .json();
  await using server = serve({ port: 0, onListen() {} }, report);
  const { port } = server.addr as Deno.NetAddr;
  const viaSocket = await (await scgiFetch("http://app.example/p?q=1", {
    ...init,
    backend: { port },
  })).json();
  assert.deepEqual(viaTest.envList, viaSocket.envList);
  assert.equal(viaTest.url, "http://app.example/p?q=1");
  assert.equal(viaTest.body, "a=1");
  assert.equal(viaTest.contentType, "application/x-www-form-urlencoded");
  assert.deepEqual(viaTest.remote, {
    transport: "tcp",
    hostname: "192.0.2.7",
    port: 5555,
  });
  assert.deepEqual(viaTest.envList.slice(0, 2), [["CONTENT_LENGTH", "3"], [
    "SCGI",
    "1",
  ]]);
  assert.ok(
    viaTest.envList.some(([n, v]: string[]) =>
      n === "REMOTE_USER" && v === "alice"
    ),
  );
});

Deno.test("testClient: relative paths, default client address, status text and cookies", async () => {
  const client = testClient((request, info) => {
    const headers = new Headers({
      "x-remote": `${info.env.REMOTE_ADDR ?? "none"} ${
        (info.remoteAddr as Deno.NetAddr).hostname
      }`,
    });
    headers.append("set-cookie", "a=1");
    headers.append("set-cookie", "b=2");
    return new Response(new URL(request.url).pathname, {
      status: 404,
      headers,
    });
  });
  const response = await client.fetch("/nowhere");
  assert.equal(response.status, 404);
  assert.equal(response.statusText, "Not Found");
  assert.equal(response.url, "http://localhost/nowhere");
  // As scgiFetch: no REMOTE_ADDR unless given; the client is the connection.
  assert.equal(response.headers.get("x-remote"), "none 127.0.0.1");
  assert.deepEqual(response.headers.getSetCookie(), ["a=1", "b=2"]);
  assert.equal(response.headers.get("content-length"), "8");
  assert.equal(await response.text(), "/nowhere");
  const head = await client.fetch("/nowhere", { method: "HEAD" });
  assert.equal(head.body, null);
});

Deno.test("testClient: failures are answered as serve() answers them", async () => {
  const seen: unknown[] = [];
  const client = testClient((request) => {
    const path = new URL(request.url).pathname;
    if (path === "/throw") throw new Error("boom");
    if (path === "/not-a-response") return "nope" as unknown as Response;
    return new Response(
      new ReadableStream({
        pull() {
          throw new Error("body failed");
        },
      }),
    );
  }, {
    onError: (error) => {
      seen.push(error);
      return new Response("handled", { status: 503 });
    },
    maxHeaderBytes: 2000,
  });
  const thrown = await client.fetch("/throw");
  assert.equal(thrown.status, 503);
  assert.equal(await thrown.text(), "handled");
  assert.equal((await client.fetch("/not-a-response")).status, 503);
  const failed = await client.fetch("/stream");
  assert.equal(failed.status, 503);
  await failed.body?.cancel();
  assert.equal(seen.length, 3);
  assert.match(String(seen[1]), /did not return a Response/);
  const large = await client.fetch("/x", {
    headers: { "x-big": "y".repeat(3000) },
  });
  assert.equal(large.status, 431);
  await large.body?.cancel();
});

Deno.test("testClient: default onError is a 500 without details", async () => {
  const originalError = console.error;
  const logged: unknown[] = [];
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    const response = await testClient(() => {
      throw new Error("secret detail");
    }).fetch("/");
    assert.equal(response.status, 500);
    assert.equal(await response.text(), "Internal Server Error\n");
    assert.equal(logged.length, 1);
  } finally {
    console.error = originalError;
  }
});

Deno.test("testClient: info.completed fulfils once the answer is written, rejects when the client cancels first", async () => {
  const infos: ScgiHandlerInfo[] = [];
  const client = testClient((request, info) => {
    infos.push(info);
    if (new URL(request.url).pathname === "/endless") {
      const chunk = new TextEncoder().encode("x".repeat(1024));
      return new Response(
        new ReadableStream({
          pull(controller) {
            controller.enqueue(chunk);
          },
        }),
      );
    }
    return new Response(
      ReadableStream.from(["a", "b"]).pipeThrough(new TextEncoderStream()),
    );
  });
  const read = await client.fetch("/");
  await infos[0]!.completed;
  assert.equal(await read.text(), "ab");
  const cancelled = await client.fetch("/endless");
  await cancelled.body!.cancel();
  await assert.rejects(
    infos[1]!.completed,
    (error) => error instanceof Deno.errors.BrokenPipe,
  );
});

Deno.test("testClient: an answer larger than the connection holds waits for the reader", async () => {
  let info: ScgiHandlerInfo | undefined;
  const big = new Uint8Array(1024 * 1024).fill(0x61);
  const client = testClient((_request, handlerInfo) => {
    info = handlerInfo;
    return new Response(big);
  });
  const response = await client.fetch("/");
  let completed = false;
  info!.completed.then(() => (completed = true));
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(completed, false);
  assert.equal((await response.bytes()).length, big.length);
  await info!.completed;
});

Deno.test("testClient: each request comes on a connection of its own", async () => {
  const client = testClient((_request, info) => Response.json(info.connAddr));
  const first = await (await client.fetch("/")).json();
  const second = await (await client.fetch("/")).json();
  assert.equal(first.hostname, "127.0.0.1");
  assert.notEqual(first.port, second.port);
});

Deno.test("testClient: a gemini: URL is sent as a Gemini server sends it", async () => {
  const client = testClient((_request, info) =>
    gemini.success(
      `${info.env.GEMINI_URL} ${info.env.TLS_CLIENT_HASH} ${info.env.REQUEST_METHOD}`,
    )
  );
  const response = await client.fetch("gemini://example.com/who", {
    clientCertificate: { hash: "abc123" },
  });
  assert.equal(readGeminiStatus(response)?.status, 20);
  assert.equal(
    await response.text(),
    "gemini://example.com/who abc123 undefined",
  );
  await assert.rejects(
    client.fetch("gemini://example.com/", { method: "POST", body: "x" }),
    TypeError,
  );
});

Deno.test("testClient: a Gemini request gets the raw Gemini answer", async () => {
  const client = testClient(
    (_request, info) => gemini.success(`# ${info.env.XITZIN_GREETING}`),
    { env: { GEMINI_URL: "gemini://example.com/", XITZIN_GREETING: "Hello" } },
  );
  const response = await client.fetch("/");
  assert.deepEqual(readGeminiStatus(response), {
    status: 20,
    meta: "text/gemini",
  });
  assert.equal(await response.text(), "# Hello");
  const forced = await testClient(() => new Response(null, { status: 404 }), {
    protocol: "gemini",
  }).fetch("/");
  assert.deepEqual(readGeminiStatus(forced), { status: 51, meta: "Not Found" });
});

Deno.test("testClient: an app object with fetch, and a mount point", async () => {
  const app = {
    prefix: "app",
    fetch(this: { prefix: string }, _request: Request, info: ScgiHandlerInfo) {
      return new Response(
        `${this.prefix}:${info.env.SCRIPT_NAME}:${info.env.PATH_INFO}`,
      );
    },
  };
  const client = testClient(app, { scriptName: "/mount" });
  assert.equal(
    await (await client.fetch("/mount/x/y")).text(),
    "app:/mount:/x/y",
  );
});
