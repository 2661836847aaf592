/**
 * A test client: runs a handler through the whole SCGI codec, as a front end
 * and `serve()` would, without opening a socket. The request is encoded by
 * the real header encoder, decoded by `readRequestHead`, turned into a
 * `Request` by `requestFromCgi`; the handler gets the info `serve()` builds;
 * its answer is encoded by the server's own output path (CGI, or raw Gemini
 * for a Gemini request) and read back by `readCgiResponse`. So a unit test
 * sees what nginx or Xitzin would see, headers and status text included.
 *
 * @example Unit-testing an app
 * ```ts
 * import { testClient } from "./testing.ts";
 *
 * const client = testClient((request, info) =>
 *   Response.json({ path: new URL(request.url).pathname, from: info.remoteAddr })
 * );
 * const response = await client.fetch("/users/7");
 * console.assert(response.status === 200);
 * console.assert((await response.json()).path === "/users/7");
 * ```
 *
 * @example A Gemini app, called the way Xitzin calls it
 * ```ts
 * import { testClient } from "./testing.ts";
 * import { gemini, readGeminiStatus } from "./codec/gemini.ts";
 *
 * const client = testClient(() => gemini.notFound(), {
 *   env: { GEMINI_URL: "gemini://example.com/missing" },
 * });
 * const response = await client.fetch("/missing");
 * console.assert(readGeminiStatus(response)?.status === 51);
 * ```
 *
 * @module
 */

import { HandlerInfo } from "./internal/handler_info.ts";
import {
  answerFailure,
  answersInGemini,
  type AnswerSink,
  errorResponse,
  writeAnswer,
} from "./internal/respond.ts";
import { cgiFromRequest } from "./codec/cgi_request.ts";
import { readCgiResponse } from "./codec/cgi_response.ts";
import { ScgiProtocolError } from "./codec/errors.ts";
import { encodeRequestHead } from "./codec/header_encoder.ts";
import { readRequestHead } from "./codec/request_head.ts";
import { requestFromCgi } from "./codec/cgi_request.ts";
import type { ScgiProtocol } from "./codec/gemini.ts";
import type { ScgiHandler, ServeOptions } from "./server.ts";

export type { ScgiHandler, ScgiHandlerInfo, ServeOptions } from "./server.ts";
export type { CgiEnv, CgiVariableList } from "./codec/request_head.ts";
export type { ScgiProtocol } from "./codec/gemini.ts";

/** What a front end adds to a request: extra variables, mount, client. */
export interface TestRequestOptions {
  /**
   * Extra CGI variables, as `scgiFetch`'s `env`: they replace standard ones
   * of the same name, the rest follow (`GEMINI_URL`, `TLS_CLIENT_HASH`,
   * `XITZIN_*`, `REMOTE_USER`, `HTTPS`).
   */
  env?: Readonly<Record<string, string>>;
  /** `SCRIPT_NAME`: the mount point. @default {""} */
  scriptName?: string;
  /**
   * The client reported as `REMOTE_ADDR` (and `REMOTE_PORT`), as nginx
   * reports it.
   * @default {{ hostname: "127.0.0.1" }}
   */
  remoteAddr?: { hostname: string; port?: number };
}

/** Options of {@linkcode testClient}: the front end's and the server's. */
export interface TestClientOptions extends
  TestRequestOptions,
  Pick<
    ServeOptions,
    "onError" | "protocol" | "maxHeaderBytes" | "maxVariables" | "maxBodyBytes"
  > {
  /** Base for relative inputs such as `"/path"`. @default {"http://localhost/"} */
  baseUrl?: string | URL;
}

/** `RequestInit` plus a front end's per-request additions. */
export interface TestRequestInit extends RequestInit, TestRequestOptions {}

/** A client that calls one handler in-process. */
export interface TestClient {
  /**
   * Sends a request through the codec to the handler and returns the
   * response as a front end reads it. Relative inputs are taken against
   * `baseUrl`.
   */
  fetch(
    input: Request | URL | string,
    init?: TestRequestInit,
  ): Promise<Response>;
}

const CONN_ADDR: Deno.NetAddr = {
  transport: "tcp",
  hostname: "127.0.0.1",
  port: 0,
};

/**
 * Creates a test client for a handler (or an app object with a `fetch`
 * method, such as a Hono app).
 *
 * Failures are answered as `serve()` answers them: a handler that throws
 * goes to `onError` (by default logged, then a 500), a request the codec
 * refuses gets its 400/411/413/431. The request body is buffered (its length
 * must be known before the head, as on the wire); the response body streams
 * from the handler as it is read.
 *
 * @param app The handler, or an object with a `fetch` method.
 * @param options Extra variables, limits, `protocol` and `onError` as in
 * `serve()`.
 * @returns The client.
 *
 * @example
 * ```ts
 * import { testClient } from "./testing.ts";
 *
 * const client = testClient(async (request) =>
 *   new Response(`got ${(await request.text()).length} bytes`)
 * );
 * const response = await client.fetch("/upload", { method: "POST", body: "hello" });
 * console.assert(await response.text() === "got 5 bytes");
 * ```
 */
export function testClient(
  app: ScgiHandler | { fetch: ScgiHandler },
  options: TestClientOptions = {},
): TestClient {
  const handler: ScgiHandler = typeof app === "function"
    ? app
    : app.fetch.bind(app);
  if (typeof handler !== "function") {
    throw new TypeError("testClient() needs a handler");
  }
  const base = String(options.baseUrl ?? "http://localhost/");
  return {
    fetch: (input, init = {}) => exchange(handler, options, base, input, init),
  };
}

async function exchange(
  handler: ScgiHandler,
  options: TestClientOptions,
  base: string,
  input: Request | URL | string,
  init: TestRequestInit,
): Promise<Response> {
  const outgoing = input instanceof Request
    ? new Request(input, init)
    : new Request(new URL(input, base), init);
  const scriptName = init.scriptName ?? options.scriptName;
  const remoteAddr = init.remoteAddr ?? options.remoteAddr ??
    { hostname: "127.0.0.1" };
  const standard = cgiFromRequest(outgoing, {
    remoteAddr,
    ...(scriptName !== undefined ? { scriptName } : {}),
  });
  const variables = mergeEnv(standard, { ...options.env, ...init.env });
  const body = new Uint8Array(await outgoing.arrayBuffer());
  const wire = ReadableStream.from([
    encodeRequestHead(variables, body.length),
    body,
  ]);

  const protocol: ScgiProtocol | undefined = options.protocol;
  const onError = (error: unknown) => answerFailure(options.onError, error);

  let response: Response;
  let method = "GET";
  let gemini = answersInGemini(protocol);
  const sink = new StreamSink();
  try {
    const head = await readRequestHead(wire, options);
    method = head.env.REQUEST_METHOD || "GET";
    gemini = answersInGemini(protocol, head.env);
    let request: Request | undefined;
    try {
      request = requestFromCgi(head.env, {
        body: head.body,
        signal: outgoing.signal,
        nonUtf8: head.nonUtf8,
      });
    } catch (error) {
      response = errorResponse(400, (error as Error).message);
    }
    if (request) {
      const info = new HandlerInfo(sink, head.env, head.envList);
      try {
        response = await handler(request, info);
        if (!(response instanceof Response)) {
          throw new TypeError("the handler did not return a Response");
        }
      } catch (error) {
        response = await onError(error);
      }
    }
  } catch (error) {
    if (!(error instanceof ScgiProtocolError)) throw error;
    response = errorResponse(error.status, error.message);
  }

  writeAnswer(sink, response!, method, gemini, onError).then(
    () => sink.end(),
    (error) => sink.fail(error),
  );
  const answer = await readCgiResponse(sink.stream, {
    method,
    onDone: (error) => sink.readerDone(error),
  });
  Object.defineProperty(answer, "url", { value: outgoing.url });
  return answer;
}

// The answer's output as a stream the test reads, the way a socket carries
// it: a write is taken when the reader comes back for more (or has read all
// it wants), `completed` settles as the server's does, and a reader that
// stops early stops the body.
class StreamSink implements AnswerSink {
  closed = false;
  chunks = 0;
  stopBody: ((reason: unknown) => void) | undefined = undefined;
  readonly stream: ReadableStream<Uint8Array>;
  readonly #completed = Promise.withResolvers<void>();
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #taken: PromiseWithResolvers<void> | undefined;
  #readerFinished = false;

  constructor() {
    this.#completed.promise.catch(() => {});
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: () => {
        this.#taken?.resolve();
        this.#taken = undefined;
      },
      cancel: (reason) => this.readerDone(reason ?? new Error("cancelled")),
    }, { highWaterMark: 0 });
  }

  get connAddr(): Deno.Addr {
    return CONN_ADDR;
  }

  get completed(): Promise<void> {
    return this.#completed.promise;
  }

  write(chunk: Uint8Array<ArrayBuffer>): Promise<void> {
    if (this.closed) {
      return Promise.reject(
        new Error("the response was not read to its end"),
      );
    }
    this.chunks++;
    if (this.#readerFinished) {
      this.closed = true;
      return Promise.reject(
        new Error("the response was not read to its end"),
      );
    }
    this.#taken = Promise.withResolvers<void>();
    this.#controller.enqueue(chunk);
    return this.#taken.promise;
  }

  end(): void {
    this.#completed.resolve();
    if (!this.#readerFinished) this.#controller.close();
  }

  fail(error: unknown): void {
    this.#completed.reject(error);
    if (!this.#readerFinished) {
      try {
        this.#controller.error(error);
      } catch {
        // Already closed.
      }
    }
  }

  readerDone(error?: unknown): void {
    if (this.#readerFinished) return;
    this.#readerFinished = true;
    if (error !== undefined) {
      this.closed = true;
      this.stopBody?.(error);
      this.#taken?.reject(error);
    } else {
      this.#taken?.resolve();
    }
    this.#taken = undefined;
  }
}

// As scgiFetch does it: an extra of a standard name replaces it in place.
function mergeEnv(
  env: [string, string][],
  extra: Readonly<Record<string, string>>,
): [string, string][] {
  const merged = env.map(([name, value]): [string, string] =>
    Object.hasOwn(extra, name) ? [name, extra[name]!] : [name, value]
  );
  const standard = new Set(env.map(([name]) => name));
  for (const [name, value] of Object.entries(extra)) {
    if (!standard.has(name)) merged.push([name, value]);
  }
  return merged;
}
