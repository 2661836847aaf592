/**
 * A small app for `scgi serve`: it default-exports `{ fetch }`, the
 * `deno serve` convention, so the same file runs over HTTP with
 * `deno serve` and over SCGI with `scgi serve`.
 *
 *     scgi serve examples/app.ts --port 4000
 *     deno run --allow-net=127.0.0.1:4000 --allow-read=examples cli.ts serve examples/app.ts
 *
 * Routes: `/` an HTML page listing the CGI variables it received, `POST /echo`
 * the form fields back, `/api/info` a JSON summary (the worker's pid shows
 * which `--workers` process answered).
 *
 * @module
 */

import type { ScgiHandlerInfo } from "../server.ts";

/** The app: `export default { fetch }`. */
const app: {
  fetch(request: Request, info?: ScgiHandlerInfo): Promise<Response>;
} = {
  async fetch(request, info) {
    const url = new URL(request.url);
    if (url.pathname.endsWith("/api/info")) {
      return Response.json({
        pid: Deno.pid,
        method: request.method,
        url: request.url,
        scriptName: info?.env.SCRIPT_NAME ?? null,
        pathInfo: info?.env.PATH_INFO ?? null,
        remoteAddr: info?.env.REMOTE_ADDR ?? null,
      });
    }
    if (url.pathname.endsWith("/echo") && request.method === "POST") {
      const form = await request.formData();
      const fields = [...form].map(([name, value]) =>
        `<li><b>${escape(name)}</b>: ${escape(String(value))}</li>`
      );
      return html(
        `<h1>You sent</h1><ul>${
          fields.join("")
        }</ul><p><a href="./">back</a></p>`,
      );
    }
    const rows = (info?.envList ?? []).map(([name, value]) =>
      `<tr><td>${escape(name)}</td><td>${escape(value)}</td></tr>`
    );
    return html(`<h1>Hello from an SCGI backend</h1>
<p>Deno process ${Deno.pid} made this page behind SCGI. It received these CGI variables:</p>
<table border="1" cellpadding="4">${rows.join("")}</table>
<form method="post" action="echo"><p><input name="message" value="héllo"> <button>POST to echo</button></p></form>
<p><a href="api/info">api/info</a> (JSON)</p>`);
  },
};

export default app;

function html(body: string): Response {
  return new Response(
    `<!doctype html><meta charset="utf-8"><title>SCGI app</title>\n${body}\n`,
    { headers: { "content-type": "text/html; charset=utf-8" } },
  );
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
