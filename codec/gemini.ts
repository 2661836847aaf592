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
import {
  GEMINI_META_HEADER,
  GEMINI_STATUS_HEADER,
  type GeminiStatus,
  httpStatusFromGemini,
  metaHeader,
  metaText,
} from "./_gemini_status.ts";
import { statusText } from "./status_text.ts";

export {
  GEMINI_META_HEADER,
  GEMINI_STATUS_HEADER,
  type GeminiStatus,
  httpStatusFromGemini,
} from "./_gemini_status.ts";
export * from "./gemini_client.ts";

/** Which answer format a server writes, or a client expects. */
export type ScgiProtocol = "cgi" | "gemini" | "auto";

const MAX_META_BYTES = 1024;
const utf8 = new TextEncoder();

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
 * const http: Record<string, string> = { REQUEST_URI: "/" };
 * console.assert(isGeminiRequest({ GEMINI_URL: "gemini://example.com/" }));
 * console.assert(!isGeminiRequest(http));
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
