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
 * A request from a Gemini front end (its variables have `GEMINI_URL`) is
 * logged as Gemini servers log it: the request is the URL alone and the
 * status the Gemini status the server sends (`10`, `20`, `51`…), read from
 * `x-gemini-status` or translated as `serve()` translates a plain
 * `Response`.
 *
 * Logging never holds a response back. Lines for a file or a stream sink go
 * into a queue that one writer drains in batches; when the sink is slower
 * than the traffic and `maxQueue` lines are waiting, new lines are dropped
 * and counted (`dropped`) rather than buffered without bound. A function
 * sink is called synchronously with each line (no newline); its exceptions
 * are swallowed.
 *
 * A file (`path`, or a `Deno.FsFile` as `sink`) gets each batch in one
 * write, so `tail -f` sees a line as soon as the response has ended, and a
 * program that ends normally writes every line first (a pending write keeps
 * it alive). A file's `writable` stream is a poor sink: Deno holds what is
 * written to it until 64 KiB have gathered or the stream is closed.
 * `close()` (or `await using`) writes what is queued and closes the sink.
 *
 * @example Logging to a file
 * ```ts ignore
 * import { accessLog } from "./access_log.ts";
 * import { serve } from "../server.ts";
 *
 * // Opened for appending (created if missing), as nginx opens its logs.
 * await using log = accessLog({ path: "/var/log/app/access.log" });
 * await using server = serve(log((request) => new Response("ok")));
 * await server.finished;
 * ```
 *
 * @example A line is on disk once `flush()` resolves
 * ```ts
 * import { accessLog } from "./access_log.ts";
 * import { testClient } from "../testing.ts";
 *
 * const path = await Deno.makeTempFile({ suffix: ".log" });
 * {
 *   await using log = accessLog({ path, format: "common" });
 *   await (await testClient(log(() => new Response("hi"))).fetch("/a")).text();
 *   await log.flush();
 *   const text = await Deno.readTextFile(path);
 *   console.assert(text.endsWith(`"GET /a HTTP/1.1" 200 2\n`));
 * } // closed here
 * await Deno.remove(path);
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
import { line } from "./_log_format.ts";
import { fileOutput, type Output, STDOUT, streamOutput } from "./_log_sink.ts";

export { clfTime } from "./_log_format.ts";

/** Options of {@linkcode accessLog}. */
export interface AccessLogOptions {
  /**
   * Where lines go: a file (`Deno.FsFile`) or a byte stream
   * (`Deno.stdout.writable`) gets each line with a newline; a function gets
   * the line without one. `close()` closes a file or stream given here.
   * A file's `writable` holds lines back until 64 KiB or its close: give the
   * file itself, or `path`.
   * @default {standard output}
   */
  sink?: WritableStream<Uint8Array> | Deno.FsFile | ((line: string) => void);
  /**
   * A log file, opened (synchronously, so a bad path fails here) for
   * appending and created if missing, as nginx opens its logs; closed by
   * `close()`. Instead of `sink`. Needs read and write permission for it.
   */
  path?: string | URL;
  /**
   * `"common"`: host, ident, user, time, request line, status, bytes.
   * `"combined"` adds the referer and the user agent. `"json"`: one JSON
   * object a line, for programs (`time` as ISO 8601, `remote`, `user`,
   * `method`, `target`, `protocol`, `status`, `bytes`, `ms`, `referer`,
   * `agent`; text as text, header values decoded as UTF-8). A Gemini
   * request has `method` null, the URL as `target`, `protocol` `"GEMINI"`
   * and its Gemini status.
   * @default {"combined"}
   */
  format?: "common" | "combined" | "json";
  /** Append the seconds the request took (`0.012`). @default {false} */
  timeTaken?: boolean;
  /**
   * Lines a file or stream sink may have waiting; past it new lines are
   * dropped and counted in `dropped`.
   * @default {1000}
   */
  maxQueue?: number;
  /** The clock, for tests. @default {() => new Date()} */
  now?: () => Date;
}

/** The middleware, with its queue's state. */
export interface AccessLogMiddleware extends AsyncDisposable {
  /** Wraps a handler (of `serve()`, `Deno.serve` or the gateway). */
  <Info extends MiddlewareInfo | undefined>(
    handler: Handler<Info>,
  ): Handler<Info>;
  /** Lines dropped because the sink was too slow, or the log closed. */
  readonly dropped: number;
  /** Lines waiting for a file or stream sink. */
  readonly pending: number;
  /**
   * Resolves once every queued line has been written (or failed): for a
   * file, handed to the system, so other readers see it.
   */
  flush(): Promise<void>;
  /**
   * Writes what is queued, then closes the sink (a file or stream; not
   * standard output, not a function). Later lines are dropped. Call it
   * before `Deno.exit()`, which does not wait for pending writes. Also
   * `[Symbol.asyncDispose]`, for `await using`.
   */
  close(): Promise<void>;
}
const encoder = new TextEncoder();

/**
 * Access-log middleware.
 *
 * @param options Sink, format, timing and queue bound.
 * @returns The middleware, with `dropped`, `pending`, `flush()` and `close()`.
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
  if (options.path !== undefined && options.sink !== undefined) {
    throw new TypeError("accessLog() takes a path or a sink, not both");
  }
  const sink = options.sink;
  // Set up now, so a stream that is already locked or a file that can't be
  // opened fails here, not at the first request.
  const output: Output | undefined = typeof sink === "function"
    ? undefined
    : options.path !== undefined
    ? fileOutput(Deno.openSync(options.path, { append: true, create: true }))
    : sink === undefined
    ? STDOUT
    : sink instanceof WritableStream
    ? streamOutput(sink.getWriter())
    : fileOutput(sink);
  let dropped = 0;
  let closed = false;
  let closing: Promise<void> | undefined;
  const queue: string[] = [];
  let draining: Promise<void> | undefined;

  const drain = async (output: Output) => {
    while (queue.length > 0) {
      const batch = queue.splice(0, queue.length).join("");
      try {
        await output.write(encoder.encode(batch));
      } catch {
        // A broken sink loses its lines; the app goes on.
      }
    }
    draining = undefined;
  };

  const emit = (line: string) => {
    if (closed) {
      dropped++;
      return;
    }
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
    draining ??= drain(output!);
  };
  const flush = async () => {
    while (draining) await draining;
  };
  const close = () =>
    closing ??= (async () => {
      closed = true;
      await flush();
      await output?.close();
    })();

  const middleware = <Info extends MiddlewareInfo | undefined>(
    handler: Handler<Info>,
  ): Handler<Info> =>
  async (request, info) => {
    const started = now();
    const write = (response: Response | undefined, bytes: number) =>
      emit(
        line(request, info, started, now(), response, bytes, format, options),
      );
    let response: Response;
    try {
      response = await handler(request, info);
    } catch (error) {
      write(undefined, 0);
      throw error;
    }
    if (response.body === null) {
      write(response, 0);
      return response;
    }
    return new Response(
      counted(response.body, (bytes) => write(response, bytes)),
      response,
    );
  };
  return Object.defineProperties(middleware, {
    dropped: { get: () => dropped },
    pending: { get: () => queue.length },
    flush: { value: flush },
    close: { value: close },
    [Symbol.asyncDispose]: { value: close },
  }) as AccessLogMiddleware;
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
