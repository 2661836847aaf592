// Reading a request body of unknown length whole, to learn the length SCGI
// must send first. Shared by the client and the gateway. Private to the
// package.

import { ScgiClientError } from "../codec/errors.ts";

/**
 * The stream's bytes in one array. Past `limit` bytes the stream is
 * cancelled and a `request_too_large` ScgiClientError thrown.
 */
export async function readWhole(
  stream: ReadableStream<Uint8Array>,
  limit: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    length += chunk.length;
    if (length > limit) {
      // Leaving the loop cancels the stream.
      throw new ScgiClientError(
        "request_too_large",
        `request body of unknown length is over ${limit} bytes; state its content-length to stream it`,
      );
    }
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}
