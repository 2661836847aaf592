// The Gemini status line as both sides carry it on a `Response`: its type,
// the two headers, the HTTP status that stands for it, and the meta's
// conversion between text and header bytes. Shared by the answer side
// (`gemini.ts`) and the client side (`gemini_client.ts`), which re-export
// the public part; neither imports the other.

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

/** A header value (bytes, one per character) as meta text: UTF-8. */
export function metaText(byteString: string): string {
  if (!/[\u0080-\u00ff]/.test(byteString)) return byteString;
  const bytes = Uint8Array.from(byteString, (c) => c.charCodeAt(0));
  return utf8Decoder.decode(bytes);
}

/** Meta text as a header value: its UTF-8 bytes, one per character. */
export function metaHeader(text: string): string {
  if (!/[^ -~\t]/.test(text)) return text;
  return String.fromCharCode(...utf8.encode(text));
}
