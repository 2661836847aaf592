// The CGI variables of a header block. A server needs a dozen of the
// variables a front end sends to build its Request, and its handlers rarely
// look at the rest, so the block is decoded into one string and scanned in
// place: the variables a Request is built from are picked out by name (only
// their values become strings of their own), the HTTP_* ones are collected,
// CONTENT_LENGTH and SCGI are checked, and the whole env object and the list
// in wire order are made only when asked for. Private to the package.

import { bytesToByteString } from "./_byte_string.ts";
import type { RequestVariables } from "./_cgi_to_request.ts";
import { ScgiProtocolError } from "./errors.ts";

const DEFAULT_MAX_VARIABLES = 1000;
const EMPTY_SET: ReadonlySet<string> = new Set();
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const LENGTH = /^[0-9]{1,16}$/;

// What the scan takes a variable for: one of the names a Request is built
// from (the constant itself, so no string is made of the name), any other
// HTTP_* variable, or one it leaves for later.
const HTTP = "HTTP_";
const OTHER = null;

/** The variables of a decoded header block, the rest made on demand. */
export class HeaderVariables implements RequestVariables {
  REQUEST_METHOD: string | undefined = undefined;
  CONTENT_TYPE: string | undefined = undefined;
  CONTENT_LENGTH: string | undefined = undefined;
  GEMINI_URL: string | undefined = undefined;
  HTTPS: string | undefined = undefined;
  REQUEST_SCHEME: string | undefined = undefined;
  REQUEST_URI: string | undefined = undefined;
  SCRIPT_NAME: string | undefined = undefined;
  PATH_INFO: string | undefined = undefined;
  QUERY_STRING: string | undefined = undefined;
  HTTP_HOST: string | undefined = undefined;
  SERVER_NAME: string | undefined = undefined;
  SERVER_PORT: string | undefined = undefined;
  REMOTE_ADDR: string | undefined = undefined;
  REMOTE_PORT: string | undefined = undefined;
  /** The `HTTP_*` variables: name, value, …, each name once (repeats joined). */
  readonly http: string[] = [];
  /** `CONTENT_LENGTH` as a number. */
  contentLength = 0;
  /** Names whose value holds raw bytes (it was not UTF-8). */
  nonUtf8: ReadonlySet<string> = EMPTY_SET;
  readonly #text: string;
  #strings: string[] | undefined;
  #env: Record<string, string> | undefined;

  constructor(text: string) {
    this.#text = text;
  }

  /** Names and values in wire order: name, value, …, "". */
  get strings(): string[] {
    return this.#strings ??= this.#text.split("\0");
  }

  /** Every variable by name, repeats joined; no prototype. */
  get env(): Record<string, string> {
    if (this.#env === undefined) {
      const strings = this.strings;
      const env: Record<string, string> = Object.create(null);
      for (let i = 0; i < strings.length - 1; i += 2) {
        const name = strings[i]!;
        const previous = env[name];
        env[name] = previous === undefined
          ? strings[i + 1]!
          : previous + joiner(name) + strings[i + 1]!;
      }
      this.#env = env;
    }
    return this.#env;
  }

  /** Every variable in wire order, repeats kept. */
  get envList(): [string, string][] {
    return variableList(this.strings);
  }
}

/** Decodes and checks a header block (see `parseHeaderBlock`). */
export function decodeVariables(
  block: Uint8Array,
  limits: { maxVariables?: number; maxBodyBytes?: number },
): HeaderVariables {
  const maxVariables = limits.maxVariables ?? DEFAULT_MAX_VARIABLES;
  if (block.length > 0 && block[block.length - 1] !== 0) {
    throw new ScgiProtocolError(400, "header block does not end with a NUL");
  }
  let text: string;
  let nonUtf8: Set<string> | undefined;
  try {
    text = utf8.decode(block);
  } catch {
    // Values that are not UTF-8 hold one character per byte; joined back
    // with NULs, the scan below reads them like any other.
    const mixed = splitMixedEncoding(block);
    text = mixed.strings.join("\0");
    nonUtf8 = mixed.nonUtf8;
  }
  // The trailing NUL ends the last value, so the strings are the NULs.
  let count = 0;
  for (
    let at = text.indexOf("\0");
    at !== -1;
    at = text.indexOf("\0", at + 1)
  ) {
    count++;
  }
  if (count % 2 !== 0) {
    const start = text.lastIndexOf("\0", text.length - 2) + 1;
    throw new ScgiProtocolError(
      400,
      `variable ${JSON.stringify(text.slice(start, -1))} has no value`,
    );
  }
  if (count / 2 > maxVariables) {
    throw new ScgiProtocolError(
      431,
      `header block has more than ${maxVariables} variables`,
    );
  }
  const variables = new HeaderVariables(text);
  if (nonUtf8) variables.nonUtf8 = nonUtf8;
  const fields = variables as unknown as Record<string, string | undefined>;
  const http = variables.http;
  let seen: Set<string> | undefined;
  let repeatedHttp = false;
  let scgi: string | undefined;
  for (let start = 0; start < text.length;) {
    const nameEnd = text.indexOf("\0", start);
    const valueEnd = text.indexOf("\0", nameEnd + 1);
    const nameLength = nameEnd - start;
    if (nameLength === 0) {
      throw new ScgiProtocolError(400, "a variable has an empty name");
    }
    const name = classify(text, start, nameLength);
    if (name === OTHER) {
      start = valueEnd + 1;
      continue;
    }
    const value = text.slice(nameEnd + 1, valueEnd);
    if (name === HTTP || name === "HTTP_HOST") {
      const variable = name === HTTP ? text.slice(start, nameEnd) : name;
      if (!repeatedHttp) {
        // A Set only for many headers: for the usual few a look is cheaper.
        if (seen === undefined && http.length >= 32) {
          seen = new Set(http.filter((_, i) => i % 2 === 0));
        }
        if (seen !== undefined) {
          repeatedHttp = seen.has(variable);
          seen.add(variable);
        } else {
          for (let i = 0; i < http.length; i += 2) {
            if (http[i] === variable) repeatedHttp = true;
          }
        }
      }
      http.push(variable, value);
      if (name === HTTP) {
        start = valueEnd + 1;
        continue;
      }
    }
    if (name === "SCGI") {
      scgi = scgi === undefined ? value : scgi + ", " + value;
    } else {
      const previous = fields[name];
      if (previous === undefined) {
        fields[name] = value;
      } else if (name === "CONTENT_LENGTH") {
        throw new ScgiProtocolError(400, "CONTENT_LENGTH is sent twice");
      } else {
        fields[name] = previous + ", " + value;
      }
    }
    start = valueEnd + 1;
  }
  if (repeatedHttp) joinRepeats(http);
  const declared = variables.CONTENT_LENGTH;
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
  if (scgi !== undefined && scgi !== "1") {
    throw new ScgiProtocolError(
      400,
      `SCGI version ${JSON.stringify(scgi.slice(0, 40))} is not 1`,
    );
  }
  variables.contentLength = contentLength;
  return variables;
}

// A repeated name joins the way HTTP joins a repeated header.
function joiner(name: string): string {
  return name === "HTTP_COOKIE" ? "; " : ", ";
}

// Joins repeated HTTP_* names into their first place (nginx 1.22 sends a
// header that came twice as two variables).
function joinRepeats(http: string[]): void {
  const joined = new Map<string, string>();
  for (let i = 0; i < http.length; i += 2) {
    const name = http[i]!;
    const previous = joined.get(name);
    joined.set(
      name,
      previous === undefined
        ? http[i + 1]!
        : previous + joiner(name) + http[i + 1]!,
    );
  }
  http.length = 0;
  for (const [name, value] of joined) http.push(name, value);
}

// Which of the variables a Request is built from the name at `start` is
// (the name's constant), HTTP for another HTTP_* one, or OTHER; without
// making a string of the name. The first letter and the length, then one
// more letter, leave one candidate, which one comparison confirms.
function classify(
  text: string,
  start: number,
  length: number,
): string | null {
  let candidate: string | null = null;
  switch (text.charCodeAt(start)) {
    case 0x48: // H
      if (length >= 5 && text.startsWith("HTTP_", start)) {
        return length === 9 && text.startsWith("HOST", start + 5)
          ? "HTTP_HOST"
          : HTTP;
      }
      if (length === 5) candidate = "HTTPS";
      break;
    case 0x43: // C
      if (length === 14) candidate = "CONTENT_LENGTH";
      else if (length === 12) candidate = "CONTENT_TYPE";
      break;
    case 0x52: // R
      if (length === 14) {
        const letter = text.charCodeAt(start + 8);
        candidate = letter === 0x4d // M
          ? "REQUEST_METHOD"
          : letter === 0x53 // S
          ? "REQUEST_SCHEME"
          : null;
      } else if (length === 11) {
        candidate = text.charCodeAt(start + 2) === 0x51 // Q
          ? "REQUEST_URI"
          : text.charCodeAt(start + 7) === 0x41 // A
          ? "REMOTE_ADDR"
          : "REMOTE_PORT";
      }
      break;
    case 0x53: // S
      if (length === 4) candidate = "SCGI";
      else if (length === 11) {
        candidate = text.charCodeAt(start + 1) === 0x43 // C
          ? "SCRIPT_NAME"
          : text.charCodeAt(start + 7) === 0x4e // N
          ? "SERVER_NAME"
          : "SERVER_PORT";
      }
      break;
    case 0x50: // P
      if (length === 9) candidate = "PATH_INFO";
      break;
    case 0x51: // Q
      if (length === 12) candidate = "QUERY_STRING";
      break;
    case 0x47: // G
      if (length === 10) candidate = "GEMINI_URL";
      break;
  }
  return candidate !== null && text.startsWith(candidate, start)
    ? candidate
    : OTHER;
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
