// Byte strings: one character per byte (U+0000 to U+00FF), the form HTTP
// header values take in `Headers`, and the lossless reading of bytes that are
// not UTF-8. TextDecoder("latin1") is windows-1252 and not lossless, hence
// these. Private to the codec.

const NON_ASCII = /[\u0080-\uffff]/;
const ascii = new TextDecoder();
const encoder = new TextEncoder();

export function bytesToByteString(bytes: Uint8Array): string {
  const text = ascii.decode(bytes);
  if (!NON_ASCII.test(text)) return text;
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

export function byteStringToBytes(text: string): Uint8Array<ArrayBuffer> {
  if (!NON_ASCII.test(text)) return encoder.encode(text);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** The UTF-8 bytes of `text` as a byte string (for a header value). */
export function utf8ByteString(text: string): string {
  return NON_ASCII.test(text) ? bytesToByteString(encoder.encode(text)) : text;
}
