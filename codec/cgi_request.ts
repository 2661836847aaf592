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

import { byteStringToBytes } from "./_byte_string.ts";
import {
  candidateUrls,
  HOP_BY_HOP,
  httpVariableOf,
  httpVariables,
  requestFromVariables,
} from "./_cgi_to_request.ts";
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
  return requestFromVariables(env, httpVariables(env), init);
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
    const variable = httpVariableOf(name);
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
