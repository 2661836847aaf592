// The plain shapes a connection shares with its server and with the test
// client: the limits it keeps, the counters it updates and the socket it runs
// on. Private to the package.

/** The limits and timeouts a connection keeps, all resolved to numbers. */
export interface ConnectionLimits {
  maxHeaderBytes: number;
  maxVariables: number;
  maxBodyBytes: number;
  headerTimeout: number;
  idleTimeout: number;
  handlerTimeout: number;
}

/** The counters a connection updates (the server's stats). */
export interface ConnectionCounters {
  completed: number;
  protocolErrors: number;
  timeouts: number;
  aborted: number;
}

/**
 * The socket a connection runs on: a `Deno.Conn`, or the test client's
 * in-memory one.
 */
export interface ConnectionSocket {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
  readonly remoteAddr: Deno.Addr;
}

/** Where a connection's life cycle is; the sweep names its timeout after it. */
export type Phase = "head" | "handler" | "writing" | "done" | "draining";
