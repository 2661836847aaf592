#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * An SCGI echo backend: answers with JSON describing exactly what it
 * received: the method, the URL, every CGI variable in wire order (repeats
 * kept), and the body's length and SHA-256 (hashed as it streams in, never
 * held whole).
 *
 *     deno run --allow-net=127.0.0.1 examples/echo.ts [port]
 *
 * @module
 */
import { createHash } from "node:crypto";
import { serve } from "../mod.ts";

/** What the echo backend answers with. */
export interface EchoReport {
  method: string;
  url: string;
  headers: [string, string][];
  variables: (readonly [string, string])[];
  bodyLength: number;
  bodySha256: string;
}

/** The echo handler, usable with `serve` or any `Deno.serve`-style server. */
export async function echo(
  request: Request,
  info: { envList: readonly (readonly [string, string])[] },
): Promise<Response> {
  const hash = createHash("sha256");
  let bodyLength = 0;
  if (request.body) {
    for await (const chunk of request.body) {
      hash.update(chunk);
      bodyLength += chunk.length;
    }
  }
  const report: EchoReport = {
    method: request.method,
    url: request.url,
    headers: [...request.headers],
    variables: [...info.envList],
    bodyLength,
    bodySha256: hash.digest("hex"),
  };
  return Response.json(report);
}

if (import.meta.main) {
  serve({ port: Number(Deno.args[0] ?? 4000) }, echo);
}
