/**
 * The floor: the least a Deno SCGI backend can do per request. Accept, read
 * until the whole netstring (and the body it announces) is in, write one
 * fixed answer, close. No limits, no timeouts, no `Request` or `Response`:
 * every `serve()` figure in the benchmarks is divided by this one.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 bench/floor.ts 4000
 * deno run --allow-net=unix:/tmp/floor.sock --allow-read=/tmp --allow-write=/tmp bench/floor.ts unix:/tmp/floor.sock
 * ```
 *
 * @module
 */

const ANSWER = new TextEncoder().encode(
  "Status: 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\nHello, world\n",
);

/** Bytes until the request (netstring and body) is complete, or -1 if unknown yet. */
function requestLength(bytes: Uint8Array, length: number): number {
  let size = 0;
  let i = 0;
  for (; i < length && bytes[i] !== 0x3a; i++) {
    size = size * 10 + bytes[i]! - 0x30;
  }
  if (i === length) return -1;
  const end = i + 1 + size + 1;
  if (length < end) return -1;
  // CONTENT_LENGTH comes first: "CONTENT_LENGTH\0<digits>\0".
  let body = 0;
  for (let j = i + 1 + 15; j < end && bytes[j] !== 0; j++) {
    body = body * 10 + bytes[j]! - 0x30;
  }
  return end + body;
}

async function handle(conn: Deno.Conn, buffer: Uint8Array): Promise<void> {
  try {
    let length = 0;
    while (true) {
      const n = await conn.read(buffer.subarray(length));
      if (n === null) return;
      length += n;
      const need = requestLength(buffer, length);
      if (need >= 0 && length >= need) break;
      if (length === buffer.length) return;
    }
    await conn.write(ANSWER);
  } catch {
    // The peer went away.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** Serves the floor on a TCP port or `unix:PATH` until the process ends. */
export async function serveFloor(where: string): Promise<void> {
  const listener = where.startsWith("unix:")
    ? Deno.listen({ transport: "unix", path: where.slice(5) })
    : Deno.listen({ hostname: "127.0.0.1", port: Number(where) });
  const pool: Uint8Array[] = [];
  for await (const conn of listener) {
    const buffer = pool.pop() ?? new Uint8Array(16384);
    handle(conn, buffer).finally(() => pool.push(buffer));
  }
}

if (import.meta.main) await serveFloor(Deno.args[0] ?? "4000");
