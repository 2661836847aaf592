/**
 * The one SCGI header encoder: CGI variables in, netstring bytes out, with
 * `CONTENT_LENGTH` first and `SCGI=1` second, as the SCGI specification asks
 * and strict backends (rtorrent, Perl's SCGI) demand.
 *
 * @example
 * ```ts
 * import { encodeRequestHead } from "./header_encoder.ts";
 *
 * const bytes = encodeRequestHead({ REQUEST_METHOD: "POST" }, 5);
 * console.assert(
 *   new TextDecoder().decode(bytes) ===
 *     "44:CONTENT_LENGTH\x005\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00,",
 * );
 * ```
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Encodes CGI variables as an SCGI header netstring.
 *
 * `CONTENT_LENGTH` (from `contentLength`) and `SCGI=1` are written first; the
 * other variables follow in iteration order, their strings encoded as UTF-8.
 *
 * @param env The variables other than `CONTENT_LENGTH`: a record, or pairs in
 * the order to send. `SCGI` may be included only with the value `"1"`, and
 * `CONTENT_LENGTH` only with the same value as `contentLength`.
 * @param contentLength The number of body bytes that will follow.
 * @returns The netstring, ready to write.
 * @throws {TypeError} For an empty name, a NUL in a name or value, a name
 * given twice, or a `CONTENT_LENGTH` that is not a whole number of bytes.
 *
 * @example
 * ```ts
 * import { encodeRequestHead } from "./header_encoder.ts";
 *
 * const head = encodeRequestHead([["REQUEST_METHOD", "GET"]], 0);
 * console.assert(head[head.length - 1] === 0x2c); // ","
 * ```
 */
export function encodeRequestHead(
  env:
    | Readonly<Record<string, string>>
    | Iterable<readonly [name: string, value: string]>,
  contentLength: number,
): Uint8Array<ArrayBuffer> {
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
    throw new TypeError(`CONTENT_LENGTH ${contentLength} is not a length`);
  }
  const length = String(contentLength);
  const entries = Symbol.iterator in env
    ? env as Iterable<readonly [string, string]>
    : Object.entries(env);
  const seen = new Set<string>();
  let block = `CONTENT_LENGTH\0${length}\0SCGI\x001\0`;
  for (const [name, value] of entries) {
    if (name === "CONTENT_LENGTH" || name === "SCGI") {
      const expected = name === "SCGI" ? "1" : length;
      if (value !== expected) {
        throw new TypeError(
          `${name} is set by the encoder: ${
            JSON.stringify(value)
          } conflicts with ${expected}`,
        );
      }
      continue;
    }
    if (name.length === 0) throw new TypeError("a variable has an empty name");
    if (name.includes("\0") || value.includes("\0")) {
      throw new TypeError(`variable ${JSON.stringify(name)} contains a NUL`);
    }
    if (seen.has(name)) {
      throw new TypeError(`variable ${JSON.stringify(name)} is given twice`);
    }
    seen.add(name);
    block += `${name}\0${value}\0`;
  }
  const content = encoder.encode(block);
  const prefix = `${content.length}:`;
  const out = new Uint8Array(prefix.length + content.length + 1);
  encoder.encodeInto(prefix, out);
  out.set(content, prefix.length);
  out[out.length - 1] = 0x2c;
  return out;
}
