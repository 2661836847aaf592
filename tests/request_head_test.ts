// Byte-by-byte tests of SCGI request decoding: netstring framing, the header
// block, limits, what real front ends send, and the streamed body.

import assert from "node:assert/strict";
import { ScgiProtocolError } from "../codec/errors.ts";
import {
  parseHeaderBlock,
  parseNetstringLength,
  readRequestHead,
  type RequestHeadLimits,
} from "../codec/request_head.ts";

const encoder = new TextEncoder();
const bytes = (text: string) => encoder.encode(text);

/** A netstring around `block` (given as text, NULs as `\0`). */
function netstring(block: string): string {
  return `${encoder.encode(block).length}:${block},`;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Every way of cutting `wire` that matters: whole, 1 byte per chunk, and in two at each position. */
function* chunkings(wire: Uint8Array): Generator<[string, Uint8Array[]]> {
  yield ["whole", [wire]];
  yield ["one byte per chunk", Array.from(wire, (b) => Uint8Array.of(b))];
  for (let i = 1; i < wire.length; i++) {
    yield [`split at ${i}`, [wire.slice(0, i), wire.slice(i)]];
  }
  yield ["with empty chunks", [new Uint8Array(0), wire, new Uint8Array(0)]];
}

async function rejectsWith(
  chunks: Uint8Array[],
  status: number,
  message: RegExp,
  limits: RequestHeadLimits = {},
): Promise<void> {
  await assert.rejects(
    readRequestHead(ReadableStream.from(chunks), limits),
    (error: unknown) => {
      assert.ok(error instanceof ScgiProtocolError, String(error));
      assert.equal(error.status, status, error.message);
      assert.match(error.message, message);
      return true;
    },
  );
}

async function text(body: ReadableStream<Uint8Array> | null): Promise<string> {
  return body === null ? "" : await new Response(body).text();
}

Deno.test("readRequestHead decodes head and body at every chunk boundary", async () => {
  const wire = bytes(
    netstring(
      "CONTENT_LENGTH\x005\0SCGI\x001\0REQUEST_METHOD\0POST\0REQUEST_URI\0/a?b=1\0",
    ) + "hello",
  );
  for (const [label, chunks] of chunkings(wire)) {
    const head = await readRequestHead(ReadableStream.from(chunks));
    assert.equal(head.contentLength, 5, label);
    assert.equal(head.env.REQUEST_METHOD, "POST", label);
    assert.equal(head.env.REQUEST_URI, "/a?b=1", label);
    assert.deepEqual(head.envList, [
      ["CONTENT_LENGTH", "5"],
      ["SCGI", "1"],
      ["REQUEST_METHOD", "POST"],
      ["REQUEST_URI", "/a?b=1"],
    ], label);
    assert.equal(head.nonUtf8.size, 0, label);
    assert.equal(await text(head.body), "hello", label);
    await head.bodyEnd;
  }
});

Deno.test("readRequestHead: the body is exactly CONTENT_LENGTH bytes, what follows is not part of it", async () => {
  const wire = bytes(
    netstring("CONTENT_LENGTH\x003\0SCGI\x001\0") + "abcEXTRA",
  );
  for (const [label, chunks] of chunkings(wire)) {
    const head = await readRequestHead(ReadableStream.from(chunks));
    assert.equal(await text(head.body), "abc", label);
  }
});

Deno.test("readRequestHead leaves bytes after the body to the next reader", async () => {
  const reader = ReadableStream.from([
    bytes(netstring("CONTENT_LENGTH\x002\0SCGI\x001\0")),
    bytes("ok"),
    bytes("next"),
  ]).getReader();
  const head = await readRequestHead(reader);
  assert.equal(await text(head.body), "ok");
  const after = await reader.read();
  assert.equal(new TextDecoder().decode(after.value), "next");
});

Deno.test("readRequestHead: CONTENT_LENGTH 0 gives a null body and a settled bodyEnd", async () => {
  const wire = bytes(netstring("CONTENT_LENGTH\x000\0SCGI\x001\0") + "junk");
  const head = await readRequestHead(ReadableStream.from([wire]));
  assert.equal(head.body, null);
  assert.equal(head.contentLength, 0);
  await head.bodyEnd;
});

Deno.test("readRequestHead: bodyEnd waits for the last body byte", async () => {
  const wire = bytes(netstring("CONTENT_LENGTH\x004\0SCGI\x001\0") + "abcd");
  const head = await readRequestHead(ReadableStream.from([wire]));
  let ended = false;
  head.bodyEnd.then(() => ended = true);
  for (let i = 0; i < 50; i++) await null;
  assert.equal(ended, false, "bodyEnd settled before the body was read");
  assert.equal(await text(head.body), "abcd");
  await head.bodyEnd;
  assert.equal(ended, true);
});

Deno.test("readRequestHead: a body cut short errors with 400 and rejects bodyEnd", async () => {
  const wire = bytes(netstring("CONTENT_LENGTH\x0010\0SCGI\x001\0") + "abc");
  for (const [label, chunks] of chunkings(wire)) {
    const head = await readRequestHead(ReadableStream.from(chunks));
    await assert.rejects(text(head.body), (error: unknown) => {
      assert.ok(error instanceof ScgiProtocolError, label);
      assert.equal(error.status, 400);
      assert.match(error.message, /ended after 3 of 10 bytes/);
      return true;
    });
    await assert.rejects(head.bodyEnd, ScgiProtocolError, label);
  }
});

Deno.test("readRequestHead: a failing source errors the body with 400 and the cause", async () => {
  const cause = new Error("connection reset");
  const source = (async function* () {
    yield bytes(netstring("CONTENT_LENGTH\x0010\0SCGI\x001\0") + "ab");
    throw cause;
  })();
  const head = await readRequestHead(ReadableStream.from(source));
  await assert.rejects(text(head.body), (error: unknown) => {
    assert.ok(error instanceof ScgiProtocolError);
    assert.equal(error.status, 400);
    assert.equal(error.cause, cause);
    return true;
  });
  await assert.rejects(head.bodyEnd, ScgiProtocolError);
});

Deno.test("readRequestHead streams a 64 MiB body without buffering it", async () => {
  const chunkSize = 65536;
  const chunkCount = 1024;
  const total = chunkSize * chunkCount;
  let produced = 0;
  let sourceDone = false;
  const source = (async function* () {
    yield bytes(netstring(`CONTENT_LENGTH\0${total}\0SCGI\x001\0`));
    for (let i = 0; i < chunkCount; i++) {
      const chunk = new Uint8Array(chunkSize).fill(i & 0xff);
      produced++;
      yield chunk;
    }
    sourceDone = true;
    yield bytes("trailing bytes are not body");
  })();
  const head = await readRequestHead(ReadableStream.from(source));
  assert.equal(head.contentLength, total);
  let received = 0;
  let chunks = 0;
  let maxAhead = 0;
  let sawChunkBeforeSourceDone = false;
  for await (const chunk of head.body!) {
    if (!sourceDone) sawChunkBeforeSourceDone = true;
    // Every byte of a chunk carries the number of the source chunk it is from.
    const expected = Math.floor(received / chunkSize) & 0xff;
    assert.equal(chunk[0], expected);
    assert.equal(chunk[chunk.length - 1], expected);
    received += chunk.length;
    chunks++;
    maxAhead = Math.max(maxAhead, produced - Math.ceil(received / chunkSize));
  }
  assert.equal(received, total);
  assert.ok(
    sawChunkBeforeSourceDone,
    "body arrived only after the source ended",
  );
  assert.ok(
    maxAhead <= 2,
    `decoder read ${maxAhead} chunks ahead of the consumer`,
  );
  assert.ok(chunks >= chunkCount);
  await head.bodyEnd;
});

Deno.test("readRequestHead: strict netstring length", async () => {
  const block = "CONTENT_LENGTH\x000\0SCGI\x001\0";
  const cases: [string, number, RegExp][] = [
    ["", 400, /closed before a request was sent/],
    ["x", 400, /does not start with a netstring length/],
    [":" + block + ",", 400, /length is empty/],
    ["0" + netstring(block), 400, /leading zero/],
    ["00:,", 400, /leading zero/],
    ["-24:" + block + ",", 400, /does not start with a netstring length/],
    ["+24:" + block + ",", 400, /does not start with a netstring length/],
    [" 24:" + block + ",", 400, /does not start with a netstring length/],
    ["24 :" + block + ",", 400, /does not start with a netstring length/],
    ["0x18:" + block + ",", 400, /does not start with a netstring length/],
    ["24;" + block + ",", 400, /does not start with a netstring length/],
    ["2", 400, /closed inside the header length after 1 bytes/],
    ["24:CONTENT", 400, /closed inside the header block/],
    [block.length + ":" + block, 400, /closed inside the header block/],
    [block.length + ":" + block + ";", 400, /does not end with ','/],
    [(block.length - 1) + ":" + block + ",", 400, /does not end with ','/],
    ["65537:", 431, /larger than the limit of 65536/],
    ["99999999999999999999:", 431, /larger than the limit/],
    ["0:,", 411, /CONTENT_LENGTH is missing/],
  ];
  for (const [wire, status, message] of cases) {
    await rejectsWith([bytes(wire)], status, message);
    await rejectsWith(
      Array.from(bytes(wire), (b) => Uint8Array.of(b)),
      status,
      message,
    );
  }
});

Deno.test("readRequestHead: an endless length is refused after a few digits", async () => {
  let reads = 0;
  const endless = {
    read: () => {
      reads++;
      return Promise.resolve({ done: false as const, value: bytes("9") });
    },
  };
  await assert.rejects(
    readRequestHead(endless, { maxHeaderBytes: 65536 }),
    (error: unknown) =>
      error instanceof ScgiProtocolError && error.status === 431,
  );
  // "65536" has five digits: the sixth byte settles it.
  assert.ok(reads <= 6, `${reads} bytes read before refusing`);
});

Deno.test("readRequestHead: maxHeaderBytes is the largest block accepted", async () => {
  const block = "CONTENT_LENGTH\x000\0SCGI\x001\0X\0" + "y".repeat(70) + "\0";
  const size = bytes(block).length;
  const wire = bytes(netstring(block));
  const head = await readRequestHead(ReadableStream.from([wire]), {
    maxHeaderBytes: size,
  });
  assert.equal(head.env.X, "y".repeat(70));
  await rejectsWith([wire], 431, new RegExp(`limit of ${size - 1} bytes`), {
    maxHeaderBytes: size - 1,
  });
  await rejectsWith(
    Array.from(wire, (b) => Uint8Array.of(b)),
    431,
    /larger than the limit/,
    { maxHeaderBytes: 9 },
  );
});

Deno.test("parseNetstringLength asks for more bytes only while undecided", () => {
  assert.equal(parseNetstringLength(bytes(""), 65536), undefined);
  assert.equal(parseNetstringLength(bytes("1"), 65536), undefined);
  assert.equal(parseNetstringLength(bytes("12345"), 65536), undefined);
  assert.deepEqual(parseNetstringLength(bytes("0:"), 65536), {
    length: 0,
    start: 2,
  });
  assert.deepEqual(parseNetstringLength(bytes("65536:xyz"), 65536), {
    length: 65536,
    start: 6,
  });
  assert.throws(
    () => parseNetstringLength(bytes("65537"), 65536),
    (e: unknown) => e instanceof ScgiProtocolError && e.status === 431,
  );
  assert.throws(
    () => parseNetstringLength(bytes("123456"), 65536),
    (e: unknown) => e instanceof ScgiProtocolError && e.status === 431,
  );
  assert.throws(
    () => parseNetstringLength(bytes("07"), 65536),
    (e: unknown) => e instanceof ScgiProtocolError && e.status === 400,
  );
});

Deno.test("parseHeaderBlock: malformed blocks are 400", () => {
  const cases: [string, RegExp][] = [
    ["CONTENT_LENGTH\x000\0SCGI\x001", /does not end with a NUL/],
    ["CONTENT_LENGTH\x000\0SCGI\0", /"SCGI" has no value/],
    ["CONTENT_LENGTH\x000\0\0empty name\0", /empty name/],
    ["\0\0CONTENT_LENGTH\x000\0", /empty name/],
    ["CONTENT_LENGTH\0abc\0", /"abc" is not a length/],
    ["CONTENT_LENGTH\0\0", /"" is not a length/],
    ["CONTENT_LENGTH\0-1\0", /is not a length/],
    ["CONTENT_LENGTH\0 5\0", /is not a length/],
    ["CONTENT_LENGTH\x005 \0", /is not a length/],
    ["CONTENT_LENGTH\x001e3\0", /is not a length/],
    ["CONTENT_LENGTH\x005.0\0", /is not a length/],
    ["CONTENT_LENGTH\0\u0665\0", /is not a length/],
    ["CONTENT_LENGTH\x005\0CONTENT_LENGTH\x005\0", /sent twice/],
    ["CONTENT_LENGTH\x005\0SCGI\x002\0", /SCGI version "2" is not 1/],
    ["CONTENT_LENGTH\x005\0SCGI\0\0", /SCGI version "" is not 1/],
  ];
  for (const [block, message] of cases) {
    assert.throws(() => parseHeaderBlock(bytes(block)), (error: unknown) => {
      assert.ok(error instanceof ScgiProtocolError, JSON.stringify(block));
      assert.equal(error.status, 400, JSON.stringify(block));
      assert.match(error.message, message);
      return true;
    });
  }
});

Deno.test("parseHeaderBlock: CONTENT_LENGTH missing is 411, too long a body 413, too many variables 431", () => {
  const status = (block: string, limits: RequestHeadLimits = {}) => {
    try {
      parseHeaderBlock(bytes(block), limits);
    } catch (error) {
      assert.ok(error instanceof ScgiProtocolError);
      return error.status;
    }
    return 0;
  };
  assert.equal(status(""), 411);
  assert.equal(status("SCGI\x001\0REQUEST_METHOD\0GET\0"), 411);
  assert.equal(status("CONTENT_LENGTH\x0012345678901234567\0"), 413);
  assert.equal(status("CONTENT_LENGTH\x00101\0", { maxBodyBytes: 100 }), 413);
  assert.equal(status("CONTENT_LENGTH\x00100\0", { maxBodyBytes: 100 }), 0);
  assert.equal(
    status("CONTENT_LENGTH\x000\0A\0a\0B\0b\0", { maxVariables: 2 }),
    431,
  );
  assert.equal(status("CONTENT_LENGTH\x000\0A\0a\0", { maxVariables: 2 }), 0);
  assert.equal(
    status("CONTENT_LENGTH\x000\0A\0a\0A\0b\0", { maxVariables: 2 }),
    431,
  );
});

Deno.test("readRequestHead: limits apply to requests on the wire", async () => {
  await rejectsWith(
    [bytes(netstring("CONTENT_LENGTH\x00101\0SCGI\x001\0"))],
    413,
    /larger than the limit of 100/,
    { maxBodyBytes: 100 },
  );
  await rejectsWith(
    [bytes(netstring("CONTENT_LENGTH\x000\0SCGI\x001\0A\0\0"))],
    431,
    /more than 2 variables/,
    { maxVariables: 2 },
  );
  await rejectsWith(
    [bytes(netstring("SCGI\x001\0REQUEST_METHOD\0GET\0"))],
    411,
    /CONTENT_LENGTH is missing/,
  );
});

Deno.test("readRequestHead: lighttpd's order (SCGI last, headers joined)", async () => {
  const block = "CONTENT_LENGTH\x000\0SERVER_SOFTWARE\0lighttpd/1.4.69\0" +
    "REQUEST_METHOD\0GET\0HTTP_ACCEPT\0a, b\0HTTP_COOKIE\0x=1; y=2\0" +
    "SCRIPT_NAME\0/app\0PATH_INFO\0/p\0SCGI\x001\0";
  for (const [label, chunks] of chunkings(bytes(netstring(block)))) {
    const head = await readRequestHead(ReadableStream.from(chunks));
    assert.equal(head.env.SCGI, "1", label);
    assert.equal(head.envList.at(-1)![0], "SCGI", label);
    assert.equal(head.env.HTTP_COOKIE, "x=1; y=2");
    assert.equal(head.body, null);
  }
});

Deno.test("readRequestHead: nginx 1.22 repeats names; env joins them, envList keeps each", async () => {
  const block = "CONTENT_LENGTH\x000\0REQUEST_METHOD\0GET\0CONTENT_TYPE\0\0" +
    "HTTP_COOKIE\0a=1\0HTTP_ACCEPT\0text/html\0HTTP_COOKIE\0b=2\0" +
    "HTTP_ACCEPT\0*/*\0HTTP_X_EMPTY\0\0HTTP_COOKIE\0c=3\0";
  const head = await readRequestHead(
    ReadableStream.from([bytes(netstring(block))]),
  );
  assert.equal(head.env.HTTP_COOKIE, "a=1; b=2; c=3");
  assert.equal(head.env.HTTP_ACCEPT, "text/html, */*");
  assert.equal(head.env.CONTENT_TYPE, "");
  assert.equal(head.env.HTTP_X_EMPTY, "");
  assert.equal(head.env.SCGI, undefined);
  assert.deepEqual(head.envList, [
    ["CONTENT_LENGTH", "0"],
    ["REQUEST_METHOD", "GET"],
    ["CONTENT_TYPE", ""],
    ["HTTP_COOKIE", "a=1"],
    ["HTTP_ACCEPT", "text/html"],
    ["HTTP_COOKIE", "b=2"],
    ["HTTP_ACCEPT", "*/*"],
    ["HTTP_X_EMPTY", ""],
    ["HTTP_COOKIE", "c=3"],
  ]);
});

Deno.test("readRequestHead: env has no prototype, so any name is data", async () => {
  const block = "CONTENT_LENGTH\x000\0__proto__\0x\0constructor\0y\0";
  const head = await readRequestHead(
    ReadableStream.from([bytes(netstring(block))]),
  );
  assert.equal(head.env["__proto__"], "x");
  assert.equal(head.env["constructor"], "y");
  assert.equal(head.env["toString"], undefined);
});

Deno.test("readRequestHead: UTF-8 values decode, other bytes are kept byte for byte", async () => {
  const wire = concat(
    bytes("CONTENT_LENGTH\x000\0PATH_INFO\0/caf\u00e9\0"),
    bytes("REQUEST_URI\0/caf"),
    Uint8Array.of(0xe9, 0xff, 0x80),
    bytes("\0HTTP_X\0ok\0"),
  );
  const framed = concat(bytes(`${wire.length}:`), wire, bytes(","));
  for (const [label, chunks] of chunkings(framed)) {
    const head = await readRequestHead(ReadableStream.from(chunks));
    assert.equal(head.env.PATH_INFO, "/café", label);
    assert.equal(head.env.REQUEST_URI, "/caf\xe9\xff\x80", label);
    assert.equal(head.env.HTTP_X, "ok", label);
    assert.deepEqual([...head.nonUtf8], ["REQUEST_URI"], label);
    assert.ok(!head.env.REQUEST_URI!.includes("\ufffd"));
  }
});

Deno.test("parseHeaderBlock: a non-UTF-8 name is kept as bytes too", () => {
  const block = concat(
    bytes("CONTENT_LENGTH\x000\0X"),
    Uint8Array.of(0xfe),
    bytes("\0v\0"),
  );
  const { env, nonUtf8 } = parseHeaderBlock(block);
  assert.equal(env["X\xfe"], "v");
  assert.equal(nonUtf8.size, 0);
});
