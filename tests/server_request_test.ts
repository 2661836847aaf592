// The Request a handler gets from serve() is built the short way Deno.serve
// builds its own (see codec/_request_factory.ts): these check that it is a
// Request in every respect a handler can observe, the same as one made with
// `new Request`.

import assert from "node:assert/strict";
import { directRequests } from "../codec/_request_factory.ts";
import { requestFromCgi } from "../codec/cgi_request.ts";
import { scgiFetch } from "../client.ts";
import { type ScgiHandler, serve } from "../server.ts";

const env = {
  CONTENT_LENGTH: "5",
  REQUEST_METHOD: "POST",
  REQUEST_URI: "/path/a%20b?q=1&r=%C3%A9",
  HTTP_HOST: "example.com:8080",
  HTTP_ACCEPT: "text/html",
  HTTP_X_MULTI: "a, b",
  HTTP_COOKIE: "a=1; b=2",
  CONTENT_TYPE: "text/plain",
};

function describe(request: Request): unknown[] {
  return [
    request.url,
    request.method,
    [...request.headers],
    request.redirect,
    request.cache,
    request.credentials,
    request.integrity,
    request.keepalive,
    request.mode,
    request.referrer,
    request.referrerPolicy,
    request.bodyUsed,
    request.signal.aborted,
    request instanceof Request,
    Object.prototype.toString.call(request),
  ];
}

Deno.test("server requests: built the short way on this Deno", () => {
  // Where this fails, Deno changed how it builds requests: the server still
  // works (it falls back to new Request), only slower. Look at
  // codec/_request_factory.ts.
  assert.equal(directRequests, true);
});

Deno.test("server requests: the same as new Request in every field, body and clone", async () => {
  const body = new Uint8Array([104, 101, 108, 108, 111]);
  const made = requestFromCgi(env, {
    body: body.slice(),
    signal: () => new AbortController().signal,
  });
  const standard = requestFromCgi(env, {
    body: body.slice(),
    signal: new AbortController().signal,
  });
  assert.deepEqual(describe(made), describe(standard));
  const clone = made.clone();
  assert.deepEqual(describe(clone), describe(standard));
  assert.equal(await clone.text(), "hello");
  assert.equal(await made.text(), "hello");
  assert.equal(made.bodyUsed, true);
  await assert.rejects(made.text(), TypeError);
  // A copy with changes, as middleware makes them, takes over the body.
  const fresh = requestFromCgi(env, {
    body: body.slice(),
    signal: () => new AbortController().signal,
  });
  const changed = new Request(fresh.url + "&s=2", fresh);
  assert.equal(changed.method, "POST");
  assert.equal(changed.headers.get("accept"), "text/html");
  assert.equal(await changed.text(), "hello");
  // Headers are the request's own and can be changed (guard "request").
  made.headers.set("x-late", "1");
  assert.equal(made.headers.get("x-late"), "1");
});

Deno.test("server requests: methods normalized and refused as new Request does them", () => {
  const method = (REQUEST_METHOD: string) =>
    requestFromCgi({ CONTENT_LENGTH: "0", REQUEST_METHOD }, {
      signal: () => new AbortController().signal,
    }).method;
  assert.equal(method("get"), "GET");
  assert.equal(method("Delete"), "DELETE");
  assert.equal(method("patch"), "patch");
  assert.equal(method("PATCH"), "PATCH");
  assert.equal(method("PROPFIND"), "PROPFIND");
  for (const forbidden of ["CONNECT", "trace", "TRACK"]) {
    assert.throws(() => method(forbidden), TypeError);
  }
});

Deno.test("server requests: a streamed body, clone and new Request(request) through serve()", async () => {
  const seen: unknown[] = [];
  const handler: ScgiHandler = async (request) => {
    const copy = new Request(request);
    const clone = copy.clone();
    const [a, b] = await Promise.all([copy.text(), clone.text()]);
    seen.push(request.bodyUsed, copy.method, copy.url, a.length, a === b);
    return new Response(String(a.length));
  };
  await using server = serve({ port: 0, onListen() {} }, handler);
  const { port } = server.addr as Deno.NetAddr;
  const big = "x".repeat(300_000);
  const response = await scgiFetch(`scgi://127.0.0.1:${port}/up`, {
    method: "PUT",
    body: ReadableStream.from([new TextEncoder().encode(big)]),
    headers: { "content-length": String(big.length) },
  });
  assert.equal(await response.text(), String(big.length));
  assert.deepEqual(seen, [
    true,
    "PUT",
    `http://127.0.0.1:${port}/up`,
    big.length,
    true,
  ]);
});

Deno.test("server requests: signals of clones and copies abort with the request's", async () => {
  const reasons: unknown[] = [];
  const started = Promise.withResolvers<void>();
  const handler: ScgiHandler = (request) => {
    const clone = request.clone();
    const copy = new Request(request);
    const signals = [request.signal, clone.signal, copy.signal];
    started.resolve();
    return new Promise((resolve) => {
      let left = signals.length;
      for (const signal of signals) {
        signal.addEventListener("abort", () => {
          reasons.push(signal.reason);
          if (--left === 0) resolve(new Response("late"));
        });
      }
    });
  };
  await using server = serve(
    { port: 0, onListen() {}, abortOnHangUp: true },
    handler,
  );
  const { port } = server.addr as Deno.NetAddr;
  const controller = new AbortController();
  const call = scgiFetch(`scgi://127.0.0.1:${port}/`, {
    signal: controller.signal,
  });
  await started.promise;
  controller.abort();
  await assert.rejects(call);
  while (reasons.length < 3) await new Promise((r) => setTimeout(r, 5));
  assert.equal(reasons.length, 3);
  for (const reason of reasons) {
    assert.equal((reason as DOMException).name, "AbortError");
  }
  assert.equal(reasons[0], reasons[1]);
});

Deno.test("server requests: fetch(request) forwards method, headers and body", async () => {
  const upstream = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async (request) =>
      Response.json({
        method: request.method,
        path: new URL(request.url).pathname,
        accept: request.headers.get("accept"),
        body: await request.text(),
      }),
  );
  const upstreamPort = upstream.addr.port;
  await using server = serve({ port: 0, onListen() {} }, (request) => {
    const url = new URL(request.url);
    url.port = String(upstreamPort);
    return fetch(new Request(url, request));
  });
  try {
    const { port } = server.addr as Deno.NetAddr;
    const response = await scgiFetch(`scgi://127.0.0.1:${port}/echo`, {
      method: "POST",
      headers: { accept: "application/json" },
      body: "sent on",
    });
    assert.deepEqual(await response.json(), {
      method: "POST",
      path: "/echo",
      accept: "application/json",
      body: "sent on",
    });
  } finally {
    await upstream.shutdown();
  }
});
