/**
 * Access logging: one line per request in the Common or Combined Log Format
 * that Apache and nginx write, so the usual log tools read it.
 *
 * ```text
 * 192.0.2.7 - alice [21/Nov/2026:16:05:09 +0000] "GET /a?b=1 HTTP/1.1" 200 512 "https://ref.example/" "curl/8.0"
 * ```
 *
 * The client is `REMOTE_ADDR` as the front end reports it
 * (`info.remoteAddr`), the user `REMOTE_USER`, the request line
 * `REQUEST_METHOD REQUEST_URI SERVER_PROTOCOL`, and the size the body bytes
 * the server actually read from the response: the line is written when the
 * body has ended, failed or been cancelled (a client that left), not when
 * the handler returned. `timeTaken: true` appends the seconds from request
 * to that moment, with millisecond precision (nginx's `$request_time`).
 * Quotes, backslashes and control characters in the request line, referer
 * and user agent are written as `\xHH`, so a line can't be forged.
 *
 * Logging never holds a response back. Lines for a `WritableStream` sink go
 * into a queue that one writer drains in batches; when the sink is slower
 * than the traffic and `maxQueue` lines are waiting, new lines are dropped
 * and counted (`dropped`) rather than buffered without bound. A function
 * sink is called synchronously with each line (no newline); its exceptions
 * are swallowed.
 *
 * @example Logging to a file
 * ```ts ignore
 * import { accessLog } from "./access_log.ts";
 * import { serve } from "../server.ts";
 *
 * const file = await Deno.open("access.log", { append: true, create: true });
 * serve(accessLog({ sink: file.writable })((request) => new Response("ok")));
 * ```
 *
 * @example Collecting lines in a test
 * ```ts
 * import { accessLog } from "./access_log.ts";
 * import { testClient } from "../testing.ts";
 *
 * const lines: string[] = [];
 * const app = accessLog({ sink: (line) => lines.push(line), format: "common" })(
 *   () => new Response("hello"),
 * );
 * await (await testClient(app).fetch("/hi")).text();
 * console.assert(lines[0]!.endsWith(`"GET /hi HTTP/1.1" 200 5`));
 * ```
 *
 * @module
 */

import type { Handler, MiddlewareInfo } from "./types.ts";

/** Options of {@linkcode accessLog}. */
export interface AccessLogOptions {
  /**
   * Where lines go: a byte stream (a file's `writable`, `Deno.stdout.writable`)
   * gets each line with a newline; a function gets the line without one.
   * @default {standard output}
   */
  sink?: WritableStream<Uint8Array> | ((line: string) => void);
  /**
   * `"common"`: host, ident, user, time, request line, status, bytes.
   * `"combined"` adds the referer and the user agent. `"json"`: one JSON
   * object a line, for programs (`time` as ISO 8601, `remote`, `user`,
   * `method`, `target`, `protocol`, `status`, `bytes`, `ms`, `referer`,
   * `agent`).
   * @default {"combined"}
   */
  format?: "common" | "combined" | "json";
  /** Append the seconds the request took (`0.012`). @default {false} */
  timeTaken?: boolean;
  /**
   * Lines a stream sink may have waiting; past it new lines are dropped
   * and counted in `dropped`.
   * @default {1000}
   */
  maxQueue?: number;
  /** The clock, for tests. @default {() => new Date()} */
  now?: () => Date;
}

/** The middleware, with its queue's state. */
export interface AccessLogMiddleware {
  /** Wraps a handler (of `serve()`, `Deno.serve` or the gateway). */
  <Info extends MiddlewareInfo | undefined>(
    handler: Handler<Info>,
  ): Handler<Info>;
  /** Lines dropped because the sink was too slow. */
  readonly dropped: number;
  /** Lines waiting for a stream sink. */
  readonly pending: number;
  /** Resolves once every queued line has been written (or failed). */
  flush(): Promise<void>;
}

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

/**
 * Access-log middleware.
 *
 * @param options Sink, format, timing and queue bound.
 * @returns The middleware, with `dropped`, `pending` and `flush()`.
 *
 * @example
 * ```ts
 * import { accessLog } from "./access_log.ts";
 *
 * const log = accessLog({ sink: () => {} });
 * const handler = log(() => new Response("ok"));
 * console.assert(log.dropped === 0 && typeof handler === "function");
 * ```
 */
export function accessLog(options: AccessLogOptions = {}): AccessLogMiddleware {
  const format = options.format ?? "combined";
  const maxQueue = options.maxQueue ?? 1000;
  const now = options.now ?? (() => new Date());
  const sink = options.sink ?? stdoutSink();
  let dropped = 0;
  const queue: string[] = [];
  let draining: Promise<void> | undefined;
  // Taken now, so a stream that is already locked fails here, not later.
  const writer = typeof sink === "function" ? undefined : sink.getWriter();

  const drain = async (writer: WritableStreamDefaultWriter<Uint8Array>) => {
    while (queue.length > 0) {
      const batch = queue.splice(0, queue.length).join("");
      try {
        await writer.write(encoder.encode(batch));
      } catch {
        // A broken sink loses its lines; the app goes on.
      }
    }
    draining = undefined;
  };

  const emit = (line: string) => {
    if (typeof sink === "function") {
      try {
        sink(line);
      } catch {
        // The caller's sink failed; the response must not.
      }
      return;
    }
    if (queue.length >= maxQueue) {
      dropped++;
      return;
    }
    queue.push(line + "\n");
    draining ??= drain(writer!);
  };

  const middleware = <Info extends MiddlewareInfo | undefined>(
    handler: Handler<Info>,
  ): Handler<Info> =>
  async (request, info) => {
    const started = now();
    const write = (status: number | undefined, bytes: number) =>
      emit(
        line(request, info, started, now(), status, bytes, format, options),
      );
    let response: Response;
    try {
      response = await handler(request, info);
    } catch (error) {
      write(500, 0);
      throw error;
    }
    if (response.body === null) {
      write(response.status, 0);
      return response;
    }
    return new Response(
      counted(response.body, (bytes) => write(response.status, bytes)),
      response,
    );
  };
  return Object.defineProperties(middleware, {
    dropped: { get: () => dropped },
    pending: { get: () => queue.length },
    flush: {
      value: async () => {
        while (draining) await draining;
      },
    },
  }) as AccessLogMiddleware;
}

// Standard output through its own stream, so that several logs (and the
// rest of the program) can write to it: Deno.stdout.writable has one writer.
function stdoutSink(): WritableStream<Uint8Array> {
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      let written = 0;
      while (written < chunk.length) {
        written += await Deno.stdout.write(chunk.subarray(written));
      }
    },
  });
}

function counted(
  body: ReadableStream<Uint8Array>,
  done: (bytes: number) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let bytes = 0;
  let logged = false;
  const finish = () => {
    if (!logged) {
      logged = true;
      done(bytes);
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error) {
        finish();
        throw error;
      }
      if (result.done) {
        finish();
        controller.close();
        return;
      }
      bytes += result.value.length;
      controller.enqueue(result.value);
    },
    cancel(reason) {
      finish();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

function line(
  request: Request,
  info: MiddlewareInfo | undefined,
  started: Date,
  ended: Date,
  status: number | undefined,
  bytes: number,
  format: "common" | "combined" | "json",
  options: AccessLogOptions,
): string {
  const env = info?.env ?? {};
  const addr = info?.remoteAddr;
  const host = env.REMOTE_ADDR ||
    (addr && "hostname" in addr ? addr.hostname : "-");
  const url = new URL(request.url);
  const target = env.REQUEST_URI || url.pathname + url.search;
  const protocol = env.SERVER_PROTOCOL || "HTTP/1.1";
  if (format === "json") {
    return JSON.stringify({
      time: started.toISOString(),
      remote: host,
      user: env.REMOTE_USER ?? null,
      method: request.method,
      target,
      protocol,
      status: status ?? null,
      bytes,
      ms: ended.getTime() - started.getTime(),
      referer: request.headers.get("referer"),
      agent: request.headers.get("user-agent"),
    });
  }
  const user = env.REMOTE_USER ? escape(env.REMOTE_USER) : "-";
  const requestLine = escape(`${request.method} ${target} ${protocol}`);
  let text = `${escape(host)} - ${user} [${
    clfTime(started)
  }] "${requestLine}" ${status ?? "-"} ${bytes > 0 ? bytes : "-"}`;
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
