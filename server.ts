/**
 * A Deno.serve-like SCGI server: run any `(Request) => Response` handler as
 * the backend of nginx (`scgi_pass`), lighttpd (`mod_scgi`), Apache
 * (`mod_proxy_scgi`) or a Gemini server, over TCP or a Unix socket.
 *
 * It listens on `127.0.0.1:4000` by default: SCGI trusts its front end
 * completely (the front end says who the client is), so the port must not be
 * reachable from anywhere else.
 *
 * With `OTEL_DENO=true`, each request gets an OpenTelemetry server span, a
 * child of the `traceparent` the front end passes as `HTTP_TRACEPARENT`, and
 * Deno.serve's `http.server.*` metrics (see docs/telemetry.md).
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

import type { ScgiProtocol } from "./codec/gemini.ts";
import type { CgiEnv, CgiVariableList } from "./codec/request_head.ts";
import { scgiUrl as coreScgiUrl, ServerCore } from "./internal/server_core.ts";

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
  return new ServerCore({
    port: options.port ?? 4000,
    hostname: options.hostname ?? "127.0.0.1",
    path: options.path,
    socketMode: options.socketMode,
    reusePort: options.reusePort ?? false,
    maxHeaderBytes: options.maxHeaderBytes ?? 65536,
    maxVariables: options.maxVariables ?? 1000,
    maxBodyBytes: options.maxBodyBytes ?? Infinity,
    maxConnections: options.maxConnections ?? 1024,
    headerTimeout: options.headerTimeout ?? 30_000,
    idleTimeout: options.idleTimeout ?? 60_000,
    handlerTimeout: options.handlerTimeout ?? Infinity,
    shutdownTimeout: options.shutdownTimeout ?? 30_000,
    protocol: options.protocol,
    abortOnHangUp: options.abortOnHangUp ?? false,
    signal: options.signal,
    handleSignals: options.handleSignals ?? false,
    onListen: options.onListen,
    onError: options.onError,
  }, handler);
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
  return coreScgiUrl(addr);
}
