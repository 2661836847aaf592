#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --v8-flags=--expose-gc
/**
 * Soak test (not run in CI): a million requests (configurable) through an
 * in-process server and client, with the process's memory sampled as it
 * goes, then optionally one huge body streamed through both directions.
 * Growth that keeps climbing after warm-up is a leak; flat is the goal.
 *
 *     deno run --allow-net=127.0.0.1 --v8-flags=--expose-gc bench/soak.ts \
 *       [--count 1000000] [--concurrency 32] [--client fetch|raw] [--big-mib 1024]
 *
 * `--client fetch` (the default) goes through `scgiFetch`, exercising the
 * client as well; `--client raw` writes prebuilt requests on plain sockets
 * to stress the server alone. `--big-mib N` then POSTs N MiB that the
 * handler echoes back while it streams in, and reports the peak memory
 * growth during it (backpressure in both directions keeps it flat).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve } from "../server.ts";
import { scgiFetch } from "../client.ts";
import { encodeRequestHead } from "../codec/header_encoder.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "1000000" },
    concurrency: { type: "string", default: "32" },
    client: { type: "string", default: "fetch" },
    "big-mib": { type: "string", default: "0" },
  },
});
const COUNT = Number(values.count);
const CONCURRENCY = Number(values.concurrency);
const BIG_MIB = Number(values["big-mib"]);
const CLIENT = values.client;
if (!Number.isSafeInteger(COUNT) || COUNT < 1) throw new TypeError("--count");
if (!Number.isSafeInteger(CONCURRENCY) || CONCURRENCY < 1) {
  throw new TypeError("--concurrency");
}
if (CLIENT !== "fetch" && CLIENT !== "raw") throw new TypeError("--client");

const MiB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;

interface Sample {
  done: number;
  rss: number;
  heapUsed: number;
  external: number;
}

function sample(done: number): Sample {
  gc?.();
  const { rss, heapUsed, external } = Deno.memoryUsage();
  return { done, rss, heapUsed, external };
}

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1);
}

const payload = new TextEncoder().encode("x".repeat(512));
const server = serve({
  port: 0,
  onListen() {},
  onError(error) {
    console.error("handler error:", error);
    return new Response("error", { status: 500 });
  },
}, async (request) => {
  if (new URL(request.url).pathname === "/echo") {
    return new Response(request.body);
  }
  // A little of everything: read the body, stream part of the answer.
  const body = request.body ? await request.arrayBuffer() : new ArrayBuffer(0);
  return new Response(
    new ReadableStream({
      start(controller) {
        controller.enqueue(payload);
        controller.enqueue(new Uint8Array(body.byteLength % 64));
        controller.close();
      },
    }),
    { headers: { "x-length": String(body.byteLength) } },
  );
});
const { port } = server.addr as Deno.NetAddr;
const url = `scgi://127.0.0.1:${port}/soak`;
const rawHead = encodeRequestHead({
  REQUEST_METHOD: "POST",
  REQUEST_URI: "/soak",
  SERVER_NAME: "localhost",
  SERVER_PORT: "80",
}, 100);
const rawRequest = new Uint8Array(rawHead.length + 100);
rawRequest.set(rawHead);

async function oneFetch(i: number): Promise<void> {
  const response = await scgiFetch(url, {
    method: "POST",
    body: payload.subarray(0, i % 200),
  });
  const bytes = await response.arrayBuffer();
  if (response.status !== 200 || bytes.byteLength !== 512 + (i % 200) % 64) {
    throw new Error(
      `request ${i}: ${response.status}, ${bytes.byteLength} bytes`,
    );
  }
}

async function oneRaw(i: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(rawRequest);
    let total = 0;
    const buffer = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buffer);
      if (n === null) break;
      total += n;
    }
    if (total < 512) throw new Error(`request ${i}: only ${total} bytes`);
  } finally {
    try {
      conn.close();
    } catch {
      // Released by reading to the end.
    }
  }
}

const one = CLIENT === "fetch" ? oneFetch : oneRaw;
const samples: Sample[] = [sample(0)];
const every = Math.max(1, Math.floor(COUNT / 20));
let next = 0;
let done = 0;
const started = performance.now();
await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
  while (next < COUNT) {
    const i = next++;
    await one(i);
    done++;
    if (done % every === 0) {
      const s = sample(done);
      samples.push(s);
      console.log(
        `${done} requests: rss ${mib(s.rss)} MiB, heap ${
          mib(s.heapUsed)
        } MiB, external ${mib(s.external)} MiB`,
      );
    }
  }
}));
const seconds = (performance.now() - started) / 1000;
const warm = samples[Math.min(2, samples.length - 1)]!; // after 10%
const last = samples[samples.length - 1]!;
console.log(
  `\n${COUNT} requests (${CLIENT}, concurrency ${CONCURRENCY}) in ${
    seconds.toFixed(1)
  } s, ${(COUNT / seconds).toFixed(0)} req/s`,
);
console.log(
  `rss: start ${mib(samples[0]!.rss)} MiB, after warm-up (${warm.done}) ${
    mib(warm.rss)
  } MiB, end ${mib(last.rss)} MiB, growth after warm-up ${
    mib(last.rss - warm.rss)
  } MiB`,
);
console.log(
  `heap used${gc ? " (after gc)" : ""}: after warm-up ${
    mib(warm.heapUsed)
  } MiB, end ${mib(last.heapUsed)} MiB, growth ${
    mib(last.heapUsed - warm.heapUsed)
  } MiB`,
);
console.log(`server stats: ${JSON.stringify(server.stats)}`);

if (BIG_MIB > 0) {
  const before = sample(0);
  let peak = before.rss;
  const total = BIG_MIB * MiB;
  const chunk = new Uint8Array(MiB / 16);
  let produced = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (produced >= total) {
        controller.close();
        return;
      }
      produced += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
  const bigStarted = performance.now();
  const response = await scgiFetch(`scgi://127.0.0.1:${port}/echo`, {
    method: "POST",
    body,
    headers: { "content-length": String(total) },
  });
  let received = 0;
  let maxAhead = 0;
  let reads = 0;
  for await (const part of response.body!) {
    received += part.length;
    maxAhead = Math.max(maxAhead, produced - received);
    if (++reads % 1024 === 0) {
      peak = Math.max(peak, Deno.memoryUsage().rss);
      if (Deno.env.get("SOAK_GC")) gc?.();
    }
  }
  const after = sample(0);
  console.log(
    `after the echo and a gc: rss ${mib(after.rss)} MiB, external ${
      mib(after.external)
    } MiB`,
  );
  const bigSeconds = (performance.now() - bigStarted) / 1000;
  if (received !== total) throw new Error(`echoed ${received} of ${total}`);
  console.log(
    `\n${BIG_MIB} MiB echoed in ${bigSeconds.toFixed(1)} s: rss before ${
      mib(before.rss)
    } MiB, peak ${mib(peak)} MiB (growth ${
      mib(peak - before.rss)
    } MiB), producer at most ${mib(maxAhead)} MiB ahead of the reader`,
  );
}

await server.shutdown();
