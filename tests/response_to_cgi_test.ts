// Response -> CGI output: the exact head bytes, which answers carry a body,
// complete versus streamed bodies, cancellation and bad chunks.

import assert from "node:assert/strict";
import {
  cgiResponseStream,
  encodeCgiResponse,
  encodeResponseHead,
  responseHasBody,
} from "../codec/response_to_cgi.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** The output as a byte string (one character per byte), chunk by chunk. */
async function chunksOf(
  response: Response,
  method?: string,
): Promise<string[]> {
  const out: string[] = [];
  for await (
    const chunk of encodeCgiResponse(response, method ? { method } : {})
  ) {
    assert.ok(chunk instanceof Uint8Array);
    out.push(String.fromCharCode(...chunk));
  }
  return out;
}

/** A body stream whose chunks come only when `push` is called. */
function controlledBody() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let cancelled: unknown = "not cancelled";
  let pulls = 0;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    pull() {
      pulls++;
    },
    cancel(reason) {
      cancelled = reason;
    },
  }, { highWaterMark: 0 });
  return {
    body,
    push: (text: string) => controller.enqueue(encoder.encode(text)),
    close: () => controller.close(),
    get cancelled() {
      return cancelled;
    },
    get pulls() {
      return pulls;
    },
  };
}

Deno.test("encodeCgiResponse: a complete body goes out with the head in one chunk, with content-length", async () => {
  assert.deepEqual(await chunksOf(new Response("hello")), [
    "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 5\r\n\r\nhello",
  ]);
  assert.deepEqual(
    await chunksOf(new Response(Uint8Array.of(0, 0xff, 10), { status: 201 })),
    ["Status: 201 Created\r\ncontent-length: 3\r\n\r\n\x00\xff\n"],
  );
  assert.deepEqual(await chunksOf(Response.json({ a: 1 })), [
    'Status: 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{"a":1}',
  ]);
});

Deno.test("encodeCgiResponse: empty and null bodies get content-length 0", async () => {
  assert.deepEqual(await chunksOf(new Response(null)), [
    "Status: 200 OK\r\ncontent-length: 0\r\n\r\n",
  ]);
  assert.deepEqual(await chunksOf(new Response("")), [
    "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 0\r\n\r\n",
  ]);
});

Deno.test("encodeCgiResponse: Status comes first with the reason from the table or the response", async () => {
  const cases: [ResponseInit, string][] = [
    [{ status: 404 }, "Status: 404 Not Found\r\n"],
    [{ status: 503 }, "Status: 503 Service Unavailable\r\n"],
    [{ status: 200, statusText: "Fine Thanks" }, "Status: 200 Fine Thanks\r\n"],
    [{ status: 299 }, "Status: 299\r\n"],
    [{ status: 599, statusText: "Custom" }, "Status: 599 Custom\r\n"],
  ];
  for (const [init, first] of cases) {
    const [out] = await chunksOf(
      new Response(null, { ...init, headers: { status: "500 Fake" } }),
    );
    assert.ok(out!.startsWith(first), out);
    assert.ok(!/\r\nstatus:/i.test(out!), "a Status header came through");
  }
});

Deno.test("encodeCgiResponse: one line per Set-Cookie, hop-by-hop headers left out", async () => {
  const headers = new Headers();
  headers.append("set-cookie", "a=1; Path=/");
  headers.append("set-cookie", "b=2, c=3; HttpOnly");
  headers.append("x-two", "1");
  headers.append("x-two", "2");
  for (
    const name of [
      "connection",
      "keep-alive",
      "proxy-connection",
      "transfer-encoding",
      "te",
      "trailer",
      "upgrade",
    ]
  ) {
    headers.set(name, "x");
  }
  headers.set("location", "/next");
  assert.deepEqual(
    await chunksOf(new Response(null, { status: 303, headers })),
    [
      "Status: 303 See Other\r\nlocation: /next\r\nset-cookie: a=1; Path=/\r\n" +
      "set-cookie: b=2, c=3; HttpOnly\r\nx-two: 1, 2\r\ncontent-length: 0\r\n\r\n",
    ],
  );
});

Deno.test("encodeCgiResponse: a content-length the response has is kept, not doubled", async () => {
  assert.deepEqual(
    await chunksOf(new Response("abc", { headers: { "content-length": "3" } })),
    ["Status: 200 OK\r\ncontent-length: 3\r\ncontent-type: text/plain;charset=UTF-8\r\n\r\nabc"],
  );
});

Deno.test("encodeCgiResponse: HEAD, 204, 205 and 304 get the head only and the body is cancelled", async () => {
  const head = controlledBody();
  assert.deepEqual(
    await chunksOf(
      new Response(head.body, { headers: { "content-length": "10" } }),
      "HEAD",
    ),
    ["Status: 200 OK\r\ncontent-length: 10\r\n\r\n"],
  );
  assert.notEqual(head.cancelled, "not cancelled");

  const text = new Response("ignored");
  assert.deepEqual(await chunksOf(text, "HEAD"), [
    "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\n\r\n",
  ]);
  assert.equal(text.bodyUsed, true);

  assert.deepEqual(await chunksOf(new Response(null, { status: 204 })), [
    "Status: 204 No Content\r\n\r\n",
  ]);
  assert.deepEqual(await chunksOf(new Response(null, { status: 205 })), [
    "Status: 205 Reset Content\r\n\r\n",
  ]);
  assert.deepEqual(
    await chunksOf(
      new Response(null, { status: 304, headers: { etag: '"x"' } }),
    ),
    ['Status: 304 Not Modified\r\netag: "x"\r\n\r\n'],
  );
});

Deno.test("encodeCgiResponse: a streamed body gets its head first, then its chunks in order", async () => {
  const source = controlledBody();
  const output = encodeCgiResponse(
    new Response(source.body, {
      headers: { "content-type": "text/event-stream" },
    }),
  );
  const first = await output.next();
  assert.equal(
    decoder.decode(first.value!),
    "Status: 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
  );
  const second = output.next();
  source.push("one");
  assert.equal(decoder.decode((await second).value!), "one");
  source.push("two");
  source.push("three");
  assert.equal(decoder.decode((await output.next()).value!), "two");
  assert.equal(decoder.decode((await output.next()).value!), "three");
  const end = output.next();
  source.close();
  assert.equal((await end).done, true);
  assert.equal(source.cancelled, "not cancelled");
});

Deno.test("encodeCgiResponse: a first chunk at once and then a wait: head and chunk together, no length", async () => {
  const source = controlledBody();
  source.push("ready");
  const output = encodeCgiResponse(new Response(source.body));
  assert.equal(
    decoder.decode((await output.next()).value!),
    "Status: 200 OK\r\n\r\nready",
  );
  const next = output.next();
  source.push("later");
  assert.equal(decoder.decode((await next).value!), "later");
  source.close();
  assert.equal((await output.next()).done, true);
});

Deno.test("encodeCgiResponse: two chunks at once, then the end: no length, both in order", async () => {
  const source = controlledBody();
  source.push("a");
  source.push("b");
  const output = encodeCgiResponse(new Response(source.body));
  assert.equal(
    decoder.decode((await output.next()).value!),
    "Status: 200 OK\r\n\r\na",
  );
  assert.equal(decoder.decode((await output.next()).value!), "b");
  const end = output.next();
  source.close();
  assert.equal((await end).done, true);
});

Deno.test("encodeCgiResponse pulls the body only as fast as the output is consumed", async () => {
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      pulled++;
      controller.enqueue(encoder.encode(`chunk${pulled};`));
      if (pulled === 50) controller.close();
    },
  }, { highWaterMark: 0 });
  const output = encodeCgiResponse(new Response(body));
  let consumed = 0;
  let text = "";
  for await (const chunk of output) {
    consumed++;
    text += decoder.decode(chunk);
    assert.ok(
      pulled <= consumed + 2,
      `${pulled} pulled for ${consumed} consumed`,
    );
  }
  assert.ok(text.startsWith("Status: 200 OK\r\n\r\nchunk1;chunk2;"));
  assert.ok(text.endsWith("chunk49;chunk50;"));
});

Deno.test("encodeCgiResponse: stopping early cancels the body", async () => {
  const source = controlledBody();
  const output = encodeCgiResponse(new Response(source.body));
  await output.next();
  const next = output.next();
  source.push("one");
  await next;
  await output.return();
  assert.notEqual(source.cancelled, "not cancelled");

  const viaStream = controlledBody();
  const stream = cgiResponseStream(new Response(viaStream.body));
  const reader = stream.getReader();
  await reader.read();
  await reader.cancel("client left");
  assert.notEqual(viaStream.cancelled, "not cancelled");
});

Deno.test("encodeCgiResponse: a chunk that is not a Uint8Array is a TypeError", async () => {
  let cancelled = false;
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue("a string, not bytes");
    },
    cancel() {
      cancelled = true;
    },
  });
  await assert.rejects(
    chunksOf(new Response(body as ReadableStream<Uint8Array>)),
    (error: unknown) =>
      error instanceof TypeError && /not a Uint8Array/.test(error.message),
  );
  assert.ok(cancelled, "the body was not cancelled");

  let controller!: ReadableStreamDefaultController<unknown>;
  let laterCancelled = false;
  const later = new ReadableStream({
    start(c) {
      controller = c;
    },
    cancel() {
      laterCancelled = true;
    },
  });
  const output = encodeCgiResponse(
    new Response(later as ReadableStream<Uint8Array>),
  );
  await output.next();
  const good = output.next();
  controller.enqueue(encoder.encode("ok"));
  assert.equal(decoder.decode((await good).value!), "ok");
  const bad = output.next();
  controller.enqueue([1, 2, 3]);
  await assert.rejects(bad, TypeError);
  assert.ok(laterCancelled, "the body was not cancelled");
});

Deno.test("encodeResponseHead writes header bytes 0x80-0xFF as single bytes", () => {
  const head = encodeResponseHead(
    new Response(null, { headers: { "x-latin": "caf\u00e9 \u00ff" } }),
  );
  assert.deepEqual(
    head,
    Uint8Array.from(
      "Status: 200 OK\r\nx-latin: caf\xe9 \xff\r\n\r\n",
      (c) => c.charCodeAt(0),
    ),
  );
});

Deno.test("encodeResponseHead: contentLength is added only when given and missing", () => {
  const text = (bytes: Uint8Array) => decoder.decode(bytes);
  assert.equal(
    text(encodeResponseHead(new Response(null))),
    "Status: 200 OK\r\n\r\n",
  );
  assert.equal(
    text(encodeResponseHead(new Response(null), 42)),
    "Status: 200 OK\r\ncontent-length: 42\r\n\r\n",
  );
});

Deno.test("encodeResponseHead refuses impossible statuses and never writes a reason with a line break", () => {
  for (const status of [99, 1000, 200.5, NaN, -200]) {
    assert.throws(
      () =>
        encodeResponseHead({ status, statusText: "", headers: new Headers() }),
      RangeError,
    );
  }
  for (const statusText of ["OK\r\nX-Injected: 1", "a\nb", "a\0b"]) {
    assert.equal(
      decoder.decode(
        encodeResponseHead({ status: 404, statusText, headers: new Headers() }),
      ),
      "Status: 404 Not Found\r\n\r\n",
    );
  }
});

Deno.test("responseHasBody: HEAD, 1xx, 204, 205 and 304 have none", () => {
  const none: [number, string][] = [
    [200, "HEAD"],
    [404, "HEAD"],
    [100, "GET"],
    [103, "GET"],
    [204, "GET"],
    [205, "POST"],
    [304, "GET"],
  ];
  for (const [status, method] of none) {
    assert.equal(responseHasBody(status, method), false, `${method} ${status}`);
  }
  for (const status of [200, 201, 206, 301, 404, 500, 599]) {
    assert.equal(responseHasBody(status, "GET"), true, String(status));
    assert.equal(responseHasBody(status), true, String(status));
  }
});
