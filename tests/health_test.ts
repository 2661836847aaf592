import assert from "node:assert/strict";
import { health } from "../middleware/mod.ts";
import { testClient } from "../testing.ts";

Deno.test("health: answers ok without calling the app", async () => {
  let calls = 0;
  const client = testClient(
    health()(() => {
      calls++;
      return new Response("app");
    }),
  );
  const response = await client.fetch("/healthz");
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("cache-control"), "no-store");
  assert.equal(await response.text(), "ok\n");
  const head = await client.fetch("/healthz", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.body, null);
  assert.equal(calls, 0);
  assert.equal(await (await client.fetch("/healthz/more")).text(), "app");
  assert.equal(await (await client.fetch("/healthz?x=1")).text(), "ok\n");
  assert.equal(calls, 1);
  const post = await client.fetch("/healthz", { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
  assert.equal(calls, 1);
});

Deno.test("health: the check decides 200 or 503, and a custom path", async () => {
  let state: "up" | "down" | "throw" | "void" | "slow" = "up";
  const client = testClient(
    health({
      path: "/up",
      timeout: 20,
      check: () => {
        if (state === "throw") throw new Error("db password leaked?");
        if (state === "slow") {
          return new Promise<boolean>((resolve) =>
            setTimeout(() => resolve(true), 200)
          );
        }
        if (state === "void") return;
        return state === "up";
      },
    })(() => new Response("app")),
  );
  const status = async () => {
    const response = await client.fetch("/up");
    return [response.status, await response.text()];
  };
  assert.deepEqual(await status(), [200, "ok\n"]);
  state = "down";
  assert.deepEqual(await status(), [503, "unavailable\n"]);
  state = "throw";
  assert.deepEqual(await status(), [503, "unavailable\n"]);
  state = "void";
  assert.deepEqual(await status(), [200, "ok\n"]);
  state = "slow";
  assert.deepEqual(await status(), [503, "unavailable\n"]);
  assert.equal(await (await client.fetch("/healthz")).text(), "app");
  // Let the slow check's timer end inside the test.
  await new Promise((resolve) => setTimeout(resolve, 200));
});
