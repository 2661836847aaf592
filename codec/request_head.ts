/**
 * Decoding an SCGI request: the netstring of CGI variables, then exactly
 * `CONTENT_LENGTH` bytes of body, streamed.
 *
 * The framing is strict (decimal length without leading zeros, bounded before
 * anything is allocated, trailing `,` required, NUL-terminated pairs,
 * non-empty names), while the content is what real front ends send: `SCGI`
 * may come last (lighttpd) or not at all (nginx without Debian's
 * `scgi_params`), names may repeat (nginx 1.22 repeats a request header that
 * occurs twice), and an empty value is a value.
 *
 * No socket is touched here: the input is any `ReadableStream` of bytes.
 *
 * @example Decoding a request from bytes
 * ```ts
 * import { readRequestHead } from "./request_head.ts";
 *
 * const wire = new TextEncoder().encode(
 *   "24:CONTENT_LENGTH\x005\x00SCGI\x001\x00,hello",
 * );
 * const head = await readRequestHead(ReadableStream.from([wire]));
 * console.assert(head.env.CONTENT_LENGTH === "5");
 * console.assert(await new Response(head.body).text() === "hello");
 * ```
 *
 * @module
 */

import { ByteReader } from "./_byte_reader.ts";
import { decodeVariables } from "./_variables.ts";
import type { ByteSource } from "./byte_source.ts";
import { ScgiProtocolError } from "./errors.ts";

/**
 * CGI variables by name. A name the front end sent more than once (nginx 1.22
 * does that for a repeated request header) holds the values joined the way
 * HTTP joins them: `"; "` for `HTTP_COOKIE`, `", "` for the rest. The object
 * has no prototype, so any name is safe to look up.
 */
export type CgiEnv = Readonly<Record<string, string>>;

/** CGI variables exactly as received: wire order, repeats kept. */
export type CgiVariableList = ReadonlyArray<
  readonly [name: string, value: string]
>;

/** Limits applied while a request head is decoded. */
export interface RequestHeadLimits {
  /**
   * Largest header block (the netstring's content) in bytes; more is a 431.
   * @default {65536}
   */
  maxHeaderBytes?: number;
  /**
   * Most variables in one header block; more is a 431.
   * @default {1000}
   */
  maxVariables?: number;
  /**
   * Largest `CONTENT_LENGTH` accepted; more is a 413.
   * @default {Infinity}
   */
  maxBodyBytes?: number;
}

/** A decoded header block. */
export interface HeaderBlock {
  /** Variables by name (repeats joined, see {@linkcode CgiEnv}). */
  env: CgiEnv;
  /** Variables in wire order with repeats. */
  envList: CgiVariableList;
  /** `CONTENT_LENGTH` as a number. */
  contentLength: number;
  /**
   * Names whose value was not valid UTF-8. Such a value holds one character
   * per byte (U+0000 to U+00FF), so no byte is lost; every other value is
   * decoded as UTF-8.
   */
  nonUtf8: ReadonlySet<string>;
}

/** A decoded request head and the body that follows it. */
export interface RequestHead extends HeaderBlock {
  /**
   * Exactly `contentLength` bytes, streamed as they arrive with backpressure;
   * `null` when `contentLength` is 0. It errors with a 400
   * {@linkcode ScgiProtocolError} if the stream ends early.
   */
  body: ReadableStream<Uint8Array<ArrayBuffer>> | null;
  /**
   * Fulfils once the last body byte has been read (at once for an empty
   * body), rejects if the stream ends or fails first, and stays pending while
   * nobody reads the body to its end.
   */
  bodyEnd: Promise<void>;
}

const DEFAULT_MAX_HEADER_BYTES = 65536;
const COLON = 0x3a;
const COMMA = 0x2c;
const ZERO = 0x30;
const NINE = 0x39;

/**
 * Parses the netstring length prefix (`"123:"`) at the start of `bytes`.
 *
 * At most as many digits as `maxHeaderBytes` has are looked at, so a hostile
 * peer can't make the decoder buffer an endless number.
 *
 * @param bytes The first bytes of a request.
 * @param maxHeaderBytes The largest length accepted.
 * @param filled How many of `bytes` hold data (default: all of them), so a
 * read buffer can be passed without a view of its filled part.
 * @returns The length and the offset where the block starts, or `undefined`
 * when more bytes are needed to decide.
 * @throws {ScgiProtocolError} 400 for anything but a decimal number without
 * leading zeros followed by `:`, 431 for a length over `maxHeaderBytes`.
 *
 * @example
 * ```ts
 * import { parseNetstringLength } from "./request_head.ts";
 *
 * const prefix = new TextEncoder().encode("70:CONTENT_LENGTH");
 * console.assert(parseNetstringLength(prefix, 65536)?.length === 70);
 * ```
 */
export function parseNetstringLength(
  bytes: Uint8Array,
  maxHeaderBytes: number,
  filled: number = bytes.length,
): { length: number; start: number } | undefined {
  let maxDigits = 1;
  for (let limit = maxHeaderBytes; limit >= 10; limit /= 10) maxDigits++;
  const end = Math.min(filled, maxDigits + 1);
  let length = 0;
  for (let i = 0; i < end; i++) {
    const byte = bytes[i]!;
    if (byte === COLON) {
      if (i === 0) {
        throw new ScgiProtocolError(400, "netstring length is empty");
      }
      if (length > maxHeaderBytes) break;
      return { length, start: i + 1 };
    }
    if (byte < ZERO || byte > NINE) {
      throw new ScgiProtocolError(
        400,
        "request does not start with a netstring length (decimal digits and ':')",
      );
    }
    if (i === 1 && bytes[0] === ZERO) {
      throw new ScgiProtocolError(400, "netstring length has a leading zero");
    }
    length = length * 10 + (byte - ZERO);
  }
  if (length > maxHeaderBytes || filled > maxDigits) {
    throw new ScgiProtocolError(
      431,
      `header block is larger than the limit of ${maxHeaderBytes} bytes`,
    );
  }
  return undefined;
}

/**
 * Decodes the content of the header netstring (the NUL-terminated name and
 * value strings) and checks `CONTENT_LENGTH`.
 *
 * @param block The bytes between `:` and `,`.
 * @param limits `maxVariables` and `maxBodyBytes` apply.
 * @returns The variables by name and in wire order, and the body length.
 * @throws {ScgiProtocolError} 400 for a malformed block, a bad or repeated
 * `CONTENT_LENGTH` or `SCGI` other than `1`; 411 when `CONTENT_LENGTH` is
 * missing; 413 or 431 past a limit.
 *
 * @example
 * ```ts
 * import { parseHeaderBlock } from "./request_head.ts";
 *
 * const block = new TextEncoder().encode("CONTENT_LENGTH\x000\x00SCGI\x001\x00");
 * console.assert(parseHeaderBlock(block).contentLength === 0);
 * ```
 */
export function parseHeaderBlock(
  block: Uint8Array,
  limits: RequestHeadLimits = {},
): HeaderBlock {
  const decoded = decodeVariables(block, limits);
  return {
    env: decoded.env,
    envList: decoded.envList,
    contentLength: decoded.contentLength,
    nonUtf8: decoded.nonUtf8,
  };
}

/**
 * Reads a request head from a byte stream and returns the variables and the
 * body that follows.
 *
 * The body is never buffered whole: it is a stream that pulls from `source`
 * only as fast as it is read. Bytes after the body are left unread.
 *
 * @param source The connection's readable side, or a reader of it (so that
 * the caller can go on reading after the body, or watch each read).
 * @param limits Limits on the head and the declared body length.
 * @returns The decoded head and the body stream.
 * @throws {ScgiProtocolError} For a malformed request or one over a limit;
 * 400 as well when the stream ends inside the head.
 *
 * @example
 * ```ts
 * import { encodeRequestHead } from "./header_encoder.ts";
 * import { readRequestHead } from "./request_head.ts";
 *
 * const head = encodeRequestHead({ REQUEST_METHOD: "GET" }, 0);
 * const decoded = await readRequestHead(ReadableStream.from([head]));
 * console.assert(decoded.env.REQUEST_METHOD === "GET");
 * console.assert(decoded.body === null);
 * ```
 */
export async function readRequestHead(
  source: ReadableStream<Uint8Array> | ByteSource,
  limits: RequestHeadLimits = {},
): Promise<RequestHead> {
  const maxHeaderBytes = limits.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const reader = new ByteReader(
    source instanceof ReadableStream ? source.getReader() : source,
  );
  let prefix: { length: number; start: number } | undefined;
  while (!(prefix = parseNetstringLength(reader.buffered, maxHeaderBytes))) {
    if (!await reader.fill()) {
      throw endedEarly(reader.buffered.length, "length");
    }
  }
  const end = prefix.start + prefix.length;
  while (reader.buffered.length <= end) {
    if (!await reader.fill()) throw endedEarly(reader.buffered.length, "block");
  }
  const bytes = reader.buffered;
  if (bytes[end] !== COMMA) {
    throw new ScgiProtocolError(400, "netstring does not end with ','");
  }
  const block = parseHeaderBlock(bytes.subarray(prefix.start, end), limits);
  reader.skip(end + 1);
  if (block.contentLength === 0) {
    return { ...block, body: null, bodyEnd: Promise.resolve() };
  }
  const { promise: bodyEnd, resolve, reject } = Promise.withResolvers<void>();
  bodyEnd.catch(() => {});
  const body = bodyStream(reader, block.contentLength, resolve, reject);
  return { ...block, body, bodyEnd };
}

function endedEarly(received: number, where: string): ScgiProtocolError {
  return new ScgiProtocolError(
    400,
    received === 0 && where === "length"
      ? "connection closed before a request was sent"
      : `connection closed inside the header ${where} after ${received} bytes`,
  );
}

function bodyStream(
  reader: ByteReader,
  length: number,
  resolve: () => void,
  reject: (error: unknown) => void,
): ReadableStream<Uint8Array<ArrayBuffer>> {
  let remaining = length;
  return new ReadableStream<Uint8Array<ArrayBuffer>>({
    async pull(controller) {
      let chunk: Uint8Array | undefined;
      try {
        chunk = await reader.next(remaining);
      } catch (cause) {
        const error = new ScgiProtocolError(
          400,
          `request body failed after ${length - remaining} of ${length} bytes`,
          { cause },
        );
        reject(error);
        throw error;
      }
      if (chunk === undefined) {
        const error = new ScgiProtocolError(
          400,
          `request body ended after ${length - remaining} of ${length} bytes`,
        );
        reject(error);
        throw error;
      }
      remaining -= chunk.length;
      controller.enqueue(chunk as Uint8Array<ArrayBuffer>);
      if (remaining === 0) {
        controller.close();
        resolve();
      }
    },
  }, { highWaterMark: 0 });
}
