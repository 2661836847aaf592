// The answers the gateway gives on its own (a backend that can't be reached,
// is too slow or answers badly; a client that left), and the wrapper that
// frees a backend's slot once its answer's body is done. Private to the
// package.

import { ScgiClientError } from "../codec/errors.ts";

// True when the connection was never made, so nothing of the request went
// out and another backend may take it: refused, no socket, not accepted in
// time. The client says "cannot connect" only from its connect step.
export function neverConnected(error: unknown): error is ScgiClientError {
  if (!(error instanceof ScgiClientError)) return false;
  return error.code === "connection_refused" ||
    error.code === "connect_timeout" ||
    (error.code === "connection_failed" &&
      error.message.startsWith("cannot connect"));
}

// The answer for a client that left before the backend's head: nginx's 499
// ("client closed request"), for the access log; nobody reads it.
export async function clientClosed(
  body: ReadableStream<Uint8Array> | Uint8Array | null,
): Promise<Response> {
  await cancelBody(body);
  return new Response(null, { status: 499 });
}

export function errorResponse(error: unknown): Response {
  if (error instanceof ScgiClientError) {
    switch (error.code) {
      case "connect_timeout":
      case "head_timeout":
      case "idle_timeout":
        return textResponse(504, `SCGI backend timed out: ${error.message}`);
      case "request_too_large":
        return textResponse(413, error.message);
      case "request_body_mismatch":
        return textResponse(400, error.message);
      default:
        return textResponse(502, `bad SCGI backend: ${error.message}`);
    }
  }
  return textResponse(
    502,
    `bad SCGI backend: ${(error as Error)?.message ?? error}`,
  );
}

export function textResponse(status: number, message: string): Response {
  return new Response(message + "\n", {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

export async function cancelBody(
  body: ReadableStream<Uint8Array> | Uint8Array | null,
): Promise<void> {
  if (body instanceof ReadableStream) await body.cancel().catch(() => {});
}

// Calls done once the response body has ended, failed or been cancelled.
export function releaseWhenDone(
  response: Response,
  done: () => void,
): Response {
  const source = response.body;
  if (!source) {
    done();
    return response;
  }
  let released = false;
  const finish = () => {
    if (!released) {
      released = true;
      done();
    }
  };
  const reader = source.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          finish();
          controller.close();
        } else {
          controller.enqueue(value);
        }
      } catch (error) {
        finish();
        controller.error(error);
      }
    },
    async cancel(reason) {
      finish();
      await reader.cancel(reason).catch(() => {});
    },
  });
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
  });
}
