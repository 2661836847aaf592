/**
 * The mapping between CGI variables and a standard `Request`, both ways:
 * {@linkcode requestFromCgi} is what a backend does with the variables a
 * front end sent, and {@linkcode cgiFromRequest} builds the variables a front
 * end would send for a `Request`.
 *
 * @example Both directions
 * ```ts
 * import { cgiFromRequest, requestFromCgi } from "./cgi_request.ts";
 *
 * const env = Object.fromEntries(
 *   cgiFromRequest(new Request("http://example.com/a%20b?x=1")),
 * );
 * const request = requestFromCgi(env);
 * console.assert(request.url === "http://example.com/a%20b?x=1");
 * ```
 *
 * @module
 */

import { byteStringToBytes, utf8ByteString } from "./_byte_string.ts";
import { makeRequest, normalizeMethod } from "./_request_factory.ts";
import type { CgiEnv } from "./request_head.ts";

/** What {@linkcode requestFromCgi} needs besides the variables. */
export interface RequestFromCgiInit {
  /**
   * The request body (exactly `CONTENT_LENGTH` bytes), if any: a stream, or
   * the bytes when they are all there already.
   */
  body?:
    | ReadableStream<Uint8Array<ArrayBuffer>>
    | Uint8Array<ArrayBuffer>
    | null;
  /**
   * Aborts the request when the front end goes away. A function is called
   * the first time the request's `signal` is read (by the handler, `clone()`,
   * `new Request(request)` or `fetch(request)`), so a server whose handlers
   * never look at it makes no signal at all.
   */
  signal?: AbortSignal | (() => AbortSignal);
  /**
   * Names whose values hold raw bytes (one character per byte) because they
   * were not UTF-8; see {@linkcode HeaderBlock.nonUtf8}.
   */
  nonUtf8?: ReadonlySet<string>;
}

/** Request headers that describe one hop, never the request itself. */
const HOP_BY_HOP = new Set([
  "HTTP_CONNECTION",
  "HTTP_KEEP_ALIVE",
  "HTTP_PROXY_CONNECTION",
  "HTTP_TRANSFER_ENCODING",
  "HTTP_TE",
  "HTTP_TRAILER",
  "HTTP_UPGRADE",
  "HTTP_HTTP2_SETTINGS",
  // The front end has already read the body and answered `Expect`, and the
  // body's real length is `CONTENT_LENGTH` (nginx 1.22 passes the client's
  // length here and 0 there when request buffering is off).
  "HTTP_EXPECT",
  "HTTP_CONTENT_LENGTH",
]);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NOT_IN_VALUE = /[\0\r\n]/;
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Builds the `Request` that CGI variables describe.
 *
 * The URL is `GEMINI_URL` when a Gemini front end sent one; otherwise the
 * scheme comes from `HTTPS` (or `REQUEST_SCHEME`), the authority from
 * `HTTP_HOST` (else `SERVER_NAME` and `SERVER_PORT`), and the target from
 * `REQUEST_URI` (else `SCRIPT_NAME` + `PATH_INFO` + `?QUERY_STRING`). Bytes
 * that are not UTF-8 are percent-encoded, never replaced. Headers come from
 * `HTTP_*`, `CONTENT_TYPE` and `CONTENT_LENGTH`, without hop-by-hop ones; a
 * repeated header arrives joined, as {@linkcode CgiEnv} holds it.
 *
 * @param env The variables, e.g. from {@linkcode readRequestHead}.
 * @param init The body, the abort signal and which values are raw bytes.
 * @returns The request.
 * @throws {TypeError} For a method that is not a token or that `Request`
 * refuses (`CONNECT`, `TRACE`).
 *
 * @example
 * ```ts
 * import { requestFromCgi } from "./cgi_request.ts";
 *
 * const request = requestFromCgi({
 *   CONTENT_LENGTH: "0",
 *   REQUEST_METHOD: "GET",
 *   REQUEST_URI: "/search?q=deno",
 *   HTTP_HOST: "example.com",
 *   HTTPS: "on",
 * });
 * console.assert(request.url === "https://example.com/search?q=deno");
 * ```
 */
export function requestFromCgi(
  env: CgiEnv,
  init: RequestFromCgiInit = {},
): Request {
  const nonUtf8 = init.nonUtf8;
  const given = env.REQUEST_METHOD || "GET";
  if (!TOKEN.test(given)) {
    throw new TypeError(
      `REQUEST_METHOD ${JSON.stringify(given)} is not a token`,
    );
  }
  const method = normalizeMethod(given);
  // A list, not a `Headers`: `new Request` takes a list several times faster,
  // and this runs for every request. A name or value that HTTP can't carry
  // stays visible in the variables; the Request just doesn't get it.
  const headers: [string, string][] = [];
  const contentType = env.CONTENT_TYPE;
  for (const name in env) {
    if (!name.startsWith("HTTP_")) continue;
    const headerName = headerNameOf(name);
    // CONTENT_LENGTH and CONTENT_TYPE are the body's real description.
    if (
      headerName === undefined || headerName === "content-length" ||
      (headerName === "content-type" && contentType)
    ) continue;
    const value = fieldValue(headerValue(env[name]!, nonUtf8?.has(name)));
    if (value !== undefined) headers.push([headerName, value]);
  }
  if (contentType) {
    const value = fieldValue(
      headerValue(contentType, nonUtf8?.has("CONTENT_TYPE")),
    );
    if (value !== undefined) headers.push(["content-type", value]);
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  const contentLength = env.CONTENT_LENGTH;
  if (contentLength !== undefined && (hasBody || contentLength !== "0")) {
    headers.push(["content-length", contentLength]);
  }
  const body = hasBody ? init.body ?? null : null;
  const signal = init.signal;
  // A signal given up front goes through `new Request`; without one (or
  // with one made on demand) the request is built the short way.
  const build = signal instanceof AbortSignal
    ? (url: string) => new Request(url, { method, headers, body, signal })
    : (url: string) =>
      makeRequest({
        url,
        method,
        headers,
        body,
        ...(signal ? { signal } : {}),
      });
  // The URL is parsed as the request is built: the first candidate that
  // parses wins, and the usual request needs only the first, so the others
  // are made only when it fails.
  try {
    return build(candidateUrls(env, nonUtf8, true)[0]!);
  } catch {
    // The URL didn't parse: try the others.
  }
  const candidates = candidateUrls(env, nonUtf8);
  const last = candidates.length - 1;
  for (let i = 1; i < last; i++) {
    try {
      return build(candidates[i]!);
    } catch {
      // The URL didn't parse: try the next.
    }
  }
  return build(candidates[last]!);
}

/**
 * The URL that CGI variables describe (see {@linkcode requestFromCgi}).
 *
 * @param env The variables.
 * @param nonUtf8 Names whose values hold raw bytes.
 * @returns The absolute URL.
 *
 * @example
 * ```ts
 * import { urlFromCgi } from "./cgi_request.ts";
 *
 * const url = urlFromCgi({
 *   SERVER_NAME: "example.com",
 *   SERVER_PORT: "8080",
 *   SCRIPT_NAME: "/app",
 *   PATH_INFO: "/café",
 *   QUERY_STRING: "a=1",
 * });
 * console.assert(url === "http://example.com:8080/app/caf%C3%A9?a=1");
 * ```
 */
export function urlFromCgi(
  env: CgiEnv,
  nonUtf8?: ReadonlySet<string>,
): string {
  const candidates = candidateUrls(env, nonUtf8);
  for (const candidate of candidates) {
    try {
      return new URL(candidate).href;
    } catch {
      // Try the next, less specific one.
    }
  }
  // The last candidate (`http://localhost` and an escaped path) parses.
  return new URL(candidates[candidates.length - 1]!).href;
}

// The URLs the variables can stand for, best first: GEMINI_URL, then the
// target on HTTP_HOST, on SERVER_NAME and SERVER_PORT, and on localhost.
// Strings, not URLs: the caller parses only until one works, and usually
// that is `new Request` parsing the first, so the URL is parsed once.
function candidateUrls(
  env: CgiEnv,
  nonUtf8?: ReadonlySet<string>,
  onlyFirst = false,
): string[] {
  const raw = (name: string) => nonUtf8?.has(name) ?? false;
  const candidates: string[] = [];
  const gemini = env.GEMINI_URL;
  if (gemini) {
    candidates.push(escapeUrlText(gemini, raw("GEMINI_URL")));
    if (onlyFirst) return candidates;
  }
  const https = env.HTTPS?.toLowerCase();
  const scheme = https === "on" || https === "1" ||
      env.REQUEST_SCHEME === "https"
    ? "https"
    : "http";
  let target = env.REQUEST_URI;
  if (target) {
    target = escapeUrlText(target, raw("REQUEST_URI"));
    if (!target.startsWith("/")) {
      // An absolute-form target (`http://host/path`) keeps only its path.
      try {
        const absolute = new URL(target);
        target = absolute.pathname + absolute.search;
      } catch {
        target = "/" + target;
      }
    }
  } else {
    const path = escapePath(env.SCRIPT_NAME ?? "", raw("SCRIPT_NAME")) +
      escapePath(env.PATH_INFO ?? "", raw("PATH_INFO"));
    const query = env.QUERY_STRING;
    target = (path.startsWith("/") ? path : "/" + path) +
      (query ? "?" + escapeUrlText(query, raw("QUERY_STRING")) : "");
  }
  // Concatenated, not resolved against a base: a target like `//evil.com/`
  // or `/\\evil.com/` must stay a path, not become the authority. An
  // authority with anything but host characters (`/`, `?`, `#`, `@`, `\\`,
  // spaces) would change the URL's meaning and is not used.
  const host = env.HTTP_HOST;
  if (host && AUTHORITY.test(host)) {
    candidates.push(`${scheme}://${host}${target}`);
    if (onlyFirst) return candidates;
  }
  const name = env.SERVER_NAME;
  if (name) {
    const bracketed = name.includes(":") && !name.startsWith("[")
      ? `[${name}]`
      : name;
    const port = env.SERVER_PORT;
    const authority = port && port !== (scheme === "https" ? "443" : "80") &&
        /^[0-9]+$/.test(port)
      ? `${bracketed}:${port}`
      : bracketed;
    if (AUTHORITY.test(authority)) {
      candidates.push(`${scheme}://${authority}${target}`);
    }
  }
  candidates.push(`${scheme}://localhost${target}`);
  return onlyFirst ? candidates.slice(0, 1) : candidates;
}

const AUTHORITY =
  /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{0,5})?$/;

// Percent-encodes what may not stand raw in a URL (controls, space, bytes past
// ASCII) and leaves existing escapes alone. A raw-bytes value is encoded byte
// by byte, a UTF-8 one as UTF-8.
function escapeUrlText(text: string, rawBytes: boolean): string {
  return text.replace(
    /[^\x21-\x7e]|#(?=.)/gu,
    (char) => char === "#" ? "%23" : percentEncode(char, rawBytes),
  );
}

// A decoded path (PATH_INFO, SCRIPT_NAME): everything that would change its
// meaning in a URL is escaped, `%` included.
function escapePath(path: string, rawBytes: boolean): string {
  return path.replace(
    /[^A-Za-z0-9\-._~!$&'()*+,;=:@/]/gu,
    (char) => percentEncode(char, rawBytes),
  );
}

function percentEncode(char: string, rawBytes: boolean): string {
  const bytes = rawBytes
    ? Array.from(char, (c) => c.charCodeAt(0))
    : utf8.encode(char);
  let out = "";
  for (const byte of bytes) {
    out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

// A header value as `Headers` would store it (surrounding whitespace trimmed),
// or `undefined` for one it would refuse.
function fieldValue(value: string): string | undefined {
  // Most values have nothing to trim; the regex runs only for those that do.
  const trimmed = value.length > 0 &&
      (value.charCodeAt(0) <= 0x20 ||
        value.charCodeAt(value.length - 1) <= 0x20)
    ? value.replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "")
    : value;
  return NOT_IN_VALUE.test(trimmed) ? undefined : trimmed;
}

// `HTTP_USER_AGENT` → `user-agent`; `undefined` for a hop-by-hop header or a
// name HTTP can't carry. The same few dozen names come with every request,
// so the answers are kept (up to a bound, against a front end sending
// endless new ones).
const headerNames = new Map<string, string | undefined>();

function headerNameOf(variable: string): string | undefined {
  let name = headerNames.get(variable);
  if (name === undefined && !headerNames.has(variable)) {
    const converted = variable.slice(5).replaceAll("_", "-").toLowerCase();
    name = HOP_BY_HOP.has(variable) || !TOKEN.test(converted)
      ? undefined
      : converted;
    if (headerNames.size < 1000) headerNames.set(variable, name);
  }
  return name;
}

// Headers carry bytes; a UTF-8 value becomes its bytes one per character,
// which is how `Deno.serve` hands over non-ASCII header values too.
function headerValue(value: string, rawBytes = false): string {
  return rawBytes ? value : utf8ByteString(value);
}

/** What {@linkcode cgiFromRequest} adds to the request's own data. */
export interface CgiFromRequestOptions {
  /**
   * The mount point: `SCRIPT_NAME`, with `PATH_INFO` the rest of the path.
   * Must be a prefix of the path at a segment boundary, or it is ignored.
   * @default {""}
   */
  scriptName?: string;
  /** `REMOTE_ADDR`; with `port`, `REMOTE_PORT`. */
  remoteAddr?: { hostname: string; port?: number };
  /** `SERVER_NAME`; by default the URL's host name. */
  serverName?: string;
  /** `SERVER_PORT`; by default the URL's port or its scheme's default. */
  serverPort?: number | string;
  /** `HTTP_HOST` when the request has no `host` header; by default the URL's host. */
  host?: string;
  /** `SERVER_PROTOCOL`. @default {"HTTP/1.1"} */
  serverProtocol?: string;
  /** `SERVER_SOFTWARE`. @default {"deno-scgi"} */
  serverSoftware?: string;
  /** `HTTPS=on` for an `https:` URL (unless set to `false`). @default {true} */
  https?: boolean;
}

/**
 * Builds the CGI variables a front end (like nginx with `scgi_params`) sends
 * for a request, in a front end's order. `CONTENT_LENGTH` is not among them:
 * the header encoder puts it first.
 *
 * @param request The request whose method, URL and headers are described.
 * @param options Mount point, client and server details.
 * @returns The variables as `[name, value]` pairs; repeated header values are
 * one variable (`a, b`), as lighttpd sends them.
 *
 * @example
 * ```ts
 * import { cgiFromRequest } from "./cgi_request.ts";
 *
 * const env = new Map(cgiFromRequest(
 *   new Request("https://example.com/api/users?id=1"),
 *   { scriptName: "/api" },
 * ));
 * console.assert(env.get("SCRIPT_NAME") === "/api");
 * console.assert(env.get("PATH_INFO") === "/users");
 * console.assert(env.get("HTTPS") === "on");
 * ```
 */
export function cgiFromRequest(
  request: Request,
  options: CgiFromRequestOptions = {},
): [name: string, value: string][] {
  const url = new URL(request.url);
  const https = url.protocol === "https:" && options.https !== false;
  const path = url.pathname;
  let scriptName = options.scriptName?.replace(/\/+$/, "") ?? "";
  if (
    scriptName &&
    !(path === scriptName || path.startsWith(scriptName + "/"))
  ) {
    scriptName = "";
  }
  const defaultPort = url.protocol === "https:"
    ? "443"
    : url.protocol === "http:"
    ? "80"
    : "";
  const env: [string, string][] = [
    ["REQUEST_METHOD", request.method],
    // A bare `?` is no `url.search`, but a front end passes it on.
    ["REQUEST_URI", path + (url.search || (bareQuery(url) ? "?" : ""))],
    ["QUERY_STRING", url.search.slice(1)],
    ["DOCUMENT_URI", decodePath(path)],
    ["SCRIPT_NAME", decodePath(scriptName)],
    ["PATH_INFO", decodePath(path.slice(scriptName.length))],
    ["SERVER_PROTOCOL", options.serverProtocol ?? "HTTP/1.1"],
    ["GATEWAY_INTERFACE", "CGI/1.1"],
    ["SERVER_SOFTWARE", options.serverSoftware ?? "deno-scgi"],
    ["SERVER_NAME", options.serverName ?? unbracket(url.hostname)],
    ["SERVER_PORT", String(options.serverPort ?? (url.port || defaultPort))],
  ];
  if (https) env.push(["HTTPS", "on"]);
  if (options.remoteAddr) {
    env.push(["REMOTE_ADDR", options.remoteAddr.hostname]);
    if (options.remoteAddr.port !== undefined) {
      env.push(["REMOTE_PORT", String(options.remoteAddr.port)]);
    }
  }
  const contentType = request.headers.get("content-type");
  if (contentType !== null) {
    env.push(["CONTENT_TYPE", headerText(contentType)]);
  }
  let hasHost = false;
  for (const [name, value] of request.headers) {
    if (name === "content-type" || name === "content-length") continue;
    const variable = "HTTP_" + name.toUpperCase().replaceAll("-", "_");
    if (HOP_BY_HOP.has(variable)) continue;
    if (name === "host") hasHost = true;
    env.push([variable, headerText(value)]);
  }
  const host = options.host ?? url.host;
  if (!hasHost && host) env.push(["HTTP_HOST", host]);
  return env;
}

// Header values are bytes, one character each, and the encoder writes text as
// UTF-8: bytes that are UTF-8 go back to the text they spell so the front end
// sends the same bytes. Other bytes have no such text and go as they are.
function headerText(value: string): string {
  if (!/[\x80-\xff]/.test(value)) return value;
  try {
    return strictUtf8.decode(byteStringToBytes(value));
  } catch {
    return value;
  }
}

function bareQuery(url: URL): boolean {
  return url.href.split("#", 1)[0]!.endsWith("?");
}

function unbracket(hostname: string): string {
  return hostname.startsWith("[") ? hostname.slice(1, -1) : hostname;
}

// PATH_INFO is decoded, as every front end sends it; an escape that isn't
// UTF-8 stays escaped rather than turning into U+FFFD.
function decodePath(path: string): string {
  // `%2F` stays escaped either way: decoded it would add a path segment.
  const kept = path.replaceAll("%2F", "%252F").replaceAll("%2f", "%252f");
  try {
    return decodeURIComponent(kept);
  } catch {
    return kept.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch {
        return run;
      }
    });
  }
}
