/**
 * The client's side of Gemini over SCGI, as `scgiFetch` plays Xitzin's part:
 * {@linkcode cgiFromGeminiRequest} builds the variables Xitzin sends for a
 * `gemini:` URL, {@linkcode parseGeminiHead} reads the status line a backend
 * answers with, and {@linkcode responseInitFromGemini} turns it into the
 * status and headers of a `Response`. `gemini.ts` re-exports all of it,
 * beside the answer side.
 *
 * @example A request's variables, and a backend's answer as a `Response`
 * ```ts
 * import {
 *   cgiFromGeminiRequest,
 *   parseGeminiHead,
 *   responseInitFromGemini,
 * } from "./gemini_client.ts";
 *
 * const env = new Map(cgiFromGeminiRequest(
 *   new Request("gemini://example.com/hello?world"),
 * ));
 * console.assert(env.get("PATH_INFO") === "/hello");
 * console.assert(env.get("QUERY_STRING") === "world");
 *
 * const head = parseGeminiHead("51 Not found");
 * const response = new Response(null, responseInitFromGemini(head!));
 * console.assert(response.status === 404);
 * console.assert(response.headers.get("x-gemini-status") === "51");
 * ```
 *
 * @module
 */

import { cgiFromRequest } from "./cgi_request.ts";
import {
  GEMINI_META_HEADER,
  GEMINI_STATUS_HEADER,
  type GeminiStatus,
  httpStatusFromGemini,
  metaHeader,
} from "./_gemini_status.ts";

/**
 * Parses a Gemini status line (without its line end) as a backend wrote it.
 *
 * @param line The line's text, e.g. `"20 text/gemini"`.
 * @returns The status and meta, or `undefined` when the line is not a
 * Gemini status line (two digits 10 to 69, then a space or the end).
 *
 * @example
 * ```ts
 * import { parseGeminiHead } from "./gemini.ts";
 *
 * console.assert(parseGeminiHead("30 gemini://example.com/new-location")?.status === 30);
 * console.assert(parseGeminiHead("Status: 200 OK") === undefined);
 * ```
 */
export function parseGeminiHead(line: string): GeminiStatus | undefined {
  const match = line.match(/^([1-6][0-9])(?:[ \t](.*))?$/s);
  if (!match) return undefined;
  return { status: Number(match[1]), meta: (match[2] ?? "").trim() };
}

/**
 * The headers and HTTP status of a `Response` that stands for a Gemini
 * status line read from a backend (what `scgiFetch` builds).
 *
 * @param head The status and meta.
 * @returns The `ResponseInit`.
 *
 * @example
 * ```ts
 * import { responseInitFromGemini } from "./gemini.ts";
 *
 * const init = responseInitFromGemini({ status: 20, meta: "text/gemini" });
 * console.assert(init.status === 200);
 * ```
 */
export function responseInitFromGemini(
  head: GeminiStatus,
): { status: number; statusText: string; headers: Headers } {
  const headers = new Headers({
    [GEMINI_STATUS_HEADER]: String(head.status),
    [GEMINI_META_HEADER]: metaHeader(head.meta),
  });
  const success = head.status >= 20 && head.status < 30;
  if (success && head.meta) headers.set("content-type", metaHeader(head.meta));
  if (head.status >= 30 && head.status < 40 && head.meta) {
    headers.set("location", metaHeader(head.meta));
  }
  return {
    status: httpStatusFromGemini(head.status),
    statusText: "",
    headers,
  };
}

/** What {@linkcode cgiFromGeminiRequest} adds to the request's URL. */
export interface CgiFromGeminiRequestOptions {
  /**
   * The mount point: `SCRIPT_NAME`, with `PATH_INFO` the rest of the path.
   * Must be a prefix of the path at a segment boundary, or it is ignored.
   * @default {""}
   */
  scriptName?: string;
  /** The Gemini client: `REMOTE_ADDR` and `REMOTE_HOST`; with `port`, `REMOTE_PORT`. */
  remoteAddr?: { hostname: string; port?: number };
  /**
   * The client certificate the Gemini server saw: `TLS_CLIENT_HASH` (its
   * fingerprint, as the server writes it), `TLS_CLIENT_AUTHORISED=1` and
   * `AUTH_TYPE=CERTIFICATE`. Without one, `TLS_CLIENT_AUTHORISED=0`.
   */
  clientCertificate?: { hash: string };
  /** `SERVER_SOFTWARE`. @default {"deno-scgi"} */
  serverSoftware?: string;
}

/**
 * Builds the CGI variables Xitzin sends an SCGI backend for a Gemini
 * request, in its order: `GATEWAY_INTERFACE`, `SERVER_PROTOCOL=GEMINI`,
 * `SERVER_SOFTWARE`, `GEMINI_URL` (the URL without its fragment),
 * `SCRIPT_NAME`, `PATH_INFO` (decoded, as for HTTP), `QUERY_STRING`,
 * `SERVER_NAME` and `SERVER_PORT` of the URL (1965 by default), the client's
 * `REMOTE_ADDR`/`REMOTE_HOST`, and `TLS_CLIENT_*`. Nothing an HTTP front end
 * adds: no `REQUEST_METHOD`, `REQUEST_URI` or `HTTP_*`. `CONTENT_LENGTH`
 * (always `0`) and `SCGI` are not among them: the header encoder puts them
 * first. This is what `scgiFetch` sends for a `gemini:` URL.
 *
 * @param request A request for a `gemini:` URL; only its URL is described.
 * @param options Mount point, client and certificate.
 * @returns The variables as `[name, value]` pairs.
 *
 * @example
 * ```ts
 * import { cgiFromGeminiRequest } from "./gemini.ts";
 *
 * const env = new Map(cgiFromGeminiRequest(
 *   new Request("gemini://example.com/api/test?search=hello"),
 *   { scriptName: "/api", clientCertificate: { hash: "abc123" } },
 * ));
 * console.assert(env.get("GEMINI_URL") === "gemini://example.com/api/test?search=hello");
 * console.assert(env.get("PATH_INFO") === "/test");
 * console.assert(env.get("SERVER_PORT") === "1965");
 * console.assert(env.get("TLS_CLIENT_AUTHORISED") === "1");
 * console.assert(!env.has("REQUEST_METHOD"));
 * ```
 */
export function cgiFromGeminiRequest(
  request: Request,
  options: CgiFromGeminiRequestOptions = {},
): [name: string, value: string][] {
  const url = new URL(request.url);
  // The path split and decoding are those of an HTTP request.
  let scriptName = "";
  let pathInfo = "";
  for (
    const [name, value] of cgiFromRequest(
      request,
      options.scriptName ? { scriptName: options.scriptName } : {},
    )
  ) {
    if (name === "SCRIPT_NAME") scriptName = value;
    else if (name === "PATH_INFO") pathInfo = value;
  }
  // `gemini://host` has an empty path, which Gemini reads as `/`.
  if (!scriptName && !pathInfo) pathInfo = "/";
  const hostname = url.hostname;
  const env: [string, string][] = [
    ["GATEWAY_INTERFACE", "CGI/1.1"],
    ["SERVER_PROTOCOL", "GEMINI"],
    ["SERVER_SOFTWARE", options.serverSoftware ?? "deno-scgi"],
    ["GEMINI_URL", url.href.split("#", 1)[0]!],
    ["SCRIPT_NAME", scriptName],
    ["PATH_INFO", pathInfo],
    ["QUERY_STRING", url.search.slice(1)],
    [
      "SERVER_NAME",
      hostname.startsWith("[") ? hostname.slice(1, -1) : hostname,
    ],
    ["SERVER_PORT", url.port || "1965"],
  ];
  const remote = options.remoteAddr;
  if (remote) {
    env.push(["REMOTE_ADDR", remote.hostname]);
    env.push(["REMOTE_HOST", remote.hostname]);
    if (remote.port !== undefined) {
      env.push(["REMOTE_PORT", String(remote.port)]);
    }
  }
  const certificate = options.clientCertificate;
  if (certificate) {
    env.push(["TLS_CLIENT_HASH", certificate.hash]);
    env.push(["TLS_CLIENT_AUTHORISED", "1"]);
    env.push(["AUTH_TYPE", "CERTIFICATE"]);
  } else {
    env.push(["TLS_CLIENT_AUTHORISED", "0"]);
  }
  return env;
}
