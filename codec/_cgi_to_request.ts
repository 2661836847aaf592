// The CGI variables → Request direction of cgi_request.ts, for both its
// public functions and the server, which hands over the variables it picked
// out of the header block in one pass (see _variables.ts) rather than a
// whole env object. Private to the package.

import { utf8ByteString } from "./_byte_string.ts";
import { makeRequest, normalizeMethod } from "./_request_factory.ts";

/**
 * The variables a Request is built from, by their CGI names: an env object
 * has them, and so has what the server picks out of a header block.
 */
export interface RequestVariables {
  readonly REQUEST_METHOD?: string | undefined;
  readonly CONTENT_TYPE?: string | undefined;
  readonly CONTENT_LENGTH?: string | undefined;
  readonly GEMINI_URL?: string | undefined;
  readonly HTTPS?: string | undefined;
  readonly REQUEST_SCHEME?: string | undefined;
  readonly REQUEST_URI?: string | undefined;
  readonly SCRIPT_NAME?: string | undefined;
  readonly PATH_INFO?: string | undefined;
  readonly QUERY_STRING?: string | undefined;
  readonly HTTP_HOST?: string | undefined;
  readonly SERVER_NAME?: string | undefined;
  readonly SERVER_PORT?: string | undefined;
}

/** What building the Request needs besides the variables. */
export interface RequestInitFromCgi {
  body?:
    | ReadableStream<Uint8Array<ArrayBuffer>>
    | Uint8Array<ArrayBuffer>
    | null;
  signal?: AbortSignal | (() => AbortSignal);
  nonUtf8?: ReadonlySet<string>;
}

/** Request headers that describe one hop, never the request itself. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
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

export const TOKEN: RegExp = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NOT_IN_VALUE = /[\0\r\n]/;
const utf8 = new TextEncoder();

/** The CGI variable a header travels in: `user-agent` is `HTTP_USER_AGENT`. */
export function httpVariableOf(header: string): string {
  return "HTTP_" + header.toUpperCase().replaceAll("-", "_");
}

/** The `HTTP_*` variables of an env, as name, value, name, value, …. */
export function httpVariables(env: Readonly<Record<string, string>>): string[] {
  const http: string[] = [];
  for (const name in env) {
    if (name.startsWith("HTTP_")) http.push(name, env[name]!);
  }
  return http;
}

/**
 * The Request the variables describe (see `requestFromCgi`), with the
 * `HTTP_*` variables given apart, as name, value, name, value, …, each name
 * once (repeats joined).
 */
export function requestFromVariables(
  env: RequestVariables,
  http: readonly string[],
  init: RequestInitFromCgi = {},
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
  for (let i = 0; i < http.length; i += 2) {
    const name = http[i]!;
    const headerName = headerNameOf(name);
    // CONTENT_LENGTH and CONTENT_TYPE are the body's real description.
    if (
      headerName === undefined || headerName === "content-length" ||
      (headerName === "content-type" && contentType)
    ) continue;
    const value = fieldValue(headerValue(http[i + 1]!, nonUtf8?.has(name)));
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
  // The URL is parsed as the request is built: the first candidate that
  // parses wins, and the usual request needs only the first, so the others
  // are made only when it fails.
  try {
    return build(
      candidateUrls(env, nonUtf8, true)[0]!,
      method,
      headers,
      body,
      signal,
    );
  } catch {
    // The URL didn't parse: try the others.
  }
  const candidates = candidateUrls(env, nonUtf8);
  const last = candidates.length - 1;
  for (let i = 1; i < last; i++) {
    try {
      return build(candidates[i]!, method, headers, body, signal);
    } catch {
      // The URL didn't parse: try the next.
    }
  }
  return build(candidates[last]!, method, headers, body, signal);
}

// A signal given up front goes through `new Request`; without one (or with
// one made on demand) the request is built the short way.
function build(
  url: string,
  method: string,
  headers: [string, string][],
  body: RequestInitFromCgi["body"],
  signal: RequestInitFromCgi["signal"],
): Request {
  return signal instanceof AbortSignal
    ? new Request(url, { method, headers, body: body ?? null, signal })
    : makeRequest({ url, method, headers, body: body ?? null, signal });
}

// The URLs the variables can stand for, best first: GEMINI_URL, then the
// target on HTTP_HOST, on SERVER_NAME and SERVER_PORT, and on localhost.
// Strings, not URLs: the caller parses only until one works, and usually
// that is `new Request` parsing the first, so the URL is parsed once.
export function candidateUrls(
  env: RequestVariables,
  nonUtf8?: ReadonlySet<string>,
  onlyFirst = false,
): string[] {
  const candidates: string[] = [];
  const gemini = env.GEMINI_URL;
  if (gemini) {
    candidates.push(escapeUrlText(gemini, raw(nonUtf8, "GEMINI_URL")));
    if (onlyFirst) return candidates;
  }
  const https = env.HTTPS?.toLowerCase();
  const scheme = https === "on" || https === "1" ||
      env.REQUEST_SCHEME === "https"
    ? "https"
    : "http";
  let target = env.REQUEST_URI;
  if (target) {
    target = escapeUrlText(target, raw(nonUtf8, "REQUEST_URI"));
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
    const path =
      escapePath(env.SCRIPT_NAME ?? "", raw(nonUtf8, "SCRIPT_NAME")) +
      escapePath(env.PATH_INFO ?? "", raw(nonUtf8, "PATH_INFO"));
    const query = env.QUERY_STRING;
    target = (path.startsWith("/") ? path : "/" + path) +
      (query ? "?" + escapeUrlText(query, raw(nonUtf8, "QUERY_STRING")) : "");
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

// Whether the variable came as raw bytes (not UTF-8).
function raw(nonUtf8: ReadonlySet<string> | undefined, name: string): boolean {
  return nonUtf8?.has(name) ?? false;
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
