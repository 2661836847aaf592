/**
 * SCGI for Deno: a `Deno.serve`-like server and a `fetch`-like client, on
 * sans-I/O web-streams codecs that both share.
 *
 * - {@linkcode serve} runs any `(Request) => Response` handler as the SCGI
 *   backend of nginx, lighttpd, Apache or a Gemini server.
 * - {@linkcode scgiFetch} and {@linkcode createClient} call any SCGI backend
 *   (uWSGI, Perl, Python, rtorrent's XML-RPC) and return a streaming
 *   `Response`.
 * - The codec functions ({@linkcode readRequestHead},
 *   {@linkcode encodeRequestHead}, {@linkcode encodeCgiResponse},
 *   {@linkcode readCgiResponse}, {@linkcode requestFromCgi},
 *   {@linkcode cgiFromRequest}) never touch a socket.
 *
 * @example A backend and a call to it
 * ```ts
 * import { scgiFetch, serve } from "./mod.ts";
 *
 * await using server = serve(
 *   { port: 0, onListen() {} },
 *   (request, info) => Response.json({ method: request.method, scgi: info.env.SCGI }),
 * );
 * const { port } = server.addr as Deno.NetAddr;
 * const response = await scgiFetch(`scgi://127.0.0.1:${port}/`);
 * console.assert((await response.json()).scgi === "1");
 * ```
 *
 * @module
 */

export * from "./server.ts";
export * from "./client.ts";
export * from "./codec/errors.ts";
export * from "./codec/status_text.ts";
export * from "./codec/byte_source.ts";
export * from "./codec/request_head.ts";
export * from "./codec/header_encoder.ts";
export * from "./codec/cgi_request.ts";
export * from "./codec/response_to_cgi.ts";
export * from "./codec/cgi_response.ts";
export {
  scgiProxy,
  type ScgiProxyHandler,
  type ScgiProxyInfo,
  type ScgiProxyOptions,
} from "./gateway.ts";
export * from "./gemini.ts";
