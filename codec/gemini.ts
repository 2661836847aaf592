/**
 * Gemini backends over SCGI. Gemini servers (Xitzin, Molly Brown, Stargazer)
 * pass requests to SCGI backends with CGI variables such as `GEMINI_URL`,
 * `PATH_INFO`, `QUERY_STRING`, `TLS_CLIENT_HASH` and
 * `TLS_CLIENT_AUTHORISED`, and expect the raw Gemini answer back: one line
 * `NN meta\r\n`, then (for `2x` only) the body, with no blank line between.
 *
 * - {@linkcode geminiResponse} and the conveniences of {@linkcode gemini}
 *   build a `Response` that `serve()` writes in that raw form. It stays a
 *   sensible HTTP response too (status mapped, `x-gemini-status` and
 *   `x-gemini-meta` headers), so middleware and logs understand it.
 * - A plain `Response` returned to a Gemini request is translated
 *   ({@linkcode geminiHeadFor}): 2xx → `20 <content-type>`, 301/308 → `31`,
 *   other 3xx → `30` with `Location`, 400 → `59`, 401 → `60`, 403 → `61`,
 *   404 → `51`, 410 → `52`, 421 → `53`, 429 → `44`, other 4xx → `50`,
 *   500 → `42`, 502/504 → `43`, 503 → `41`, other 5xx → `40`.
 * - `scgiFetch` sends a `gemini:` URL with the variables Xitzin sends
 *   ({@linkcode cgiFromGeminiRequest}), and reads a Gemini answer, raw or in
 *   a CGI head (`Status: 20 text/gemini`, as flup writes it), into a
 *   `Response` with the same headers and a status from
 *   {@linkcode httpStatusFromGemini}; {@linkcode readGeminiStatus} gives back
 *   the Gemini status and meta.
 *
 * @example A Gemini app behind Xitzin (`serve` answers in raw Gemini form
 * when the request carries `GEMINI_URL`), and our client in Xitzin's place
 * ```ts
 * import { gemini, readGeminiStatus } from "./gemini.ts";
 * import { scgiFetch, serve } from "../mod.ts";
 *
 * await using server = serve({ port: 0, onListen() {} }, (request) => {
 *   const name = new URL(request.url).search.slice(1);
 *   if (!name) return gemini.input("Enter your name:");
 *   return gemini.success(`# Hello, ${decodeURIComponent(name)}\n`);
 * });
 * const { port } = server.addr as Deno.NetAddr;
 * const response = await scgiFetch("gemini://example.com/hello", {
 *   backend: { port },
 * });
 * console.assert(readGeminiStatus(response)?.status === 10);
 * console.assert(readGeminiStatus(response)?.meta === "Enter your name:");
 * await response.body?.cancel();
 * ```
 *
 * @module
 */

import { headAndBody } from "./_body_output.ts";
import { cgiFromRequest } from "./cgi_request.ts";
import { statusText } from "./status_text.ts";

/** Which answer format a server writes, or a client expects. */
export type ScgiProtocol = "cgi" | "gemini" | "auto";

/** A Gemini status line: the two-digit status and its meta. */
export interface GeminiStatus {
  /** The status, 10 to 69. */
  status: number;
  /** The meta: a MIME type (2x), a URL (3x), a prompt or an error message. */
  meta: string;
}

/** The header that carries the Gemini status on a `Response`. */
export const GEMINI_STATUS_HEADER = "x-gemini-status";
/**
 * The header that carries the Gemini meta on a `Response`: its UTF-8 bytes,
 * one per character, as every header value holds bytes. Use
 * {@linkcode readGeminiStatus} to get it back as text.
 */
export const GEMINI_META_HEADER = "x-gemini-meta";

const MAX_META_BYTES = 1024;
const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

/**
 * The HTTP status that stands for a Gemini status on a `Response`:
 * 1x → 200 (the meta is a prompt), 2x → 200, 30 → 302, 31 → 301, 40 → 500,
 * 41 → 503, 42 → 500, 43 → 502, 44 → 429, 50 → 400, 51 → 404, 52 → 410,
 * 53 → 421, 59 → 400, 60 → 401, 61 → 403, 62 → 403; an unknown code takes
 * the value of its first digit's class (4x → 500, 5x → 400, 6x → 401).
 *
 * @param status A Gemini status, 10 to 69.
 * @returns An HTTP status.
 *
 * @example
 * ```ts
 * import { httpStatusFromGemini } from "./gemini.ts";
 *
 * console.assert(httpStatusFromGemini(51) === 404);
 * console.assert(httpStatusFromGemini(31) === 301);
 * ```
 */
export function httpStatusFromGemini(status: number): number {
  const exact: Record<number, number> = {
    30: 302,
    31: 301,
    40: 500,
    41: 503,
    42: 500,
    43: 502,
    44: 429,
    50: 400,
    51: 404,
    52: 410,
    53: 421,
    59: 400,
    60: 401,
    61: 403,
    62: 403,
  };
  return exact[status] ??
    [200, 200, 200, 302, 500, 400, 401][Math.floor(status / 10)] ?? 500;
}

/**
 * The Gemini status line for a response: its `x-gemini-status` and
 * `x-gemini-meta` when it has them (a {@linkcode geminiResponse}), else the
 * translation of its HTTP status given in the module documentation.
 *
 * @param response The response to describe.
 * @returns The status and meta.
 * @throws {TypeError} For an `x-gemini-status` that is not two digits from
 * 10 to 69, or a meta over 1024 bytes.
 *
 * @example
 * ```ts
 * import { geminiHeadFor } from "./gemini.ts";
 *
 * const head = geminiHeadFor(new Response(null, { status: 404 }));
 * console.assert(head.status === 51 && head.meta === "Not Found");
 * ```
 */
export function geminiHeadFor(
  response: Pick<Response, "status" | "statusText" | "headers">,
): GeminiStatus {
  const { headers } = response;
  const explicit = headers.get(GEMINI_STATUS_HEADER);
  let head: GeminiStatus;
  if (explicit !== null) {
    head = {
      status: Number(explicit),
      meta: metaText(headers.get(GEMINI_META_HEADER) ?? ""),
    };
    if (!/^[1-6][0-9]$/.test(explicit)) {
      throw new TypeError(
        `x-gemini-status ${JSON.stringify(explicit)} is not a Gemini status`,
      );
    }
  } else {
    head = translate(response);
  }
  if (utf8.encode(head.meta).length > MAX_META_BYTES) {
    throw new TypeError(`Gemini meta is over ${MAX_META_BYTES} bytes`);
  }
  return head;
}

function translate(
  response: Pick<Response, "status" | "statusText" | "headers">,
): GeminiStatus {
  const { status, headers } = response;
  const reason = response.statusText || statusText(status) ||
    (status >= 500 ? "Server error" : "Request failed");
  if (status >= 200 && status < 300) {
    return { status: 20, meta: headers.get("content-type") || "text/gemini" };
  }
  if (status >= 300 && status < 400) {
    const location = headers.get("location");
    if (location) {
      return {
        status: status === 301 || status === 308 ? 31 : 30,
        meta: metaText(location),
      };
    }
    return { status: 40, meta: `${reason} without a Location` };
  }
  if (status === 429) {
    const retry = headers.get("retry-after");
    return { status: 44, meta: retry && /^[0-9]+$/.test(retry) ? retry : "60" };
  }
  const exact: Record<number, number> = {
    400: 59,
    401: 60,
    403: 61,
    404: 51,
    410: 52,
    421: 53,
    500: 42,
    502: 43,
    503: 41,
    504: 43,
  };
  return {
    status: exact[status] ?? (status >= 500 ? 40 : 50),
    meta: reason,
  };
}

// A header value holds bytes; meta is UTF-8 text.
function metaText(byteString: string): string {
  if (!/[\u0080-\u00ff]/.test(byteString)) return byteString;
  const bytes = Uint8Array.from(byteString, (c) => c.charCodeAt(0));
  return utf8Decoder.decode(bytes);
}

function metaHeader(text: string): string {
  if (!/[^ -~\t]/.test(text)) return text;
  return String.fromCharCode(...utf8.encode(text));
}

/**
 * A Gemini answer as a `Response`: `serve()` writes it as `NN meta\r\n` and
 * the body (2x only) when the request comes from a Gemini front end.
 *
 * The `Response` also makes sense as HTTP: its status is
 * {@linkcode httpStatusFromGemini}, a 2x has `content-type: meta`, a 3x has
 * `location: meta`, and `x-gemini-status` / `x-gemini-meta` carry the
 * original.
 *
 * @param status The Gemini status, 10 to 69.
 * @param meta The meta: MIME type, URL, prompt or message (no CR or LF, at
 * most 1024 bytes of UTF-8).
 * @param body The body, for a 2x status only.
 * @returns The response.
 * @throws {TypeError} For a bad status or meta, or a body on a status other
 * than 2x.
 *
 * @example
 * ```ts
 * import { geminiResponse } from "./gemini.ts";
 *
 * const response = geminiResponse(20, "text/gemini", "# Hello\n");
 * console.assert(response.headers.get("x-gemini-status") === "20");
 * console.assert(response.headers.get("content-type") === "text/gemini");
 * ```
 */
export function geminiResponse(
  status: number,
  meta: string,
  body?: BodyInit | null,
): Response {
  if (!Number.isInteger(status) || status < 10 || status > 69) {
    throw new TypeError(`${status} is not a Gemini status (10 to 69)`);
  }
  if (/[\r\n]/.test(meta)) {
    throw new TypeError("Gemini meta must not contain CR or LF");
  }
  if (utf8.encode(meta).length > MAX_META_BYTES) {
    throw new TypeError(`Gemini meta is over ${MAX_META_BYTES} bytes`);
  }
  const success = status >= 20 && status < 30;
  if (!success && body !== undefined && body !== null) {
    throw new TypeError(`a Gemini ${status} answer has no body`);
  }
  const headers = new Headers({
    [GEMINI_STATUS_HEADER]: String(status),
    [GEMINI_META_HEADER]: metaHeader(meta),
  });
  if (success && meta) headers.set("content-type", metaHeader(meta));
  if (status >= 30 && status < 40) headers.set("location", metaHeader(meta));
  return new Response(success ? body ?? null : null, {
    status: httpStatusFromGemini(status),
    headers,
  });
}

/**
 * The Gemini status and meta of a response built by
 * {@linkcode geminiResponse} or read by `scgiFetch` from a Gemini backend.
 *
 * @param response The response.
 * @returns The status and meta (decoded as UTF-8), or `undefined` when the
 * response carries no Gemini status.
 *
 * @example
 * ```ts
 * import { gemini, readGeminiStatus } from "./gemini.ts";
 *
 * const head = readGeminiStatus(gemini.redirect("gemini://example.com/new"));
 * console.assert(head?.status === 30);
 * console.assert(head?.meta === "gemini://example.com/new");
 * ```
 */
export function readGeminiStatus(
  response: Pick<Response, "headers">,
): GeminiStatus | undefined {
  const status = response.headers.get(GEMINI_STATUS_HEADER);
  if (status === null || !/^[0-9]{2}$/.test(status)) return undefined;
  return {
    status: Number(status),
    meta: metaText(response.headers.get(GEMINI_META_HEADER) ?? ""),
  };
}

/** Shortcuts for the common Gemini answers; all return a `Response`. */
export interface GeminiHelpers {
  /** `20 mime` with a body; the MIME type defaults to `text/gemini`. */
  success(body: BodyInit | null, mime?: string): Response;
  /** `10 prompt` (or `11` for sensitive input such as a password). */
  input(prompt: string, options?: { sensitive?: boolean }): Response;
  /** `30 url` (or `31` when permanent). */
  redirect(url: string | URL, options?: { permanent?: boolean }): Response;
  /** `51 message`. */
  notFound(message?: string): Response;
  /** `59 message`. */
  badRequest(message?: string): Response;
  /** `40 message` (or another 4x temporary failure status). */
  temporaryFailure(message?: string, status?: number): Response;
  /** `50 message` (or another 5x permanent failure status). */
  permanentFailure(message?: string, status?: number): Response;
  /** `60 message`: the client must present a certificate. */
  certificateRequired(message?: string): Response;
}

/**
 * Shortcuts for the common Gemini answers.
 *
 * @example
 * ```ts
 * import { gemini } from "./gemini.ts";
 *
 * const response = gemini.notFound();
 * console.assert(response.status === 404);
 * console.assert(response.headers.get("x-gemini-meta") === "Not found");
 * ```
 */
export const gemini: GeminiHelpers = {
  success: (body, mime = "text/gemini") => geminiResponse(20, mime, body),
  input: (prompt, options = {}) =>
    geminiResponse(options.sensitive ? 11 : 10, prompt),
  redirect: (url, options = {}) =>
    geminiResponse(options.permanent ? 31 : 30, String(url)),
  notFound: (message = "Not found") => geminiResponse(51, message),
  badRequest: (message = "Bad request") => geminiResponse(59, message),
  temporaryFailure: (message = "Temporary failure", status = 40) =>
    geminiResponse(failureStatus(status, 4), message),
  permanentFailure: (message = "Permanent failure", status = 50) =>
    geminiResponse(failureStatus(status, 5), message),
  certificateRequired: (message = "Certificate required") =>
    geminiResponse(60, message),
};

function failureStatus(status: number, tens: number): number {
  if (Math.floor(status / 10) !== tens) {
    throw new TypeError(`${status} is not a ${tens}x status`);
  }
  return status;
}

/**
 * Whether CGI variables come from a Gemini front end (they have
 * `GEMINI_URL`), which is how `serve({ protocol: "auto" })` decides.
 *
 * @param env The request's variables (`info.env`).
 * @returns `true` for a Gemini request.
 *
 * @example
 * ```ts
 * import { isGeminiRequest } from "./gemini.ts";
 *
 * console.assert(isGeminiRequest({ GEMINI_URL: "gemini://example.com/" }));
 * console.assert(!isGeminiRequest({ REQUEST_URI: "/" }));
 * ```
 */
export function isGeminiRequest(
  env: { readonly GEMINI_URL?: string | undefined },
): boolean {
  return typeof env.GEMINI_URL === "string" && env.GEMINI_URL !== "";
}

/**
 * Encodes the Gemini status line `NN meta\r\n`.
 *
 * @param head The status and meta.
 * @returns The line's bytes (meta as UTF-8).
 *
 * @example
 * ```ts
 * import { encodeGeminiHead } from "./gemini.ts";
 *
 * const line = encodeGeminiHead({ status: 51, meta: "Not found" });
 * console.assert(new TextDecoder().decode(line) === "51 Not found\r\n");
 * ```
 */
export function encodeGeminiHead(head: GeminiStatus): Uint8Array<ArrayBuffer> {
  return utf8.encode(`${head.status} ${head.meta}\r\n`);
}

/**
 * Encodes a response as a raw Gemini answer: the status line, then (for 2x)
 * the body chunks as the response produces them. This is what `serve()`
 * writes to a Gemini front end; the first body chunk goes out together with
 * the line when it is ready at once.
 *
 * @param response The response; its body is consumed (or cancelled when the
 * status has none).
 * @returns The output chunks.
 * @throws {TypeError} See {@linkcode geminiHeadFor}, and for a body chunk that
 * is not a `Uint8Array`.
 *
 * @example
 * ```ts
 * import { encodeGeminiResponse, gemini } from "./gemini.ts";
 *
 * const chunks = await Array.fromAsync(encodeGeminiResponse(gemini.success("# Hi\n")));
 * console.assert(new TextDecoder().decode(chunks[0]) === "20 text/gemini\r\n# Hi\n");
 * ```
 */
export async function* encodeGeminiResponse(
  response: Response,
  options: { signal?: AbortSignal } = {},
): AsyncGenerator<Uint8Array<ArrayBuffer>, void, undefined> {
  let head: GeminiStatus;
  try {
    head = geminiHeadFor(response);
  } catch (error) {
    response.body?.cancel().catch(() => {});
    throw error;
  }
  const line = encodeGeminiHead(head);
  yield* headAndBody(
    () => line,
    response,
    options.signal,
    head.status >= 20 && head.status < 30,
  );
}

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
