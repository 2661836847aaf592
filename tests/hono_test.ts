// A Hono app (npm:hono, pinned) over serve() unchanged, called through
// scgiFetch over a real socket and through the test client.
import assert from "node:assert/strict";
import { app } from "../examples/hono_app.ts";
import { scgiFetch } from "../client.ts";
import { serve } from "../server.ts";
import { testClient } from "../testing.ts";

Deno.test("hono: routing, params, JSON, POST body, env and 404 through scgiFetch", async () => {
  await using server = serve({ port: 0, onListen() {}, fetch: app.fetch });
  const { port } = server.addr as Deno.NetAddr;
  const base = `scgi://127.0.0.1:${port}`;

  const root = await scgiFetch(`${base}/`);
  assert.equal(root.status, 200);
  assert.match(root.headers.get("content-type")!, /^text\/plain/);
  assert.equal(await root.text(), "Hello from Hono over SCGI\n");

  const user = await scgiFetch(`${base}/users/42`);
  assert.equal(user.headers.get("content-type"), "application/json");
  assert.deepEqual(await user.json(), { id: 42, name: "user 42" });

  const badId = await scgiFetch(`${base}/users/abc`);
  assert.equal(badId.status, 400);
  assert.deepEqual(await badId.json(), { error: "id must be a number" });

  const echo = await scgiFetch(`${base}/echo`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ hello: "wörld", n: [1, 2] }),
  });
  assert.equal(echo.status, 201);
  assert.equal(echo.statusText, "Created");
  assert.deepEqual(await echo.json(), {
    received: { hello: "wörld", n: [1, 2] },
  });

  const whoami = await scgiFetch(`${base}/whoami`, {
    env: { REMOTE_USER: "alice" },
    remoteAddr: { hostname: "192.0.2.9", port: 1234 },
  });
  assert.deepEqual(await whoami.json(), { user: "alice", client: "192.0.2.9" });

  const missing = await scgiFetch(`${base}/nope?x=1`);
  assert.equal(missing.status, 404);
  assert.equal(missing.statusText, "Not Found");
  assert.equal(await missing.text(), "no route for /nope\n");

  const wrongMethod = await scgiFetch(`${base}/users/1`, { method: "DELETE" });
  assert.equal(wrongMethod.status, 404);
  await wrongMethod.body?.cancel();
});

Deno.test("hono: serve(options, app.fetch) and the test client take the app too", async () => {
  await using server = serve({ port: 0, onListen() {} }, app.fetch);
  const { port } = server.addr as Deno.NetAddr;
  assert.deepEqual(
    await (await scgiFetch(`scgi://127.0.0.1:${port}/users/7`)).json(),
    {
      id: 7,
      name: "user 7",
    },
  );
  const client = testClient(app);
  const response = await client.fetch("/echo", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "[true]",
  });
  assert.deepEqual(await response.json(), { received: [true] });
});
