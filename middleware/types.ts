/**
 * The types middleware are written against. A middleware takes a handler and
 * returns one of the same kind, so the same middleware wraps a `serve()`
 * handler, a `Deno.serve` handler or the SCGI gateway (`scgiProxy`).
 *
 * @example A middleware of your own
 * ```ts
 * import type { Middleware } from "./types.ts";
 *
 * const poweredBy: Middleware = (handler) => async (request, info) => {
 *   const response = await handler(request, info);
 *   const headers = new Headers(response.headers);
 *   headers.set("x-powered-by", "deno-scgi");
 *   return new Response(response.body, { status: response.status, headers });
 * };
 * const handler = poweredBy(() => new Response("hi"));
 * const response = await handler(new Request("http://localhost/"), undefined);
 * console.assert(response.headers.get("x-powered-by") === "deno-scgi");
 * ```
 *
 * @module
 */

import type { CgiEnv } from "../codec/request_head.ts";

/**
 * What middleware may read from a handler's info. `serve()`'s info has both
 * fields; `Deno.serve`'s and the gateway's have `remoteAddr`; a test may pass
 * none at all.
 */
export interface MiddlewareInfo {
  /** The client (for `serve()`, from `REMOTE_ADDR`/`REMOTE_PORT`). */
  readonly remoteAddr?: Deno.Addr;
  /** The CGI variables, when the handler runs behind SCGI. */
  readonly env?: CgiEnv;
}

/** A request handler as middleware see it. */
export type Handler<Info> = (
  request: Request,
  info: Info,
) => Response | Promise<Response>;

/** A middleware: takes a handler, returns one of the same kind that wraps it. */
export type Middleware = <Info extends MiddlewareInfo | undefined>(
  handler: Handler<Info>,
) => Handler<Info>;
