// The parts of the server's request path that the test client (testing.ts)
// runs too, so that a unit test goes through the code a front end reaches:
// the handler info, the error answers and the choice of answer format.
// Private to the package.

import type { CgiEnv, CgiVariableList } from "./codec/request_head.ts";
import { encodeCgiResponse } from "./codec/response_to_cgi.ts";
import {
  encodeGeminiResponse,
  isGeminiRequest,
  type ScgiProtocol,
} from "./codec/gemini.ts";
import type { ScgiHandlerInfo } from "./server.ts";

/** The info a handler gets for a decoded request head. */
export function handlerInfo(
  head: { env: CgiEnv; envList: CgiVariableList },
  connAddr: Deno.Addr,
  completed: Promise<void>,
): ScgiHandlerInfo {
  const env = head.env;
  return {
    remoteAddr: env.REMOTE_ADDR
      ? {
        transport: "tcp",
        hostname: env.REMOTE_ADDR,
        port: Number(env.REMOTE_PORT) || 0,
      }
      : connAddr,
    connAddr,
    completed,
    env,
    envList: head.envList,
  };
}

/**
 * The answer to a handler failure: `onError`'s response, or (without one, or
 * when it fails too) the error logged and a plain 500.
 */
export async function answerFailure(
  onError: ((error: unknown) => Response | Promise<Response>) | undefined,
  error: unknown,
): Promise<Response> {
  if (onError) {
    try {
      const response = await onError(error);
      if (response instanceof Response) return response;
    } catch (secondary) {
      console.error("onError failed:", secondary);
    }
  } else {
    console.error(error);
  }
  return errorResponse(500, "Internal Server Error");
}

/** A short plain-text answer the server gives on its own. */
export function errorResponse(status: number, message: string): Response {
  return new Response(message + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/**
 * Whether the answer is written as a raw Gemini response: always for
 * `"gemini"`, for `"auto"` (the default) when the request has `GEMINI_URL`.
 * Without variables (a malformed request) only `"gemini"` says so.
 */
export function answersInGemini(
  protocol: ScgiProtocol | undefined,
  env?: CgiEnv,
): boolean {
  if (protocol === "gemini") return true;
  if (protocol === "cgi" || env === undefined) return false;
  return isGeminiRequest(env);
}

/** The output chunks of a response in the chosen format. */
export function encodeResponse(
  response: Response,
  method: string,
  gemini: boolean,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array<ArrayBuffer>, void, undefined> {
  const options = signal ? { method, signal } : { method };
  return gemini
    ? encodeGeminiResponse(response, options)
    : encodeCgiResponse(response, options);
}

/** The output of one answer, pulled chunk by chunk (see {@linkcode responseOutput}). */
export interface ResponseOutput {
  /** The next chunk to write; `done` after the last. */
  next(): Promise<IteratorResult<Uint8Array<ArrayBuffer>, void>>;
  /** Stops early: cancels what is left of the body. */
  return(): Promise<unknown>;
}

/**
 * The output of one answer: the chunks of `response`, and when its body
 * fails before anything went out, the chunks of `onError`'s answer instead.
 * A failure after the head can't be answered (a second head can't follow),
 * so it ends the output with the error. Aborting `signal` (the connection is
 * gone) cancels the body and ends the output. A plain object rather than
 * another async generator around the encoder's: it is made per request.
 */
export function responseOutput(
  response: Response,
  method: string,
  gemini: boolean,
  onError: (error: unknown) => Promise<Response>,
  signal?: AbortSignal,
): ResponseOutput {
  let chunks = encodeResponse(response, method, gemini, signal);
  let headSent = false;
  return {
    async next() {
      while (true) {
        try {
          const next = await chunks.next();
          if (!next.done) headSent = true;
          return next;
        } catch (error) {
          const fallback = await onError(error);
          if (headSent) {
            fallback.body?.cancel().catch(() => {});
            throw error;
          }
          chunks = encodeResponse(fallback, method, gemini, signal);
        }
      }
    },
    return: () => chunks.return().catch(() => {}),
  };
}
