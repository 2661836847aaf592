/**
 * The one Response-to-CGI translator: a standard `Response` becomes the bytes
 * an SCGI backend writes (`Status: 200 OK`, headers, a blank line, the body).
 *
 * The head always starts with `Status: NNN Reason`, so no front end guesses
 * (Apache turns a `Location` without `Status` into an internal redirect).
 * Each `Set-Cookie` gets its own line, hop-by-hop headers such as
 * `Transfer-Encoding` are left out, and `HEAD`, 1xx, 204, 205 and 304 answers
 * have no body. Header values can't inject lines: `Headers` refuses CR, LF and NUL,
 * and the reason phrase is checked here.
 *
 * @example
 * ```ts
 * import { encodeCgiResponse } from "./response_to_cgi.ts";
 *
 * const chunks = await Array.fromAsync(encodeCgiResponse(new Response("hi")));
 * console.assert(
 *   new TextDecoder().decode(chunks[0]) ===
 *     "Status: 200 OK\r\ncontent-type: text/plain;charset=UTF-8\r\ncontent-length: 2\r\n\r\nhi",
 * );
 * ```
 *
 * @module
 */

import { headAndBody } from "./_body_output.ts";
import { byteStringToBytes } from "./_byte_string.ts";
import { statusText } from "./status_text.ts";

/** Options for {@linkcode encodeCgiResponse}. */
export interface EncodeCgiResponseOptions {
  /**
   * The request's method: a `HEAD` request gets the head only.
   * @default {"GET"}
   */
  method?: string;
  /**
   * Aborting it cancels the response body: the output ends even while it
   * waits for a chunk that may never come (the connection is gone).
   */
  signal?: AbortSignal;
}

/** Response headers that belong to one hop, or that the head writes itself. */
const LEFT_OUT = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "status",
]);

const LINE_BREAK = /[\r\n\0]/;

/**
 * Whether a response to `method` with `status` carries a body.
 *
 * @param status The response status.
 * @param method The request method.
 * @returns `false` for `HEAD` and for 1xx, 204, 205 and 304 statuses.
 *
 * @example
 * ```ts
 * import { responseHasBody } from "./response_to_cgi.ts";
 *
 * console.assert(!responseHasBody(304, "GET"));
 * console.assert(!responseHasBody(200, "HEAD"));
 * ```
 */
export function responseHasBody(status: number, method = "GET"): boolean {
  return method !== "HEAD" && status !== 204 && status !== 205 &&
    status !== 304 &&
    (status < 100 || status >= 200);
}

/**
 * Encodes a response head: the `Status` line, the headers and the blank line.
 *
 * @param response The status, reason and headers to write.
 * @param contentLength A `content-length` to add when the response has none;
 * `undefined` adds none.
 * @returns The head's bytes (header values are bytes, one per character).
 *
 * @example
 * ```ts
 * import { encodeResponseHead } from "./response_to_cgi.ts";
 *
 * const head = encodeResponseHead(
 *   new Response(null, { status: 302, headers: { location: "/login" } }),
 *   0,
 * );
 * console.assert(
 *   new TextDecoder().decode(head) ===
 *     "Status: 302 Found\r\nlocation: /login\r\ncontent-length: 0\r\n\r\n",
 * );
 * ```
 */
export function encodeResponseHead(
  response: Pick<Response, "status" | "statusText" | "headers">,
  contentLength?: number,
): Uint8Array<ArrayBuffer> {
  const { status, headers } = response;
  if (!Number.isInteger(status) || status < 100 || status > 999) {
    throw new RangeError(`status ${status} is not a three-digit code`);
  }
  let reason = response.statusText;
  if (!reason || LINE_BREAK.test(reason)) reason = statusText(status);
  let head = reason
    ? `Status: ${status} ${reason}\r\n`
    : `Status: ${status}\r\n`;
  for (const [name, value] of headers) {
    if (!LEFT_OUT.has(name)) head += `${name}: ${value}\r\n`;
  }
  if (contentLength !== undefined && !headers.has("content-length")) {
    head += `content-length: ${contentLength}\r\n`;
  }
  head += "\r\n";
  return byteStringToBytes(head);
}

/**
 * Encodes a whole response as CGI output: the head, then the body chunks as
 * the response produces them, pulled only as fast as the caller consumes
 * them (backpressure).
 *
 * A body that is complete at once (a string, bytes, JSON) comes out as one
 * chunk together with the head and gets a `content-length`; a streamed body
 * gets its head straight away and the chunks as they come. Ending the
 * iteration early cancels the response body.
 *
 * @param response The response to encode; its body is consumed.
 * @param options The request method (`HEAD` gets no body).
 * @returns The output chunks.
 * @throws {TypeError} When the body yields something other than bytes.
 *
 * @example Writing a response to a connection
 * ```ts ignore
 * import { encodeCgiResponse } from "./response_to_cgi.ts";
 *
 * const conn = await Deno.connect({ port: 4000 });
 * const writer = conn.writable.getWriter();
 * for await (const chunk of encodeCgiResponse(new Response("ok"))) {
 *   await writer.write(chunk);
 * }
 * ```
 */
export function encodeCgiResponse(
  response: Response,
  options: EncodeCgiResponseOptions = {},
): AsyncGenerator<Uint8Array<ArrayBuffer>, void, undefined> {
  return headAndBody(
    (contentLength) => encodeResponseHead(response, contentLength),
    response,
    options.signal,
    responseHasBody(response.status, options.method),
  );
}

/**
 * {@linkcode encodeCgiResponse} as a `ReadableStream`, to pipe into a
 * connection or to read in a test.
 *
 * @param response The response to encode; its body is consumed.
 * @param options The request method.
 * @returns The CGI output.
 *
 * @example
 * ```ts
 * import { cgiResponseStream } from "./response_to_cgi.ts";
 *
 * const text = await new Response(cgiResponseStream(new Response(null, { status: 204 })))
 *   .text();
 * console.assert(text === "Status: 204 No Content\r\n\r\n");
 * ```
 */
export function cgiResponseStream(
  response: Response,
  options: EncodeCgiResponseOptions = {},
): ReadableStream<Uint8Array<ArrayBuffer>> {
  return ReadableStream.from(encodeCgiResponse(response, options));
}
