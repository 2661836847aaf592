#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * The demo: an SCGI app served by `serve`, and a small HTTP front end
 * (`Deno.serve` + `scgiFetch`) in front of it, as nginx would be. Open the
 * printed URL; Ctrl-C stops both gracefully.
 *
 *     deno run --allow-net=127.0.0.1 examples/demo.ts [http-port]
 *
 * @module
 */
import { scgiFetch, serve } from "../mod.ts";
import { echo } from "./echo.ts";

const app = serve({ port: 0, onListen() {} }, (request, info) => {
  const url = new URL(request.url);
  if (url.pathname === "/echo") return echo(request, info);
  const rows = info.envList
    .map(([name, value]) =>
      `<tr><td>${escape(name)}</td><td>${escape(value)}</td></tr>`
    )
    .join("");
  return new Response(
    `<!doctype html><meta charset="utf-8"><title>SCGI demo</title>
<h1>Hello from an SCGI backend</h1>
<p>This page was made by a Deno handler behind SCGI. It received these CGI variables:</p>
<table border="1" cellpadding="4">${rows}</table>
<form method="post" action="/echo"><p><input name="message" value="héllo"> <button>POST to /echo</button></p></form>`,
    { headers: { "content-type": "text/html; charset=utf-8" } },
  );
});
const backend = app.addr as Deno.NetAddr;

const front = Deno.serve(
  {
    hostname: "127.0.0.1",
    port: Number(Deno.args[0] ?? 8000),
    onListen: ({ hostname, port }) =>
      console.log(
        `SCGI backend on scgi://${backend.hostname}:${backend.port}/\nOpen http://${hostname}:${port}/ (Ctrl-C to stop)`,
      ),
  },
  (request, info) =>
    scgiFetch(request, {
      backend,
      remoteAddr: info.remoteAddr,
      signal: AbortSignal.timeout(30_000),
    }).catch((error) =>
      new Response(`bad gateway: ${error.message}\n`, { status: 502 })
    ),
);

function escape(text: string): string {
  return text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

Deno.addSignalListener("SIGINT", async () => {
  console.log("\nstopping…");
  await Promise.all([front.shutdown(), app.shutdown()]);
  Deno.exit(0);
});
