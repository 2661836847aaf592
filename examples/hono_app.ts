#!/usr/bin/env -S deno run --allow-net=127.0.0.1
/**
 * A Hono app as an SCGI backend, unchanged: `serve()` takes any object with
 * a `fetch` method, and Hono's `c.env` is the SCGI handler info (the CGI
 * variables the front end sent, the client address).
 *
 *     deno run --allow-net=127.0.0.1 examples/hono_app.ts [port]
 *
 * Then point nginx at it (`scgi_pass 127.0.0.1:4000;`), or call it directly:
 *
 *     deno eval 'import { scgiFetch } from "./mod.ts";
 *       console.log(await (await scgiFetch("scgi://127.0.0.1:4000/users/7")).json())'
 *
 * @module
 */
// Pinned inline so the library's deno.json stays free of dependencies.
// deno-lint-ignore no-import-prefix
import { Hono } from "npm:hono@4.13.19";
import { type ScgiHandlerInfo, serve } from "../mod.ts";

/** The app: Hono's `Bindings` are what `serve()` passes as the second argument. */
export const app: Hono<{ Bindings: ScgiHandlerInfo }> = new Hono<
  { Bindings: ScgiHandlerInfo }
>();

app.get("/", (c) => c.text("Hello from Hono over SCGI\n"));

app.get("/users/:id", (c) => {
  const id = c.req.param("id");
  if (!/^[0-9]+$/.test(id)) {
    return c.json({ error: "id must be a number" }, 400);
  }
  return c.json({ id: Number(id), name: `user ${id}` });
});

app.post("/echo", async (c) => {
  const body = await c.req.json();
  return c.json({ received: body }, 201);
});

// What the front end told us: the user it authenticated, the client address.
app.get("/whoami", (c) =>
  c.json({
    user: c.env.env.REMOTE_USER ?? null,
    client: c.env.remoteAddr.transport === "tcp"
      ? c.env.remoteAddr.hostname
      : null,
  }));

app.notFound((c) => c.text(`no route for ${c.req.path}\n`, 404));

if (import.meta.main) {
  serve({ port: Number(Deno.args[0] ?? 4000) }, app.fetch);
}
