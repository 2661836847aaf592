/**
 * A test client: runs a handler through the whole SCGI codec, as `scgiFetch`
 * and `serve()` would, without opening a socket. The request is turned into
 * the variables `scgiFetch` sends, encoded by the real header encoder,
 * decoded by `readRequestHead`, turned into a `Request` by `requestFromCgi`;
 * the handler gets the info `serve()` builds; its answer is encoded by the
 * server's own output path (CGI, or raw Gemini for a Gemini request) and read
 * back by `readCgiResponse`, the reader `scgiFetch` uses. So a unit test sees
 * what a front end would see, headers and status text included, and the
 * handler sees what it would see under `serve()`.
 *
 * Between the two ends sits a model of the connection that behaves as
 * `serve()`'s does (the project's parity tests run one set of cases against
 * both):
 *
 * - The answer is written into a connection that holds up to 64 KiB the
 *   client has not read yet, as a socket does: a small answer is written,
 *   and `info.completed` fulfilled, before the test reads it; a longer one
 *   waits for the test to read (backpressure).
 * - The client goes away when the test cancels the response body, aborts
 *   `init.signal`, or has read the body to its end. The server learns of it
 *   as `serve()` does: when a write fails. The handler's body is then
 *   cancelled (`AbortError` "connection closed"), `request.signal` aborts
 *   and `info.completed` rejects, both with the write's error (a
 *   `Deno.errors.BrokenPipe`). With `abortOnHangUp`, a client that leaves
 *   while the handler is still working aborts `request.signal` at once
 *   (`AbortError` "the front end closed the connection") and the answer is
 *   not waited for, as behind nginx.
 * - The client's side is `scgiFetch`'s: an aborted `init.signal` rejects the
 *   call at once with its reason, before the head or while the handler is
 *   still working, and errors a body being read; a signal aborted before the
 *   call rejects without calling the handler.
 * - A response body that fails after part of it went out can't be answered
 *   (its head is out), so the connection just ends, as `serve()` ends it:
 *   without a `content-length` the test reads a shorter body that ends
 *   cleanly, as a client behind nginx does; with one, the body errors with
 *   `ScgiClientError` `truncated_response` (nginx cuts its client off). The
 *   failure itself goes where `serve()` sends it: `onError` (by default
 *   logged), `info.completed` and `request.signal`.
 * - Without `remoteAddr`, no `REMOTE_ADDR` is sent (as by `scgiFetch`), so
 *   `info.remoteAddr` is the connection's address, `127.0.0.1` with a port.
 *
 * @example Unit-testing an app
 * ```ts
 * import { testClient } from "./testing.ts";
 *
 * const client = testClient((request, info) =>
 *   Response.json({ path: new URL(request.url).pathname, from: info.remoteAddr })
 * );
 * const response = await client.fetch("/users/7");
 * console.assert(response.status === 200);
 * console.assert((await response.json()).path === "/users/7");
 * ```
 *
 * @example A Gemini app, called the way Xitzin calls it
 * ```ts
 * import { testClient } from "./testing.ts";
 * import { gemini, readGeminiStatus } from "./codec/gemini.ts";
 *
 * const client = testClient(() => gemini.notFound());
 * const response = await client.fetch("gemini://example.com/missing");
 * console.assert(readGeminiStatus(response)?.status === 51);
 * ```
 *
 * @example A client that leaves while the handler works (`abortOnHangUp`)
 * ```ts
 * import { testClient } from "./testing.ts";
 *
 * const started = Promise.withResolvers<void>();
 * const left = Promise.withResolvers<unknown>();
 * const client = testClient(async (request) => {
 *   started.resolve();
 *   await new Promise((resolve) =>
 *     request.signal.addEventListener("abort", resolve)
 *   );
 *   left.resolve(request.signal.reason);
 *   return new Response("too late");
 * }, { abortOnHangUp: true });
 * const controller = new AbortController();
 * const call = client.fetch("/slow", { signal: controller.signal });
 * await started.promise;
 * controller.abort();
 * await call.catch((error) => console.assert(error.name === "AbortError"));
 * const reason = await left.promise as DOMException;
 * console.assert(reason.message === "the front end closed the connection");
 * ```
 *
 * @module
 */

import { HandlerInfo, type InfoSource } from "./internal/handler_info.ts";
import {
  answerFailure,
  answersInGemini,
  type AnswerSink,
  errorResponse,
  writeAnswer,
} from "./internal/respond.ts";
import { cgiFromRequest, requestFromCgi } from "./codec/cgi_request.ts";
import { readCgiResponse } from "./codec/cgi_response.ts";
import { ScgiProtocolError } from "./codec/errors.ts";
import { cgiFromGeminiRequest } from "./codec/gemini.ts";
import { encodeRequestHead } from "./codec/header_encoder.ts";
import { readRequestHead, type RequestHead } from "./codec/request_head.ts";
import type { ScgiHandler, ServeOptions } from "./server.ts";

export type { ScgiHandler, ScgiHandlerInfo, ServeOptions } from "./server.ts";
export type { CgiEnv, CgiVariableList } from "./codec/request_head.ts";
export type { ScgiProtocol } from "./codec/gemini.ts";

/** What a front end adds to a request: extra variables, mount, client. */
export interface TestRequestOptions {
  /**
   * Extra CGI variables, as `scgiFetch`'s `env`: they replace standard ones
   * of the same name, the rest follow (`GEMINI_URL`, `TLS_CLIENT_HASH`,
   * `XITZIN_*`, `REMOTE_USER`, `HTTPS`). A call's `env` adds to the
   * client's, the call's value winning.
   */
  env?: Readonly<Record<string, string>>;
  /** `SCRIPT_NAME`: the mount point. @default {""} */
  scriptName?: string;
  /**
   * The client reported as `REMOTE_ADDR` (and `REMOTE_PORT`), as nginx
   * reports it. Without it none is sent, as by `scgiFetch`, and
   * `info.remoteAddr` is the connection's address (`127.0.0.1` and a port).
   */
  remoteAddr?: { hostname: string; port?: number };
}

/** Options of {@linkcode testClient}: the front end's and the server's. */
export interface TestClientOptions extends
  TestRequestOptions,
  Pick<
    ServeOptions,
    | "onError"
    | "protocol"
    | "maxHeaderBytes"
    | "maxVariables"
    | "maxBodyBytes"
    | "abortOnHangUp"
  > {
  /** Base for relative inputs such as `"/path"`. @default {"http://localhost/"} */
  baseUrl?: string | URL;
}

/** `RequestInit` plus a front end's per-request additions. */
export interface TestRequestInit extends RequestInit, TestRequestOptions {
  /**
   * For a `gemini:` URL: the client certificate the Gemini server saw, as
   * in `scgiFetch` (`TLS_CLIENT_HASH`, `TLS_CLIENT_AUTHORISED=1`,
   * `AUTH_TYPE=CERTIFICATE`).
   */
  clientCertificate?: { hash: string };
}

/** A client that calls one handler in-process. */
export interface TestClient {
  /**
   * Sends a request through the codec to the handler and returns the
   * response as `scgiFetch` reads it. Relative inputs are taken against
   * `baseUrl`; a `gemini:` URL is sent as a Gemini server sends it (the
   * variables of `scgiFetch` for such a URL).
   */
  fetch(
    input: Request | URL | string,
    init?: TestRequestInit,
  ): Promise<Response>;
}

/**
 * Creates a test client for a handler (or an app object with a `fetch`
 * method, such as a Hono app).
 *
 * Failures are answered as `serve()` answers them: a handler that throws
 * goes to `onError` (by default logged, then a 500), a request the codec
 * refuses gets its 400/411/413/431. The request body is buffered (its length
 * must be known before the head, as on the wire); the response body streams
 * from the handler as it is read. The client leaving, an aborted signal and
 * a body that fails midway behave as under `serve()` and `scgiFetch` (see
 * the module documentation).
 *
 * @param app The handler, or an object with a `fetch` method.
 * @param options Extra variables, limits, `protocol`, `onError` and
 * `abortOnHangUp` as in `serve()`.
 * @returns The client.
 *
 * @example
 * ```ts
 * import { testClient } from "./testing.ts";
 *
 * const client = testClient(async (request) =>
 *   new Response(`got ${(await request.text()).length} bytes`)
 * );
 * const response = await client.fetch("/upload", { method: "POST", body: "hello" });
 * console.assert(await response.text() === "got 5 bytes");
 * ```
 */
export function testClient(
  app: ScgiHandler | { fetch: ScgiHandler },
  options: TestClientOptions = {},
): TestClient {
  const handler: ScgiHandler = typeof app === "function"
    ? app
    : app.fetch.bind(app);
  if (typeof handler !== "function") {
    throw new TypeError("testClient() needs a handler");
  }
  const base = String(options.baseUrl ?? "http://localhost/");
  return {
    fetch: (input, init = {}) => exchange(handler, options, base, input, init),
  };
}

// The client's side, as scgiFetch does it: variables, body, then the answer
// read from the connection while an abort of the signal ends every wait.
async function exchange(
  handler: ScgiHandler,
  options: TestClientOptions,
  base: string,
  input: Request | URL | string,
  init: TestRequestInit,
): Promise<Response> {
  const outgoing = input instanceof Request
    ? new Request(input, init)
    : new Request(new URL(input, base), init);
  const signal = outgoing.signal;
  signal.throwIfAborted();
  const url = new URL(outgoing.url);
  const scriptName = init.scriptName ?? options.scriptName;
  const remoteAddr = init.remoteAddr ?? options.remoteAddr;
  const described = {
    ...(scriptName !== undefined ? { scriptName } : {}),
    ...(remoteAddr ? { remoteAddr } : {}),
  };
  let standard: [string, string][];
  if (url.protocol === "gemini:") {
    if (outgoing.body !== null) {
      throw new TypeError(`${url.href}: a Gemini request has no body`);
    }
    standard = cgiFromGeminiRequest(outgoing, {
      ...described,
      ...(init.clientCertificate
        ? { clientCertificate: init.clientCertificate }
        : {}),
    });
  } else {
    standard = cgiFromRequest(outgoing, described);
  }
  const variables = mergeEnv(standard, { ...options.env, ...init.env });
  const body = new Uint8Array(await outgoing.arrayBuffer());
  signal.throwIfAborted();
  const wire = ReadableStream.from([
    encodeRequestHead(variables, body.length),
    body,
  ]);

  const connection = new TestConnection(handler, options);
  const output = connection.output.getReader();
  let failure: { error: unknown } | undefined;
  let closed = false;
  const waiting = new Set<(error: unknown) => void>();
  // Closing the client's end: what it has not read is lost.
  const close = () => {
    if (closed) return;
    closed = true;
    signal.removeEventListener("abort", onAbort);
    output.cancel().catch(() => {});
    connection.clientClosed();
  };
  const orFail = <T>(promise: Promise<T>): Promise<T> => {
    if (failure) {
      promise.catch(() => {});
      return Promise.reject(failure.error);
    }
    return new Promise<T>((resolve, reject) => {
      waiting.add(reject);
      promise.then(resolve, reject).finally(() => waiting.delete(reject));
    });
  };
  const onAbort = () => {
    failure ??= { error: signal.reason };
    for (const reject of waiting) reject(failure.error);
    waiting.clear();
    close();
  };
  signal.addEventListener("abort", onAbort, { once: true });
  connection.run(wire);
  const responding = readCgiResponse({ read: () => orFail(output.read()) }, {
    method: outgoing.method,
    onDone: close,
  });
  try {
    const answer = await orFail(responding);
    Object.defineProperty(answer, "url", { value: outgoing.url });
    return answer;
  } catch (error) {
    responding.catch(() => {});
    close();
    throw error;
  }
}

// As the server's connection: made once, an AbortSignal's default reason
// captures a stack every time.
const CONNECTION_CLOSED = new DOMException("connection closed", "AbortError");
const HUNG_UP = new DOMException(
  "the front end closed the connection",
  "AbortError",
);
const NOT_ABORTED = Symbol("not aborted");
// What the connection holds unread before a write waits for the client: less
// than a loopback socket's buffers take at first.
const BUFFERED_BYTES = 64 * 1024;
// The port the front end's connection comes from: an ephemeral one, a new
// one for each request, as a real front end's connections have.
const FIRST_PORT = 49152;
let nextPort = FIRST_PORT;

// The write error of a server whose client has gone.
function brokenPipe(): Error {
  return Object.assign(
    new Deno.errors.BrokenPipe("Broken pipe (os error 32)"),
    {
      code: "EPIPE",
    },
  );
}

type Phase = "head" | "handler" | "writing" | "done";

// The server's side of one request, the life cycle of serve()'s connection
// (internal/connection.ts) over an in-memory connection: read the head, build
// the Request, call the handler, write the answer through the server's own
// output path, then close. Where the server learns something from its
// socket (a failed write, an end of input), this learns it from the client's
// side (`clientClosed`).
class TestConnection implements AnswerSink, InfoSource {
  /** What the client reads: the answer's bytes as written. */
  readonly output: ReadableStream<Uint8Array>;
  readonly connAddr: Deno.NetAddr;
  phase: Phase = "head";
  closed = false;
  chunks = 0;
  stopBody: ((reason: unknown) => void) | undefined = undefined;

  readonly #handler: ScgiHandler;
  readonly #options: TestClientOptions;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #room: PromiseWithResolvers<void> | undefined;
  #clientGone = false;
  #watchingHangUp = false;
  #signal: AbortController | undefined;
  #abortReason: unknown = NOT_ABORTED;
  #wake: ((reason: unknown) => void) | undefined;
  #completed: PromiseWithResolvers<void> | undefined;
  #outcome: { error: unknown } | null | undefined;

  constructor(handler: ScgiHandler, options: TestClientOptions) {
    this.#handler = handler;
    this.#options = options;
    const port = nextPort;
    nextPort = port === 65535 ? FIRST_PORT : port + 1;
    this.connAddr = { transport: "tcp", hostname: "127.0.0.1", port };
    this.output = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      // The client read enough: a waiting write goes on.
      pull: () => {
        const room = this.#room;
        this.#room = undefined;
        room?.resolve();
      },
    }, new ByteLengthQueuingStrategy({ highWaterMark: BUFFERED_BYTES }));
  }

  /** Serves the request to its end; never rejects. */
  async run(wire: ReadableStream<Uint8Array>): Promise<void> {
    try {
      await this.#serve(wire);
    } catch (error) {
      console.error("scgi: connection failed:", error);
    } finally {
      this.close();
      this.#settle(CONNECTION_CLOSED);
    }
  }

  // --- InfoSource

  get completed(): Promise<void> {
    if (this.#completed === undefined) {
      const completed = Promise.withResolvers<void>();
      completed.promise.catch(() => {});
      this.#completed = completed;
      const outcome = this.#outcome;
      if (outcome === null) completed.resolve();
      else if (outcome !== undefined) completed.reject(outcome.error);
    }
    return this.#completed.promise;
  }

  // --- AnswerSink

  write(chunk: Uint8Array<ArrayBuffer>): Promise<void> | void {
    this.chunks++;
    if (chunk.length <= BUFFERED_BYTES) return this.#put(chunk);
    return this.#putInPieces(chunk);
  }

  // A write larger than the connection holds goes in as room appears, as a
  // socket takes part of a write at a time.
  async #putInPieces(chunk: Uint8Array<ArrayBuffer>): Promise<void> {
    for (let at = 0; at < chunk.length; at += BUFFERED_BYTES) {
      await this.#put(chunk.subarray(at, at + BUFFERED_BYTES));
    }
  }

  #put(piece: Uint8Array<ArrayBuffer>): Promise<void> | void {
    if (this.#clientGone || this.closed) {
      const error = brokenPipe();
      this.close();
      return Promise.reject(error);
    }
    this.#controller.enqueue(piece);
    if ((this.#controller.desiredSize ?? 0) > 0) return;
    this.#room = Promise.withResolvers<void>();
    return this.#room.promise;
  }

  // --- What the client's side tells it.

  /** The client closed its end: writes fail from now on. */
  clientClosed(): void {
    if (this.#clientGone) return;
    this.#clientGone = true;
    const room = this.#room;
    if (room) {
      this.#room = undefined;
      const error = brokenPipe();
      this.close();
      room.reject(error);
    }
    if (this.#watchingHangUp) this.#hungUp();
  }

  // --- The life cycle, as serve()'s.

  async #serve(wire: ReadableStream<Uint8Array>): Promise<void> {
    const options = this.#options;
    let head: RequestHead;
    try {
      head = await readRequestHead(wire, options);
    } catch (error) {
      if (!(error instanceof ScgiProtocolError)) throw error;
      await this.#answerAlone(
        errorResponse(error.status, error.message),
        "GET",
        answersInGemini(options.protocol),
      );
      return;
    }
    const { env } = head;
    this.phase = "handler";
    const method = env.REQUEST_METHOD || "GET";
    const gemini = answersInGemini(options.protocol, env);
    // The body came whole with the head: what is left to read is the end.
    if (options.abortOnHangUp) {
      this.#watchingHangUp = true;
      if (this.#clientGone) this.#hungUp();
    }
    let request: Request;
    try {
      request = requestFromCgi(env, {
        body: head.body,
        signal: this.#makeSignal,
        nonUtf8: head.nonUtf8,
      });
    } catch (error) {
      await this.#answerAlone(
        errorResponse(400, (error as Error).message),
        method,
        gemini,
      );
      return;
    }
    const info = new HandlerInfo(this, head);
    let response: Response;
    try {
      const answer = this.#callHandler(request, info);
      response = answer instanceof Response ? answer : await answer;
    } catch (error) {
      // The client went away while the handler ran (abortOnHangUp).
      this.#settle(error);
      return;
    }
    if (this.closed) {
      response.body?.cancel().catch(() => {});
      return;
    }
    this.phase = "writing";
    try {
      await writeAnswer(this, response, method, gemini, this.#failed);
    } catch (error) {
      this.#abort(error);
      this.#settle(error);
      return;
    }
    this.phase = "done";
    this.#settle(null);
  }

  #failed = (error: unknown): Promise<Response> =>
    answerFailure(this.#options.onError, error);

  // An answer given at once is returned as it is; a promised one is awaited
  // unless the request is aborted first, and then released when it comes.
  #callHandler(
    request: Request,
    info: HandlerInfo,
  ): Response | Promise<Response> {
    let result: Response | Promise<Response>;
    try {
      result = this.#handler(request, info);
    } catch (error) {
      return this.#failed(error);
    }
    if (result instanceof Response) return result;
    return new Promise<Response>((resolve, reject) => {
      if (this.#aborted()) reject(this.#reason());
      else this.#wake = reject;
      Promise.resolve(result).then(
        (response) =>
          response instanceof Response ? response : this.#failed(
            new TypeError("the handler did not return a Response"),
          ),
        (error) => this.#failed(error),
      ).then((response) => {
        if (this.#wake === reject) {
          this.#wake = undefined;
          resolve(response);
        } else {
          response.body?.cancel().catch(() => {});
        }
      });
    });
  }

  #makeSignal = (): AbortSignal => {
    const controller = this.#signal = new AbortController();
    if (this.#abortReason !== NOT_ABORTED) controller.abort(this.#abortReason);
    return controller.signal;
  };

  #aborted(): boolean {
    return this.#signal
      ? this.#signal.signal.aborted
      : this.#abortReason !== NOT_ABORTED;
  }

  #reason(): unknown {
    return this.#signal ? this.#signal.signal.reason : this.#abortReason;
  }

  // Aborts the request (its signal, a wait for the handler) unless its answer
  // is already out.
  #abortRequest(reason: unknown): void {
    if (this.phase === "head" || this.phase === "done") return;
    if (!this.#aborted()) {
      if (this.#signal) this.#signal.abort(reason);
      else this.#abortReason = reason;
    }
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.(reason);
  }

  #abort(reason: unknown): void {
    this.#abortRequest(reason);
    this.close();
  }

  // The end of input after the request, seen once the read of it returns:
  // the client left, if the handler is still working.
  #hungUp(): void {
    queueMicrotask(() => {
      const phase = this.phase;
      if (!this.closed && (phase === "handler" || phase === "writing")) {
        this.#abort(HUNG_UP);
      }
    });
  }

  /** Closes the server's end: the body being written stops. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopBody?.(CONNECTION_CLOSED);
    if (!this.#clientGone) {
      try {
        this.#controller.close();
      } catch {
        // Already closed.
      }
    }
  }

  #settle(failure: unknown): void {
    if (this.#outcome !== undefined) return;
    const outcome = failure === null ? null : { error: failure };
    this.#outcome = outcome;
    const completed = this.#completed;
    if (completed === undefined) return;
    if (outcome === null) completed.resolve();
    else completed.reject(outcome.error);
  }

  async #answerAlone(
    response: Response,
    method: string,
    gemini: boolean,
  ): Promise<void> {
    this.phase = "writing";
    try {
      await writeAnswer(this, response, method, gemini, this.#failed);
    } catch {
      return;
    }
    this.phase = "done";
  }
}

// As scgiFetch does it: an extra of a standard name replaces it in place.
function mergeEnv(
  env: [string, string][],
  extra: Readonly<Record<string, string>>,
): [string, string][] {
  const merged = env.map(([name, value]): [string, string] =>
    Object.hasOwn(extra, name) ? [name, extra[name]!] : [name, value]
  );
  const standard = new Set(env.map(([name]) => name));
  for (const [name, value] of Object.entries(extra)) {
    if (!standard.has(name)) merged.push([name, value]);
  }
  return merged;
}
