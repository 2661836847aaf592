// Fuzzing both directions, seeded and reproducible.
//
// How the count is reached (FUZZ_COUNT, default 100,000, split by share):
//   82% requests through the pure decoder (readRequestHead on a
//       ReadableStream, twice with different chunkings, plus requestFromCgi)
//   14% responses through the pure decoder (readCgiResponse, twice)
//    3% requests over real sockets to a running server (16 at a time),
//       each checked against what the decoder said about the same bytes
//    1% responses over real sockets from a raw fake backend to scgiFetch,
//       each checked the same way
// The mutations are listed in tests/_fuzz.ts (random bytes, truncations,
// bad/huge lengths, bad digits, missing commas, NULs, duplicate and missing
// CONTENT_LENGTH, short bodies, valid requests with flipped or inserted
// bytes, ...).
//
// Replay a run with the seed it printed: FUZZ_SEED=<seed>. A longer run:
// FUZZ_COUNT=1000000 deno task test tests/fuzz_test.ts

import assert from "node:assert/strict";
import { serve } from "../server.ts";
import { scgiFetch } from "../client.ts";
import { readRequestHead } from "../codec/request_head.ts";
import { requestFromCgi } from "../codec/cgi_request.ts";
import { readCgiResponse } from "../codec/cgi_response.ts";
import { ScgiClientError, ScgiProtocolError } from "../codec/errors.ts";
import {
  chunked,
  fuzzRequest,
  fuzzResponse,
  fuzzSeed,
  Random,
  rawExchange,
  trackUnhandledRejections,
} from "./_fuzz.ts";

const SEED = fuzzSeed();
const COUNT = Number(Deno.env.get("FUZZ_COUNT") ?? 100_000);
if (!Number.isSafeInteger(COUNT) || COUNT < 100) {
  throw new TypeError(
    `FUZZ_COUNT ${Deno.env.get("FUZZ_COUNT")} is not a count >= 100`,
  );
}
const SHARES = {
  codecRequests: Math.round(COUNT * 0.82),
  codecResponses: Math.round(COUNT * 0.14),
  socketRequests: Math.round(COUNT * 0.03),
  socketResponses: 0,
};
SHARES.socketResponses = COUNT - SHARES.codecRequests - SHARES.codecResponses -
  SHARES.socketRequests;
const CONCURRENCY = 16;

console.log(
  `fuzz: seed ${SEED}, ${COUNT} cases (replay with FUZZ_SEED=${SEED} FUZZ_COUNT=${COUNT}): ${
    JSON.stringify(SHARES)
  }`,
);

// What decoding a request leads to, which is what the server must answer.
type RequestOutcome =
  | { kind: "refused"; status: number }
  | { kind: "ok"; method: string; bodyLength: number }
  | { kind: "short body" };

async function decodeRequest(chunks: Uint8Array[]): Promise<RequestOutcome> {
  let head;
  try {
    head = await readRequestHead(ReadableStream.from(chunks));
  } catch (error) {
    if (error instanceof ScgiProtocolError) {
      assert.ok([400, 411, 413, 431].includes(error.status));
      return { kind: "refused", status: error.status };
    }
    throw error;
  }
  // As the server does: the Request is made before the body is read, and a
  // head it can't carry is a 400.
  let method: string;
  try {
    method = requestFromCgi(head.env, { nonUtf8: head.nonUtf8 }).method;
  } catch (error) {
    head.body?.cancel();
    if (error instanceof TypeError) return { kind: "refused", status: 400 };
    throw error;
  }
  let bodyLength = 0;
  if (method === "GET" || method === "HEAD") {
    // No body in the Request: the server answers without reading it.
    head.body?.cancel();
  } else if (head.body) {
    try {
      bodyLength = (await new Response(head.body).arrayBuffer()).byteLength;
    } catch (error) {
      if (error instanceof ScgiProtocolError && error.status === 400) {
        return { kind: "short body" };
      }
      throw error;
    }
  }
  if (method !== "GET" && method !== "HEAD") {
    assert.equal(bodyLength, head.contentLength);
  }
  return { kind: "ok", method, bodyLength };
}

// What decoding a response leads to, which is what scgiFetch must report.
type ResponseOutcome =
  | { kind: "response"; status: number; body: Uint8Array }
  | { kind: "head error" | "body error"; code: string };

async function settleResponse(
  responding: Promise<Response>,
): Promise<ResponseOutcome> {
  let response: Response;
  try {
    response = await responding;
  } catch (error) {
    if (error instanceof ScgiClientError) {
      return { kind: "head error", code: error.code };
    }
    throw error;
  }
  assert.ok(response.status >= 200 && response.status <= 599);
  try {
    const body = new Uint8Array(await response.arrayBuffer());
    return { kind: "response", status: response.status, body };
  } catch (error) {
    if (error instanceof ScgiClientError) {
      return { kind: "body error", code: error.code };
    }
    throw error;
  }
}

function describe(bytes: Uint8Array): string {
  const text = JSON.stringify(new TextDecoder().decode(bytes.subarray(0, 120)));
  return `${bytes.length} bytes: ${text}`;
}

Deno.test(`fuzz: ${SHARES.codecRequests} requests through the decoder`, async () => {
  using unhandled = trackUnhandledRejections();
  const random = new Random(SEED);
  const seen: Record<string, number> = {};
  for (let i = 0; i < SHARES.codecRequests; i++) {
    const { bytes, mutation } = fuzzRequest(random);
    let first: RequestOutcome, second: RequestOutcome;
    try {
      first = await decodeRequest(chunked(random, bytes));
      // However the bytes arrive, the answer is the same.
      second = await decodeRequest([bytes]);
    } catch (error) {
      throw new Error(`case ${i} (${mutation}, ${describe(bytes)}) failed`, {
        cause: error,
      });
    }
    assert.deepEqual(
      first,
      second,
      `case ${i} (${mutation}) depends on chunking`,
    );
    if (mutation === "valid") {
      assert.equal(first.kind, "ok", `case ${i}: a valid request was refused`);
    }
    const key = first.kind === "refused"
      ? `refused ${first.status}`
      : first.kind;
    seen[key] = (seen[key] ?? 0) + 1;
  }
  console.log("  request decoder outcomes:", JSON.stringify(seen));
  unhandled.check();
});

Deno.test(`fuzz: ${SHARES.codecResponses} responses through the decoder`, async () => {
  using unhandled = trackUnhandledRejections();
  const random = new Random(SEED ^ 0x5eed);
  const seen: Record<string, number> = {};
  for (let i = 0; i < SHARES.codecResponses; i++) {
    const bytes = fuzzResponse(random);
    let first: ResponseOutcome, second: ResponseOutcome;
    try {
      first = await settleResponse(
        readCgiResponse(ReadableStream.from(chunked(random, bytes))),
      );
      second = await settleResponse(
        readCgiResponse(ReadableStream.from([bytes])),
      );
    } catch (error) {
      throw new Error(`case ${i} (${describe(bytes)}) failed`, {
        cause: error,
      });
    }
    assert.deepEqual(first, second, `case ${i} depends on chunking`);
    const key = first.kind === "response"
      ? `status ${String(first.status)[0]}xx`
      : `${first.kind} ${first.code}`;
    seen[key] = (seen[key] ?? 0) + 1;
  }
  console.log("  response decoder outcomes:", JSON.stringify(seen));
  unhandled.check();
});

Deno.test(`fuzz: ${SHARES.socketRequests} requests over sockets to a running server`, async () => {
  using unhandled = trackUnhandledRejections();
  const random = new Random(SEED ^ 0xface);
  const server = serve({
    port: 0,
    onListen() {},
    // Short, so a request that stops early is closed quickly.
    headerTimeout: 2000,
    idleTimeout: 2000,
    onError: () => new Response("handler failed", { status: 500 }),
  }, async (request) => {
    const length = request.body ? (await request.arrayBuffer()).byteLength : 0;
    return new Response(String(length));
  });
  try {
    const cases = Array.from(
      { length: SHARES.socketRequests },
      () => fuzzRequest(random),
    );
    const seen: Record<string, number> = {};
    let next = 0;
    const worker = async () => {
      while (next < cases.length) {
        const i = next++;
        const { bytes, mutation } = cases[i]!;
        const expected = await decodeRequest([bytes]);
        const answer = await rawExchange(server.addr, bytes);
        const where = `case ${i} (${mutation}, ${describe(bytes)}), expected ${
          JSON.stringify(expected)
        }, got ${describe(answer.bytes)}`;
        if (answer.bytes.length === 0) {
          // A close is only right when the body never came.
          assert.equal(expected.kind, "short body", where);
          seen["close"] = (seen["close"] ?? 0) + 1;
          continue;
        }
        // Well-formed: the client's own decoder reads it in full.
        const response = await readCgiResponse(
          ReadableStream.from([answer.bytes]),
          {
            method: expected.kind === "ok" ? expected.method : "GET",
          },
        );
        const text = await response.text();
        if (expected.kind === "refused") {
          assert.equal(response.status, expected.status, where);
        } else if (expected.kind === "ok") {
          assert.equal(response.status, 200, where);
          if (expected.method !== "HEAD") {
            assert.equal(
              text,
              expected.method === "GET" ? "0" : String(expected.bodyLength),
              where,
            );
          }
        } else {
          assert.ok(response.status >= 500, where);
        }
        const key = `status ${response.status}`;
        seen[key] = (seen[key] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    console.log("  server answers:", JSON.stringify(seen));
    // Afterwards a correct request still works, and nothing is left over.
    const { port } = server.addr as Deno.NetAddr;
    const response = await scgiFetch(`scgi://127.0.0.1:${port}/`, {
      method: "POST",
      body: "still fine",
    });
    assert.equal(await response.text(), "10");
    assert.equal(server.stats.active, 0);
  } finally {
    await server.shutdown();
  }
  unhandled.check();
});

Deno.test(`fuzz: ${SHARES.socketResponses} responses over sockets to scgiFetch`, async () => {
  using unhandled = trackUnhandledRejections();
  const random = new Random(SEED ^ 0xbeef);
  const cases = Array.from(
    { length: SHARES.socketResponses },
    () => fuzzResponse(random),
  );
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const served: Promise<void>[] = [];
  // A raw backend: reads the request head, answers with the case's bytes.
  const backend = (async () => {
    for await (const conn of listener) {
      served.push((async () => {
        const reader = conn.readable.getReader();
        try {
          const head = await readRequestHead(reader);
          const i = Number(
            new URL(head.env.REQUEST_URI!, "http://x").searchParams.get("case"),
          );
          const writer = conn.writable.getWriter();
          await writer.write(cases[i]!);
          writer.releaseLock();
          await conn.closeWrite();
          while (!(await reader.read()).done) {
            // Wait for the client to close.
          }
        } catch {
          // The client gave up first (a limit): fine.
        } finally {
          reader.releaseLock();
          try {
            conn.close();
          } catch {
            // Released.
          }
        }
      })());
    }
  })();
  try {
    let next = 0;
    const seen: Record<string, number> = {};
    const worker = async () => {
      while (next < cases.length) {
        const i = next++;
        const bytes = cases[i]!;
        const expected = await settleResponse(
          readCgiResponse(ReadableStream.from([bytes])),
        );
        const got = await settleResponse(
          scgiFetch(`scgi://127.0.0.1:${port}/?case=${i}`),
        );
        assert.deepEqual(got, expected, `case ${i} (${describe(bytes)})`);
        const key = got.kind === "response"
          ? `status ${String(got.status)[0]}xx`
          : `${got.kind} ${got.code}`;
        seen[key] = (seen[key] ?? 0) + 1;
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    console.log("  client outcomes:", JSON.stringify(seen));
  } finally {
    listener.close();
    await backend;
    await Promise.all(served);
  }
  unhandled.check();
});
