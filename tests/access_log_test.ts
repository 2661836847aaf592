import assert from "node:assert/strict";
import { accessLog, clfTime } from "../middleware/mod.ts";
import { scgiFetch } from "../client.ts";
import { serve } from "../server.ts";
import { testClient } from "../testing.ts";
import { gemini, readGeminiStatus } from "../codec/gemini.ts";

const FIXED = new Date(2026, 10, 21, 16, 5, 9);

Deno.test("accessLog: combined format, field by field", async () => {
  const lines: string[] = [];
  const app = accessLog({ sink: (line) => lines.push(line), now: () => FIXED })(
    () => new Response("hello"),
  );
  const response = await testClient(app).fetch("/a/b?c=1", {
    headers: { referer: "https://ref.example/x", "user-agent": "curl/8.0" },
    remoteAddr: { hostname: "192.0.2.7", port: 4242 },
    env: { REMOTE_USER: "alice" },
  });
  assert.equal(await response.text(), "hello");
  assert.deepEqual(lines, [
    `192.0.2.7 - alice [${
      clfTime(FIXED)
    }] "GET /a/b?c=1 HTTP/1.1" 200 5 "https://ref.example/x" "curl/8.0"`,
  ]);
  assert.match(clfTime(FIXED), /^21\/Nov\/2026:16:05:09 [+-]\d{4}$/);
});

Deno.test("accessLog: common format, no body, status, timeTaken", async () => {
  const lines: string[] = [];
  let tick = 0;
  const times = [new Date(1_000_000), new Date(1_000_250)];
  const app = accessLog({
    sink: (line) => lines.push(line),
    format: "common",
    timeTaken: true,
    now: () => times[tick++]!,
  })(() => new Response(null, { status: 204 }));
  await testClient(app).fetch("/x", { method: "DELETE" });
  assert.equal(lines.length, 1);
  assert.match(
    lines[0]!,
    /^127\.0\.0\.1 - - \[[^\]]+\] "DELETE \/x HTTP\/1\.1" 204 - 0\.250$/,
  );
});

Deno.test("accessLog: counts the bytes actually sent, logs on failure and cancel", async () => {
  const lines: string[] = [];
  const encoder = new TextEncoder();
  const app = accessLog({ sink: (line) => lines.push(line), format: "common" })(
    (request) => {
      const path = new URL(request.url).pathname;
      if (path === "/throw") throw new Error("boom");
      if (path === "/fail") {
        let sent = 0;
        return new Response(
          new ReadableStream<Uint8Array>({
            pull(controller) {
              if (sent++ < 2) controller.enqueue(encoder.encode("abc"));
              else controller.error(new Error("disk gone"));
            },
          }),
        );
      }
      return new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            controller.enqueue(encoder.encode("x".repeat(100)));
          },
        }),
      );
    },
  );
  const client = testClient(app, {
    onError: () => new Response("err", { status: 500 }),
  });

  await (await client.fetch("/throw")).text();
  assert.match(lines.at(-1)!, /"GET \/throw HTTP\/1\.1" 500 -$/);

  const failing = await client.fetch("/fail");
  // As through serve(): the connection just ends after what was sent.
  assert.equal(await failing.text(), "abcabc");
  assert.match(lines.at(-1)!, /"GET \/fail HTTP\/1\.1" 200 6$/);

  const endless = await client.fetch("/endless");
  const reader = endless.body!.getReader();
  await reader.read();
  await reader.cancel();
  // Nothing more is pulled after the cancel; what was read is what counts.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.match(lines.at(-1)!, /"GET \/endless HTTP\/1\.1" 200 \d+$/);
  assert.equal(lines.length, 3);
});

Deno.test("accessLog: HEAD logs no bytes; quotes and controls are escaped", async () => {
  const lines: string[] = [];
  const app = accessLog({ sink: (line) => lines.push(line) })(() =>
    new Response("body")
  );
  const client = testClient(app);
  await client.fetch("/h", { method: "HEAD" });
  assert.match(lines[0]!, /"HEAD \/h HTTP\/1\.1" 200 -/);
  await (await client.fetch("/q", {
    headers: { "user-agent": 'evil" 200 1 "x\\', referer: "caf\u00c3\u00a9" },
    env: { REQUEST_URI: "/caf\u00e9\n" },
  })).text();
  assert.ok(lines[1]!.includes(`"GET /caf\\xC3\\xA9\\x0A HTTP/1.1"`), lines[1]);
  assert.ok(
    lines[1]!.endsWith(`"caf\\xC3\\xA9" "evil\\x22 200 1 \\x22x\\x5C"`),
    lines[1],
  );
});

Deno.test("accessLog: a stream sink gets newline-ended lines; a slow sink drops, never blocks", async () => {
  const chunks: string[] = [];
  const decoder = new TextDecoder();
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      chunks.push(decoder.decode(chunk));
    },
  });
  const log = accessLog({ sink, format: "common" });
  const client = testClient(log(() => new Response("ok")));
  await (await client.fetch("/1")).text();
  await (await client.fetch("/2")).text();
  await log.flush();
  const text = chunks.join("");
  assert.equal(text.split("\n").length, 3);
  assert.match(
    text,
    /"GET \/1 HTTP\/1\.1" 200 2\n.*"GET \/2 HTTP\/1\.1" 200 2\n$/,
  );

  // A sink that never finishes a write: responses go on, lines beyond the
  // bound are dropped.
  const stuck = Promise.withResolvers<void>();
  const slow = accessLog({
    sink: new WritableStream<Uint8Array>({ write: () => stuck.promise }),
    maxQueue: 3,
  });
  const slowClient = testClient(slow(() => new Response("ok")));
  for (let i = 0; i < 10; i++) {
    assert.equal(await (await slowClient.fetch(`/${i}`)).text(), "ok");
  }
  // The first line is in the sink's write, three wait, the rest dropped.
  assert.equal(slow.pending, 3);
  assert.equal(slow.dropped, 6);
  stuck.resolve();
  await slow.flush();
  assert.equal(slow.pending, 0);
});

Deno.test("accessLog: the line waits for the end of a streamed body", async () => {
  const lines: string[] = [];
  const gate = Promise.withResolvers<void>();
  const app = accessLog({ sink: (line) => lines.push(line), format: "common" })(
    () =>
      new Response(ReadableStream.from((async function* () {
        yield new TextEncoder().encode("part1");
        await gate.promise;
        yield new TextEncoder().encode("part2");
      })())),
  );
  const response = await testClient(app).fetch("/slow");
  assert.equal(lines.length, 0);
  gate.resolve();
  assert.equal(await response.text(), "part1part2");
  assert.match(lines[0]!, /"GET \/slow HTTP\/1\.1" 200 10$/);
});

Deno.test("accessLog: several default loggers coexist; a locked stream fails at setup", () => {
  accessLog();
  accessLog();
  const locked = new WritableStream<Uint8Array>();
  locked.getWriter();
  assert.throws(() => accessLog({ sink: locked }), TypeError);
});

Deno.test("accessLog: a throwing function sink doesn't break the response", async () => {
  const app = accessLog({
    sink: () => {
      throw new Error("sink broken");
    },
  })(() => new Response("fine"));
  assert.equal(await (await testClient(app).fetch("/")).text(), "fine");
});

Deno.test("accessLog: over a real socket, REMOTE_ADDR from the front end", async () => {
  const lines: string[] = [];
  await using server = serve(
    { port: 0, onListen() {} },
    accessLog({ sink: (line) => lines.push(line), format: "common" })(() =>
      new Response("hi")
    ),
  );
  const { port } = server.addr as Deno.NetAddr;
  const response = await scgiFetch(`scgi://127.0.0.1:${port}/p`, {
    remoteAddr: { hostname: "2001:db8::1", port: 1 },
  });
  assert.equal(await response.text(), "hi");
  // The server writes the last bytes, then the body stream reports its end.
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.match(
    lines[0]!,
    /^2001:db8::1 - - \[.*\] "GET \/p HTTP\/1\.1" 200 2$/,
  );
});

Deno.test("accessLog: json lines for programs, and Deno.serve-style info without env", async () => {
  const lines: string[] = [];
  const log = accessLog({ sink: (line) => lines.push(line), format: "json" });
  // A Deno.serve handler: its info has remoteAddr and no CGI variables.
  const handler = log((_request: Request, _info: Deno.ServeHandlerInfo) =>
    new Response("four")
  );
  const info = {
    remoteAddr: {
      transport: "tcp" as const,
      hostname: "192.0.2.1",
      port: 5000,
    },
    completed: Promise.resolve(),
  };
  const response = await handler(
    new Request("http://localhost/a?b=1", { headers: { "user-agent": "ua" } }),
    info,
  );
  assert.equal(await response.text(), "four");
  assert.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!);
  assert.equal(entry.remote, "192.0.2.1");
  assert.equal(entry.method, "GET");
  assert.equal(entry.target, "/a?b=1");
  assert.equal(entry.status, 200);
  assert.equal(entry.bytes, 4);
  assert.equal(entry.agent, "ua");
  assert.equal(entry.user, null);
  assert.equal(typeof entry.ms, "number");
  assert.ok(!Number.isNaN(Date.parse(entry.time)));
});

Deno.test("accessLog: json decodes referer and agent as UTF-8, as the text formats escape them", async () => {
  const lines: string[] = [];
  const log = accessLog({ sink: (line) => lines.push(line), format: "json" });
  const client = testClient(log(() => new Response("ok")));
  // Header values hold bytes, one per character: these are é's UTF-8 bytes.
  await (await client.fetch("/", {
    headers: {
      "user-agent": "Mozilla \u00c3\u00a9",
      referer: "https://ref.example/caf\u00c3\u00a9",
    },
    env: { REMOTE_USER: "j\u00fcrgen", REQUEST_URI: "/caf\u00e9" },
  })).text();
  const entry = JSON.parse(lines[0]!);
  assert.equal(entry.agent, "Mozilla \u00e9");
  assert.equal(entry.referer, "https://ref.example/caf\u00e9");
  assert.equal(entry.user, "j\u00fcrgen");
  assert.equal(entry.target, "/caf\u00e9");
  // Bytes that are not UTF-8 can't be text: U+FFFD, the line stays JSON.
  // (Straight to the handler: the test client sends header text as UTF-8.)
  const handler = log(() => new Response("ok"));
  await (await handler(
    new Request("http://localhost/", { headers: { "user-agent": "a\u00ffb" } }),
    undefined,
  )).text();
  assert.equal(JSON.parse(lines[1]!).agent, "a\ufffdb");
});

Deno.test("accessLog: a Gemini request is logged with its URL and its Gemini status", async () => {
  const lines: string[] = [];
  const json: string[] = [];
  const app = (request: Request) => {
    const path = new URL(request.url).pathname;
    if (path === "/hello") return gemini.input("Your name?");
    if (path === "/page") return gemini.success("# hi\n");
    if (path === "/throw") throw new Error("boom");
    return new Response("nope", { status: 404 }); // the server sends 51
  };
  const handler = accessLog({
    sink: (line) => lines.push(line),
    now: () => FIXED,
  })(
    accessLog({ sink: (line) => json.push(line), format: "json" })(app),
  );
  const client = testClient(handler, {
    onError: () => new Response("err", { status: 500 }),
  });
  const ask = async (path: string) => {
    const response = await client.fetch(path, {
      env: { GEMINI_URL: `gemini://example.com${path}` },
    });
    await response.body?.cancel();
    return readGeminiStatus(response)?.status;
  };
  assert.equal(await ask("/hello"), 10);
  assert.equal(await ask("/page"), 20);
  assert.equal(await ask("/missing"), 51);
  assert.equal(await ask("/throw"), 42);
  const time = clfTime(FIXED);
  assert.deepEqual(lines, [
    `127.0.0.1 - - [${time}] "gemini://example.com/hello" 10 - "-" "-"`,
    `127.0.0.1 - - [${time}] "gemini://example.com/page" 20 5 "-" "-"`,
    `127.0.0.1 - - [${time}] "gemini://example.com/missing" 51 - "-" "-"`,
    `127.0.0.1 - - [${time}] "gemini://example.com/throw" 42 - "-" "-"`,
  ]);
  const entries = json.map((line) => JSON.parse(line));
  assert.deepEqual(entries.map((entry) => entry.status), [10, 20, 51, 42]);
  assert.deepEqual(entries[0], {
    ...entries[0],
    method: null,
    target: "gemini://example.com/hello",
    protocol: "GEMINI",
    bytes: 0,
  });
  assert.equal(entries[1].bytes, 5);
});
