// One scgiFetch call on the wire: connect, send the head and the body while
// the answer is already being read, read the answer's head, then hand the
// body over as it arrives. Private to the package; client.ts builds the
// request and calls `call()`.
//
// Written for what each call pays, as the server's connection.ts is: the
// socket is read and written directly (no web streams around it), one timer
// per call keeps the connect, head and idle deadlines (re-armed only when a
// deadline comes nearer), and a failure ends every wait by closing the
// socket, instead of racing each read against a timeout.

import type { ByteSource } from "../codec/byte_source.ts";
import { readCgiResponse } from "../codec/cgi_response.ts";
import { ScgiClientError } from "../codec/errors.ts";
import type { ScgiProtocol } from "../codec/gemini.ts";

/**
 * Connects a target instead of `Deno.connect`: the test client's in-memory
 * connection to the server it runs.
 */
export const CONNECT: unique symbol = Symbol("connect");

/** A socket the call runs on: a `Deno.Conn` or the test client's. */
export interface CallSocket {
  read(buffer: Uint8Array): Promise<number | null>;
  write(bytes: Uint8Array): Promise<number>;
  close(): void;
}

/** Where to connect. */
export type CallTarget =
  & ({ hostname?: string; port: number } | { path: string })
  & { [CONNECT]?: () => Promise<CallSocket> };

/** The limits and timeouts of a call, resolved to numbers. */
export interface CallSettings {
  connectTimeout: number;
  headTimeout: number;
  idleTimeout: number;
  maxHeadBytes: number;
  maxResponseBytes: number;
  protocol?: ScgiProtocol | undefined;
}

/** A request body, its length known before it is sent. */
export type OutgoingBody =
  | { kind: "bytes"; length: number; bytes: Uint8Array }
  | { kind: "stream"; length: number; stream: ReadableStream<Uint8Array> };

// Head and body go out in one write up to this size.
const COALESCE_BYTES = 65536;
// Reads go into pooled buffers; what came is copied out.
const READ_BYTES = 64 * 1024;
const MAX_POOLED = 64;
const pool: Uint8Array[] = [];

/** `host:port` or `unix:path`, for messages. */
export function describeTarget(target: CallTarget): string {
  if (target[CONNECT]) return "the test client's server";
  return "path" in target
    ? `unix:${target.path}`
    : `${target.hostname ?? "127.0.0.1"}:${target.port}`;
}

/**
 * Sends `head` and `body` to `target` and resolves with the answer, whose
 * body streams from the socket; the socket closes when the body ends, fails
 * or is cancelled, or when the call fails. Every failure is an
 * ScgiClientError, except an abort of `request.signal`, which rejects with
 * its reason (as fetch does).
 */
export async function call(
  target: CallTarget,
  request: Request,
  head: Uint8Array,
  body: OutgoingBody,
  settings: CallSettings,
): Promise<Response> {
  const state = new Call(target, request.signal, settings);
  const conn = await state.connect();
  const responding = readCgiResponse(state, {
    maxHeadBytes: settings.maxHeadBytes,
    maxBodyBytes: settings.maxResponseBytes,
    method: request.method,
    ...(settings.protocol ? { protocol: settings.protocol } : {}),
    onDone: () => state.close(),
  });
  responding.catch(() => {});
  writeRequest(conn, head, body).catch((error) => {
    // A wrong body length is the caller's error; a failed write just means
    // the backend stopped reading, and the answer (or its absence) says
    // what happened.
    if (error instanceof ScgiClientError) state.fail(error);
  });
  let response: Response;
  try {
    response = await responding;
  } catch (error) {
    state.fail(error);
    throw state.failure(error);
  }
  state.headRead();
  Object.defineProperty(response, "url", { value: request.url });
  return response;
}

type Phase = "connect" | "head" | "body";

class Call implements ByteSource {
  readonly #target: CallTarget;
  readonly #signal: AbortSignal;
  readonly #settings: CallSettings;
  #conn: CallSocket | undefined;
  #phase: Phase = "connect";
  #failed: { error: unknown } | undefined;
  #closed = false;
  // Stops a connect in progress (a TCP connect can be cancelled).
  #cancelConnect: AbortController | undefined;
  #connectFailed: ((error: unknown) => void) | undefined;
  // One timer for every deadline: it fires at #timerAt and, if the deadline
  // moved later meanwhile, waits again.
  #deadline = Infinity;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;

  constructor(target: CallTarget, signal: AbortSignal, settings: CallSettings) {
    this.#target = target;
    this.#signal = signal;
    this.#settings = settings;
  }

  async connect(): Promise<CallSocket> {
    const signal = this.#signal;
    signal.throwIfAborted();
    signal.addEventListener("abort", this.#onAbort, { once: true });
    this.#arm(this.#settings.connectTimeout);
    const target = this.#target;
    let connecting: Promise<CallSocket>;
    const custom = target[CONNECT];
    if (custom) {
      connecting = custom();
    } else if ("path" in target) {
      connecting = Deno.connect({ transport: "unix", path: target.path });
    } else {
      // Giving up on a TCP connect cancels it: one left to finish on its own
      // (a SYN retried for seconds) would hold a socket after the call failed.
      this.#cancelConnect = new AbortController();
      connecting = Deno.connect({
        hostname: target.hostname ?? "127.0.0.1",
        port: target.port,
        signal: this.#cancelConnect.signal,
      });
    }
    const stopped = new Promise<never>((_, reject) => {
      this.#connectFailed = reject;
    });
    try {
      this.#conn = await Promise.race([connecting, stopped]);
    } catch (error) {
      connecting.then((conn) => conn.close(), () => {});
      this.fail(error);
      throw this.failure(error);
    } finally {
      this.#connectFailed = undefined;
      this.#cancelConnect = undefined;
    }
    if (this.#failed) {
      this.close();
      throw this.#failed.error;
    }
    this.#phase = "head";
    this.#arm(this.#settings.headTimeout);
    return this.#conn;
  }

  /** The head is in: from now on only a read in progress has a deadline. */
  headRead(): void {
    this.#phase = "body";
    this.#deadline = Infinity;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  async read(): Promise<ReadableStreamReadResult<Uint8Array>> {
    if (this.#failed) throw this.#failed.error;
    const idle = this.#phase === "body" && Number.isFinite(
      this.#settings.idleTimeout,
    );
    if (idle) this.#arm(this.#settings.idleTimeout);
    const buffer = pool.pop() ?? new Uint8Array(READ_BYTES);
    let count: number | null;
    try {
      count = await this.#conn!.read(buffer);
    } catch (error) {
      this.fail(error);
      throw this.failure(error);
    } finally {
      if (idle) this.#deadline = Infinity;
      if (pool.length < MAX_POOLED) pool.push(buffer);
    }
    return count === null
      ? { done: true as const }
      : { done: false, value: buffer.slice(0, count) };
  }

  /** Ends the call with `error` (the first failure wins): every wait ends. */
  fail(error: unknown): void {
    if (this.#failed) return;
    this.#failed = { error: this.failure(error) };
    this.#cancelConnect?.abort(this.#failed.error);
    this.#connectFailed?.(this.#failed.error);
    this.close();
  }

  /** The error the caller sees for `error`: the first failure, mapped. */
  failure(error: unknown): unknown {
    if (this.#failed) return this.#failed.error;
    if (error instanceof ScgiClientError || error === this.#signal.reason) {
      return error;
    }
    const where = describeTarget(this.#target);
    if (this.#phase === "connect") {
      if (error instanceof Deno.errors.ConnectionRefused) {
        return new ScgiClientError(
          "connection_refused",
          `connection refused by ${where}`,
          { cause: error },
        );
      }
      if (error instanceof Deno.errors.NotFound && "path" in this.#target) {
        return new ScgiClientError(
          "connection_refused",
          `no socket at ${this.#target.path}`,
          { cause: error },
        );
      }
      return new ScgiClientError(
        "connection_failed",
        `cannot connect to ${where}: ${(error as Error)?.message ?? error}`,
        { cause: error },
      );
    }
    return new ScgiClientError(
      "connection_failed",
      `connection to ${where} failed: ${(error as Error)?.message ?? error}`,
      { cause: error },
    );
  }

  /** Closes the socket (once) and stops the timer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#signal.removeEventListener("abort", this.#onAbort);
    try {
      this.#conn?.close();
    } catch {
      // Already released by reading to the end.
    }
  }

  #onAbort = (): void => this.fail(this.#signal.reason);

  #arm(timeout: number): void {
    if (!Number.isFinite(timeout) || this.#closed) {
      this.#deadline = Infinity;
      return;
    }
    const deadline = Date.now() + timeout;
    this.#deadline = deadline;
    if (deadline < this.#timerAt) {
      clearTimeout(this.#timer);
      this.#timerAt = deadline;
      this.#timer = setTimeout(this.#fire, timeout);
      // The wait it guards keeps the process alive, not the timer.
      Deno.unrefTimer(this.#timer);
    }
  }

  #fire = (): void => {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const deadline = this.#deadline;
    if (!Number.isFinite(deadline) || this.#closed) return;
    const left = deadline - Date.now();
    if (left > 0) {
      this.#timerAt = deadline;
      this.#timer = setTimeout(this.#fire, left);
      Deno.unrefTimer(this.#timer);
      return;
    }
    this.fail(this.#timeoutError());
  };

  #timeoutError(): ScgiClientError {
    const where = describeTarget(this.#target);
    const { connectTimeout, headTimeout, idleTimeout } = this.#settings;
    switch (this.#phase) {
      case "connect":
        return new ScgiClientError(
          "connect_timeout",
          `no connection to ${where} within ${connectTimeout} ms`,
        );
      case "head":
        return new ScgiClientError(
          "head_timeout",
          `${where} sent no response head within ${headTimeout} ms`,
        );
      default:
        return new ScgiClientError(
          "idle_timeout",
          `${where} sent nothing for ${idleTimeout} ms`,
        );
    }
  }
}

async function writeAll(conn: CallSocket, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await conn.write(
      written === 0 ? bytes : bytes.subarray(written),
    );
  }
}

async function writeRequest(
  conn: CallSocket,
  head: Uint8Array,
  body: OutgoingBody,
): Promise<void> {
  if (body.kind === "bytes") {
    if (body.length > 0 && body.length <= COALESCE_BYTES) {
      const out = new Uint8Array(head.length + body.length);
      out.set(head);
      out.set(body.bytes, head.length);
      await writeAll(conn, out);
    } else {
      await writeAll(conn, head);
      if (body.length > 0) await writeAll(conn, body.bytes);
    }
    return;
  }
  await writeAll(conn, head);
  let sent = 0;
  for await (const chunk of body.stream) {
    sent += chunk.length;
    if (sent > body.length) {
      throw new ScgiClientError(
        "request_body_mismatch",
        `request body is longer than its content-length of ${body.length}`,
      );
    }
    await writeAll(conn, chunk);
  }
  if (sent < body.length) {
    throw new ScgiClientError(
      "request_body_mismatch",
      `request body ended after ${sent} of its content-length of ${body.length} bytes`,
    );
  }
}
