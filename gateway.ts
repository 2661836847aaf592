/**
 * An SCGI gateway for `Deno.serve`: {@linkcode scgiProxy} returns an HTTP
 * handler that forwards the requests under a mount prefix to one or more
 * SCGI backends, the way nginx's `scgi_pass` or lighttpd's `mod_scgi` does.
 *
 * The backend gets what a real front end sends: `SCRIPT_NAME` is the mount,
 * `PATH_INFO` the rest of the path, `REMOTE_ADDR`/`REMOTE_PORT` the HTTP
 * client, `HTTPS=on` for an `https:` request, `SERVER_NAME`/`SERVER_PORT`,
 * and every request header as `HTTP_*`. Bodies stream both ways.
 *
 * @example Mount a backend under /app (`deno run --allow-net=127.0.0.1 front.ts`)
 * ```ts ignore
 * import { scgiProxy } from "./gateway.ts";
 *
 * Deno.serve(
 *   { hostname: "127.0.0.1", port: 8000 },
 *   scgiProxy({ backends: ["127.0.0.1:4000", "127.0.0.1:4001"], mount: "/app" }),
 * );
 * ```
 *
 * @example In front of our own server
 * ```ts
 * import { serve } from "./server.ts";
 * import { scgiProxy } from "./gateway.ts";
 *
 * await using backend = serve({ port: 0, onListen() {} }, (_request, info) =>
 *   Response.json({ script: info.env.SCRIPT_NAME, path: info.env.PATH_INFO }));
 * const { port } = backend.addr as Deno.NetAddr;
 * const handler = scgiProxy({ backends: [{ port }], mount: "/app" });
 * const response = await handler(new Request("http://localhost/app/users/1"));
 * console.assert((await response.json()).path === "/users/1");
 * const outside = await handler(new Request("http://localhost/other"));
 * console.assert(outside.status === 404);
 * await outside.body?.cancel();
 * ```
 *
 * @module
 */

import {
  createClient,
  type ScgiBackend,
  type ScgiClientOptions,
} from "./client.ts";
import { ScgiClientError } from "./codec/errors.ts";
import {
  BackendPool,
  type BackendSlot,
  describeBackend,
} from "./internal/backend_pool.ts";
import {
  cancelBody,
  clientClosed,
  errorResponse,
  neverConnected,
  releaseWhenDone,
  textResponse,
} from "./internal/gateway_answers.ts";
import { readWhole } from "./internal/read_whole.ts";

export type { ScgiBackend, ScgiClientOptions } from "./client.ts";

/** What a gateway handler gets besides the request (`Deno.ServeHandlerInfo` fits). */
export interface ScgiProxyInfo {
  /** The HTTP client, reported to the backend as `REMOTE_ADDR`/`REMOTE_PORT`. */
  remoteAddr?: Deno.Addr;
  /**
   * Deno.serve's delivery promise, passed on to `fallback` as it came. The
   * gateway itself doesn't use it: it settles only once the handler has
   * returned, too late to notice a client that leaves before the answer.
   * `request.signal` says that (see {@linkcode scgiProxy}).
   */
  completed?: Promise<void>;
}

/** A gateway handler: give it to `Deno.serve`. */
export type ScgiProxyHandler = (
  request: Request,
  info?: ScgiProxyInfo,
) => Promise<Response>;

/**
 * Options of {@linkcode scgiProxy}. The client settings (`connectTimeout`,
 * `headTimeout`, `idleTimeout`, `maxHeadBytes`, `maxResponseBytes`,
 * `maxBufferedBodyBytes`, `env`) pass through to {@linkcode createClient},
 * with its defaults.
 */
export interface ScgiProxyOptions
  extends Omit<ScgiClientOptions, "scriptName" | "remoteAddr" | "protocol"> {
  /**
   * The backends: `{ hostname, port }`, `{ path }`, or strings
   * `"host:port"`, `"unix:/path.sock"`, `"scgi://host:port"`,
   * `"scgi+unix://%2Fpath.sock"`. Several are used round robin.
   */
  backends: ReadonlyArray<ScgiBackend | string>;
  /**
   * The path prefix the backends are mounted at: it becomes `SCRIPT_NAME`
   * and the rest of the path `PATH_INFO`. Requests outside it go to
   * `fallback`. `"/"` mounts everything with an empty `SCRIPT_NAME`.
   * @default {"/"}
   */
  mount?: string;
  /** Answers the requests outside the mount. By default a plain-text 404. */
  fallback?: (
    request: Request,
    info?: ScgiProxyInfo,
  ) => Response | Promise<Response>;
  /**
   * Milliseconds a backend that refused a connection, or did not accept it
   * within `connectTimeout`, is skipped before it is tried again. When every
   * backend is marked down, all are tried anyway.
   * @default {5000}
   */
  retryInterval?: number;
  /**
   * Most requests in flight to one backend at once, counted until the
   * response body has been sent (or failed). When every backend is full, a
   * request waits for a free slot up to `queueTimeout`, then gets a 503.
   * @default {Infinity}
   */
  maxConcurrent?: number;
  /**
   * Milliseconds a request waits for a free slot when every backend is at
   * `maxConcurrent`; `0` answers 503 at once.
   * @default {10000}
   */
  queueTimeout?: number;
  /** `SERVER_NAME`. By default the host name of the request URL (its `Host`). */
  serverName?: string;
  /** `SERVER_PORT`. By default the request URL's port or its scheme's. */
  serverPort?: number;
}

const DEFAULT_RETRY_INTERVAL = 5000;
const DEFAULT_QUEUE_TIMEOUT = 10_000;
const DEFAULT_MAX_BUFFERED = 16 * 1024 * 1024;

/**
 * Makes a `Deno.serve` handler that forwards a mounted path prefix to SCGI
 * backends.
 *
 * Failures become short plain-text answers: `502` when a backend refuses
 * the connection or answers with something that is not a CGI response,
 * `504` when it is too slow (the client's `connectTimeout`, `headTimeout`),
 * `503` when every backend is at `maxConcurrent` for `queueTimeout`, `413`
 * for a body of unknown length over `maxBufferedBodyBytes`. A failure after
 * the response head was sent (the backend dies mid-body) ends the HTTP
 * response early, as nginx does.
 *
 * A request body with a `content-length` streams to the backend; one
 * without (chunked) is buffered up to `maxBufferedBodyBytes`, because SCGI
 * sends the length first. Only a connection that was never made (refused,
 * no socket file, unreachable, or not accepted within `connectTimeout`) is
 * retried on the next backend, like nginx's default `scgi_next_upstream
 * error timeout`: then nothing of the request has been sent. That backend
 * is skipped for `retryInterval`. When no backend could be reached the
 * answer is `504` if the last one tried timed out, else `502`.
 *
 * A client that leaves before the answer (`request.signal` aborts, as
 * Deno.serve does at once when the client disconnects) ends the backend
 * call: the backend connection closes and its slot frees, and a request
 * still waiting for a slot is dropped without being sent. The handler then
 * answers `499` with no body, nginx's status for "client closed request",
 * so an access log records what happened. `request.signal` is watched only
 * until the handler returns: Deno.serve also aborts it after every
 * delivered response. A client that leaves mid-body cancels the response
 * body, which closes the backend connection. (Reading `request.signal` makes
 * Deno 2.9's Deno.serve print a one-time notice about that legacy abort;
 * it changes nothing here, and `--unstable-no-legacy-abort` silences it.)
 *
 * @param options The backends, the mount and the limits.
 * @returns The handler, `(request, info?) => Promise<Response>`.
 * @throws {TypeError} For no backends, a backend that can't be parsed, or a
 * mount that doesn't start with `/`.
 *
 * @example
 * ```ts
 * import { scgiProxy } from "./gateway.ts";
 *
 * // Nothing listens on port 1: the gateway answers 502.
 * const handler = scgiProxy({ backends: ["127.0.0.1:1"] });
 * const response = await handler(new Request("http://localhost/"));
 * console.assert(response.status === 502);
 * await response.body?.cancel();
 * ```
 */
export function scgiProxy(options: ScgiProxyOptions): ScgiProxyHandler {
  if (!options.backends || options.backends.length === 0) {
    throw new TypeError("scgiProxy needs at least one backend");
  }
  const mount = normalizeMount(options.mount ?? "/");
  const retryInterval = options.retryInterval ?? DEFAULT_RETRY_INTERVAL;
  const maxConcurrent = options.maxConcurrent ?? Infinity;
  const queueTimeout = options.queueTimeout ?? DEFAULT_QUEUE_TIMEOUT;
  const maxBuffered = options.maxBufferedBodyBytes ?? DEFAULT_MAX_BUFFERED;
  if (!(maxConcurrent >= 1)) {
    throw new TypeError(
      `maxConcurrent must be at least 1, not ${maxConcurrent}`,
    );
  }
  const env: Record<string, string> = { ...options.env };
  if (options.serverName !== undefined) env.SERVER_NAME = options.serverName;
  if (options.serverPort !== undefined) {
    env.SERVER_PORT = String(options.serverPort);
  }
  const clientOptions: ScgiClientOptions = {
    ...pick(options),
    ...(Object.keys(env).length > 0 ? { env } : {}),
    scriptName: mount,
  };
  const pool = new BackendPool(options.backends.map((spec) => {
    const backend = parseBackend(spec);
    return {
      client: createClient(backend, clientOptions),
      name: describeBackend(backend),
      active: 0,
      downUntil: 0,
    };
  }));
  return async (request, info) => {
    const url = new URL(request.url);
    if (!inMount(url.pathname, mount)) {
      if (options.fallback) return await options.fallback(request, info);
      await request.body?.cancel().catch(() => {});
      return textResponse(404, "not found");
    }
    // The client leaving: Deno.serve aborts request.signal at once. It also
    // aborts it after every delivered response (its legacy behaviour), by
    // which time this handler has long returned and stopped listening.
    const gone = request.signal;
    if (gone.aborted) return await clientClosed(request.body);
    const controller = new AbortController();
    const signal = controller.signal;
    const onGone = () => controller.abort(gone.reason);
    gone.addEventListener("abort", onGone, { once: true });
    try {
      let body: ReadableStream<Uint8Array> | Uint8Array | null = request.body;
      if (body && request.headers.get("content-length") === null) {
        try {
          body = await readWhole(body, maxBuffered);
        } catch (error) {
          if (signal.aborted) return await clientClosed(null);
          if (error instanceof ScgiClientError) {
            return textResponse(413, error.message);
          }
          return textResponse(400, `cannot read the request body: ${error}`);
        }
      }
      const remote = info?.remoteAddr;
      const remoteAddr = remote && remote.transport !== "unix" &&
          "hostname" in remote
        ? { hostname: remote.hostname, port: remote.port }
        : undefined;
      const init = {
        method: request.method,
        headers: request.headers,
        signal,
      };
      const call = remoteAddr ? { remoteAddr } : {};

      const unreachable: BackendSlot[] = [];
      const reasons: string[] = [];
      let timedOut = false;
      const deadline = Date.now() + queueTimeout;
      while (true) {
        let full = false;
        for (const slot of pool.order()) {
          if (slot.active >= maxConcurrent) {
            full = true;
            continue;
          }
          if (unreachable.length > 0 && unreachable.includes(slot)) continue;
          slot.active++;
          let response: Response;
          try {
            const forward = new Request(request.url, {
              ...init,
              body: body instanceof Uint8Array ? body.slice() : body,
            });
            response = await slot.client.fetch(forward, call);
          } catch (error) {
            pool.release(slot);
            if (signal.aborted) return await clientClosed(body);
            if (neverConnected(error)) {
              slot.downUntil = Date.now() + retryInterval;
              unreachable.push(slot);
              reasons.push(error.message);
              timedOut = error.code === "connect_timeout";
              continue;
            }
            return errorResponse(error);
          }
          slot.downUntil = 0;
          return releaseWhenDone(response, () => pool.release(slot));
        }
        if (!full) {
          await cancelBody(body);
          return textResponse(
            timedOut ? 504 : 502,
            `no SCGI backend reachable: ${reasons.join("; ")}`,
          );
        }
        // The backends not yet tried are all at maxConcurrent: wait for one.
        if (!await pool.waitForSlot(deadline - Date.now(), signal)) {
          if (signal.aborted) return await clientClosed(body);
          await cancelBody(body);
          return textResponse(503, "every SCGI backend is busy");
        }
      }
    } finally {
      gone.removeEventListener("abort", onGone);
    }
  };
}

// The client options that pass through unchanged.
function pick(options: ScgiProxyOptions): ScgiClientOptions {
  const out: ScgiClientOptions = {};
  for (
    const key of [
      "connectTimeout",
      "headTimeout",
      "idleTimeout",
      "maxHeadBytes",
      "maxResponseBytes",
      "maxBufferedBodyBytes",
    ] as const
  ) {
    const value = options[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function normalizeMount(mount: string): string {
  if (!mount.startsWith("/")) {
    throw new TypeError(`mount ${JSON.stringify(mount)} must start with "/"`);
  }
  return mount.replace(/\/+$/, "");
}

function inMount(path: string, mount: string): boolean {
  return mount === "" || path === mount || path.startsWith(mount + "/");
}

/**
 * Parses a backend as the command line names it: `host:port`, `[::1]:port`,
 * `unix:/path.sock`, `scgi://host:port` or `scgi+unix://%2Fpath.sock`; an
 * object passes through.
 *
 * @param spec The backend.
 * @returns Where to connect.
 * @throws {TypeError} When it names no backend.
 *
 * @example
 * ```ts
 * import { parseBackend } from "./gateway.ts";
 *
 * console.assert("path" in parseBackend("unix:/run/app.sock"));
 * console.assert(JSON.stringify(parseBackend("[::1]:4000")) ===
 *   JSON.stringify({ hostname: "::1", port: 4000 }));
 * ```
 */
export function parseBackend(spec: ScgiBackend | string): ScgiBackend {
  if (typeof spec !== "string") {
    if ("path" in spec) return { path: spec.path };
    return { ...spec };
  }
  if (spec.startsWith("unix:") && !spec.startsWith("unix://")) {
    const path = spec.slice(5);
    if (!path) throw new TypeError(`backend ${spec} names no socket path`);
    return { path };
  }
  if (spec.startsWith("scgi+unix://")) {
    const path = decodeURIComponent(new URL(spec).hostname);
    if (!path) throw new TypeError(`backend ${spec} names no socket path`);
    return { path };
  }
  const text = spec.startsWith("scgi://")
    ? spec.slice(7).replace(/\/.*$/, "")
    : spec;
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]/]*)):([0-9]{1,5})$/.exec(
    text,
  );
  const port = Number(match?.[3]);
  if (!match || port < 1 || port > 65535) {
    throw new TypeError(
      `backend ${JSON.stringify(spec)} is not HOST:PORT or unix:PATH`,
    );
  }
  return { hostname: match[1] ?? (match[2] || "127.0.0.1"), port };
}
