// The lines of the access log: Common and Combined Log Format as Apache and
// nginx write them (the CLF time, `\xHH` escapes), a JSON object a line, and
// the Gemini form (the URL as the request, the Gemini status). `clfTime` is
// public, re-exported by `access_log.ts`.

import { geminiHeadFor, isGeminiRequest } from "../codec/gemini.ts";
import type { MiddlewareInfo } from "./types.ts";

const MONTHS = [
  "Jan",
  "Feb",
  "Mar",
  "Apr",
  "May",
  "Jun",
  "Jul",
  "Aug",
  "Sep",
  "Oct",
  "Nov",
  "Dec",
];
const encoder = new TextEncoder();
const decoder = new TextDecoder();
// What the server answers a Gemini request whose handler threw: the 500 of
// its onError, translated (geminiHeadFor).
const GEMINI_SERVER_ERROR = 42;

/**
 * The time as CLF writes it: `10/Oct/2000:13:55:36 -0700`, in the local
 * time zone.
 *
 * @param date The moment.
 * @returns The formatted time (without brackets).
 *
 * @example
 * ```ts
 * import { clfTime } from "./access_log.ts";
 *
 * console.assert(/^\d\d\/\w{3}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}$/.test(clfTime(new Date())));
 * ```
 */
export function clfTime(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const abs = Math.abs(offset);
  return `${pad(date.getDate())}/${
    MONTHS[date.getMonth()]
  }/${date.getFullYear()}:${pad(date.getHours())}:${pad(date.getMinutes())}:${
    pad(date.getSeconds())
  } ${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}

// `"`, `\` and bytes outside printable ASCII become \xHH, as nginx does.
// Header values hold bytes one per character; CGI variables are text,
// written as their UTF-8 bytes.
function escape(text: string, bytes = false): string {
  return text.replace(
    /[^ !#-[\]-~]/g,
    (char) => {
      const code = char.charCodeAt(0);
      return bytes && code <= 0xff
        ? hex(code)
        : Array.from(encoder.encode(char), hex).join("");
    },
  );
}

function hex(byte: number): string {
  return `\\x${byte.toString(16).toUpperCase().padStart(2, "0")}`;
}

// One log line (no newline) for a request and its response (`undefined`
// when the handler threw), `bytes` the body bytes sent.
export function line(
  request: Request,
  info: MiddlewareInfo | undefined,
  started: Date,
  ended: Date,
  response: Response | undefined,
  bytes: number,
  format: "common" | "combined" | "json",
  options: { readonly timeTaken?: boolean | undefined },
): string {
  const env = info?.env ?? {};
  const addr = info?.remoteAddr;
  const host = env.REMOTE_ADDR ||
    (addr && "hostname" in addr ? addr.hostname : "-");
  // A Gemini request is a URL; its answer a Gemini status.
  const gemini = isGeminiRequest(env);
  let target: string;
  let status: number;
  if (gemini) {
    target = env.GEMINI_URL!;
    status = response ? geminiStatus(response) : GEMINI_SERVER_ERROR;
  } else {
    const url = new URL(request.url);
    target = env.REQUEST_URI || url.pathname + url.search;
    status = response ? response.status : 500;
  }
  const protocol = gemini ? "GEMINI" : env.SERVER_PROTOCOL || "HTTP/1.1";
  if (format === "json") {
    return JSON.stringify({
      time: started.toISOString(),
      remote: host,
      user: env.REMOTE_USER || null,
      method: gemini ? null : request.method,
      target,
      protocol,
      status,
      bytes,
      ms: ended.getTime() - started.getTime(),
      referer: headerText(request.headers.get("referer")),
      agent: headerText(request.headers.get("user-agent")),
    });
  }
  const user = env.REMOTE_USER ? escape(env.REMOTE_USER) : "-";
  const requestLine = escape(
    gemini ? target : `${request.method} ${target} ${protocol}`,
  );
  let text = `${escape(host)} - ${user} [${
    clfTime(started)
  }] "${requestLine}" ${status} ${bytes > 0 ? bytes : "-"}`;
  if (format === "combined") {
    const referer = request.headers.get("referer");
    const agent = request.headers.get("user-agent");
    text += ` "${referer ? escape(referer, true) : "-"}" "${
      agent ? escape(agent, true) : "-"
    }"`;
  }
  if (options.timeTaken) {
    text += ` ${((ended.getTime() - started.getTime()) / 1000).toFixed(3)}`;
  }
  return text;
}

// The Gemini status the server writes for a response; one it can't write
// (a bad x-gemini-status, an overlong meta) ends in onError's 500.
function geminiStatus(response: Response): number {
  try {
    return geminiHeadFor(response).status;
  } catch {
    return GEMINI_SERVER_ERROR;
  }
}

// A header value holds bytes, one per character; as text they are UTF-8
// (U+FFFD for what is not).
function headerText(value: string | null): string | null {
  if (value === null || !/[\u0080-\u00ff]/.test(value)) return value;
  return decoder.decode(Uint8Array.from(value, (char) => char.charCodeAt(0)));
}
