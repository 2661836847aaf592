// The server's timeouts and backpressure: a slowloris head, a stalled body,
// a front end that stops reading our response. A timed-out connection is
// closed and counted and never holds up the others; a slow reader on either
// side slows the producer instead of filling memory.

import assert from "node:assert/strict";
import { serve, type ServeOptions } from "../server.ts";
import { scgiFetch } from "../client.ts";
import {
  delay,
  rawRequest,
  readToEnd,
  trackUnhandledRejections,
  until,
  utf8,
} from "./_fuzz.ts";

const quiet = { port: 0, onListen() {} } satisfies ServeOptions;

function connect(server: { addr: Deno.Addr }): Promise<Deno.TcpConn> {
  return Deno.connect({
    hostname: "127.0.0.1",
    port: (server.addr as Deno.NetAddr).port,
  });
}

function url(server: { addr: Deno.Addr }, path = "/"): string {
  return `scgi://127.0.0.1:${(server.addr as Deno.NetAddr).port}${path}`;
}

Deno.test("headerTimeout closes a silent connection without an answer", async () => {
  using unhandled = trackUnhandledRejections();
  await using server = serve(
    { ...quiet, headerTimeout: 100 },
    () => new Response("ok"),
  );
  const conn = await connect(server);
  await conn.write(utf8("10:"));
  const result = await readToEnd(conn);
  assert.equal(result.bytes.length, 0);
  try {
    conn.close();
  } catch {
    // Released by the read to the end.
  }
  assert.equal(server.stats.timeouts, 1);
  unhandled.check();
});

Deno.test("headerTimeout bounds the whole head: a byte now and then does not extend it (slowloris)", async () => {
  using unhandled = trackUnhandledRejections();
  let calls = 0;
  await using server = serve({ ...quiet, headerTimeout: 300 }, () => {
    calls++;
    return new Response("ok");
  });
  const conn = await connect(server);
  const request = rawRequest([["CONTENT_LENGTH", "0"], [
    "PAD",
    "x".repeat(500),
  ]]);
  let sent = 0;
  const trickle = (async () => {
    // One byte every 20 ms would take over 10 s for the whole head; each gap
    // is far below the timeout.
    for (; sent < request.length; sent++) {
      try {
        await conn.write(request.subarray(sent, sent + 1));
      } catch {
        return; // Closed by the server: expected.
      }
      await delay(20);
    }
  })();
  // Meanwhile other connections are served.
  const other = await scgiFetch(url(server, "/other"));
  assert.equal(await other.text(), "ok");
  const result = await readToEnd(conn);
  assert.equal(result.bytes.length, 0, "no answer to a timed-out head");
  await trickle;
  try {
    conn.close();
  } catch {
    // Released.
  }
  assert.ok(
    sent < request.length,
    "the head was cut off before it was complete",
  );
  assert.equal(calls, 1);
  assert.equal(server.stats.timeouts, 1);
  unhandled.check();
});

Deno.test("idleTimeout while reading the body aborts the request and closes", async () => {
  using unhandled = trackUnhandledRejections();
  let bodyError: unknown;
  let signalReason: unknown;
  const handled = Promise.withResolvers<void>();
  await using server = serve(
    { ...quiet, idleTimeout: 100 },
    async (request) => {
      try {
        await request.arrayBuffer();
      } catch (error) {
        bodyError = error;
      }
      signalReason = request.signal.reason;
      handled.resolve();
      return new Response("late");
    },
  );
  const conn = await connect(server);
  await conn.write(
    rawRequest(
      [["CONTENT_LENGTH", "100"], ["REQUEST_METHOD", "POST"]],
      new Uint8Array(10),
    ),
  );
  const result = await readToEnd(conn);
  try {
    conn.close();
  } catch {
    // Released.
  }
  await handled.promise;
  assert.equal(result.bytes.length, 0);
  assert.ok(bodyError, "the body read failed");
  assert.ok(signalReason instanceof DOMException);
  assert.equal((signalReason as DOMException).name, "TimeoutError");
  assert.equal(server.stats.timeouts, 1);
  unhandled.check();
});

Deno.test("idleTimeout while the front end does not read our response closes it and cancels the body", async () => {
  using unhandled = trackUnhandledRejections();
  let produced = 0;
  let cancelled = false;
  const completed = Promise.withResolvers<unknown>();
  await using server = serve(
    { ...quiet, idleTimeout: 150 },
    (_request, info) => {
      info.completed.then(
        () => completed.resolve("completed"),
        (e) => completed.resolve(e),
      );
      return new Response(
        new ReadableStream({
          pull(controller) {
            produced += 65536;
            controller.enqueue(new Uint8Array(65536));
          },
          cancel() {
            cancelled = true;
          },
        }, { highWaterMark: 0 }),
      );
    },
  );
  const stalled = await connect(server);
  await stalled.write(rawRequest([["CONTENT_LENGTH", "0"]]));
  // Never read: the socket buffers fill, the write waits, the timeout fires.
  await until(() => cancelled, "the response body to be cancelled");
  const outcome = await completed.promise;
  assert.ok(outcome instanceof Error || outcome instanceof DOMException);
  assert.equal(server.stats.timeouts, 1);
  // Backpressure held: only what fits into socket buffers was produced.
  assert.ok(
    produced < 64 << 20,
    `produced ${produced} bytes for a reader that never read`,
  );
  // Others are served meanwhile and after.
  const response = await scgiFetch(url(server, "/next"));
  await response.body?.cancel();
  stalled.close();
  unhandled.check();
});

Deno.test("a timed-out connection never blocks the others", async () => {
  using unhandled = trackUnhandledRejections();
  await using server = serve(
    { ...quiet, headerTimeout: 200, maxConnections: 8 },
    () => new Response("ok"),
  );
  // Five silent connections hold five slots until the timeout.
  const silent = await Promise.all(
    Array.from({ length: 5 }, () => connect(server)),
  );
  for (let i = 0; i < 10; i++) {
    const response = await scgiFetch(url(server));
    assert.equal(await response.text(), "ok");
  }
  for (const conn of silent) {
    const result = await readToEnd(conn);
    assert.equal(result.bytes.length, 0);
    try {
      conn.close();
    } catch {
      // Released.
    }
  }
  assert.equal(server.stats.timeouts, 5);
  unhandled.check();
});

const STREAMED = 256 * 1024 * 1024;
const CHUNK = 64 * 1024;
// Socket buffers on both ends plus a few chunks in streams: generous, but
// far below the 256 MiB that an unbounded buffer would reach.
const AHEAD_BOUND = 16 * 1024 * 1024;
// Memory must not grow with the bytes streamed: a chunk kept alive after it
// was consumed (a reaction left on a long-pending promise did that once)
// shows as growth of the whole 256 MiB. Sampled RSS is noisy, so the bound
// is loose; flat is around 40 MiB here.
const GROWTH_BOUND = 128 * 1024 * 1024;

function rssWatch(): { sample(): void; growth(): number } {
  const start = Deno.memoryUsage().rss;
  let peak = start;
  let n = 0;
  return {
    sample() {
      if (++n % 256 === 0) peak = Math.max(peak, Deno.memoryUsage().rss);
    },
    growth: () => peak - start,
  };
}

// Backpressure held: the producer never ran far ahead of the consumer and
// memory stayed bounded (SHOW_AHEAD=1 prints the figures).
function assertBounded(
  what: string,
  maxAhead: number,
  memory: { growth(): number },
): void {
  if (Deno.env.get("SHOW_AHEAD")) {
    console.log(
      `${what}: at most ${maxAhead} bytes ahead, rss +${memory.growth()}`,
    );
  }
  assert.ok(
    maxAhead <= AHEAD_BOUND,
    `producer was ${maxAhead} bytes ahead, rss +${memory.growth()}`,
  );
  assert.ok(
    memory.growth() <= GROWTH_BOUND,
    `memory grew ${memory.growth()} bytes`,
  );
}

Deno.test("backpressure: a 256 MiB request body is produced no faster than the handler reads it", async () => {
  using unhandled = trackUnhandledRejections();
  let produced = 0;
  let consumed = 0;
  let maxAhead = 0;
  const memory = rssWatch();
  await using server = serve({ ...quiet }, async (request) => {
    const reader = request.body!.getReader();
    let n = 0;
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      consumed += value.length;
      maxAhead = Math.max(maxAhead, produced - consumed);
      memory.sample();
      // A slow reader: a macrotask every few chunks.
      if (++n % 4 === 0) await delay(0);
    }
    return new Response(String(consumed));
  });
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (produced >= STREAMED) {
        controller.close();
        return;
      }
      produced += CHUNK;
      controller.enqueue(new Uint8Array(CHUNK));
    },
  }, { highWaterMark: 0 });
  const response = await scgiFetch(url(server), {
    method: "POST",
    body,
    headers: { "content-length": String(STREAMED) },
  });
  assert.equal(await response.text(), String(STREAMED));
  assertBounded("request body", maxAhead, memory);
  unhandled.check();
});

Deno.test("backpressure: a 256 MiB response is produced no faster than the client reads it", async () => {
  using unhandled = trackUnhandledRejections();
  let produced = 0;
  let consumed = 0;
  let maxAhead = 0;
  const memory = rssWatch();
  await using server = serve({ ...quiet }, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        pull(controller) {
          if (produced >= STREAMED) {
            controller.close();
            return;
          }
          produced += CHUNK;
          controller.enqueue(new Uint8Array(CHUNK));
        },
      }, { highWaterMark: 0 }),
    ));
  const response = await scgiFetch(url(server));
  const reader = response.body!.getReader();
  let n = 0;
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    consumed += value.length;
    maxAhead = Math.max(maxAhead, produced - consumed);
    memory.sample();
    if (++n % 4 === 0) await delay(0);
  }
  assert.equal(consumed, STREAMED);
  assertBounded("response body", maxAhead, memory);
  unhandled.check();
});
