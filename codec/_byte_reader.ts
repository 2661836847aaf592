// A reader over a byte stream that can look ahead and give bytes back, which
// framing needs: a netstring is found by searching, and the bytes after it
// belong to whoever reads next. Private to the codec.

import type { ByteSource } from "./byte_source.ts";

const EMPTY = new Uint8Array(0);

export class ByteReader {
  #reader: ByteSource;
  #buffer: Uint8Array = EMPTY;
  // Memory this reader allocated, with room after the buffered bytes.
  #storage: Uint8Array = EMPTY;

  constructor(reader: ByteSource) {
    this.#reader = reader;
  }

  /** The bytes read from the stream but not consumed yet. */
  get buffered(): Uint8Array {
    return this.#buffer;
  }

  /** Reads one more chunk onto the end of the buffer; `false` at end of stream. */
  async fill(): Promise<boolean> {
    const { done, value } = await this.#reader.read();
    if (done) return false;
    const buffer = this.#buffer;
    if (buffer.length === 0) {
      this.#buffer = value;
    } else if (value.length > 0) {
      // Appending in place to spare room, growing it by doubling, keeps a
      // head that trickles in byte by byte linear to read, not quadratic.
      const length = buffer.length + value.length;
      const storage = this.#storage;
      const start = buffer.byteOffset - storage.byteOffset;
      if (
        buffer.buffer === storage.buffer && start >= 0 &&
        start + length <= storage.length
      ) {
        storage.set(value, start + buffer.length);
        this.#buffer = storage.subarray(start, start + length);
      } else {
        this.#storage = new Uint8Array(Math.max(length * 2, 4096));
        this.#storage.set(buffer);
        this.#storage.set(value, buffer.length);
        this.#buffer = this.#storage.subarray(0, length);
      }
    }
    return true;
  }

  /** Drops the first `count` buffered bytes. */
  skip(count: number): void {
    this.#buffer = count >= this.#buffer.length
      ? EMPTY
      : this.#buffer.subarray(count);
  }

  /**
   * The next chunk: buffered bytes first (at most `max` of them, the rest stay
   * buffered), then straight from the stream. `undefined` at end of stream.
   */
  async next(max: number): Promise<Uint8Array | undefined> {
    let chunk = this.#buffer;
    if (chunk.length === 0) {
      const { done, value } = await this.#reader.read();
      if (done) return undefined;
      chunk = value;
    } else {
      this.#buffer = EMPTY;
    }
    if (chunk.length > max) {
      this.#buffer = chunk.subarray(max);
      chunk = chunk.subarray(0, max);
    }
    return chunk;
  }
}
