#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * A backend shaped for deployment behind nginx, lighttpd or Apache: it
 * listens on a TCP port or a Unix socket, shuts down gracefully on SIGTERM
 * (what systemd sends on `systemctl stop`), and streams where asked.
 * docs/deployment.md runs it under systemd.
 *
 *     deno run --allow-net=127.0.0.1 examples/interop_app.ts 4000
 *     deno run --allow-read=/run/app --allow-write=/run/app \
 *       --allow-net=unix:/run/app/app.sock examples/interop_app.ts /run/app/app.sock
 *
 * Routes: `/` says hello, `/health` answers `ok`, `/stream` sends five lines
 * a tenth of a second apart, `/upload` (POST) reports the body's size.
 *
 * @module
 */
import { serve } from "../mod.ts";

const where = Deno.args[0] ?? "4000";
const encoder = new TextEncoder();

const server = serve({
  ...(/^[0-9]+$/.test(where) ? { port: Number(where) } : {
    path: where,
    // The web server's group reads and writes the socket; nobody else.
    socketMode: 0o660,
  }),
  handleSignals: true,
  shutdownTimeout: 10_000,
}, async (request, info) => {
  const url = new URL(request.url);
  switch (url.pathname) {
    case "/health":
      return new Response("ok\n");
    case "/stream": {
      let line = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (line === 5) return controller.close();
          if (line > 0) await new Promise((r) => setTimeout(r, 100));
          controller.enqueue(encoder.encode(`line ${++line}\n`));
        },
      });
      // nginx holds a response back in its buffers unless told not to.
      return new Response(body, {
        headers: {
          "content-type": "text/plain; charset=utf-8",
          "x-accel-buffering": "no",
        },
      });
    }
    case "/upload": {
      let bytes = 0;
      for await (const chunk of request.body ?? []) bytes += chunk.length;
      return Response.json({ bytes });
    }
    default:
      return Response.json({
        hello: url.pathname,
        client: info.remoteAddr,
        via: info.env.SERVER_SOFTWARE ?? "nginx",
      });
  }
});

await server.finished;
console.error("stopped");
