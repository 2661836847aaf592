// The client against backends that misbehave: refuse, stall, close early,
// send garbage, send too much, reset. Every failure is an ScgiClientError
// with the right code (or the signal's reason for an abort), and the socket
// is always closed: the fake backend sees the end of the connection, and
// the resource sanitizer sees nothing left open.

import assert from "node:assert/strict";
import { scgiFetch, type ScgiRequestInit } from "../client.ts";
import { ScgiClientError, type ScgiClientErrorCode } from "../codec/errors.ts";
import { readToEnd, trackUnhandledRejections, utf8 } from "./_fuzz.ts";
import { freePort } from "./_peer.ts";

/** A raw backend: `behave` runs per connection; then it waits for the close. */
interface FakeBackend extends AsyncDisposable {
  url: string;
  port: number;
  /** Resolves once every connection so far has been closed by the client. */
  allClosed(): Promise<void>;
}

function fakeBackend(
  behave: (conn: Deno.Conn) => Promise<void> | void,
): FakeBackend {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const handled: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      handled.push((async () => {
        try {
          await behave(conn);
        } catch {
          // The client closed while we were still talking.
        }
        // The client must close its side: this read ends only then.
        await readToEnd(conn);
        try {
          conn.close();
        } catch {
          // Released by reading to the end.
        }
      })());
    }
  })();
  return {
    url: `scgi://127.0.0.1:${port}/`,
    port,
    async allClosed() {
      await Promise.all(handled);
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting;
      await Promise.all(handled);
    },
  };
}

/** Reads a request head off a connection (up to the netstring's comma). */
async function readRequest(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(65536);
  let seen = "";
  while (!/^\d+:/.test(seen) || seen.length < 200 && !seen.includes(",")) {
    const n = await conn.read(buffer);
    if (n === null) return;
    seen += new TextDecoder().decode(buffer.subarray(0, n));
    if (seen.includes(",")) return;
  }
}

async function rejectsWith(
  promise: Promise<unknown>,
  code: ScgiClientErrorCode,
): Promise<ScgiClientError> {
  const error = await promise.then(
    () => assert.fail(`expected ${code}, got a result`),
    (error) => error,
  );
  assert.ok(
    error instanceof ScgiClientError,
    `expected ScgiClientError, got ${error}`,
  );
  assert.equal(error.code, code, error.message);
  return error;
}

async function fetchBody(
  url: string,
  init: ScgiRequestInit = {},
): Promise<Uint8Array> {
  const response = await scgiFetch(url, init);
  return new Uint8Array(await response.arrayBuffer());
}

Deno.test("a backend that refuses: connection_refused (TCP and a missing Unix socket)", async () => {
  using unhandled = trackUnhandledRejections();
  await rejectsWith(
    scgiFetch(`scgi://127.0.0.1:${freePort()}/`),
    "connection_refused",
  );
  const dir = await Deno.makeTempDir();
  try {
    await rejectsWith(
      scgiFetch(`scgi+unix://${encodeURIComponent(`${dir}/none.sock`)}/`),
      "connection_refused",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  unhandled.check();
});

Deno.test("a backend whose accept queue is full: connect_timeout, and the connect is cancelled", async () => {
  using unhandled = trackUnhandledRejections();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const queued: Deno.Conn[] = [];
  try {
    // Nobody accepts: once the backlog is full, the kernel drops new SYNs.
    while (true) {
      const cancel = new AbortController();
      const timer = setTimeout(() => cancel.abort(), 200);
      try {
        queued.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port,
            signal: cancel.signal,
          }),
        );
      } catch {
        break;
      } finally {
        clearTimeout(timer);
      }
      assert.ok(queued.length < 5000, "the backlog never filled");
    }
    await rejectsWith(
      scgiFetch(`scgi://127.0.0.1:${port}/`, { connectTimeout: 100 }),
      "connect_timeout",
    );
  } finally {
    listener.close();
    for (const conn of queued) conn.close();
  }
  unhandled.check();
});

Deno.test("a backend that stalls (accepts, never answers): head_timeout, socket closed", async () => {
  using unhandled = trackUnhandledRejections();
  await using backend = fakeBackend(readRequest);
  await rejectsWith(
    scgiFetch(backend.url, { headTimeout: 100 }),
    "head_timeout",
  );
  await backend.allClosed();
  unhandled.check();
});

Deno.test("a backend that stalls mid-body: the body fails with idle_timeout, socket closed", async () => {
  using unhandled = trackUnhandledRejections();
  await using backend = fakeBackend(async (conn) => {
    await readRequest(conn);
    await conn.write(utf8("Status: 200 OK\r\nContent-Length: 100\r\n\r\nhalf"));
  });
  const response = await scgiFetch(backend.url, { idleTimeout: 100 });
  assert.equal(response.status, 200);
  await rejectsWith(response.arrayBuffer(), "idle_timeout");
  await backend.allClosed();
  unhandled.check();
});

Deno.test("a backend that closes without answering: malformed_response", async () => {
  using unhandled = trackUnhandledRejections();
  await using backend = fakeBackend(async (conn) => {
    await readRequest(conn);
    await conn.closeWrite();
  });
  const error = await rejectsWith(scgiFetch(backend.url), "malformed_response");
  assert.match(error.message, /without answering/);
  await backend.allClosed();
  unhandled.check();
});

Deno.test("a backend that closes inside the head or the body: malformed_response / truncated_response", async () => {
  using unhandled = trackUnhandledRejections();
  await using inHead = fakeBackend(async (conn) => {
    await readRequest(conn);
    await conn.write(utf8("Status: 200 OK\r\nContent-Ty"));
    await conn.closeWrite();
  });
  await rejectsWith(scgiFetch(inHead.url), "malformed_response");
  await using inBody = fakeBackend(async (conn) => {
    await readRequest(conn);
    await conn.write(utf8("Status: 200 OK\r\nContent-Length: 10\r\n\r\nshort"));
    await conn.closeWrite();
  });
  await rejectsWith(fetchBody(inBody.url), "truncated_response");
  await inHead.allClosed();
  await inBody.allClosed();
  unhandled.check();
});

Deno.test("a backend that resets mid-body: an ScgiClientError, never a raw socket error", async () => {
  using unhandled = trackUnhandledRejections();
  await using backend = fakeBackend(async (conn) => {
    // Leaving the request unread makes close() send a reset.
    await conn.write(utf8("Status: 200 OK\r\nContent-Length: 1000000\r\n\r\n"));
    await conn.write(new Uint8Array(1000));
    await new Promise((resolve) => setTimeout(resolve, 20));
    conn.close();
  });
  // A big request body the backend never reads: its close is a reset (which
  // Deno's read reports as an end, so this is usually truncated_response).
  const error = await fetchBody(backend.url, {
    method: "POST",
    body: new Uint8Array(4 << 20),
  }).then(
    () => assert.fail("expected a failure"),
    (error) => error,
  );
  assert.ok(error instanceof ScgiClientError, `got ${error}`);
  if (Deno.env.get("SHOW_CODES")) console.log(error.code, error.message);
  assert.ok(
    ["connection_failed", "truncated_response", "malformed_response"].includes(
      error.code,
    ),
    error.code,
  );
  await backend.allClosed();
  unhandled.check();
});

Deno.test("a backend that sends garbage: malformed_response", async () => {
  using unhandled = trackUnhandledRejections();
  for (
    const garbage of [
      "\x00\x01\x02\r\n\r\n",
      "not a header\r\n\r\n",
      "Status: 99 Low\r\n\r\n",
      "Status: abc\r\n\r\n",
      "HTTP/1.1 700 Weird\r\n\r\n",
      "\r\n\r\n",
    ]
  ) {
    await using backend = fakeBackend(async (conn) => {
      await readRequest(conn);
      await conn.write(utf8(garbage));
      await conn.closeWrite();
    });
    await rejectsWith(scgiFetch(backend.url), "malformed_response");
    await backend.allClosed();
  }
  unhandled.check();
});

Deno.test("a backend that sends too much: head_too_large, response_too_large", async () => {
  using unhandled = trackUnhandledRejections();
  await using bigHead = fakeBackend(async (conn) => {
    await readRequest(conn);
    // An endless head line: the client stops at its limit.
    const line = utf8("X-Big: " + "a".repeat(16384));
    for (let i = 0; i < 100; i++) await conn.write(line);
  });
  await rejectsWith(
    scgiFetch(bigHead.url, { maxHeadBytes: 4096 }),
    "head_too_large",
  );
  await using bigBody = fakeBackend(async (conn) => {
    await readRequest(conn);
    await conn.write(utf8("Status: 200 OK\r\n\r\n"));
    for (let i = 0; i < 100; i++) await conn.write(new Uint8Array(65536));
  });
  await rejectsWith(
    fetchBody(bigBody.url, { maxResponseBytes: 100_000 }),
    "response_too_large",
  );
  // More than its own content-length: the rest is not the body.
  await using overLength = fakeBackend(async (conn) => {
    await readRequest(conn);
    await conn.write(
      utf8("Status: 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
    );
    await conn.closeWrite();
  });
  assert.deepEqual(await fetchBody(overLength.url), utf8("ok"));
  await bigHead.allClosed();
  await bigBody.allClosed();
  await overLength.allClosed();
  unhandled.check();
});

Deno.test("an aborted signal rejects with its reason and closes the socket: before the head", async () => {
  using unhandled = trackUnhandledRejections();
  await using backend = fakeBackend(readRequest);
  const controller = new AbortController();
  const calling = scgiFetch(backend.url, { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  const error = await calling.then(
    () => assert.fail("resolved"),
    (error) => error,
  );
  assert.ok(error instanceof DOMException);
  assert.equal(error.name, "AbortError");
  const timedOut = await scgiFetch(backend.url, {
    signal: AbortSignal.timeout(50),
  }).then(
    () => assert.fail("resolved"),
    (error) => error,
  );
  assert.ok(timedOut instanceof DOMException);
  assert.equal(timedOut.name, "TimeoutError");
  // Already aborted: no connection at all.
  const reason = new Error("mine");
  await assert.rejects(
    scgiFetch(backend.url, { signal: AbortSignal.abort(reason) }),
    (e) => e === reason,
  );
  await backend.allClosed();
  unhandled.check();
});

Deno.test("an aborted signal rejects the body with its reason and closes the socket: mid-body", async () => {
  using unhandled = trackUnhandledRejections();
  await using backend = fakeBackend(async (conn) => {
    await readRequest(conn);
    await conn.write(utf8("Status: 200 OK\r\n\r\nfirst"));
  });
  const controller = new AbortController();
  const response = await scgiFetch(backend.url, { signal: controller.signal });
  const reader = response.body!.getReader();
  assert.deepEqual((await reader.read()).value, utf8("first"));
  const pending = reader.read();
  controller.abort();
  const error = await pending.then(
    () => assert.fail("resolved"),
    (error) => error,
  );
  assert.ok(error instanceof DOMException);
  assert.equal(error.name, "AbortError");
  await backend.allClosed();
  unhandled.check();
});

Deno.test("a request body stream that lies about its length: request_body_mismatch", async () => {
  using unhandled = trackUnhandledRejections();
  await using backend = fakeBackend(async (conn) => {
    await readRequest(conn);
  });
  const body = () => ReadableStream.from([utf8("12345")]);
  await rejectsWith(
    scgiFetch(backend.url, {
      method: "POST",
      body: body(),
      headers: { "content-length": "3" },
    }),
    "request_body_mismatch",
  );
  await rejectsWith(
    scgiFetch(backend.url, {
      method: "POST",
      body: body(),
      headers: { "content-length": "9" },
    }),
    "request_body_mismatch",
  );
  await rejectsWith(
    scgiFetch(backend.url, {
      method: "POST",
      body: ReadableStream.from([new Uint8Array(2000)]),
      maxBufferedBodyBytes: 1000,
    }),
    "request_too_large",
  );
  await backend.allClosed();
  unhandled.check();
});
