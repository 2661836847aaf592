// A request body that did not all come with the head, as the stream the
// Request reads: first what the head's read brought beyond the netstring,
// then reads of the socket, one per pull, each under the idle deadline the
// server's sweep checks. Private to the package.

import { ScgiProtocolError } from "../codec/errors.ts";
import type { ConnectionSocket } from "./connection_types.ts";

// A streamed body is read in pieces of up to this many bytes.
const BODY_READ_BYTES = 64 * 1024;

/** What a streamed body needs from its connection. */
export interface BodySource {
  readonly conn: ConnectionSocket;
  /** Epoch ms by which the pending body read must end (the sweep's). */
  readDeadline: number;
  /** The body read under way, which draining waits for. */
  bodyRead: Promise<unknown> | undefined;
  /** How long one read may wait, in ms. */
  readonly idleTimeout: number;
  /** Whether the request is over (answered and draining, or closed). */
  readonly requestOver: boolean;
  /** The reason a read after the request's end fails with. */
  readonly closedReason: unknown;
  /** Up to `max` body bytes that came with the head, copied out. */
  takeBuffered(max: number): Uint8Array<ArrayBuffer> | undefined;
  /** The body cannot be read to its end: abort the request and close. */
  bodyFailed(error: ScgiProtocolError): void;
  /** The body was read to its end. */
  bodyEnded(): void;
}

/** The `length` bytes of body still to come from `source`, as a stream. */
export function streamedBody(
  source: BodySource,
  length: number,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let remaining = length;
  const fail = (error: ScgiProtocolError): never => {
    source.bodyFailed(error);
    throw error;
  };
  const received = () => `${length - remaining} of ${length} bytes`;
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    pull: async (controller) => {
      let chunk = source.takeBuffered(remaining);
      if (chunk === undefined) {
        if (source.requestOver) {
          fail(
            new ScgiProtocolError(400, "the request is over", {
              cause: source.closedReason,
            }),
          );
        }
        const piece = new Uint8Array(Math.min(remaining, BODY_READ_BYTES));
        let count: number | null = null;
        source.readDeadline = Date.now() + source.idleTimeout;
        const reading = source.conn.read(piece);
        source.bodyRead = reading;
        try {
          count = await reading;
        } catch (cause) {
          fail(
            new ScgiProtocolError(
              400,
              `request body failed after ${received()}`,
              { cause },
            ),
          );
        } finally {
          source.readDeadline = Infinity;
          source.bodyRead = undefined;
        }
        if (count === null) {
          fail(
            new ScgiProtocolError(
              400,
              `request body ended after ${received()}`,
            ),
          );
          return;
        }
        chunk = count === piece.length ? piece : piece.slice(0, count);
      }
      remaining -= chunk.length;
      controller.enqueue(chunk);
      if (remaining === 0) {
        controller.close();
        source.bodyEnded();
      }
    },
  }, { highWaterMark: 0 });
}
