/**
 * A Deno.serve-like SCGI server: run any `(Request) => Response` handler as
 * the backend of nginx (`scgi_pass`), lighttpd (`mod_scgi`), Apache
 * (`mod_proxy_scgi`) or a Gemini server, over TCP or a Unix socket.
 *
 * It listens on `127.0.0.1:4000` by default: SCGI trusts its front end
 * completely (the front end says who the client is), so the port must not be
 * reachable from anywhere else.
 *
 * @example Hello world (`deno run --allow-net=127.0.0.1 hello.ts`)
 * ```ts ignore
 * import { serve } from "./server.ts";
 *
 * serve((request) => new Response(`Hello from ${new URL(request.url).pathname}\n`));
 * ```
 *
 * @example Every option, on a Unix socket
 * ```ts ignore
 * import { serve } from "./server.ts";
 *
 * const server = serve({
 *   path: "/run/app/scgi.sock",
 *   socketMode: 0o660,
 *   maxBodyBytes: 10 * 1024 * 1024,
 *   handleSignals: true,
 *   onListen: ({ path }) => console.log(`ready on ${path}`),
 * }, (request, info) => Response.json({ url: request.url, user: info.env.REMOTE_USER }));
 * await server.finished;
 * ```
 *
 * @module
 */

import type { ByteSource } from "./codec/byte_source.ts";
import { ScgiProtocolError } from "./codec/errors.ts";
import {
  type CgiEnv,
  type CgiVariableList,
  readRequestHead,
} from "./codec/request_head.ts";
import { requestFromCgi } from "./codec/cgi_request.ts";
import {
  answerFailure,
  answersInGemini,
  errorResponse,
  handlerInfo,
  responseOutput,
} from "./_respond.ts";
import type { ScgiProtocol } from "./codec/gemini.ts";

/** What a handler gets besides the `Request`: a superset of `Deno.ServeHandlerInfo`. */
export interface ScgiHandlerInfo {
  /**
   * The client as the front end reports it (`REMOTE_ADDR`, `REMOTE_PORT`);
   * the front end's own address when it sends neither.
   */
  remoteAddr: Deno.Addr;
  /** The front end's connection to this server. */
  connAddr: Deno.Addr;
  /**
   * Fulfils once the response has been written in full; rejects when it
   * could not be (the front end went away, a timeout, shutdown's deadline).
   */
  completed: Promise<void>;
  /**
   * Every CGI variable by name, including those a `Request` can't carry
   * (`SCRIPT_NAME`, `PATH_INFO`, `REMOTE_USER`, `HTTPS`, `GEMINI_URL`,
   * `TLS_CLIENT_HASH`). Repeated names are joined; see `envList`.
   */
  env: CgiEnv;
  /** Every CGI variable as received: wire order, repeats kept. */
  envList: CgiVariableList;
}

/** A request handler: a plain `Deno.serve` handler works unchanged. */
export type ScgiHandler = (
  request: Request,
  info: ScgiHandlerInfo,
) => Response | Promise<Response>;

/** Options of {@linkcode serve}; the names and defaults follow `Deno.serve`. */
export interface ServeOptions {
  /** TCP port. `0` picks a free one (see `addr`). @default {4000} */
  port?: number;
  /**
   * Address to listen on. SCGI trusts its front end, so the default is
   * loopback; listen elsewhere only behind a firewall.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /** Listen on this Unix socket path instead of TCP. */
  path?: string;
  /**
   * File mode for the Unix socket (e.g. `0o660` so a web server's group can
   * connect). By default the process's umask decides.
   */
  socketMode?: number;
  /** Aborting it shuts the server down gracefully (see `shutdown()`). */
  signal?: AbortSignal;
  /** Called once listening; by default prints the address to stderr. */
  onListen?: (localAddr: Deno.Addr) => void;
  /**
   * Turns a handler failure into a response. Called for every failure, also
   * one after the head was sent (then its response is not used and the
   * connection just ends). By default logs and answers 500.
   */
  onError?: (error: unknown) => Response | Promise<Response>;
  /** Largest header block in bytes; more is a 431. @default {65536} */
  maxHeaderBytes?: number;
  /** Most CGI variables in a request; more is a 431. @default {1000} */
  maxVariables?: number;
  /**
   * Largest request body in bytes; more is a 413 before the handler runs.
   * Bodies are streamed, never held whole, so the default leaves the limit
   * to the front end (nginx's `client_max_body_size`).
   * @default {Infinity}
   */
  maxBodyBytes?: number;
  /**
   * Most connections handled at once. Past it, new connections wait in the
   * listen backlog (the front end queues or times them out) until one ends.
   * @default {1024}
   */
  maxConnections?: number;
  /**
   * Milliseconds to receive the whole header block (slowloris defence); the
   * connection is closed without an answer.
   * @default {30000}
   */
  headerTimeout?: number;
  /**
   * Milliseconds a body read or a response write may wait for the front end
   * before the connection is closed and the request aborted.
   * @default {60000}
   */
  idleTimeout?: number;
  /**
   * Milliseconds the handler may take to return its `Response`; then
   * `request.signal` aborts and the answer is a 503. `Infinity` for none.
   * @default {Infinity}
   */
  handlerTimeout?: number;
  /**
   * Milliseconds `shutdown()` lets in-flight requests finish before it aborts
   * them (their `request.signal` fires) and closes their connections.
   * @default {30000}
   */
  shutdownTimeout?: number;
  /**
   * Shut down gracefully on SIGTERM and SIGINT (what wsgitools'
   * `enable_sighandler()` did).
   * @default {false}
   */
  handleSignals?: boolean;
  /**
   * Take the front end closing its side of the connection after the request
   * as the client having left: `request.signal` aborts at once, even while
   * the handler is still working on an answer. nginx, lighttpd and Apache
   * never half-close, so behind them an end of input does mean the client
   * went away; the default suits front ends that half-close after sending
   * (then the handler learns of a departure only when its answer can't be
   * written).
   * @default {false}
   */
  abortOnHangUp?: boolean;
  /**
   * Listen with `SO_REUSEPORT` so several processes share the TCP port and
   * the kernel spreads connections over them (what `scgi serve --workers`
   * does). Linux; `Deno.listen`'s `reusePort` is unstable, so the process
   * needs `--unstable-net`.
   * @default {false}
   */
  reusePort?: boolean;
  /**
   * How to answer: `"cgi"` writes a CGI head (`Status: 200 OK`, headers, a
   * blank line); `"gemini"` writes the raw Gemini line (`20 text/gemini\r\n`)
   * that Gemini front ends (Xitzin, Molly Brown, Stargazer) expect, mapping a
   * plain HTTP status as `gemini.ts` documents; `"auto"` answers in Gemini
   * form when the request carries `GEMINI_URL`, and CGI otherwise.
   * @default {"auto"}
   */
  protocol?: ScgiProtocol;
}

/** Counters of a running server, for logs and health checks. */
export interface ScgiServerStats {
  /** Connections accepted. */
  accepted: number;
  /** Connections being handled now. */
  active: number;
  /** Responses written in full. */
  completed: number;
  /** Requests answered 400/411/413/431 without calling the handler. */
  protocolErrors: number;
  /** Handler failures (each also went to `onError`). */
  handlerErrors: number;
  /** Connections closed by a header, idle or handler timeout. */
  timeouts: number;
  /** Requests whose front end went away before the response was written. */
  aborted: number;
}

/** A running server: the shape of `Deno.HttpServer`. */
export interface ScgiServer extends AsyncDisposable {
  /** Where it listens. */
  readonly addr: Deno.Addr;
  /** Fulfils when the server has stopped and every connection is done. */
  readonly finished: Promise<void>;
  /** Counters since start. */
  readonly stats: Readonly<ScgiServerStats>;
  /**
   * Stops accepting, lets in-flight requests finish (up to
   * `shutdownTimeout`), and resolves when all is done.
   */
  shutdown(): Promise<void>;
  /** Keeps the process alive while the server runs (the default). */
  ref(): void;
  /** Lets the process exit even though the server is running. */
  unref(): void;
}

/** Options with the handler inside, as `Deno.serve({ handler })` takes them. */
export type ServeInit =
  & ServeOptions
  & ({ handler: ScgiHandler } | { fetch: ScgiHandler });

const DEFAULTS = {
  port: 4000,
  hostname: "127.0.0.1",
  maxHeaderBytes: 65536,
  maxVariables: 1000,
  maxBodyBytes: Infinity,
  maxConnections: 1024,
  headerTimeout: 30_000,
  idleTimeout: 60_000,
  handlerTimeout: Infinity,
  shutdownTimeout: 30_000,
};

/**
 * Serves a handler over SCGI, in the shapes of `Deno.serve`:
 * `serve(handler)`, `serve(options, handler)` or `serve({ ...options, handler })`.
 * An object with a `fetch` method (a Hono app, a `deno serve` module's default
 * export) can stand for the options-with-handler.
 *
 * @param handler The request handler.
 * @returns The running server.
 *
 * @example
 * ```ts
 * import { serve } from "./server.ts";
 * import { scgiFetch } from "./client.ts";
 *
 * await using server = serve({ port: 0, onListen() {} }, () => new Response("hi"));
 * const { port } = server.addr as Deno.NetAddr;
 * const response = await scgiFetch(`scgi://127.0.0.1:${port}/`);
 * console.assert(await response.text() === "hi");
 * ```
 */
export function serve(handler: ScgiHandler): ScgiServer;
/**
 * Serves a handler over SCGI with options: `serve(options, handler)`.
 *
 * @param options Where to listen, limits and timeouts.
 * @param handler The request handler.
 * @returns The running server.
 */
export function serve(options: ServeOptions, handler: ScgiHandler): ScgiServer;
/**
 * Serves a handler over SCGI with the handler among the options:
 * `serve({ port, handler })`, or an app object with a `fetch` method.
 *
 * @param init Options with a `handler` (or `fetch`) inside.
 * @returns The running server.
 */
export function serve(init: ServeInit): ScgiServer;
export function serve(
  first: ScgiHandler | ServeOptions | ServeInit,
  second?: ScgiHandler,
): ScgiServer {
  let options: ServeOptions;
  let handler: ScgiHandler;
  if (typeof first === "function") {
    options = {};
    handler = first;
  } else if (second) {
    options = first;
    handler = second;
  } else if ("handler" in first && typeof first.handler === "function") {
    options = first;
    handler = first.handler;
  } else if ("fetch" in first && typeof first.fetch === "function") {
    options = first;
    handler = first.fetch.bind(first);
  } else {
    throw new TypeError("serve() needs a handler");
  }
  return new Server(options, handler);
}

// Reads go into pooled buffers of 64 KiB and what came is copied out.
const READ_BYTES = 64 * 1024;
const MAX_POOLED_READ_BUFFERS = 64;
const readBuffers: Uint8Array[] = [];

// The reason a closed connection's response body is cancelled with: made once,
// since an AbortSignal's default reason captures a stack every time.
const CONNECTION_CLOSED = new DOMException("connection closed", "AbortError");
const HUNG_UP = new DOMException(
  "the front end closed the connection",
  "AbortError",
);

type Phase = "head" | "handler" | "writing" | "done";

interface Connection {
  conn: Deno.Conn;
  phase: Phase;
  /** Epoch ms by which the current wait must end. */
  deadline: number;
  /** Epoch ms by which the pending body read must end. */
  readDeadline: number;
  controller?: AbortController;
  timedOut: boolean;
  closed: boolean;
  /** Aborts when the connection closes: stops waiting on the response body. */
  gone: AbortController;
}

class Server implements ScgiServer {
  readonly #options: ServeOptions;
  readonly #handler: ScgiHandler;
  readonly #limits: typeof DEFAULTS;
  readonly #connections = new Set<Connection>();
  readonly #finished = Promise.withResolvers<void>();
  readonly #stats: ScgiServerStats = {
    accepted: 0,
    active: 0,
    completed: 0,
    protocolErrors: 0,
    handlerErrors: 0,
    timeouts: 0,
    aborted: 0,
  };
  #listener: Deno.Listener | undefined;
  #addr: Deno.Addr;
  #closing = false;
  #accepting = false;
  #refed = true;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #slotFreed: (() => void) | undefined;
  #signalHandler: (() => void) | undefined;
  #abortListener: (() => void) | undefined;
  #shutdownTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: ServeOptions, handler: ScgiHandler) {
    this.#options = options;
    this.#handler = handler;
    this.#limits = {
      port: options.port ?? DEFAULTS.port,
      hostname: options.hostname ?? DEFAULTS.hostname,
      maxHeaderBytes: options.maxHeaderBytes ?? DEFAULTS.maxHeaderBytes,
      maxVariables: options.maxVariables ?? DEFAULTS.maxVariables,
      maxBodyBytes: options.maxBodyBytes ?? DEFAULTS.maxBodyBytes,
      maxConnections: options.maxConnections ?? DEFAULTS.maxConnections,
      headerTimeout: options.headerTimeout ?? DEFAULTS.headerTimeout,
      idleTimeout: options.idleTimeout ?? DEFAULTS.idleTimeout,
      handlerTimeout: options.handlerTimeout ?? DEFAULTS.handlerTimeout,
      shutdownTimeout: options.shutdownTimeout ?? DEFAULTS.shutdownTimeout,
    };
    this.#finished.promise.catch(() => {});
    const path = options.path;
    if (path !== undefined) {
      this.#addr = { transport: "unix", path };
      let listener: Deno.Listener | undefined;
      try {
        listener = this.#listenUnix(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse)) throw error;
      }
      if (listener) {
        this.#start(listener);
      } else {
        // A socket file is there: reuse it only if nobody answers on it (a
        // crashed process left it), which takes a connect to find out.
        this.#replaceStaleSocket(path).then(
          (listener) => this.#start(listener),
          (error) => {
            // Never started: drop the signal handlers installed below too.
            this.#closing = true;
            this.#removeSignalHandlers();
            this.#finished.reject(error);
          },
        );
      }
    } else {
      const listener = Deno.listen({
        hostname: this.#limits.hostname,
        port: this.#limits.port,
        ...(options.reusePort ? { reusePort: true } : {}),
      });
      this.#addr = listener.addr;
      this.#start(listener);
    }
    if (options.signal) {
      if (options.signal.aborted) {
        this.shutdown();
      } else {
        this.#abortListener = () => this.shutdown();
        options.signal.addEventListener("abort", this.#abortListener, {
          once: true,
        });
      }
    }
    if (options.handleSignals) {
      this.#signalHandler = () => this.shutdown();
      Deno.addSignalListener("SIGTERM", this.#signalHandler);
      Deno.addSignalListener("SIGINT", this.#signalHandler);
    }
  }

  get addr(): Deno.Addr {
    return this.#addr;
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  get stats(): Readonly<ScgiServerStats> {
    return { ...this.#stats, active: this.#connections.size };
  }

  shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#closeListener();
      this.#removeSignalHandlers();
      this.#slotFreed?.();
      const timeout = this.#limits.shutdownTimeout;
      // Also with no connection now: an accept still pending may yet bring
      // one in. #maybeFinish clears the timer.
      if (Number.isFinite(timeout)) {
        const timer = setTimeout(() => {
          for (const connection of this.#connections) {
            this.#abort(
              connection,
              new DOMException("server shut down", "AbortError"),
            );
          }
        }, timeout);
        this.#shutdownTimer = timer;
        if (!this.#refed) Deno.unrefTimer(timer);
      }
      this.#maybeFinish();
    }
    return this.#finished.promise;
  }

  ref(): void {
    this.#refed = true;
    this.#listener?.ref();
  }

  unref(): void {
    this.#refed = false;
    this.#listener?.unref();
    if (this.#shutdownTimer !== undefined) {
      Deno.unrefTimer(this.#shutdownTimer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  #listenUnix(path: string): Deno.Listener {
    const listener = Deno.listen({ transport: "unix", path });
    if (this.#options.socketMode !== undefined) {
      Deno.chmodSync(path, this.#options.socketMode);
    }
    return listener;
  }

  async #replaceStaleSocket(path: string): Promise<Deno.Listener> {
    const info = await Deno.lstat(path);
    if (!info.isSocket) {
      throw new Deno.errors.AddrInUse(`${path} exists and is not a socket`);
    }
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      conn.close();
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionRefused) {
        await Deno.remove(path);
        return this.#listenUnix(path);
      }
      throw error;
    }
    throw new Deno.errors.AddrInUse(
      `another process is serving on ${path}`,
    );
  }

  #start(listener: Deno.Listener): void {
    this.#listener = listener;
    this.#addr = listener.addr;
    if (!this.#refed) listener.unref();
    if (this.#closing) {
      this.#closeListener();
      this.#maybeFinish();
      return;
    }
    const { headerTimeout, idleTimeout, handlerTimeout } = this.#limits;
    const shortest = Math.min(headerTimeout, idleTimeout, handlerTimeout);
    if (Number.isFinite(shortest)) {
      const every = Math.min(1000, Math.max(5, Math.floor(shortest / 4)));
      const sweeper = setInterval(() => this.#sweep(), every);
      this.#sweeper = sweeper;
      Deno.unrefTimer(sweeper);
    }
    if (this.#options.onListen) {
      this.#options.onListen(listener.addr);
    } else {
      console.error(`Listening on ${scgiUrl(listener.addr)}`);
    }
    this.#accepting = true;
    this.#acceptLoop(listener).finally(() => {
      // Only now has the pending accept let go of the socket.
      this.#accepting = false;
      this.#maybeFinish();
    });
  }

  async #acceptLoop(listener: Deno.Listener): Promise<void> {
    while (!this.#closing) {
      if (this.#connections.size >= this.#limits.maxConnections) {
        await new Promise<void>((resolve) => (this.#slotFreed = resolve));
        this.#slotFreed = undefined;
        continue;
      }
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) break;
        // Out of file descriptors and the like: breathe, then go on.
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      this.#stats.accepted++;
      const connection: Connection = {
        conn,
        phase: "head",
        deadline: Date.now() + this.#limits.headerTimeout,
        readDeadline: Infinity,
        timedOut: false,
        closed: false,
        gone: new AbortController(),
      };
      this.#connections.add(connection);
      this.#handle(connection).catch((error) => {
        // A bug, not the peer's doing: log it, never an unhandled rejection.
        console.error("scgi: connection failed:", error);
      }).finally(() => {
        this.#close(connection);
        this.#connections.delete(connection);
        this.#slotFreed?.();
        this.#maybeFinish();
      });
    }
    this.#closeListener();
    this.#maybeFinish();
  }

  async #handle(connection: Connection): Promise<void> {
    const { conn } = connection;
    const limits = this.#limits;
    // Raw reads, not conn.readable: reading that stream to its end releases
    // the whole connection, and a front end that half-closes after its
    // request must still get the answer. Reads are chained so the body and
    // the drain never read at once.
    let last: Promise<unknown> = Promise.resolve();
    const source: ByteSource = {
      read: () => {
        const next = last.then(
          async (): Promise<ReadableStreamReadResult<Uint8Array>> => {
            connection.readDeadline = Date.now() + limits.idleTimeout;
            const buffer = readBuffers.pop() ?? new Uint8Array(READ_BYTES);
            try {
              const count = await conn.read(buffer);
              // A copy of what came, so the buffer can serve the next read:
              // a fresh 64 KiB per read would be mostly empty for a small
              // request, and that much outside the heap pushes V8 into
              // collecting garbage more often.
              return count === null
                ? { done: true as const }
                : { done: false as const, value: buffer.slice(0, count) };
            } finally {
              connection.readDeadline = Infinity;
              if (readBuffers.length < MAX_POOLED_READ_BUFFERS) {
                readBuffers.push(buffer);
              }
            }
          },
        );
        last = next.catch(() => {});
        return next;
      },
    };
    let head;
    try {
      head = await readRequestHead(source, limits);
    } catch (error) {
      if (connection.timedOut || connection.closed) return;
      if (error instanceof ScgiProtocolError) {
        this.#stats.protocolErrors++;
        connection.phase = "writing";
        await this.#write(
          connection,
          errorResponse(error.status, error.message),
          "GET",
          answersInGemini(this.#options.protocol),
        ).catch(() => {});
        await this.#drainAndClose(connection, source);
      }
      return;
    }
    connection.deadline = Date.now() + limits.handlerTimeout;
    connection.phase = "handler";
    const controller = new AbortController();
    connection.controller = controller;
    let bodyDone = head.contentLength === 0;
    head.bodyEnd.then(
      () => {
        bodyDone = true;
        if (this.#options.abortOnHangUp) this.#watchHangUp(connection, source);
      },
      (error) => this.#abort(connection, error),
    );
    const env = head.env;
    const method = env.REQUEST_METHOD || "GET";
    const gemini = answersInGemini(this.#options.protocol, env);
    let request: Request;
    try {
      request = requestFromCgi(env, {
        body: head.body,
        signal: controller.signal,
        nonUtf8: head.nonUtf8,
      });
    } catch (error) {
      this.#stats.protocolErrors++;
      connection.phase = "writing";
      await this.#write(
        connection,
        errorResponse(400, (error as Error).message),
        method,
        gemini,
      ).catch(() => {});
      await this.#drainAndClose(connection, source);
      return;
    }
    const completed = Promise.withResolvers<void>();
    completed.promise.catch(() => {});
    const info = handlerInfo(head, conn.remoteAddr, completed.promise);
    let response: Response;
    try {
      response = await this.#respond(request, info, controller.signal);
    } catch (error) {
      // Timed out or the front end went away while the handler ran.
      completed.reject(error);
      if (connection.timedOut && connection.phase === "handler") {
        connection.phase = "writing";
        await this.#write(
          connection,
          errorResponse(503, "the handler did not answer in time"),
          method,
          gemini,
        ).catch(() => {});
      }
      return;
    }
    connection.phase = "writing";
    try {
      await this.#write(connection, response, method, gemini);
    } catch (error) {
      this.#abort(connection, error);
      completed.reject(error);
      return;
    }
    connection.phase = "done";
    this.#stats.completed++;
    completed.resolve();
    if (!bodyDone && head.contentLength > 0) {
      await this.#drainAndClose(connection, source);
    }
  }

  // Calls the handler (or onError) and settles with its response, or rejects
  // when the request is aborted first (so a handler that never returns can't
  // hold shutdown). A handler that answers at once skips the race.
  #respond(
    request: Request,
    info: ScgiHandlerInfo,
    signal: AbortSignal,
  ): Response | Promise<Response> {
    let result: Response | Promise<Response>;
    try {
      result = this.#handler(request, info);
    } catch (error) {
      return this.#onError(error);
    }
    if (result instanceof Response) return result;
    const run = Promise.resolve(result).then(
      (response) => {
        if (response instanceof Response) return response;
        throw new TypeError("the handler did not return a Response");
      },
    ).catch((error) => this.#onError(error));
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<Response>((resolve, reject) => {
      const onAbort = () => {
        reject(signal.reason);
        // Nobody will write the late response: release its body.
        run.then((late) => late.body?.cancel().catch(() => {}), () => {});
      };
      signal.addEventListener("abort", onAbort, { once: true });
      run.then((response) => {
        signal.removeEventListener("abort", onAbort);
        resolve(response);
      });
    });
  }

  #onError(error: unknown): Promise<Response> {
    this.#stats.handlerErrors++;
    return answerFailure(this.#options.onError, error);
  }

  async #write(
    connection: Connection,
    response: Response,
    method: string,
    gemini: boolean,
  ): Promise<void> {
    const { conn } = connection;
    const idle = this.#limits.idleTimeout;
    const chunks = responseOutput(
      response,
      method,
      gemini,
      // A body cut off because the connection closed is not the handler's
      // failure: no onError, no second answer.
      (error) =>
        connection.closed ? Promise.reject(error) : this.#onError(error),
      connection.gone.signal,
    );
    try {
      while (true) {
        const next = await chunks.next();
        if (next.done) break;
        const chunk = next.value;
        connection.deadline = Date.now() + idle;
        // conn.write, not a stream writer: one op per chunk and nothing to
        // set up per response. It may write less than asked.
        let written = await conn.write(chunk);
        while (written < chunk.length) {
          written += await conn.write(chunk.subarray(written));
        }
        connection.deadline = Infinity;
      }
    } finally {
      connection.deadline = Infinity;
      chunks.return();
    }
  }

  // After the response: a front end still sending a body we never read would
  // get a reset instead of our answer if we closed now, so signal the end of
  // our output and read its remaining bytes away first.
  async #drainAndClose(
    connection: Connection,
    reader: ByteSource,
  ): Promise<void> {
    if (connection.closed) return;
    try {
      await connection.conn.closeWrite();
      connection.phase = "writing";
      while (true) {
        connection.deadline = Date.now() + this.#limits.idleTimeout;
        const { done } = await reader.read();
        if (done) break;
      }
    } catch {
      // Gone or timed out: either way we are finished with it.
    }
  }

  // With the request read, the only thing left to read is the end: when it
  // comes (or the read fails) before the answer is written, the front end
  // has gone.
  #watchHangUp(connection: Connection, source: ByteSource): void {
    const hungUp = () => {
      if (
        !connection.closed && connection.phase !== "done" &&
        connection.phase !== "writing"
      ) {
        this.#abort(connection, HUNG_UP);
      }
    };
    source.read().then((result) => result.done && hungUp(), hungUp);
  }

  #abort(connection: Connection, reason: unknown): void {
    const controller = connection.controller;
    if (
      controller && !controller.signal.aborted && connection.phase !== "done"
    ) {
      this.#stats.aborted++;
      controller.abort(reason);
    }
    this.#close(connection);
  }

  #close(connection: Connection): void {
    if (connection.closed) return;
    connection.closed = true;
    connection.gone.abort(CONNECTION_CLOSED);
    try {
      connection.conn.close();
    } catch {
      // Already released (read to the end) or closed.
    }
  }

  #sweep(): void {
    const now = Date.now();
    for (const connection of this.#connections) {
      if (now <= connection.deadline && now <= connection.readDeadline) {
        continue;
      }
      connection.timedOut = true;
      this.#stats.timeouts++;
      const reason = new DOMException(
        `${connection.phase === "head" ? "header" : connection.phase} timeout`,
        "TimeoutError",
      );
      if (connection.phase === "handler" && now > connection.deadline) {
        // Abort the handler but keep the connection to answer 503.
        connection.deadline = Infinity;
        connection.controller?.abort(reason);
        continue;
      }
      this.#abort(connection, reason);
    }
  }

  #closeListener(): void {
    const listener = this.#listener;
    if (!listener) return;
    this.#listener = undefined;
    try {
      listener.close();
    } catch {
      // Already closed.
    }
    if ("path" in listener.addr) {
      // Deno leaves the socket file behind; a stale one would make the next
      // start probe it.
      try {
        Deno.removeSync(listener.addr.path);
      } catch {
        // Already gone.
      }
    }
  }

  #removeSignalHandlers(): void {
    if (this.#signalHandler) {
      Deno.removeSignalListener("SIGTERM", this.#signalHandler);
      Deno.removeSignalListener("SIGINT", this.#signalHandler);
      this.#signalHandler = undefined;
    }
    if (this.#abortListener) {
      this.#options.signal?.removeEventListener("abort", this.#abortListener);
      this.#abortListener = undefined;
    }
  }

  #maybeFinish(): void {
    if (
      !this.#closing || this.#listener || this.#accepting ||
      this.#connections.size > 0
    ) return;
    clearInterval(this.#sweeper);
    clearTimeout(this.#shutdownTimer);
    this.#finished.resolve();
  }
}

/**
 * The `scgi://` or `scgi+unix://` URL of a listening address, ready for
 * `scgiFetch`.
 *
 * @param addr A server's `addr`.
 * @returns The URL of its root.
 *
 * @example
 * ```ts
 * import { scgiUrl } from "./server.ts";
 *
 * console.assert(scgiUrl({ transport: "tcp", hostname: "127.0.0.1", port: 4000 }) ===
 *   "scgi://127.0.0.1:4000/");
 * console.assert(scgiUrl({ transport: "unix", path: "/tmp/app.sock" }) ===
 *   "scgi+unix://%2Ftmp%2Fapp.sock/");
 * ```
 */
export function scgiUrl(addr: Deno.Addr): string {
  if ("path" in addr) return `scgi+unix://${encodeURIComponent(addr.path)}/`;
  if (!("hostname" in addr)) return `scgi://localhost/`;
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return `scgi://${host}:${addr.port}/`;
}
