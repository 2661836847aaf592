// What the server and the test client (testing.ts) answer on their own: the
// answer to a handler failure, the short error answers, the choice of answer
// format, and the output of a response in that format. Both go through these,
// so a unit test sees what a front end would. Private to the package.

import { type ChunkSink, writeHeadAndBody } from "../codec/_body_output.ts";
import { encodePlainCgi, plainAnswer } from "../codec/_static_body.ts";
import {
  encodeGeminiHead,
  geminiHeadFor,
  isGeminiRequest,
  type ScgiProtocol,
} from "../codec/gemini.ts";
import {
  encodeResponseHead,
  responseHasBody,
} from "../codec/response_to_cgi.ts";

export type { ChunkSink };

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
  env?: { readonly GEMINI_URL?: string | undefined },
): boolean {
  if (protocol === "gemini") return true;
  if (protocol === "cgi" || env === undefined) return false;
  return isGeminiRequest(env);
}

/** A sink that can tell whether its peer is gone. */
export interface AnswerSink extends ChunkSink {
  /** True once the peer is gone: nothing more can be written. */
  readonly closed: boolean;
  /** How many chunks it has taken so far. */
  readonly chunks: number;
  /**
   * Memory the sink lends for a small answer to be written into (the
   * connection's read buffer, once the request no longer needs it).
   */
  readonly scratch?: Uint8Array<ArrayBuffer> | undefined;
}

/**
 * Writes a response to `sink` as CGI (or raw Gemini) output. When the
 * response fails before anything went out (a bad status, a body that
 * errors at once), `onError`'s answer is written instead; a failure after
 * the head goes to `onError` too but can't be answered (a second head can't
 * follow), so it rejects, as does a sink whose peer went away (without
 * `onError`: that is not the handler's failure).
 */
export async function writeAnswer(
  sink: AnswerSink,
  response: Response,
  method: string,
  gemini: boolean,
  onError: (error: unknown) => Promise<Response>,
): Promise<void> {
  const before = sink.chunks;
  let current = response;
  for (let attempt = 0;; attempt++) {
    try {
      await writeResponse(sink, current, method, gemini);
      return;
    } catch (error) {
      // A body cut off because the peer left is not the handler's failure.
      if (sink.closed) throw error;
      const fallback = attempt === 0
        ? await onError(error)
        : errorResponse(500, "Internal Server Error");
      if (sink.chunks > before) {
        // onError still hears of it, but its answer can't follow a head.
        fallback.body?.cancel().catch(() => {});
        throw error;
      }
      current = fallback;
    }
  }
}

/**
 * The whole CGI output of a plain answer (a 200 whose only header is its
 * content type, with a string or bytes body nobody has read), written into
 * `scratch` when it fits; undefined for any other answer, which goes
 * through {@linkcode writeAnswer}. A plain answer can't fail before it is
 * written, so the caller may write these bytes as they are.
 */
export function plainOutput(
  response: Response,
  method: string,
  gemini: boolean,
  scratch: Uint8Array<ArrayBuffer> | undefined,
): Uint8Array<ArrayBuffer> | undefined {
  if (gemini || method === "HEAD") return undefined;
  const plain = plainAnswer(response);
  return plain && encodePlainCgi(plain, scratch);
}

function writeResponse(
  sink: AnswerSink,
  response: Response,
  method: string,
  gemini: boolean,
): Promise<void> {
  if (!gemini) {
    const plain = plainOutput(response, method, gemini, sink.scratch);
    if (plain) return Promise.resolve(sink.write(plain));
    return writeHeadAndBody(
      sink,
      (contentLength) => encodeResponseHead(response, contentLength),
      response,
      responseHasBody(response.status, method),
    );
  }
  let line: Uint8Array<ArrayBuffer>;
  let withBody: boolean;
  try {
    const head = geminiHeadFor(response);
    line = encodeGeminiHead(head);
    withBody = head.status >= 20 && head.status < 30;
  } catch (error) {
    response.body?.cancel().catch(() => {});
    return Promise.reject(error);
  }
  return writeHeadAndBody(sink, () => line, response, withBody);
}
