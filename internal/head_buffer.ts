// The buffer a connection reads its head into, and the head parsed in place
// there: the netstring's length, then its variables once the whole block
// and its comma are in. The bytes after the comma stay for the body.
// Private to the package.

import { decodeVariables, type HeaderVariables } from "../codec/_variables.ts";
import { ScgiProtocolError } from "../codec/errors.ts";
import { parseNetstringLength } from "../codec/request_head.ts";
import type { ConnectionLimits } from "./connection_types.ts";

// Reads of the head go into pooled buffers; a head that does not fit gets a
// buffer of its own. Body bytes are copied out, so the buffer is free again
// as soon as the request is built.
const BUFFER_BYTES = 16 * 1024;
const MAX_POOLED = 256;
const pool: Uint8Array<ArrayBuffer>[] = [];

/** A buffer being filled with a head: bytes `[0, end)` are read. */
export interface HeadBuffer {
  buffer: Uint8Array<ArrayBuffer>;
  /** Once the head is parsed: where the body's first byte is. */
  start: number;
  end: number;
  /** Whether the length prefix has been read (for the early-EOF message). */
  inBlock: boolean;
}

/** A buffer for a new connection's head, from the pool when it has one. */
export function takeBuffer(): Uint8Array<ArrayBuffer> {
  return pool.pop() ?? new Uint8Array(BUFFER_BYTES);
}

/** Gives a connection's buffer back to the pool, if it is a pooled size. */
export function giveBackBuffer(buffer: Uint8Array<ArrayBuffer>): void {
  if (buffer.length === BUFFER_BYTES && pool.length < MAX_POOLED) {
    pool.push(buffer);
  }
}

/**
 * The head, decoded, once `state` holds the whole netstring (and `start` set
 * to the byte after its comma); undefined while more is needed. Grows the
 * buffer when the block does not fit. Throws {@linkcode ScgiProtocolError}.
 */
export function parseHead(
  state: HeadBuffer,
  limits: ConnectionLimits,
): HeaderVariables | undefined {
  const filled = state.end;
  const prefix = parseNetstringLength(
    state.buffer,
    limits.maxHeaderBytes,
    filled,
  );
  if (prefix === undefined) return undefined;
  state.inBlock = true;
  const end = prefix.start + prefix.length;
  if (end + 1 > state.buffer.length) {
    const larger = new Uint8Array(end + 1);
    larger.set(state.buffer.subarray(0, filled));
    state.buffer = larger;
  }
  if (filled <= end) return undefined;
  const buffer = state.buffer;
  if (buffer[end] !== 0x2c) {
    throw new ScgiProtocolError(400, "netstring does not end with ','");
  }
  const decoded = decodeVariables(buffer.subarray(prefix.start, end), limits);
  state.start = end + 1;
  return decoded;
}

/** The error for a connection that ended before its head was whole. */
export function endedEarly(state: HeadBuffer): ScgiProtocolError {
  const received = state.end;
  return new ScgiProtocolError(
    400,
    received === 0 && !state.inBlock
      ? "connection closed before a request was sent"
      : `connection closed inside the header ${
        state.inBlock ? "block" : "length"
      } after ${received} bytes`,
  );
}
