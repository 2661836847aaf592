// The SCGI header encoder: exact bytes, order, refusals, and the round trip
// through the decoder.

import assert from "node:assert/strict";
import { encodeRequestHead } from "../codec/header_encoder.ts";
import { readRequestHead } from "../codec/request_head.ts";

const decoder = new TextDecoder();

Deno.test("encodeRequestHead writes the exact netstring bytes", () => {
  const head = encodeRequestHead(
    { REQUEST_METHOD: "GET", REQUEST_URI: "/" },
    0,
  );
  const block =
    "CONTENT_LENGTH\x000\0SCGI\x001\0REQUEST_METHOD\0GET\0REQUEST_URI\0/\0";
  assert.equal(block.length, 57);
  assert.deepEqual(head, new TextEncoder().encode(`57:${block},`));
  assert.equal(head.byteOffset, 0);
  assert.equal(head.buffer.byteLength, head.length);
});

Deno.test("encodeRequestHead puts CONTENT_LENGTH first and SCGI=1 second, then the given order", () => {
  const head = encodeRequestHead([
    ["Z_LAST_ALPHABETICALLY", "1"],
    ["SCGI", "1"],
    ["A_FIRST", "2"],
    ["CONTENT_LENGTH", "12"],
  ], 12);
  assert.equal(
    decoder.decode(head),
    "59:CONTENT_LENGTH\x0012\0SCGI\x001\0Z_LAST_ALPHABETICALLY\x001\0A_FIRST\x002\0,",
  );
});

Deno.test("encodeRequestHead with no variables is still a valid head", () => {
  assert.equal(
    decoder.decode(encodeRequestHead({}, 0)),
    "24:CONTENT_LENGTH\x000\0SCGI\x001\0,",
  );
  assert.equal(
    decoder.decode(encodeRequestHead(new Map(), 1234567)),
    "30:CONTENT_LENGTH\x001234567\0SCGI\x001\0,",
  );
});

Deno.test("encodeRequestHead keeps empty values", () => {
  assert.equal(
    decoder.decode(encodeRequestHead({ CONTENT_TYPE: "" }, 0)),
    "38:CONTENT_LENGTH\x000\0SCGI\x001\0CONTENT_TYPE\0\0,",
  );
});

Deno.test("encodeRequestHead encodes values as UTF-8 and counts bytes, not characters", () => {
  const head = encodeRequestHead({ PATH_INFO: "/café/😀" }, 0);
  const block = new TextEncoder().encode(
    "CONTENT_LENGTH\x000\0SCGI\x001\0PATH_INFO\0/café/😀\0",
  );
  assert.equal(decoder.decode(head.subarray(0, 3)), `${block.length}:`);
  assert.deepEqual(head.subarray(3, -1), block);
  assert.equal(head.at(-1), 0x2c);
});

Deno.test("encodeRequestHead refuses what the wire can't carry", () => {
  const refused: [
    Record<string, string> | [string, string][],
    number,
    RegExp,
  ][] = [
    [{ "": "x" }, 0, /empty name/],
    [{ "A\0B": "x" }, 0, /"A\\u0000B" contains a NUL/],
    [{ A: "x\0y" }, 0, /"A" contains a NUL/],
    [[["A", "1"], ["A", "2"]], 0, /"A" is given twice/],
    [
      { CONTENT_LENGTH: "5" },
      4,
      /CONTENT_LENGTH is set by the encoder: "5" conflicts with 4/,
    ],
    [{ CONTENT_LENGTH: "05" }, 5, /conflicts/],
    [{ SCGI: "2" }, 0, /SCGI is set by the encoder: "2" conflicts with 1/],
    [{}, -1, /-1 is not a length/],
    [{}, 1.5, /is not a length/],
    [{}, NaN, /is not a length/],
    [{}, 2 ** 53, /is not a length/],
  ];
  for (const [env, length, message] of refused) {
    assert.throws(() => encodeRequestHead(env, length), (error: unknown) => {
      assert.ok(error instanceof TypeError, String(error));
      assert.match(error.message, message);
      return true;
    });
  }
});

Deno.test("encodeRequestHead round-trips through readRequestHead", async () => {
  const env: [string, string][] = [
    ["REQUEST_METHOD", "POST"],
    ["REQUEST_URI", "/caf%C3%A9?q=%E2%9C%93"],
    ["PATH_INFO", "/café"],
    ["HTTP_X_EMOJI", "😀 ✓"],
    ["CONTENT_TYPE", ""],
    ["HTTP_COOKIE", "a=1; b=2"],
    ["EQUALS", "a=b=c"],
    ["NEWLINE", "line1\nline2"],
  ];
  const body = new TextEncoder().encode("body bytes");
  const head = encodeRequestHead(env, body.length);
  const decoded = await readRequestHead(
    ReadableStream.from([head.slice(0, 7), head.slice(7), body]),
  );
  assert.deepEqual(decoded.envList, [
    ["CONTENT_LENGTH", String(body.length)],
    ["SCGI", "1"],
    ...env,
  ]);
  assert.equal(decoded.nonUtf8.size, 0);
  assert.equal(await new Response(decoded.body).text(), "body bytes");
});
