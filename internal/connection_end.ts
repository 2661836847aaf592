// How a connection ends once its request is read: draining what the front
// end still sends after our answer, and noticing a front end that hangs up
// before it. Private to the package.

import type { ConnectionSocket, Phase } from "./connection_types.ts";

/** What the end of a connection reads and changes of it. */
export interface Ending {
  readonly conn: ConnectionSocket;
  phase: Phase;
  deadline: number;
  readonly closed: boolean;
  readonly bodyRead: Promise<unknown> | undefined;
  readonly idleTimeout: number;
  abort(reason: unknown): void;
}

// What is read only to be thrown away (a body nobody wanted, the end of the
// input) goes here; many reads may share it.
const DISCARD = new Uint8Array(64 * 1024);

const HUNG_UP = new DOMException(
  "the front end closed the connection",
  "AbortError",
);

/**
 * After the answer: a front end still sending a body we never read would
 * get a reset instead of our answer if we closed now, so signal the end of
 * our output and read its remaining bytes away first.
 */
export async function drain(connection: Ending): Promise<void> {
  if (connection.closed) return;
  connection.phase = "draining";
  const conn = connection.conn;
  try {
    await conn.closeWrite();
    // The handler may still have a body read pending.
    await connection.bodyRead?.catch(() => {});
    while (true) {
      connection.deadline = Date.now() + connection.idleTimeout;
      if (await conn.read(DISCARD) === null) break;
    }
  } catch {
    // Gone or timed out: either way we are finished with it.
  }
}

/**
 * With the request read, the only thing left to read is the end: when it
 * comes (or the read fails) before the answer is written, the front end has
 * gone, and the request is aborted.
 */
export function watchHangUp(connection: Ending): void {
  const hungUp = () => {
    // Also while a body is written: a stream that has nothing to send
    // (server-sent events) would otherwise hold the connection until it
    // next writes.
    const phase = connection.phase;
    if (!connection.closed && (phase === "handler" || phase === "writing")) {
      connection.abort(HUNG_UP);
    }
  };
  connection.conn.read(DISCARD).then(
    (count) => count === null && hungUp(),
    hungUp,
  );
}
