/**
 * A fetch-like SCGI client: call any SCGI backend (a Python, Perl, Go or Deno
 * app, uWSGI, rtorrent's XML-RPC) with a `Request` and get a `Response`
 * whose body streams as it arrives.
 *
 * Targets are URLs: `scgi://host:port/path?query`, or
 * `scgi+unix://<percent-encoded socket path>/path?query`, or any `http(s)` URL
 * plus `init.backend` naming where to connect. A `gemini://` URL (with
 * `init.backend`) is sent as a Gemini server such as Xitzin sends it:
 * `GEMINI_URL` and the other Gemini variables, no HTTP ones (see
 * `codec/gemini.ts`). {@linkcode createClient} binds a backend once for a
 * mounted application.
 *
 * With `OTEL_DENO=true`, each call makes an OpenTelemetry client span and
 * sends its context to the backend as `HTTP_TRACEPARENT` (and
 * `HTTP_TRACESTATE`), as a front end would (see docs/telemetry.md).
 *
 * @example Calling rtorrent (`deno run --allow-net=127.0.0.1:5000 rpc.ts`)
 * ```ts ignore
 * import { scgiFetch } from "./client.ts";
 *
 * const response = await scgiFetch("scgi://127.0.0.1:5000/RPC2", {
 *   method: "POST",
 *   headers: { "content-type": "text/xml" },
 *   body: "<?xml version='1.0'?><methodCall><methodName>system.client_version</methodName></methodCall>",
 * });
 * console.log(await response.text());
 * ```
 *
 * @example A backend on a Unix socket, with a timeout
 * ```ts ignore
 * import { scgiFetch } from "./client.ts";
 *
 * const response = await scgiFetch("scgi+unix://%2Frun%2Fapp.sock/status", {
 *   signal: AbortSignal.timeout(5000),
 * });
 * ```
 *
 * @module
 */

import { cgiFromRequest } from "./codec/cgi_request.ts";
import { encodeRequestHead } from "./codec/header_encoder.ts";
import { call, type OutgoingBody } from "./internal/client_call.ts";
import { readWhole } from "./internal/read_whole.ts";
import { telemetryEnabled } from "./internal/telemetry.ts";
import { startClientSpan } from "./internal/telemetry_client.ts";
import { cgiFromGeminiRequest, type ScgiProtocol } from "./codec/gemini.ts";

/** Where an SCGI backend listens: TCP, or a Unix socket path. */
export type ScgiBackend =
  | { hostname?: string; port: number }
  | { path: string };

/** Client settings; every one can also be given per call in the init. */
export interface ScgiClientOptions {
  /** Milliseconds to connect. @default {10000} */
  connectTimeout?: number;
  /**
   * Milliseconds from connecting until the whole response head is in.
   * @default {60000}
   */
  headTimeout?: number;
  /**
   * Milliseconds the response body may go without a byte.
   * @default {60000}
   */
  idleTimeout?: number;
  /** Largest response head in bytes. @default {65536} */
  maxHeadBytes?: number;
  /** Largest response body in bytes. @default {Infinity} */
  maxResponseBytes?: number;
  /**
   * Largest request body of unknown length (a stream without a
   * `content-length` header) that is buffered to learn its length; SCGI
   * must send `CONTENT_LENGTH` before the body.
   * @default {16777216}
   */
  maxBufferedBodyBytes?: number;
  /**
   * Extra CGI variables, sent after the standard ones (Xitzin passes app
   * state this way as `XITZIN_*`). They replace standard ones of the same
   * name, in place. A call's `env` adds to its client's: both are sent, and
   * for a name in both the call's value wins.
   */
  env?: Readonly<Record<string, string>>;
  /** `SCRIPT_NAME`: the mount point the backend lives under. @default {""} */
  scriptName?: string;
  /**
   * The client to report as `REMOTE_ADDR`/`REMOTE_PORT` (for a `gemini:`
   * URL, `REMOTE_ADDR`/`REMOTE_HOST`, as Xitzin sends them).
   */
  remoteAddr?: { hostname: string; port?: number };
  /**
   * The answer's format: `"auto"` reads a raw Gemini answer
   * (`20 text/gemini\r\n` and the body) and a CGI head with a two-digit
   * Gemini `Status` (`Status: 20 text/gemini`, as flup writes one) as
   * Gemini, anything else as CGI; `"gemini"` refuses CGI answers, `"cgi"`
   * Gemini ones. A Gemini answer's `Response` has `x-gemini-status` and
   * `x-gemini-meta` headers and an HTTP status that stands for it (see
   * `gemini.ts`).
   * @default {"auto"}
   */
  protocol?: ScgiProtocol;
}

/** `RequestInit` plus where to connect and the client settings. */
export interface ScgiRequestInit extends RequestInit, ScgiClientOptions {
  /** Where to connect, for an `http(s)` or `gemini` URL. */
  backend?: ScgiBackend;
  /**
   * For a `gemini:` URL: the client certificate the Gemini server saw, sent
   * as `TLS_CLIENT_HASH`, `TLS_CLIENT_AUTHORISED=1` and
   * `AUTH_TYPE=CERTIFICATE`. Without it, `TLS_CLIENT_AUTHORISED=0`.
   */
  clientCertificate?: { hash: string };
}

/** A client bound to one backend: `fetch` as in {@linkcode scgiFetch}. */
export interface ScgiClient {
  /** The backend every call goes to. */
  readonly backend: ScgiBackend;
  /**
   * Sends a request to the backend. `input` may also be a path
   * (`"/status"`), taken relative to `http://localhost/`.
   */
  fetch(
    input: Request | URL | string,
    init?: ScgiRequestInit,
  ): Promise<Response>;
}

const DEFAULT_PORT = 4000;
const DEFAULTS = {
  connectTimeout: 10_000,
  headTimeout: 60_000,
  idleTimeout: 60_000,
  maxHeadBytes: 65536,
  maxResponseBytes: Infinity,
  maxBufferedBodyBytes: 16 * 1024 * 1024,
};

/**
 * Sends a request to an SCGI backend and returns its response, like `fetch`.
 *
 * Request bodies of every `BodyInit` kind work. A stream body whose length is
 * stated (a `content-length` header) is sent as it is produced; one of unknown
 * length is buffered up to `maxBufferedBodyBytes`. The response is read while
 * the request is still being sent, so a backend that answers early can't
 * deadlock the call.
 *
 * @param input An `scgi://` or `scgi+unix://` URL, or an `http(s)` or
 * `gemini` URL (or `Request`) with `init.backend`. A `gemini:` URL is sent
 * with the variables of a Gemini server (`GEMINI_URL`, `SERVER_NAME` and
 * `SERVER_PORT` of the URL, `TLS_CLIENT_*`), no body and no method.
 * @param init `RequestInit`, plus `backend`, timeouts, limits and extra `env`.
 * @returns The response; its body streams from the connection, which closes
 * when the body ends or is cancelled.
 * @throws {ScgiClientError} When the backend can't be reached, is too slow,
 * or answers with something that isn't a CGI response. An aborted `signal`
 * rejects with its reason, as `fetch` does.
 * @throws {TypeError} For a URL with nowhere to connect, or a `gemini:`
 * request with a body.
 *
 * @example
 * ```ts
 * import { serve } from "./server.ts";
 * import { scgiFetch } from "./client.ts";
 *
 * await using server = serve(
 *   { port: 0, onListen() {} },
 *   async (request) => new Response(`got ${(await request.text()).length} bytes`),
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * const response = await scgiFetch(`scgi://127.0.0.1:${port}/upload`, {
 *   method: "POST",
 *   body: "hello",
 * });
 * console.assert(await response.text() === "got 5 bytes");
 * ```
 */
export function scgiFetch(
  input: Request | URL | string,
  init: ScgiRequestInit = {},
): Promise<Response> {
  return send(input, init, undefined, {});
}

/**
 * A client bound to one backend, for an application mounted under a path:
 * each call connects anew (SCGI has one request per connection).
 *
 * @param backend Where the backend listens: `{ hostname, port }`,
 * `{ path }`, or an `scgi://` / `scgi+unix://` URL.
 * @param options Settings for every call; a call's init overrides them.
 * @returns The client.
 *
 * @example
 * ```ts
 * import { serve } from "./server.ts";
 * import { createClient } from "./client.ts";
 *
 * await using server = serve({ port: 0, onListen() {} }, (request, info) =>
 *   Response.json({ path: new URL(request.url).pathname, app: info.env.APP }));
 * const { port } = server.addr as Deno.NetAddr;
 * const client = createClient({ port }, { env: { APP: "demo" } });
 * const answer = await (await client.fetch("/users/1")).json();
 * console.assert(answer.path === "/users/1" && answer.app === "demo");
 * ```
 */
export function createClient(
  backend: ScgiBackend | string | URL,
  options: ScgiClientOptions = {},
): ScgiClient {
  const bound = typeof backend === "string" || backend instanceof URL
    ? backendFromUrl(new URL(backend))
    : backend;
  if (!bound) {
    throw new TypeError(`${backend} is not an scgi: or scgi+unix: URL`);
  }
  return {
    backend: bound,
    fetch: (input, init = {}) => send(input, init, bound, options),
  };
}

function backendFromUrl(url: URL): ScgiBackend | undefined {
  if (url.protocol === "scgi:") {
    return {
      hostname: url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
      port: url.port ? Number(url.port) : DEFAULT_PORT,
    };
  }
  if (url.protocol === "scgi+unix:") {
    const path = decodeURIComponent(url.hostname);
    if (!path) throw new TypeError(`${url.href} names no socket path`);
    return { path };
  }
  return undefined;
}

async function send(
  input: Request | URL | string,
  init: ScgiRequestInit,
  bound: ScgiBackend | undefined,
  defaults: ScgiClientOptions,
): Promise<Response> {
  const settings = { ...DEFAULTS, ...defined(defaults), ...defined(init) };
  const url = input instanceof Request
    ? new URL(input.url)
    : new URL(input, bound ? "http://localhost/" : undefined);
  const backend = init.backend ?? backendFromUrl(url) ?? bound;
  if (!backend) {
    throw new TypeError(
      `${url.href}: use an scgi: or scgi+unix: URL, or say where to connect with init.backend`,
    );
  }
  const request = input instanceof Request
    ? (hasRequestFields(init) ? new Request(input, init) : input)
    : new Request(url, init);
  request.signal.throwIfAborted();

  let env: [string, string][];
  if (url.protocol === "gemini:") {
    if (request.body !== null) {
      throw new TypeError(`${url.href}: a Gemini request has no body`);
    }
    env = cgiFromGeminiRequest(request, {
      ...(settings.scriptName !== undefined
        ? { scriptName: settings.scriptName }
        : {}),
      ...(settings.remoteAddr ? { remoteAddr: settings.remoteAddr } : {}),
      ...(init.clientCertificate
        ? { clientCertificate: init.clientCertificate }
        : {}),
    });
  } else {
    const scgi = url.protocol === "scgi:" || url.protocol === "scgi+unix:";
    env = cgiFromRequest(request, {
      ...(settings.scriptName !== undefined
        ? { scriptName: settings.scriptName }
        : {}),
      ...(settings.remoteAddr ? { remoteAddr: settings.remoteAddr } : {}),
      ...(url.protocol === "scgi+unix:"
        ? { serverName: "localhost", host: "localhost" }
        : {}),
      ...(scgi
        ? {
          serverPort: url.protocol === "scgi:"
            ? ("port" in backend ? backend.port : 80)
            : 80,
        }
        : {}),
    });
  }
  // A call's env adds to the client's (the call's names win).
  let extra = init.env && defaults.env
    ? { ...defaults.env, ...init.env }
    : settings.env;
  // With telemetry on: a client span, its context sent as HTTP_TRACEPARENT.
  const span = telemetryEnabled()
    ? await startClientSpan(request, url, backend)
    : undefined;
  if (span) {
    extra = { ...extra, ...span.variables };
    // A tracestate the request brought belongs to its trace, not to ours.
    if (span.variables.HTTP_TRACEPARENT && !span.variables.HTTP_TRACESTATE) {
      env = env.filter(([name]) => name !== "HTTP_TRACESTATE");
    }
  }
  const variables = extra ? mergeEnv(env, extra) : env;
  try {
    const body = await requestBody(
      request,
      init,
      settings.maxBufferedBodyBytes,
    );
    const head = encodeRequestHead(variables, body.length);
    const response = await call(backend, request, head, body, settings);
    span?.answered(response);
    return response;
  } catch (error) {
    span?.failed(error);
    throw error;
  }
}

function defined<T extends object>(options: T): Partial<T> {
  const out: Partial<T> = {};
  for (const key in options) {
    if (options[key] !== undefined) out[key] = options[key];
  }
  return out;
}

function hasRequestFields(init: RequestInit): boolean {
  return init.method !== undefined || init.headers !== undefined ||
    init.body !== undefined || init.signal !== undefined;
}

// Standard variables first, in a front end's order; an extra of the same
// name replaces the standard one in place, the others follow in their order
// (a client's env first, then the names only the call's env has).
function mergeEnv(
  env: [string, string][],
  extra: Readonly<Record<string, string>>,
): [string, string][] {
  const replaced = new Set<string>();
  const merged = env.map(([name, value]): [string, string] => {
    if (Object.hasOwn(extra, name)) {
      replaced.add(name);
      return [name, extra[name]!];
    }
    return [name, value];
  });
  for (const [name, value] of Object.entries(extra)) {
    if (!replaced.has(name)) merged.push([name, value]);
  }
  return merged;
}

async function requestBody(
  request: Request,
  init: RequestInit,
  maxBuffered: number,
): Promise<OutgoingBody> {
  if (request.body === null) {
    return { kind: "bytes", length: 0, bytes: new Uint8Array(0) };
  }
  const streamed = init.body instanceof ReadableStream ||
    (init.body === undefined && request.body !== null);
  if (!streamed) {
    const bytes = new Uint8Array(await request.arrayBuffer());
    return { kind: "bytes", length: bytes.length, bytes };
  }
  const stated = request.headers.get("content-length");
  if (stated !== null && /^[0-9]{1,16}$/.test(stated)) {
    return { kind: "stream", length: Number(stated), stream: request.body };
  }
  const bytes = await readWhole(request.body, maxBuffered);
  return { kind: "bytes", length: bytes.length, bytes };
}
