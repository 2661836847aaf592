// Reading a CGI response (what a backend writes) into a Response, byte by
// byte: status forms, line ends, limits, malformed heads, truncated bodies
// and the onDone callback.

import assert from "node:assert/strict";
import {
  parseCgiResponseHead,
  readCgiResponse,
  type ReadCgiResponseOptions,
} from "../codec/cgi_response.ts";
import { ScgiClientError } from "../codec/errors.ts";

const encoder = new TextEncoder();

/** Bytes from a byte string (one character per byte). */
function latin1(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function* chunkings(wire: Uint8Array): Generator<[string, Uint8Array[]]> {
  yield ["whole", [wire]];
  yield ["one byte per chunk", Array.from(wire, (b) => Uint8Array.of(b))];
  for (let i = 1; i < wire.length; i++) {
    yield [`split at ${i}`, [wire.slice(0, i), wire.slice(i)]];
  }
}

/** Reads a response and counts onDone calls. */
async function read(
  chunks: Uint8Array[],
  options: ReadCgiResponseOptions = {},
): Promise<{ response: Response; done: unknown[] }> {
  const done: unknown[] = [];
  const response = await readCgiResponse(ReadableStream.from(chunks), {
    ...options,
    onDone: (error) => done.push(error),
  });
  return { response, done };
}

async function rejectsWith(
  wire: string,
  code: string,
  message: RegExp,
  options: ReadCgiResponseOptions = {},
): Promise<void> {
  for (
    const chunks of [
      [latin1(wire)],
      Array.from(latin1(wire), (b) => Uint8Array.of(b)),
    ]
  ) {
    const done: unknown[] = [];
    await assert.rejects(
      readCgiResponse(ReadableStream.from(chunks), {
        ...options,
        onDone: (error) => done.push(error),
      }),
      (error: unknown) => {
        assert.ok(error instanceof ScgiClientError, String(error));
        assert.equal(
          error.code,
          code,
          `${JSON.stringify(wire)}: ${error.message}`,
        );
        assert.match(error.message, message);
        assert.deepEqual(
          done,
          [error],
          "onDone not called once with the error",
        );
        return true;
      },
    );
  }
}

Deno.test("readCgiResponse: Status header, headers and body at every chunk boundary", async () => {
  const wire = encoder.encode(
    "Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nno such page",
  );
  for (const [label, chunks] of chunkings(wire)) {
    const { response, done } = await read(chunks);
    assert.equal(response.status, 404, label);
    assert.equal(response.statusText, "Not Found", label);
    assert.equal(response.headers.get("content-type"), "text/plain", label);
    assert.equal(response.headers.get("x-a"), "1", label);
    assert.equal(response.headers.has("status"), false, label);
    assert.equal(await response.text(), "no such page", label);
    assert.deepEqual(done, [undefined], label);
  }
});

Deno.test("readCgiResponse: NPH status line", async () => {
  for (
    const [wire, status, reason] of [
      ["HTTP/1.1 201 Created\r\nX: 1\r\n\r\nmade", 201, "Created"],
      ["HTTP/1.0 503 Busy Now\nX: 1\n\nmade", 503, "Busy Now"],
      ["HTTP/1.1 200\r\nX: 1\r\n\r\nmade", 200, ""],
    ] as const
  ) {
    for (const [label, chunks] of chunkings(encoder.encode(wire))) {
      const { response } = await read(chunks);
      assert.equal(response.status, status, label);
      assert.equal(response.statusText, reason, label);
      assert.equal(response.headers.get("x"), "1", label);
      assert.equal(await response.text(), "made", label);
    }
  }
});

Deno.test("readCgiResponse: LF-only and mixed line ends", async () => {
  for (
    const wire of [
      "Status: 202 Accepted\nX-A: 1\nX-B: 2\n\nbody\r\n",
      "Status: 202 Accepted\r\nX-A: 1\nX-B: 2\r\n\nbody\r\n",
      "Status: 202 Accepted\nX-A: 1\r\nX-B: 2\n\r\nbody\r\n",
    ]
  ) {
    for (const [label, chunks] of chunkings(encoder.encode(wire))) {
      const { response } = await read(chunks);
      assert.equal(response.status, 202, label);
      assert.equal(response.headers.get("x-a"), "1", label);
      assert.equal(response.headers.get("x-b"), "2", label);
      assert.equal(await response.text(), "body\r\n", label);
    }
  }
});

Deno.test("readCgiResponse: no Status is 200, Location without Status is 302", async () => {
  let { response } = await read([
    encoder.encode("Content-Type: text/plain\n\nhi"),
  ]);
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "hi");
  ({ response } = await read([encoder.encode("Location: /next\r\n\r\n")]));
  assert.equal(response.status, 302);
  assert.equal(response.headers.get("location"), "/next");
  await response.body?.cancel();
  ({ response } = await read([
    encoder.encode("Location: http://x/\r\nStatus: 301 Moved\r\n\r\n"),
  ]));
  assert.equal(response.status, 301);
  assert.equal(response.statusText, "Moved");
  await response.body?.cancel();
});

Deno.test("readCgiResponse keeps each Set-Cookie and drops Transfer-Encoding", async () => {
  const { response } = await read([
    encoder.encode(
      "Status: 200 OK\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2, c=3\r\n" +
        "Transfer-Encoding: chunked\r\nX-Multi: 1\r\nX-Multi: 2\r\n\r\n",
    ),
  ]);
  assert.deepEqual(response.headers.getSetCookie(), [
    "a=1; Path=/",
    "b=2, c=3",
  ]);
  assert.equal(response.headers.has("transfer-encoding"), false);
  assert.equal(response.headers.get("x-multi"), "1, 2");
  assert.equal(await response.text(), "");
});

Deno.test("readCgiResponse keeps header bytes 0x80-0xFF as they are", async () => {
  const { response } = await read([latin1("X-Name: caf\xc3\xa9 \xff\r\n\r\n")]);
  assert.equal(response.headers.get("x-name"), "caf\xc3\xa9 \xff");
  await response.body?.cancel();
});

Deno.test("readCgiResponse: the body ends at Content-Length, bytes after it are not part of it", async () => {
  const wire = encoder.encode("Content-Length: 3\r\n\r\nabcEXTRA");
  for (const [label, chunks] of chunkings(wire)) {
    const { response, done } = await read(chunks);
    assert.equal(await response.text(), "abc", label);
    assert.deepEqual(done, [undefined], label);
  }
  const { response, done } = await read([
    encoder.encode("Content-Length: 0\r\n\r\nX"),
  ]);
  assert.equal(await response.text(), "");
  assert.deepEqual(done, [undefined]);
});

Deno.test("readCgiResponse: without Content-Length the body runs to the end of the stream", async () => {
  const wire = encoder.encode("Status: 200 OK\r\n\r\n" + "x".repeat(1000));
  for (const [label, chunks] of chunkings(wire)) {
    if (label.startsWith("split") && Number(label.slice(9)) % 97 !== 0) {
      continue;
    }
    const { response, done } = await read(chunks);
    assert.equal(await response.text(), "x".repeat(1000), label);
    assert.deepEqual(done, [undefined], label);
  }
});

Deno.test("readCgiResponse: a body cut before Content-Length is truncated_response", async () => {
  const wire = encoder.encode("Content-Length: 10\r\n\r\nabc");
  for (const [label, chunks] of chunkings(wire)) {
    const { response, done } = await read(chunks);
    await assert.rejects(response.text(), (error: unknown) => {
      assert.ok(error instanceof ScgiClientError, label);
      assert.equal(error.code, "truncated_response");
      assert.match(error.message, /after 3 of 10 body bytes/);
      assert.deepEqual(done, [error], label);
      return true;
    });
  }
});

Deno.test("readCgiResponse: maxBodyBytes gives response_too_large", async () => {
  for (
    const wire of [
      "Status: 200 OK\r\n\r\n0123456789A",
      "Content-Length: 11\r\n\r\n0123456789A",
    ]
  ) {
    for (const [label, chunks] of chunkings(encoder.encode(wire))) {
      const { response, done } = await read(chunks, { maxBodyBytes: 10 });
      await assert.rejects(response.arrayBuffer(), (error: unknown) => {
        assert.ok(error instanceof ScgiClientError, label);
        assert.equal(error.code, "response_too_large", label);
        assert.deepEqual(done, [error], label);
        return true;
      });
    }
  }
  const { response } = await read(
    [encoder.encode("Status: 200 OK\r\n\r\n0123456789")],
    { maxBodyBytes: 10 },
  );
  assert.equal(await response.text(), "0123456789");
});

Deno.test("readCgiResponse: HEAD, 204, 205 and 304 have a null body", async () => {
  const cases: [string, ReadCgiResponseOptions, number][] = [
    ["Content-Length: 5\r\n\r\nhello", { method: "HEAD" }, 200],
    ["Status: 204 No Content\r\n\r\nstray", {}, 204],
    ["Status: 205 Reset Content\r\n\r\n", {}, 205],
    ['Status: 304 Not Modified\r\nETag: "x"\r\n\r\n', {}, 304],
  ];
  for (const [wire, options, status] of cases) {
    const { response, done } = await read([encoder.encode(wire)], options);
    assert.equal(response.status, status);
    assert.equal(response.body, null, wire);
    assert.deepEqual(done, [undefined]);
  }
});

Deno.test("readCgiResponse: cancelling the body calls onDone once with the reason", async () => {
  const done: unknown[] = [];
  const response = await readCgiResponse(
    ReadableStream.from((async function* () {
      yield encoder.encode("Status: 200 OK\r\n\r\nfirst");
      await new Promise(() => {}); // never sends more
    })()),
    { onDone: (error) => done.push(error) },
  );
  const reader = response.body!.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), "first");
  await reader.cancel("client left");
  await reader.cancel("again");
  assert.deepEqual(done, ["client left"]);
});

Deno.test("readCgiResponse: malformed heads are malformed_response with a clear message", async () => {
  const cases: [string, RegExp][] = [
    ["", /closed the connection without answering/],
    [
      "Status: 200 OK\r\nX-A: 1\r\n",
      /closed the connection inside the response head after 24 bytes/,
    ],
    ["Status: 200 OK", /inside the response head after 14 bytes/],
    ["\r\nbody", /response head is empty/],
    ["\n", /response head is empty/],
    ["just some text\r\n\r\n", /line "just some text" is not a header/],
    [": no name\r\n\r\n", /line ": no name" is not a header/],
    ["Bad Name: x\r\n\r\n", /is not a header/],
    ["Name : x\r\n\r\n", /is not a header/],
    ["X\x01: y\r\n\r\n", /is not a header/],
    ["X-Ok: 1\r\n folded\r\n\r\n", /line " folded" is not a header/],
    ["<html>\r\n\r\n", /is not a header/],
    ["Status: abc\r\n\r\n", /Status "abc" is not a status/],
    ["Status: 2000\r\n\r\n", /Status "2000" is not a status/],
    ["Status: OK 200\r\n\r\n", /is not a status/],
    ["Status:\r\n\r\n", /Status "" is not a status/],
    [
      "Status: 200 OK\r\nStatus: 404 Not Found\r\n\r\n",
      /Status "404 Not Found" is not a status/,
    ],
    ["HTTP/1.1 abc\r\n\r\n", /is not a header/],
    ["HTTP/2 200\r\n\r\n", /is not a header/],
    ["X: a\x00b\r\n\r\n", /header X has a value HTTP can't carry/],
    ["Status: 200 O\x01K\r\n\r\n", /control characters/],
  ];
  for (const [wire, message] of cases) {
    await rejectsWith(wire, "malformed_response", message);
  }
});

Deno.test("readCgiResponse: statuses outside 200-599 are refused, not a crash", async () => {
  for (
    const wire of [
      "Status: 100 Continue\r\n\r\n",
      "Status: 101 Switching Protocols\r\n\r\n",
      "Status: 199\r\n\r\n",
      "Status: 600 Beyond\r\n\r\n",
      "Status: 999\r\n\r\n",
      "Status: 000\r\n\r\n",
      "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ]
  ) {
    await rejectsWith(wire, "malformed_response", /is outside 200 to 599/);
  }
});

Deno.test("readCgiResponse: a head over maxHeadBytes is head_too_large", async () => {
  const head = "Status: 200 OK\r\nX-Long: " + "a".repeat(100) + "\r\n\r\n";
  await rejectsWith(
    head,
    "head_too_large",
    /larger than the limit of 64 bytes/,
    {
      maxHeadBytes: 64,
    },
  );
  // Exactly at the limit is fine.
  const { response } = await read([encoder.encode(head)], {
    maxHeadBytes: head.length,
  });
  assert.equal(response.headers.get("x-long"), "a".repeat(100));
  await response.body?.cancel();
  await rejectsWith(head, "head_too_large", /limit/, {
    maxHeadBytes: head.length - 1,
  });
});

Deno.test("readCgiResponse: an endless head line stops at the limit", async () => {
  let reads = 0;
  const endless = {
    read: () => {
      reads++;
      return Promise.resolve({
        done: false as const,
        value: encoder.encode("X-Endless: aaaaaaaaaa"),
      });
    },
  };
  const done: unknown[] = [];
  await assert.rejects(
    readCgiResponse(endless, {
      maxHeadBytes: 1000,
      onDone: (e) => done.push(e),
    }),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "head_too_large",
  );
  assert.ok(reads <= 1000 / 21 + 2, `${reads} reads`);
  assert.equal(done.length, 1);
});

Deno.test("parseCgiResponseHead works on lines", () => {
  const head = parseCgiResponseHead([
    "Status: 418 I'm a teapot",
    "Content-Type:text/plain",
    "X-Spaces:   padded   ",
    "X-Empty:",
  ]);
  assert.equal(head.status, 418);
  assert.equal(head.statusText, "I'm a teapot");
  assert.equal(head.headers.get("content-type"), "text/plain");
  assert.equal(head.headers.get("x-spaces"), "padded");
  assert.equal(head.headers.get("x-empty"), "");
  assert.equal(parseCgiResponseHead(["Status:\t500\tOops"]).statusText, "Oops");
  assert.equal(parseCgiResponseHead(["status: 201"]).status, 201);
});

Deno.test("readCgiResponse: a Gemini meta a header can't carry is malformed_response, not a TypeError", async () => {
  const wire = new TextEncoder().encode("20 text/gemini\0x\r\nbody");
  await assert.rejects(
    readCgiResponse(ReadableStream.from([wire])),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "malformed_response" &&
      /can't carry/.test(error.message),
  );
});

/** Status, headers and body of a response, to compare two of them. */
async function described(response: Response) {
  return {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers],
    body: response.body === null ? null : await response.text(),
  };
}

Deno.test("readCgiResponse: a CGI head whose Status is a Gemini status (flup's form) is that Gemini answer", async () => {
  // flup writes `Status: <the WSGI status>`, then Content-Length for a
  // one-piece body, then the blank line.
  const cases: [string, string, string | null][] = [
    [
      "Status: 20 text/gemini\r\nContent-Length: 19\r\n\r\n# Hello from SCGI!\n",
      "20 text/gemini\r\n# Hello from SCGI!\n",
      "# Hello from SCGI!\n",
    ],
    [
      "Status: 10 Enter your name:\r\nContent-Length: 0\r\n\r\n",
      "10 Enter your name:\r\n",
      null,
    ],
    [
      "Status: 30 gemini://example.com/new-location\r\nContent-Length: 0\r\n\r\n",
      "30 gemini://example.com/new-location\r\n",
      null,
    ],
    ["Status: 51 Not found\r\n\r\n", "51 Not found\r\n", null],
    // LF line ends, a status alone, no Content-Length: the body runs to the end.
    ["Status: 20\n\nstreamed", "20\r\nstreamed", "streamed"],
    // Headers of the CGI head other than the framing are not Gemini's.
    [
      "Status: 20 text/plain\r\nX-Extra: 1\r\nContent-Length: 2\r\n\r\nhi",
      "20 text/plain\r\nhi",
      "hi",
    ],
  ];
  for (const [wire, raw, body] of cases) {
    const expected = await described(
      await readCgiResponse(ReadableStream.from([encoder.encode(raw)])),
    );
    assert.equal(expected.body, body, raw);
    for (const protocol of [undefined, "auto", "gemini"] as const) {
      for (const [label, chunks] of chunkings(encoder.encode(wire))) {
        const { response, done } = await read(chunks, {
          ...(protocol ? { protocol } : {}),
        });
        assert.deepEqual(
          await described(response),
          expected,
          `${JSON.stringify(wire)} (${protocol}, ${label})`,
        );
        assert.deepEqual(done, [undefined], label);
      }
    }
  }
});

Deno.test("readCgiResponse: a Gemini Status body ends at its Content-Length, and is truncated_response when cut", async () => {
  const { response, done } = await read([
    encoder.encode("Status: 20 text/gemini\r\nContent-Length: 3\r\n\r\nabcdef"),
  ]);
  assert.equal(response.headers.get("x-gemini-status"), "20");
  assert.equal(response.headers.has("content-length"), false);
  assert.equal(await response.text(), "abc");
  assert.deepEqual(done, [undefined]);

  const cut = await read([
    encoder.encode("Status: 20 text/gemini\r\nContent-Length: 10\r\n\r\nabc"),
  ]);
  await assert.rejects(
    cut.response.text(),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "truncated_response",
  );
});

Deno.test("readCgiResponse: a Gemini Status meta is read as UTF-8, else byte for byte (flup on Python 3 writes Latin-1)", async () => {
  for (
    const wire of [
      latin1("Status: 10 Wie hei\xc3\x9ft du?\r\n\r\n"),
      latin1("Status: 10 Wie hei\xdft du?\r\n\r\n"),
    ]
  ) {
    const { response } = await read([wire]);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-gemini-status"), "10");
    // The header holds the meta's UTF-8 bytes, as for a raw Gemini answer.
    assert.equal(response.headers.get("x-gemini-meta"), "Wie hei\xc3\x9ft du?");
  }
});

Deno.test("readCgiResponse: which Status lines are Gemini, by protocol", async () => {
  // A CGI status is three digits: "auto" keeps reading those as CGI.
  const cgi = await read([encoder.encode("Status: 201 Created\r\n\r\nok")]);
  assert.equal(cgi.response.status, 201);
  assert.equal(cgi.response.headers.has("x-gemini-status"), false);
  assert.equal(await cgi.response.text(), "ok");
  // "cgi" never reads Gemini: a two-digit Status is not a status.
  await rejectsWith(
    "Status: 20 text/gemini\r\n\r\n",
    "malformed_response",
    /Status "20 text\/gemini" is not a status/,
    { protocol: "cgi" },
  );
  await rejectsWith(
    "Status: 20\r\n\r\n",
    "malformed_response",
    /not a status/,
    {
      protocol: "cgi",
    },
  );
  // "gemini" wants a Gemini status, raw or in Status.
  for (
    const wire of [
      "Status: 200 OK\r\n\r\nhi",
      "Content-Type: text/gemini\r\n\r\nhi",
      "HTTP/1.1 200 OK\r\n\r\nhi",
    ]
  ) {
    await rejectsWith(wire, "malformed_response", /not a Gemini answer/, {
      protocol: "gemini",
    });
  }
  // Not Gemini statuses anywhere: 7x, one digit, an NPH line with a
  // two-digit Status, a second Status.
  for (
    const wire of [
      "Status: 70 nope\r\n\r\n",
      "Status: 2 x\r\n\r\n",
      "Status: 20text/gemini\r\n\r\n",
      "HTTP/1.1 200 OK\r\nStatus: 20 text/gemini\r\n\r\n",
      "Status: 20 text/gemini\r\nStatus: 51 Not found\r\n\r\n",
      "Status: 200 OK\r\nStatus: 20 text/gemini\r\n\r\n",
    ]
  ) {
    await rejectsWith(wire, "malformed_response", /not a status/);
  }
  // A line that is not a header is still refused after a Gemini Status.
  await rejectsWith(
    "Status: 20 text/gemini\r\nnot a header\r\n\r\n",
    "malformed_response",
    /is not a header/,
  );
  // parseCgiResponseHead stays CGI only.
  assert.throws(
    () => parseCgiResponseHead(["Status: 20 text/gemini"]),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "malformed_response",
  );
});
