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
import { bytesToByteString, byteStringToBytes } from "./_byte_string.ts";
import type { ByteSource } from "./byte_source.ts";
import { ScgiClientError } from "./errors.ts";
import { responseHasBody } from "./response_to_cgi.ts";
import {
  type GeminiStatus,
  parseGeminiHead,
  responseInitFromGemini,
  type ScgiProtocol,
} from "./gemini.ts";

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

const LF = 0x0a;
const DEFAULT_MAX_HEAD_BYTES = 65536;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NPH = /^HTTP\/1\.[01] ([0-9]{3})(?: (.*))?$/;
const STATUS = /^([0-9]{3})(?:[ \t]+(.*))?$/;
const REASON = /^[\t\x20-\x7e\x80-\xff]*$/;

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

// A parsed head; `gemini` is set (and `status` 0) when Gemini statuses are
// allowed and the Status header holds one.
interface ParsedHead extends CgiResponseHead {
  gemini?: GeminiStatus;
}

function parseHead(
  lines: readonly string[],
  allowGemini: boolean,
): ParsedHead {
  const headers = new Headers();
  let status: number | undefined;
  let reason = "";
  let gemini: GeminiStatus | undefined;
  let start = 0;
  const nph = lines[0]?.match(NPH);
  if (nph) {
    status = Number(nph[1]);
    reason = nph[2] ?? "";
    start = 1;
  }
  for (let i = start; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      throw malformed(
        `line ${JSON.stringify(line.slice(0, 80))} is not a header`,
      );
    }
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === "status") {
      const match = value.match(STATUS);
      // Only a value that is no CGI status is tried as a Gemini one, so a
      // CGI answer costs nothing more.
      if (
        !match && allowGemini && !nph && status === undefined &&
        gemini === undefined
      ) {
        gemini = geminiStatusOf(value);
        if (gemini) continue;
      }
      if (!match || (status !== undefined && !nph) || gemini) {
        throw malformed(
          `Status ${JSON.stringify(value.slice(0, 80))} is not a status`,
        );
      }
      if (!nph) {
        status = Number(match[1]);
        reason = match[2] ?? "";
      }
      continue;
    }
    try {
      headers.append(name, value);
    } catch {
      throw malformed(`header ${name} has a value HTTP can't carry`);
    }
  }
  if (gemini) return { status: 0, statusText: "", headers, gemini };
  status ??= headers.has("location") ? 302 : 200;
  if (status < 200 || status > 599) {
    throw malformed(`status ${status} is outside 200 to 599`);
  }
  if (!REASON.test(reason)) {
    // `Response` would throw a bare TypeError on it.
    throw malformed(
      `reason phrase ${JSON.stringify(reason)} has control characters`,
    );
  }
  headers.delete("transfer-encoding");
  return { status, statusText: reason, headers };
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

const GEMINI_STATUS = /^[1-6][0-9](?:[ \t]|$)/;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

// A `Status` value that is a Gemini status line (`20 text/gemini`). The meta
// is a byte string: UTF-8 as Gemini has it, or else taken byte for byte
// (flup on Python 3 writes the status as Latin-1).
function geminiStatusOf(value: string): GeminiStatus | undefined {
  if (!GEMINI_STATUS.test(value)) return undefined;
  let text = value;
  if (/[\x80-\xff]/.test(value)) {
    try {
      text = strictUtf8.decode(byteStringToBytes(value));
    } catch {
      // Not UTF-8: each byte is the character of that code.
    }
  }
  return parseGeminiHead(text);
}

const GEMINI_START = /^[1-6][0-9](?:[ \t\r\n]|$)/;
const HEADER_START = /^[A-Za-z]/;
const utf8 = new TextDecoder();

// A Gemini answer starts with two digits and a space or the line end, which
// no CGI head can: a header name is followed by a colon, an NPH line starts
// with "HTTP/".
async function readGeminiHead(
  reader: ByteReader,
  maxHeadBytes: number,
  required: boolean,
): Promise<GeminiStatus | undefined> {
  while (reader.buffered.length < 3 && await reader.fill());
  const start = bytesToByteString(reader.buffered.subarray(0, 3));
  if (!GEMINI_START.test(start)) {
    // A CGI head starts with a header name; it may hold a Gemini Status.
    if (!required || HEADER_START.test(start)) return undefined;
    throw malformed(
      reader.buffered.length === 0
        ? "backend closed the connection without answering"
        : `answer ${JSON.stringify(start)}... is not a Gemini status line`,
    );
  }
  let end = reader.buffered.indexOf(LF);
  while (end < 0) {
    if (reader.buffered.length > maxHeadBytes) {
      throw new ScgiClientError(
        "head_too_large",
        `Gemini status line is longer than the limit of ${maxHeadBytes} bytes`,
      );
    }
    const searched = reader.buffered.length;
    // A status line cut off by the end of the answer still counts.
    if (!await reader.fill()) break;
    end = reader.buffered.indexOf(LF, searched);
  }
  const length = end < 0 ? reader.buffered.length : end;
  if (length > maxHeadBytes) {
    throw new ScgiClientError(
      "head_too_large",
      `Gemini status line is longer than the limit of ${maxHeadBytes} bytes`,
    );
  }
  const lineEnd = length > 0 && reader.buffered[length - 1] === 0x0d
    ? length - 1
    : length;
  const line = utf8.decode(reader.buffered.subarray(0, lineEnd));
  reader.skip(length + 1);
  const head = parseGeminiHead(line);
  if (!head) throw malformed(`${JSON.stringify(line)} is not a Gemini status`);
  return head;
}

async function readHeadLines(
  reader: ByteReader,
  maxHeadBytes: number,
): Promise<string[]> {
  const lines: string[] = [];
  let used = 0;
  while (true) {
    let end = reader.buffered.indexOf(LF);
    while (end < 0) {
      if (used + reader.buffered.length > maxHeadBytes) {
        throw new ScgiClientError(
          "head_too_large",
          `response head is larger than the limit of ${maxHeadBytes} bytes`,
        );
      }
      const searched = reader.buffered.length;
      if (!await reader.fill()) {
        throw malformed(
          used + searched === 0
            ? "backend closed the connection without answering"
            : `backend closed the connection inside the response head after ${
              used + searched
            } bytes`,
        );
      }
      end = reader.buffered.indexOf(LF, searched);
    }
    used += end + 1;
    if (used > maxHeadBytes) {
      throw new ScgiClientError(
        "head_too_large",
        `response head is larger than the limit of ${maxHeadBytes} bytes`,
      );
    }
    const lineEnd = end > 0 && reader.buffered[end - 1] === 0x0d
      ? end - 1
      : end;
    const line = bytesToByteString(reader.buffered.subarray(0, lineEnd));
    reader.skip(end + 1);
    if (line === "") {
      if (lines.length === 0) throw malformed("response head is empty");
      return lines;
    }
    lines.push(line);
  }
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

function malformed(message: string): ScgiClientError {
  return new ScgiClientError("malformed_response", message);
}
