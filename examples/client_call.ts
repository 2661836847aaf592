#!/usr/bin/env -S deno run --allow-net=127.0.0.1:4000
/**
 * Calls an SCGI backend (by default the echo example on port 4000) the way a
 * front end would, and prints the answer.
 *
 *     deno run --allow-net=127.0.0.1:4000 examples/client_call.ts [scgi://127.0.0.1:4000/path]
 *
 * @module
 */
import { ScgiClientError, scgiFetch } from "../mod.ts";

const target = Deno.args[0] ?? "scgi://127.0.0.1:4000/hello?from=client";

try {
  const response = await scgiFetch(target, {
    method: "POST",
    headers: { "content-type": "text/plain" },
    body: "a body for the backend",
    env: { REMOTE_ADDR: "127.0.0.1" },
    signal: AbortSignal.timeout(10_000),
  });
  console.log(`${response.status} ${response.statusText}`);
  for (const [name, value] of response.headers) {
    console.log(`${name}: ${value}`);
  }
  console.log();
  console.log(await response.text());
} catch (error) {
  if (error instanceof ScgiClientError) {
    console.error(`scgi error (${error.code}): ${error.message}`);
    Deno.exit(1);
  }
  throw error;
}
