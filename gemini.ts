/**
 * Gemini backends over SCGI: build raw Gemini answers (`20 text/gemini`,
 * `30 url`, `51 Not found`, `10 prompt`) from a handler; call a Gemini
 * backend with `scgiFetch("gemini://host/path", { backend })`, which sends
 * what Xitzin sends and reads raw answers and flup's `Status: 20 text/gemini`
 * alike. The protocol code lives in `codec/gemini.ts`; see it for the status
 * tables.
 *
 * @example A Gemini app behind Xitzin
 * ```ts
 * import { gemini, readGeminiStatus } from "./gemini.ts";
 * import { scgiFetch, serve } from "./mod.ts";
 *
 * await using server = serve({ port: 0, onListen() {} }, () =>
 *   gemini.success("# Hello from SCGI\n"));
 * const { port } = server.addr as Deno.NetAddr;
 * const response = await scgiFetch("gemini://example.com/", {
 *   backend: { port },
 * });
 * console.assert(readGeminiStatus(response)?.status === 20);
 * console.assert(await response.text() === "# Hello from SCGI\n");
 * ```
 *
 * @module
 */

export * from "./codec/gemini.ts";
