// The server writes plain answers (a 200 with only a content type and a
// string or bytes body) without making their Headers or body stream. Those
// bytes must be exactly what the one Response-to-CGI translator writes for
// the same response, and the short way must be taken only when it applies.

import assert from "node:assert/strict";
import { encodePlainCgi, plainAnswer } from "../codec/_static_body.ts";
import { encodeCgiResponse } from "../codec/response_to_cgi.ts";
import { serve } from "../server.ts";

async function translated(response: Response): Promise<Uint8Array> {
  const chunks = await Array.fromAsync(encodeCgiResponse(response));
  return new Uint8Array(await new Blob(chunks).arrayBuffer());
}

const plain: Record<string, () => Response> = {
  "a string": () => new Response("hello\n"),
  "an empty string": () => new Response(""),
  "UTF-8 text": () => new Response("grüße, 世界\n"),
  "text/plain": () =>
    new Response("hi", { headers: { "content-type": "text/plain" } }),
  "text/plain;charset=UTF-8": () =>
    new Response("hi", {
      headers: { "Content-Type": "text/plain;charset=UTF-8" },
    }),
  "application/json": () =>
    new Response("{}", { headers: { "content-type": "application/json" } }),
  "Response.json": () => Response.json({ a: [1, 2], b: "ü" }),
  "bytes": () => new Response(new Uint8Array([0, 1, 2, 255])),
  "status 200 given": () => new Response("x", { status: 200 }),
};

const other: Record<string, () => Response> = {
  "a 404": () => new Response("x", { status: 404 }),
  "a second header": () =>
    new Response("x", {
      headers: { "x-a": "1", "content-type": "text/plain" },
    }),
  "a stream": () => new Response(ReadableStream.from([new Uint8Array(3)])),
  "no body": () => new Response(null),
  "a redirect": () => Response.redirect("http://example.com/", 302),
  "a status text": () => new Response("x", { statusText: "Fine" }),
};

Deno.test("plain answers: the short way writes exactly what the translator writes", async () => {
  for (const [name, make] of Object.entries({ ...plain, ...other })) {
    const answer = plainAnswer(make());
    if (answer === undefined) continue;
    assert.deepEqual(
      encodePlainCgi(answer),
      await translated(make()),
      name,
    );
  }
});

Deno.test("plain answers: taken for a 200 with only a content type, nothing else", () => {
  // On this runtime the short way exists; elsewhere every answer takes the
  // long way, which the test above covers.
  for (const [name, make] of Object.entries(plain)) {
    assert.ok(plainAnswer(make()), name);
  }
  for (const [name, make] of Object.entries(other)) {
    assert.equal(plainAnswer(make()), undefined, name);
  }
});

Deno.test("plain answers: not once the body was read or the headers were touched", async () => {
  const read = new Response("hello");
  await read.text();
  assert.equal(plainAnswer(read), undefined, "text() read it");
  const streamed = new Response("hello");
  await streamed.body!.getReader().read();
  assert.equal(plainAnswer(streamed), undefined, "a reader read it");
  const changed = new Response("hello");
  changed.headers.set("x-late", "1");
  assert.equal(plainAnswer(changed), undefined, "a header was added");
});

Deno.test("plain answers: a header added by middleware reaches the front end", async () => {
  await using server = serve({ port: 0, onListen() {} }, () => {
    const response = new Response("hello");
    response.headers.set("x-added", "yes");
    return response;
  });
  const { port } = server.addr as Deno.NetAddr;
  const conn = await Deno.connect({ port });
  await conn.write(
    new TextEncoder().encode("24:CONTENT_LENGTH\x000\x00SCGI\x001\x00,"),
  );
  const text = await new Response(conn.readable).text();
  assert.match(text, /^Status: 200 OK\r\n/);
  assert.match(text, /\r\nx-added: yes\r\n/);
  assert.match(text, /\r\n\r\nhello$/);
});

Deno.test("plain answers: written into lent memory, the same bytes", async () => {
  const scratch = new Uint8Array(4096).fill(0xaa);
  for (const [name, make] of Object.entries(plain)) {
    const answer = plainAnswer(make())!;
    assert.deepEqual(
      encodePlainCgi(answer, scratch),
      await translated(make()),
      name,
    );
  }
  // Too small to lend: a new array, still the same bytes.
  const big = new Response("x".repeat(5000));
  assert.deepEqual(
    encodePlainCgi(plainAnswer(big)!, scratch),
    await translated(new Response("x".repeat(5000))),
  );
  const wide = new Response("ü".repeat(1500));
  assert.deepEqual(
    encodePlainCgi(plainAnswer(wide)!, scratch),
    await translated(new Response("ü".repeat(1500))),
  );
  // The body's UTF-8 fits the memory alone but not with its head: whole.
  const tight = new Uint8Array(100);
  const answer = { contentType: null, body: "é".repeat(45) };
  assert.deepEqual(encodePlainCgi(answer, tight), encodePlainCgi(answer));
});
