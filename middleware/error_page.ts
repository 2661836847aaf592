/**
 * Error pages for handlers that throw: the client gets a short page (HTML
 * when its `Accept` prefers HTML, plain text otherwise) with the status and
 * its reason phrase, never the error's message or stack, unless
 * `debug: true`. The error itself goes to `onError` (by default
 * `console.error`) for the operator.
 *
 * An error with a numeric `status` from 400 to 599 (an "HTTP error" object
 * as frameworks throw them) answers with that status; any other error is a
 * 500. A Gemini request gets the same page status, which `serve()` turns
 * into a Gemini status (500 → `42`).
 *
 * @example
 * ```ts
 * import { errorPage } from "./error_page.ts";
 * import { testClient } from "../testing.ts";
 *
 * const app = errorPage({ onError() {} })(() => {
 *   throw new Error("database password is hunter2");
 * });
 * const response = await testClient(app).fetch("/", { headers: { accept: "text/html" } });
 * const page = await response.text();
 * console.assert(response.status === 500 && !page.includes("hunter2"));
 * ```
 *
 * @module
 */

import type { Middleware } from "./types.ts";
import { statusText } from "../codec/status_text.ts";

/** Options of {@linkcode errorPage}. */
export interface ErrorPageOptions {
  /**
   * Put the error's message and stack in the page: for development only,
   * as a stack tells an attacker about the code.
   * @default {false}
   */
  debug?: boolean;
  /**
   * Called with each error and its request, for logging.
   * @default {console.error}
   */
  onError?: (error: unknown, request: Request) => void;
}

/**
 * Error-page middleware.
 *
 * @param options `debug` and the logging callback.
 * @returns The middleware: `(handler) => handler`.
 *
 * @example
 * ```ts
 * import { errorPage } from "./error_page.ts";
 *
 * const handler = errorPage({ onError() {} })(() => {
 *   throw Object.assign(new Error("no such user"), { status: 404 });
 * });
 * const response = await handler(new Request("http://localhost/"), {} as never);
 * console.assert(response.status === 404);
 * ```
 */
export function errorPage(
  options: ErrorPageOptions = {},
): Middleware {
  const onError = options.onError ??
    ((error: unknown) => console.error(error));
  return (handler) => async (request, info) => {
    try {
      return await handler(request, info);
    } catch (error) {
      try {
        onError(error, request);
      } catch {
        // Logging must not turn one error into two.
      }
      return page(error, request, options.debug ?? false);
    }
  };
}

function page(error: unknown, request: Request, debug: boolean): Response {
  const claimed = (error as { status?: unknown } | null)?.status;
  const status = typeof claimed === "number" && Number.isInteger(claimed) &&
      claimed >= 400 && claimed <= 599
    ? claimed
    : 500;
  const reason = statusText(status) || "Error";
  const detail = debug
    ? (error instanceof Error ? error.stack ?? String(error) : String(error))
    : undefined;
  const headers = { "cache-control": "no-store" };
  if (prefersHtml(request.headers.get("accept"))) {
    const body =
      `<!doctype html>\n<html><head><meta charset="utf-8"><title>${status} ${
        html(reason)
      }</title></head>\n<body><h1>${status} ${
        html(reason)
      }</h1>\n<p>The server could not answer this request.</p>\n${
        detail === undefined ? "" : `<pre>${html(detail)}</pre>\n`
      }</body></html>\n`;
    return new Response(body, {
      status,
      headers: { ...headers, "content-type": "text/html; charset=utf-8" },
    });
  }
  const body = `${status} ${reason}\n${
    detail === undefined ? "" : `\n${detail}\n`
  }`;
  return new Response(body, {
    status,
    headers: { ...headers, "content-type": "text/plain; charset=utf-8" },
  });
}

// HTML when the client rates text/html (or text/* / */* via html's absence)
// above text/plain: browsers send `text/html,...,*/*;q=0.8`.
function prefersHtml(accept: string | null): boolean {
  if (!accept) return false;
  let htmlQ = 0;
  let plainQ = 0;
  for (const part of accept.split(",")) {
    const [type, ...params] = part.split(";").map((s) =>
      s.trim().toLowerCase()
    );
    let q = 1;
    for (const param of params) {
      const match = param.match(/^q=([0-9.]+)$/);
      if (match) q = Number(match[1]) || 0;
    }
    if (type === "text/html" || type === "application/xhtml+xml") {
      htmlQ = Math.max(htmlQ, q);
    } else if (type === "text/plain") {
      plainQ = Math.max(plainQ, q);
    } else if (type === "text/*" || type === "*/*") {
      plainQ = Math.max(plainQ, q * 0.999);
    }
  }
  return htmlQ > 0 && htmlQ >= plainQ;
}

function html(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
