/**
 * The smallest thing a decoder reads from: a `read()` like a stream reader's.
 * Passing one instead of a stream lets the caller watch every read (the
 * server and client time reads this way) without another stream in between.
 *
 * @example
 * ```ts
 * import type { ByteSource } from "./byte_source.ts";
 *
 * const reader = ReadableStream.from([new Uint8Array([1, 2])]).getReader();
 * let reads = 0;
 * const source: ByteSource = { read: () => (reads++, reader.read()) };
 * await source.read();
 * console.assert(reads === 1);
 * ```
 *
 * @module
 */

/** Something to read byte chunks from, one `read()` at a time. */
export interface ByteSource {
  /** Resolves with the next chunk, or `done` at the end. */
  read(): Promise<ReadableStreamReadResult<Uint8Array>>;
}
