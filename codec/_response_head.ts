// The head of a CGI response as a backend writes it: its lines read off the
// connection (CRLF or bare LF, within a size limit), the lines parsed into a
// status and headers (a `Status:` header or an NPH first line), and a
// Gemini answer's status line, raw or as a CGI `Status`. `cgi_response.ts`
// builds the `Response` and its body from these.

import type { ByteReader } from "./_byte_reader.ts";
import { bytesToByteString, byteStringToBytes } from "./_byte_string.ts";
import { ScgiClientError } from "./errors.ts";
import type { GeminiStatus } from "./_gemini_status.ts";
import { parseGeminiHead } from "./gemini_client.ts";

const LF = 0x0a;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const NPH = /^HTTP\/1\.[01] ([0-9]{3})(?: (.*))?$/;
const STATUS = /^([0-9]{3})(?:[ \t]+(.*))?$/;
const REASON = /^[\t\x20-\x7e\x80-\xff]*$/;

// A parsed head: the status (200 to 599), the reason phrase as sent and the
// headers, `Status` left out (a `CgiResponseHead`); `gemini` is set (and
// `status` 0) when Gemini statuses are allowed and the Status header holds
// one.
export interface ParsedHead {
  status: number;
  statusText: string;
  headers: Headers;
  gemini?: GeminiStatus;
}

export function parseHead(
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
export async function readGeminiHead(
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

export async function readHeadLines(
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

// The error of a head that is not one.
export function malformed(message: string): ScgiClientError {
  return new ScgiClientError("malformed_response", message);
}
