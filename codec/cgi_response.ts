/**
 * Reading a CGI response (what an SCGI backend writes back) into a standard
 * `Response` whose body streams as it arrives.
 *
 * Accepted: a `Status:` header, an NPH first line (`HTTP/1.1 200 OK`), CRLF or
 * bare LF line ends, `Location` without `Status` as a 302, repeated
 * `Set-Cookie`, and Gemini answers, raw (`20 text/gemini\r\n` and the body)
 * or in a CGI head (`Status: 20 text/gemini`, as flup writes them). Refused
 * with a clear {@linkcode ScgiClientError}: a head over the limit, lines that
 * aren't headers, a status that is not a number from 200 to 599 (or a
 * Gemini status), and a body that ends before its `Content-Length`.
 *
 * @example
 * ```ts
 * import { readCgiResponse } from "./cgi_response.ts";
 *
 * const wire = new TextEncoder().encode(
 *   "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno such page",
 * );
 * const response = await readCgiResponse(ReadableStream.from([wire]));
 * console.assert(response.status === 404);
 * console.assert(await response.text() === "no such page");
 * ```
 *
 * @module
 */

import { ByteReader } from "./_byte_reader.ts";
import type { ByteSource } from "./byte_source.ts";
import { ScgiClientError } from "./errors.ts";
import { responseHasBody } from "./response_to_cgi.ts";
import type { ScgiProtocol } from "./gemini.ts";
import { responseInitFromGemini } from "./gemini_client.ts";
import {
  malformed,
  type ParsedHead,
  parseHead,
  readGeminiHead,
  readHeadLines,
} from "./_response_head.ts";

/** Options for {@linkcode readCgiResponse}. */
export interface ReadCgiResponseOptions {
  /**
   * Largest response head in bytes.
   * @default {65536}
   */
  maxHeadBytes?: number;
  /**
   * Largest response body in bytes; more errors the body stream with
   * `response_too_large`.
   * @default {Infinity}
   */
  maxBodyBytes?: number;
  /** The request method: a `HEAD` response has no body. @default {"GET"} */
  method?: string;
  /**
   * Called once when nothing more will be read: the body has ended, failed
   * or been cancelled, or there is no body. The client closes the
   * connection here.
   */
  onDone?: (error?: unknown) => void;
  /**
   * The answer's format. `"auto"` reads as Gemini a raw Gemini answer (a
   * first line of two digits, then a space or the line end:
   * `20 text/gemini\r\n`, no blank line before the body), which no CGI head
   * can start with, and a CGI head whose `Status` is a Gemini status (two
   * digits, where a CGI status has three: `Status: 20 text/gemini`, as flup
   * writes a WSGI app's Gemini status); anything else as CGI. `"gemini"`
   * accepts only those two forms, `"cgi"` neither. A Gemini answer becomes
   * the same `Response` either way, with `x-gemini-status` and
   * `x-gemini-meta` headers (see `gemini.ts`); of a CGI head only the
   * `Content-Length` is used, to end the body.
   * @default {"auto"}
   */
  protocol?: ScgiProtocol;
}

/** A parsed response head. */
export interface CgiResponseHead {
  /** The status, 200 to 599. */
  status: number;
  /** The reason phrase as sent (may be empty). */
  statusText: string;
  /** The headers, `Status` left out. */
  headers: Headers;
}

const DEFAULT_MAX_HEAD_BYTES = 65536;

/**
 * Parses the lines of a CGI response head (without the blank line).
 *
 * @param lines The head's lines, line ends removed, as byte strings.
 * @returns The status, reason and headers.
 * @throws {ScgiClientError} `malformed_response` for a line that is not a
 * header, a bad status, or a status outside 200 to 599.
 *
 * @example
 * ```ts
 * import { parseCgiResponseHead } from "./cgi_response.ts";
 *
 * const head = parseCgiResponseHead(["Location: /next"]);
 * console.assert(head.status === 302);
 * ```
 */
export function parseCgiResponseHead(
  lines: readonly string[],
): CgiResponseHead {
  return parseHead(lines, false);
}
/**
 * Reads a CGI response from a byte stream.
 *
 * The head is read whole (up to `maxHeadBytes`); the body is a stream over
 * what follows, read only as fast as the caller reads it.
 *
 * @param source The connection's readable side, or a reader of it.
 * @param options Limits, the request method, and a callback for the end.
 * @returns The response.
 * @throws {ScgiClientError} `head_too_large` or `malformed_response`; the
 * body stream errors with `response_too_large` or `truncated_response`.
 *
 * @example
 * ```ts
 * import { readCgiResponse } from "./cgi_response.ts";
 *
 * const wire = new TextEncoder().encode("Content-Type: text/plain\n\nhello");
 * const response = await readCgiResponse(ReadableStream.from([wire]));
 * console.assert(response.status === 200);
 * ```
 */
export async function readCgiResponse(
  source: ReadableStream<Uint8Array> | ByteSource,
  options: ReadCgiResponseOptions = {},
): Promise<Response> {
  let done = false;
  const finish = (error?: unknown) => {
    if (done) return;
    done = true;
    options.onDone?.(error);
  };
  const reader = new ByteReader(
    source instanceof ReadableStream ? source.getReader() : source,
  );
  let head: ParsedHead;
  try {
    const protocol = options.protocol ?? "auto";
    const maxHeadBytes = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
    let gemini = protocol === "cgi"
      ? undefined
      : await readGeminiHead(reader, maxHeadBytes, protocol === "gemini");
    // The framing of a Gemini answer in a CGI head: its Content-Length.
    let declaredLength: string | null = null;
    if (!gemini) {
      head = parseHead(
        await readHeadLines(reader, maxHeadBytes),
        protocol !== "cgi",
      );
      if (head.gemini) {
        gemini = head.gemini;
        declaredLength = head.headers.get("content-length");
      } else if (protocol === "gemini") {
        throw malformed(
          `answer with ${
            nphOrStatus(head)
          } is not a Gemini answer (no Gemini status line or Status)`,
        );
      }
    }
    if (gemini) {
      let init: ReturnType<typeof responseInitFromGemini>;
      try {
        init = responseInitFromGemini(gemini);
      } catch {
        throw malformed(
          `Gemini meta ${
            JSON.stringify(gemini.meta.slice(0, 80))
          } has characters a header can't carry`,
        );
      }
      if (gemini.status < 20 || gemini.status >= 30) {
        finish();
        return new Response(null, init);
      }
      return new Response(
        bodyStream(reader, declaredLength, options, finish),
        init,
      );
    }
  } catch (error) {
    finish(error);
    throw error;
  }
  // Every Gemini answer has returned above: this is a CGI head.
  const cgi = head!;
  if (!responseHasBody(cgi.status, options.method)) {
    finish();
    return new Response(null, cgi);
  }
  return new Response(
    bodyStream(reader, cgi.headers.get("content-length"), options, finish),
    cgi,
  );
}

function nphOrStatus(head: CgiResponseHead): string {
  return `status ${head.status}${head.statusText ? " " + head.statusText : ""}`;
}
function bodyStream(
  reader: ByteReader,
  declared: string | null,
  options: ReadCgiResponseOptions,
  finish: (error?: unknown) => void,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  const expected = declared !== null && /^[0-9]{1,16}$/.test(declared)
    ? Number(declared)
    : undefined;
  const maxBodyBytes = options.maxBodyBytes ?? Infinity;
  const limit = Math.min(expected ?? Infinity, maxBodyBytes);
  let received = 0;
  const fail = (error: unknown) => {
    finish(error);
    return error;
  };
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller) {
      if (received === expected) {
        controller.close();
        finish();
        return;
      }
      let chunk: Uint8Array | undefined;
      try {
        chunk = await reader.next(Math.max(limit - received, 1));
      } catch (error) {
        throw fail(error);
      }
      if (chunk === undefined) {
        if (expected !== undefined && received < expected) {
          throw fail(
            new ScgiClientError(
              "truncated_response",
              `backend closed the connection after ${received} of ${expected} body bytes`,
            ),
          );
        }
        controller.close();
        finish();
        return;
      }
      received += chunk.length;
      if (received > maxBodyBytes) {
        throw fail(
          new ScgiClientError(
            "response_too_large",
            `response body is larger than the limit of ${maxBodyBytes} bytes`,
          ),
        );
      }
      controller.enqueue(chunk as Uint8Array<ArrayBuffer>);
      if (received === expected) {
        // Whatever the backend sends past its own length is not the body.
        controller.close();
        finish();
      }
    },
    cancel(reason) {
      finish(reason);
    },
  }, { highWaterMark: 0 });
}
