// The CGI variables of a header block: decoding the NUL-separated strings,
// joining repeated names and checking CONTENT_LENGTH and SCGI. The list of
// pairs in wire order is derived from the strings only when asked for, since
// a server's handlers rarely want it. Private to the codec.

import { bytesToByteString } from "./_byte_string.ts";
import { ScgiProtocolError } from "./errors.ts";

const DEFAULT_MAX_VARIABLES = 1000;
const EMPTY_SET: ReadonlySet<string> = new Set();
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const LENGTH = /^[0-9]{1,16}$/;

/** A decoded header block, before its variable list is built. */
export interface DecodedVariables {
  /** By name, repeats joined; no prototype. */
  env: Record<string, string>;
  /** Names and values in wire order: name, value, name, value, …, "". */
  strings: string[];
  contentLength: number;
  nonUtf8: ReadonlySet<string>;
}

/** Decodes and checks a header block (see `parseHeaderBlock`). */
export function decodeVariables(
  block: Uint8Array,
  limits: { maxVariables?: number; maxBodyBytes?: number },
): DecodedVariables {
  const maxVariables = limits.maxVariables ?? DEFAULT_MAX_VARIABLES;
  if (block.length > 0 && block[block.length - 1] !== 0) {
    throw new ScgiProtocolError(400, "header block does not end with a NUL");
  }
  let strings: string[];
  let nonUtf8: Set<string> | undefined;
  try {
    strings = utf8.decode(block).split("\0");
  } catch {
    ({ strings, nonUtf8 } = splitMixedEncoding(block));
  }
  // The trailing NUL leaves one empty string after the last value.
  const count = strings.length - 1;
  if (count % 2 !== 0) {
    throw new ScgiProtocolError(
      400,
      `variable ${JSON.stringify(strings[count - 1])} has no value`,
    );
  }
  if (count / 2 > maxVariables) {
    throw new ScgiProtocolError(
      431,
      `header block has more than ${maxVariables} variables`,
    );
  }
  const env: Record<string, string> = Object.create(null);
  for (let i = 0; i < count; i += 2) {
    const name = strings[i]!;
    const value = strings[i + 1]!;
    if (name.length === 0) {
      throw new ScgiProtocolError(400, "a variable has an empty name");
    }
    const previous = env[name];
    if (previous === undefined) {
      env[name] = value;
    } else if (name === "CONTENT_LENGTH") {
      throw new ScgiProtocolError(400, "CONTENT_LENGTH is sent twice");
    } else {
      env[name] = previous + (name === "HTTP_COOKIE" ? "; " : ", ") + value;
    }
  }
  const declared = env.CONTENT_LENGTH;
  if (declared === undefined) {
    throw new ScgiProtocolError(411, "CONTENT_LENGTH is missing");
  }
  if (!LENGTH.test(declared)) {
    throw new ScgiProtocolError(
      declared.length > 16 && /^[0-9]+$/.test(declared) ? 413 : 400,
      `CONTENT_LENGTH ${JSON.stringify(declared.slice(0, 40))} is not a length`,
    );
  }
  const contentLength = Number(declared);
  const maxBodyBytes = limits.maxBodyBytes ?? Infinity;
  // 16 digits can exceed 2^53, where a count of bytes stops being exact.
  if (contentLength > maxBodyBytes || !Number.isSafeInteger(contentLength)) {
    throw new ScgiProtocolError(
      413,
      `body of ${declared} bytes is larger than the limit of ${
        Math.min(maxBodyBytes, Number.MAX_SAFE_INTEGER)
      }`,
    );
  }
  const scgi = env.SCGI;
  if (scgi !== undefined && scgi !== "1") {
    throw new ScgiProtocolError(
      400,
      `SCGI version ${JSON.stringify(scgi.slice(0, 40))} is not 1`,
    );
  }
  return { env, strings, contentLength, nonUtf8: nonUtf8 ?? EMPTY_SET };
}

/** The `[name, value]` pairs of decoded strings, in wire order. */
export function variableList(strings: string[]): [string, string][] {
  const count = (strings.length - 1) >> 1;
  const list: [string, string][] = new Array(count);
  for (let i = 0; i < count; i++) {
    list[i] = [strings[2 * i]!, strings[2 * i + 1]!];
  }
  return list;
}

// The rare block with some bytes that are not UTF-8: each string is decoded
// on its own, so one bad value doesn't change how the others read.
function splitMixedEncoding(
  block: Uint8Array,
): { strings: string[]; nonUtf8: Set<string> } {
  const strings: string[] = [];
  const nonUtf8 = new Set<string>();
  let start = 0;
  let invalidValue = false;
  while (start < block.length) {
    const end = block.indexOf(0, start);
    const part = block.subarray(start, end);
    let text: string;
    try {
      text = utf8.decode(part);
    } catch {
      text = bytesToByteString(part);
      if (strings.length % 2 === 1) invalidValue = true;
    }
    strings.push(text);
    if (invalidValue) {
      nonUtf8.add(strings[strings.length - 2]!);
      invalidValue = false;
    }
    start = end + 1;
  }
  strings.push("");
  return { strings, nonUtf8 };
}
