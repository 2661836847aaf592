// One SCGI connection, from accept to close: read the head, build the
// Request, call the handler, write the answer, then drain or close. This is
// the server's hot path, so it is written for what every request pays:
//
// - one object holds the connection's whole state; no promise chain around
//   reads: the head is read straight into one pooled buffer, and a body that
//   came with it is handed to the Request as bytes, not as a stream;
// - what a handler may never touch (`request.signal`, `info.completed`, the
//   variable list) is made only when asked for;
// - a handler that answers at once is not raced against anything;
// - the head and a body that is there at once go out in one write;
// - timeouts are deadlines the server's sweep checks, not timers.
//
// Beside it: the head's buffer and its parsing (head_buffer.ts), a body that
// streams in (request_body.ts), `info.completed` (completion.ts), the drain
// and hang-up watch after the request (connection_end.ts) and the
// writing of the answer (respond.ts). Private to the package.

import { requestFromVariables } from "../codec/_cgi_to_request.ts";
import type { HeaderVariables } from "../codec/_variables.ts";
import { ScgiProtocolError } from "../codec/errors.ts";
import type { ScgiProtocol } from "../codec/gemini.ts";
import { completedPromise, type Outcome, settle } from "./completion.ts";
import type {
  ConnectionCounters,
  ConnectionLimits,
  ConnectionSocket,
  Phase,
} from "./connection_types.ts";
import { drain, watchHangUp } from "./connection_end.ts";
import { HandlerInfo, type InfoSource } from "./handler_info.ts";
import {
  endedEarly,
  giveBackBuffer,
  type HeadBuffer,
  parseHead,
  takeBuffer,
} from "./head_buffer.ts";
import { type BodySource, streamedBody } from "./request_body.ts";
import {
  answersInGemini,
  type AnswerSink,
  errorResponse,
  plainOutput,
  writeAnswer,
} from "./respond.ts";

export type {
  ConnectionCounters,
  ConnectionLimits,
  ConnectionSocket,
} from "./connection_types.ts";

/** What a connection needs from its server. */
export interface ConnectionHost {
  readonly limits: ConnectionLimits;
  readonly counters: ConnectionCounters;
  readonly protocol: ScgiProtocol | undefined;
  readonly abortOnHangUp: boolean;
  readonly handler: (
    request: Request,
    info: HandlerInfo,
  ) => Response | Promise<Response>;
  /** A handler failure (counted, and given to onError) as an answer. */
  failed(error: unknown): Promise<Response>;
  /** Called once the connection is closed and finished with. */
  released(connection: Connection): void;
}

// Made once: an AbortSignal's default reason captures a stack every time.
const CONNECTION_CLOSED = new DOMException("connection closed", "AbortError");
const NOT_ABORTED = Symbol("not aborted");

/** One accepted connection and the request on it. */
export class Connection
  implements AnswerSink, InfoSource, BodySource, HeadBuffer {
  readonly conn: ConnectionSocket;
  readonly #host: ConnectionHost;
  /** Neighbours in the server's list of open connections. */
  previous: Connection | undefined = undefined;
  next: Connection | undefined = undefined;
  /** Where the life cycle is; the sweep names its timeout after it. */
  phase: Phase = "head";
  /** Epoch ms by which the current wait must end. */
  deadline: number;
  /** Epoch ms by which the pending body read must end. */
  readDeadline = Infinity;
  timedOut = false;
  closed = false;
  chunks = 0;
  stopBody: ((reason: unknown) => void) | undefined = undefined;
  bodyRead: Promise<unknown> | undefined = undefined;

  /** The head's buffer, and where in it the unread body bytes are. */
  buffer: Uint8Array<ArrayBuffer>;
  start = 0;
  end = 0;
  #bodyDone = true;
  inBlock = false;
  #controller: AbortController | undefined;
  #abortReason: unknown = NOT_ABORTED;
  #wake: ((reason: unknown) => void) | undefined;
  completion: PromiseWithResolvers<void> | undefined = undefined;
  outcome: Outcome = undefined;

  constructor(conn: ConnectionSocket, host: ConnectionHost) {
    this.conn = conn;
    this.#host = host;
    this.deadline = Date.now() + host.limits.headerTimeout;
    this.buffer = takeBuffer();
  }

  /** Serves the connection to its end; never rejects. */
  run(): Promise<void> {
    return this.#serve();
  }

  // What every connection's end does, however it ended.
  #finish(): void {
    this.close();
    settle(this, CONNECTION_CLOSED);
    giveBackBuffer(this.buffer);
    this.#host.released(this);
  }

  // --- InfoSource: what the handler's info reads lazily.

  get connAddr(): Deno.Addr {
    return this.conn.remoteAddr;
  }

  get completed(): Promise<void> {
    return completedPromise(this);
  }

  // --- AnswerSink: the writer hands over chunks here.

  /** The read buffer, free once the body is no longer read from it. */
  get scratch(): Uint8Array<ArrayBuffer> | undefined {
    return this.#bodyDone ? this.buffer : undefined;
  }

  async write(chunk: Uint8Array<ArrayBuffer>): Promise<void> {
    this.chunks++;
    this.deadline = Date.now() + this.#host.limits.idleTimeout;
    try {
      // It may write less than asked.
      let written = await this.conn.write(chunk);
      while (written < chunk.length) {
        written += await this.conn.write(chunk.subarray(written));
      }
    } catch (error) {
      // The front end is gone: nothing more can go out.
      this.close();
      throw error;
    }
    this.deadline = Infinity;
  }

  // --- BodySource: what a streamed request body reads through.

  get idleTimeout(): number {
    return this.#host.limits.idleTimeout;
  }

  get requestOver(): boolean {
    return this.phase === "draining" || this.closed;
  }

  get closedReason(): unknown {
    return CONNECTION_CLOSED;
  }

  takeBuffered(max: number): Uint8Array<ArrayBuffer> | undefined {
    const start = this.start;
    if (start >= this.end) return undefined;
    const count = Math.min(max, this.end - start);
    this.start += count;
    return this.buffer.slice(start, start + count);
  }

  bodyFailed(error: ScgiProtocolError): void {
    this.#abortRequest(error, true);
    this.close();
  }

  bodyEnded(): void {
    this.#bodyDone = true;
    if (this.#host.abortOnHangUp) watchHangUp(this);
  }

  // --- The life cycle.

  // The whole life cycle in one async frame (each frame and its promise is
  // garbage every request pays for): never rejects.
  async #serve(): Promise<void> {
    try {
      const host = this.#host;
      let decoded: HeaderVariables | undefined;
      try {
        // Straight into the buffer until the netstring is whole; usually the
        // first read brings all of it.
        while ((decoded = parseHead(this, host.limits)) === undefined) {
          const end = this.end;
          const count = await this.conn.read(
            end === 0 ? this.buffer : this.buffer.subarray(end),
          );
          if (count === null) {
            throw endedEarly(this);
          }
          this.end += count;
        }
      } catch (error) {
        if (this.timedOut || this.closed) return;
        if (error instanceof ScgiProtocolError) {
          host.counters.protocolErrors++;
          await this.#answerAlone(
            errorResponse(error.status, error.message),
            "GET",
            answersInGemini(host.protocol),
          );
        }
        return;
      }
      const contentLength = decoded.contentLength;
      this.phase = "handler";
      this.deadline = Date.now() + host.limits.handlerTimeout;
      const method = decoded.REQUEST_METHOD || "GET";
      const gemini = answersInGemini(host.protocol, decoded);
      const body = this.#body(contentLength);
      let request: Request;
      try {
        request = requestFromVariables(decoded, decoded.http, {
          body,
          signal: this.#makeSignal,
          nonUtf8: decoded.nonUtf8,
        });
      } catch (error) {
        host.counters.protocolErrors++;
        await this.#answerAlone(
          errorResponse(400, (error as Error).message),
          method,
          gemini,
        );
        return;
      }
      const info = new HandlerInfo(this, decoded);
      let response: Response;
      try {
        const answer = this.#callHandler(request, info);
        response = answer instanceof Response ? answer : await answer;
      } catch (error) {
        // Timed out or the front end went away while the handler ran.
        settle(this, error);
        if (this.timedOut && this.phase === "handler" && !this.closed) {
          await this.#answerAlone(
            errorResponse(503, "the handler did not answer in time"),
            method,
            gemini,
          );
        }
        return;
      }
      if (this.closed) {
        response.body?.cancel().catch(() => {});
        return;
      }
      this.phase = "writing";
      try {
        // A plain answer is all there: one write, nothing that can fail first.
        const plain = plainOutput(response, method, gemini, this.scratch);
        if (plain) {
          // write()'s steps, inline: one async frame less per request.
          this.chunks++;
          this.deadline = Date.now() + host.limits.idleTimeout;
          let written: number;
          try {
            written = await this.conn.write(plain);
          } catch (error) {
            this.close();
            throw error;
          }
          if (written < plain.length) await this.write(plain.subarray(written));
          this.deadline = Infinity;
        } else await writeAnswer(this, response, method, gemini, host.failed);
      } catch (error) {
        this.abort(error);
        settle(this, error);
        return;
      }
      this.phase = "done";
      host.counters.completed++;
      settle(this, null);
      if (!this.#bodyDone) await drain(this);
    } catch (error) {
      // A bug, not the peer's doing: log it, never an unhandled rejection.
      console.error("scgi: connection failed:", error);
    } finally {
      this.#finish();
    }
  }

  // The request body: null, the bytes when they all came with the head, or
  // a stream that reads the rest as the handler asks for it.
  #body(
    length: number,
  ): Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array<ArrayBuffer>> | null {
    if (length === 0) {
      if (this.#host.abortOnHangUp) watchHangUp(this);
      return null;
    }
    if (this.end - this.start >= length) {
      const start = this.start;
      this.start += length;
      if (this.#host.abortOnHangUp) watchHangUp(this);
      return this.buffer.slice(start, start + length);
    }
    this.#bodyDone = false;
    return streamedBody(this, length);
  }

  // Calls the handler. An answer given at once is returned as it is; a
  // promised one is awaited, but an abort (timeout, the front end leaving,
  // shutdown's deadline) rejects the wait, so a handler that never returns
  // can't hold the connection.
  #callHandler(
    request: Request,
    info: HandlerInfo,
  ): Response | Promise<Response> {
    const host = this.#host;
    let result: Response | Promise<Response>;
    try {
      result = host.handler(request, info);
    } catch (error) {
      return host.failed(error);
    }
    if (result instanceof Response) return result;
    return new Promise<Response>((resolve, reject) => {
      if (this.#aborted()) reject(this.#reason());
      else this.#wake = reject;
      Promise.resolve(result).then(
        (response) =>
          response instanceof Response ? response : host.failed(
            new TypeError("the handler did not return a Response"),
          ),
        (error) => host.failed(error),
      ).then((response) => {
        if (this.#wake === reject) {
          this.#wake = undefined;
          resolve(response);
        } else {
          // Nobody will write the late response: release its body.
          response.body?.cancel().catch(() => {});
        }
      });
    });
  }

  // The request's signal, made when someone first reads `request.signal`.
  #makeSignal = (): AbortSignal => {
    const controller = this.#controller = new AbortController();
    if (this.#abortReason !== NOT_ABORTED) controller.abort(this.#abortReason);
    return controller.signal;
  };

  #aborted(): boolean {
    return this.#controller
      ? this.#controller.signal.aborted
      : this.#abortReason !== NOT_ABORTED;
  }

  #reason(): unknown {
    return this.#controller
      ? this.#controller.signal.reason
      : this.#abortReason;
  }

  // Aborts the request (its signal fires, a wait for the handler ends) unless
  // its answer is already out; `counted` says whether it was the front end's
  // doing (`stats.aborted`) rather than a handler timeout.
  #abortRequest(reason: unknown, counted: boolean): void {
    const phase = this.phase;
    if (phase === "head" || phase === "done" || phase === "draining") return;
    if (!this.#aborted()) {
      if (counted) this.#host.counters.aborted++;
      if (this.#controller) this.#controller.abort(reason);
      else this.#abortReason = reason;
    }
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.(reason);
  }

  /** Aborts the request and closes the connection. */
  abort(reason: unknown): void {
    this.#abortRequest(reason, true);
    this.close();
  }

  /** Closes the connection; a body wait of the writer ends. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopBody?.(CONNECTION_CLOSED);
    try {
      this.conn.close();
    } catch {
      // Already released or closed.
    }
  }

  /** Called by the sweep: acts on a deadline that has passed. */
  expire(now: number): void {
    if (now <= this.deadline && now <= this.readDeadline) return;
    this.timedOut = true;
    this.#host.counters.timeouts++;
    const phase = this.phase;
    const reason = new DOMException(
      `${phase === "head" ? "header" : phase} timeout`,
      "TimeoutError",
    );
    if (phase === "handler" && now > this.deadline) {
      // Abort the handler but keep the connection to answer 503.
      this.deadline = Infinity;
      this.#abortRequest(reason, false);
      return;
    }
    this.abort(reason);
  }

  // An answer the server gives on its own, then the end of the connection.
  async #answerAlone(
    response: Response,
    method: string,
    gemini: boolean,
  ): Promise<void> {
    this.phase = "writing";
    try {
      await writeAnswer(this, response, method, gemini, this.#host.failed);
    } catch {
      return;
    }
    this.phase = "done";
    await drain(this);
  }
}
