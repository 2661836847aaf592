/**
 * Middleware for SCGI apps: plain functions `(handler) => handler`, so they
 * wrap any `serve()` handler, a `Deno.serve` handler or the SCGI gateway (or
 * each other) without a framework.
 * {@linkcode compose} applies several, the first one outermost.
 *
 * - {@linkcode compress}: gzip/deflate negotiated from `Accept-Encoding`.
 * - {@linkcode accessLog}: Common/Combined Log Format or JSON lines, to a
 *   file, a stream or a function.
 * - {@linkcode health}: `/healthz` answered without the app.
 * - {@linkcode errorPage}: short error pages, no stack traces leaked.
 *
 * @example A production stack
 * ```ts
 * import { accessLog, compose, compress, errorPage, health } from "./mod.ts";
 * import { serve } from "../server.ts";
 * import { scgiFetch } from "../client.ts";
 *
 * const lines: string[] = [];
 * const handler = compose(
 *   accessLog({ sink: (line) => lines.push(line) }),
 *   health(),
 *   errorPage(),
 *   compress(),
 * )(() => new Response("hello"));
 * await using server = serve({ port: 0, onListen() {} }, handler);
 * const { port } = server.addr as Deno.NetAddr;
 * const response = await scgiFetch(`scgi://127.0.0.1:${port}/healthz`);
 * console.assert(await response.text() === "ok\n");
 * ```
 *
 * @module
 */

import type { Handler, Middleware, MiddlewareInfo } from "./types.ts";

export type { ScgiHandler, ScgiHandlerInfo } from "../server.ts";
export type { CgiEnv, CgiVariableList } from "../codec/request_head.ts";
export * from "./types.ts";

export * from "./compress.ts";
export * from "./access_log.ts";
export * from "./health.ts";
export * from "./error_page.ts";

/**
 * Applies middleware to a handler, the first one outermost: it sees the
 * request first and the response last.
 *
 * @param middleware The middleware, outermost first.
 * @returns A middleware that applies them all.
 *
 * @example
 * ```ts
 * import { compose, errorPage, health } from "./mod.ts";
 *
 * const handler = compose(health(), errorPage())(() => new Response("app"));
 * console.assert(typeof handler === "function");
 * ```
 */
export function compose(...middleware: Middleware[]): Middleware {
  return <Info extends MiddlewareInfo | undefined>(handler: Handler<Info>) =>
    middleware.reduceRight<Handler<Info>>(
      (inner, wrap) => wrap(inner),
      handler,
    );
}
