#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * The smallest SCGI backend: answers every request with a greeting.
 *
 *     deno run --allow-net=127.0.0.1 examples/hello.ts [port]
 *
 * Put it behind nginx with `scgi_pass 127.0.0.1:4000;` and `include scgi_params;`.
 *
 * @module
 */
import { serve } from "../mod.ts";

const port = Number(Deno.args[0] ?? 4000);

serve({ port }, (request, info) =>
  new Response(
    `Hello, ${
      info.remoteAddr.transport === "tcp" ? info.remoteAddr.hostname : "friend"
    }! ` +
      `You asked for ${new URL(request.url).pathname}\n`,
    { headers: { "content-type": "text/plain; charset=utf-8" } },
  ));
