import assert from "node:assert/strict";
import { errorPage } from "../middleware/mod.ts";
import { readGeminiStatus } from "../gemini.ts";
import { testClient } from "../testing.ts";

const SECRET = "connection string postgres://admin:hunter2@db";

function failing(errors: unknown[] = [], debug = false) {
  return testClient(
    errorPage({ debug, onError: (error) => errors.push(error) })((request) => {
      const path = new URL(request.url).pathname;
      if (path === "/ok") return new Response("fine");
      if (path === "/status") {
        throw Object.assign(new Error("no such user"), { status: 404 });
      }
      if (path === "/bad-status") {
        throw Object.assign(new Error("x"), { status: 200 });
      }
      if (path === "/string") throw "a string";
      return Promise.reject(new Error(SECRET));
    }),
  );
}

Deno.test("errorPage: 500 page by Accept, nothing leaked", async () => {
  const errors: unknown[] = [];
  const client = failing(errors);
  const browser = await client.fetch("/", {
    headers: {
      accept: "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    },
  });
  assert.equal(browser.status, 500);
  assert.equal(browser.headers.get("content-type"), "text/html; charset=utf-8");
  const html = await browser.text();
  assert.match(html, /<h1>500 Internal Server Error<\/h1>/);
  assert.ok(!html.includes("hunter2") && !html.includes("error_page_test"));

  for (
    const accept of [
      undefined,
      "*/*",
      "text/plain",
      "application/json",
      "text/html;q=0.1, text/plain",
    ]
  ) {
    const response = await client.fetch(
      "/",
      accept ? { headers: { accept } } : {},
    );
    assert.equal(
      response.headers.get("content-type"),
      "text/plain; charset=utf-8",
      accept,
    );
    assert.equal(await response.text(), "500 Internal Server Error\n");
  }
  assert.equal(errors.length, 6);
  assert.match(String(errors[0]), /hunter2/);
  assert.equal(await (await client.fetch("/ok")).text(), "fine");
});

Deno.test("errorPage: an error's own 4xx/5xx status; others are 500", async () => {
  const client = failing();
  const notFound = await client.fetch("/status");
  assert.equal(notFound.status, 404);
  assert.equal(await notFound.text(), "404 Not Found\n");
  const bad = await client.fetch("/bad-status");
  assert.equal(bad.status, 500);
  await bad.body?.cancel();
  const text = await client.fetch("/string");
  assert.equal(text.status, 500);
  await text.body?.cancel();
});

Deno.test("errorPage: debug shows the stack, HTML-escaped", async () => {
  const client = testClient(
    errorPage({ debug: true, onError() {} })(() => {
      throw new Error("<script>alert(1)</script>");
    }),
  );
  const html =
    await (await client.fetch("/", { headers: { accept: "text/html" } }))
      .text();
  assert.match(
    html,
    /<pre>Error: &#60;script&#62;alert\(1\)&#60;\/script&#62;\n\s+at /,
  );
  const text = await (await client.fetch("/")).text();
  assert.match(text, /^500 Internal Server Error\n\nError: <script>/);
});

Deno.test("errorPage: a Gemini request gets a 42, a broken logger is ignored", async () => {
  const client = testClient(
    errorPage({
      onError() {
        throw new Error("logger down");
      },
    })(() => {
      throw new Error("boom");
    }),
    { env: { GEMINI_URL: "gemini://example.com/" } },
  );
  const response = await client.fetch("/");
  assert.deepEqual(readGeminiStatus(response), {
    status: 42,
    meta: "Internal Server Error",
  });
});
