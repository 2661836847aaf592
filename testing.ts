/**
 * A test client: runs a handler through the server and the client exactly
 * as `serve()` and `scgiFetch` run it, over an in-memory connection instead
 * of a socket. The request is built by `scgiFetch`'s own code (the same
 * variables, the real header encoder), the server's side is `serve()`'s own
 * connection life cycle (the head read and checked, the `Request` and the
 * info built, the handler called, the answer written by the server's output
 * path, CGI or raw Gemini), and the answer is read back by `scgiFetch`'s own
 * call. So a unit test sees what a front end would see, headers and status
 * text included, and the handler sees what it would see under `serve()`;
 * the project's parity tests run one set of cases against both.
 *
 * The in-memory connection behaves as a loopback socket:
 *
 * - It holds up to 64 KiB the client has not read yet: a small answer is
 *   written, and `info.completed` fulfilled, before the test reads it; a
 *   longer one waits for the test to read (backpressure).
 * - The client goes away when the test cancels the response body, aborts
 *   `init.signal`, or has read the body to its end. The server learns of it
 *   as `serve()` does: when a write fails. The handler's body is then
 *   cancelled (`AbortError` "connection closed"), `request.signal` aborts
 *   and `info.completed` rejects, both with the write's error (a
 *   `Deno.errors.BrokenPipe`). With `abortOnHangUp`, a client that leaves
 *   while the handler is still working (or while its answer streams) aborts
 *   `request.signal` at once (`AbortError` "the front end closed the
 *   connection"), as behind nginx.
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
 * There are no timeouts: a handler that never answers keeps its call
 * waiting, unless the test aborts `init.signal`.
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

import { createClient } from "./client.ts";
import { CONNECT } from "./internal/client_call.ts";
import {
  Connection,
  type ConnectionCounters,
  type ConnectionHost,
  type ConnectionLimits,
} from "./internal/connection.ts";
import type { HandlerInfo } from "./internal/handler_info.ts";
import { memorySocketPair } from "./internal/memory_socket.ts";
import { answerFailure } from "./internal/respond.ts";
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
  const host = new TestServer(handler, options);
  // An scgiFetch client whose connections reach the server above in memory.
  const backend = {
    port: 0,
    [CONNECT]: () => {
      const [client, server] = memorySocketPair();
      new Connection(server, host).run();
      return Promise.resolve(client);
    },
  };
  const client = createClient(backend, {
    ...(options.env ? { env: options.env } : {}),
    ...(options.scriptName !== undefined
      ? { scriptName: options.scriptName }
      : {}),
    ...(options.remoteAddr ? { remoteAddr: options.remoteAddr } : {}),
    connectTimeout: Infinity,
    headTimeout: Infinity,
    idleTimeout: Infinity,
  });
  const base = String(options.baseUrl ?? "http://localhost/");
  return {
    fetch: (input, init = {}) =>
      client.fetch(
        input instanceof Request ? input : new URL(input, base),
        { ...init, backend },
      ),
  };
}

// What serve() gives its connections, for one test client: its handler, its
// limits and onError, no timeouts (nothing sweeps).
class TestServer implements ConnectionHost {
  readonly limits: ConnectionLimits;
  readonly counters: ConnectionCounters = {
    completed: 0,
    protocolErrors: 0,
    timeouts: 0,
    aborted: 0,
  };
  readonly protocol: ServeOptions["protocol"];
  readonly abortOnHangUp: boolean;
  readonly handler: (
    request: Request,
    info: HandlerInfo,
  ) => Response | Promise<Response>;
  readonly #onError: ServeOptions["onError"];

  constructor(handler: ScgiHandler, options: TestClientOptions) {
    this.handler = handler;
    this.limits = {
      maxHeaderBytes: options.maxHeaderBytes ?? 65536,
      maxVariables: options.maxVariables ?? 1000,
      maxBodyBytes: options.maxBodyBytes ?? Infinity,
      headerTimeout: Infinity,
      idleTimeout: Infinity,
      handlerTimeout: Infinity,
    };
    this.protocol = options.protocol;
    this.abortOnHangUp = options.abortOnHangUp ?? false;
    this.#onError = options.onError;
  }

  failed = (error: unknown): Promise<Response> =>
    answerFailure(this.#onError, error);

  released(): void {}
}
