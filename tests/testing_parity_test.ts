// One set of behaviour tests, run against both ways of calling a handler:
// the real thing (`serve()` on a loopback port, called by `scgiFetch`) and the
// socket-free `testClient`. Every case runs against both with the same
// assertions, so a handler behaves the same under either, and a difference
// between them fails here.

import assert from "node:assert/strict";
import {
  createClient,
  gemini,
  readGeminiStatus,
  ScgiClientError,
  type ScgiHandler,
  type ScgiHandlerInfo,
  serve,
} from "../mod.ts";
import { testClient, type TestClientOptions } from "../testing.ts";

/** The options both ways share. */
type SharedOptions = Pick<
  TestClientOptions,
  "onError" | "protocol" | "maxHeaderBytes" | "abortOnHangUp"
>;

/** `fetch` for either way; `init` is what both accept. */
interface Target extends AsyncDisposable {
  fetch(
    input: string,
    init?: RequestInit & {
      remoteAddr?: { hostname: string; port?: number };
      env?: Record<string, string>;
    },
  ): Promise<Response>;
}

type Kind = "serve+scgiFetch" | "testClient";
const KINDS: Kind[] = ["serve+scgiFetch", "testClient"];

function open(
  kind: Kind,
  handler: ScgiHandler,
  options: SharedOptions = {},
): Target {
  if (kind === "testClient") {
    const client = testClient(handler, options);
    return {
      fetch: (input, init) => client.fetch(input, init),
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  }
  const server = serve({
    port: 0,
    onListen() {},
    shutdownTimeout: 2000,
    ...options,
  }, handler);
  const client = createClient({ port: (server.addr as Deno.NetAddr).port });
  return {
    fetch: (input, init) => client.fetch(input, init),
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** Registers `name` once for each way. */
function parity(name: string, body: (kind: Kind) => Promise<void>): void {
  for (const kind of KINDS) {
    Deno.test(`parity [${kind}]: ${name}`, () => body(kind));
  }
}

/** A safety net for a wait that must end: fails instead of hanging. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${what}`)),
      10_000,
    );
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves with the signal's reason once it aborts. */
function aborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(signal.reason), {
      once: true,
    })
  );
}

/** What `completed` settled with: `"fulfilled"` or the rejection. */
function outcome(completed: Promise<void>): Promise<unknown> {
  return completed.then(() => "fulfilled", (error) => ({ rejected: error }));
}

const encoder = new TextEncoder();

/** A body that never ends: a chunk whenever it is pulled. */
function endless(onCancel: (reason: unknown) => void): ReadableStream {
  const chunk = encoder.encode("x".repeat(1024));
  return new ReadableStream({
    pull(controller) {
      controller.enqueue(chunk);
    },
    cancel: onCancel,
  });
}

/** The write error a server meets once the client has gone. */
function isWriteFailure(reason: unknown): boolean {
  return reason instanceof Deno.errors.BrokenPipe ||
    reason instanceof Deno.errors.ConnectionReset;
}

/** The reason the server cancels a body with when the connection closes. */
function isConnectionClosed(reason: unknown): boolean {
  return reason instanceof DOMException && reason.name === "AbortError" &&
    reason.message === "connection closed";
}

// ---------------------------------------------------------------------------
// Ordinary answers.

parity(
  "status, status text, headers, repeated set-cookie, url",
  async (kind) => {
    await using target = open(kind, () => {
      const headers = new Headers({ "x-custom": "yes" });
      headers.append("set-cookie", "a=1; Path=/");
      headers.append("set-cookie", "b=2");
      return new Response("created", { status: 201, headers });
    });
    const response = await target.fetch("/things?x=1");
    assert.equal(response.status, 201);
    assert.equal(response.statusText, "Created");
    assert.equal(response.url, "http://localhost/things?x=1");
    assert.equal(response.headers.get("x-custom"), "yes");
    assert.equal(response.headers.get("content-length"), "7");
    assert.deepEqual(response.headers.getSetCookie(), ["a=1; Path=/", "b=2"]);
    assert.equal(await response.text(), "created");
  },
);

parity("HEAD gets the head without a body", async (kind) => {
  const methods: string[] = [];
  await using target = open(kind, (request) => {
    methods.push(request.method);
    return new Response("hello", { headers: { "content-type": "text/x" } });
  });
  const response = await target.fetch("/", { method: "HEAD" });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/x");
  assert.equal(response.body, null);
  assert.deepEqual(methods, ["HEAD"]);
});

parity("204 has no body", async (kind) => {
  await using target = open(kind, () => new Response(null, { status: 204 }));
  const response = await target.fetch("/");
  assert.equal(response.status, 204);
  assert.equal(response.statusText, "No Content");
  assert.equal(response.body, null);
});

parity("a streamed body arrives as it is produced", async (kind) => {
  const second = Promise.withResolvers<void>();
  let info: ScgiHandlerInfo | undefined;
  await using target = open(kind, (_request, handlerInfo) => {
    info = handlerInfo;
    return new Response(
      ReadableStream.from((async function* () {
        yield encoder.encode("one,");
        await second.promise;
        yield encoder.encode("two");
      })()),
    );
  });
  const response = await target.fetch("/");
  assert.equal(response.headers.get("content-length"), null);
  const reader = response.body!.getReader();
  const first = await within(reader.read(), "the first chunk");
  assert.equal(new TextDecoder().decode(first.value), "one,");
  second.resolve();
  let rest = "";
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    rest += new TextDecoder().decode(r.value);
  }
  assert.equal(rest, "two");
  assert.equal(
    await within(outcome(info!.completed), "completed"),
    "fulfilled",
  );
});

parity("the request body and its type reach the handler", async (kind) => {
  await using target = open(kind, async (request) =>
    Response.json({
      method: request.method,
      type: request.headers.get("content-type"),
      body: await request.text(),
    }));
  const posted = await target.fetch("/form", {
    method: "POST",
    body: "a=1&b=2",
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
  assert.deepEqual(await posted.json(), {
    method: "POST",
    type: "application/x-www-form-urlencoded",
    body: "a=1&b=2",
  });
  const streamed = await target.fetch("/stream", {
    method: "PUT",
    body: ReadableStream.from([encoder.encode("par"), encoder.encode("ts")]),
  });
  assert.deepEqual(await streamed.json(), {
    method: "PUT",
    type: null,
    body: "parts",
  });
});

parity(
  "a small answer is completed before the client reads it",
  async (kind) => {
    let info: ScgiHandlerInfo | undefined;
    await using target = open(kind, (_request, handlerInfo) => {
      info = handlerInfo;
      return new Response("small");
    });
    const response = await target.fetch("/");
    assert.equal(
      await within(outcome(info!.completed), "completed before reading"),
      "fulfilled",
    );
    assert.equal(await response.text(), "small");
  },
);

parity(
  "the client address: the connection's by default, REMOTE_* when given",
  async (kind) => {
    await using target = open(kind, (_request, info) =>
      Response.json({
        remote: info.remoteAddr,
        conn: info.connAddr,
        addr: info.env.REMOTE_ADDR ?? null,
        port: info.env.REMOTE_PORT ?? null,
      }));
    const plain = await (await target.fetch("/")).json();
    // scgiFetch sends no REMOTE_ADDR unless told: the client is the connection.
    assert.equal(plain.addr, null);
    assert.equal(plain.port, null);
    assert.deepEqual(plain.remote, plain.conn);
    assert.equal(plain.conn.transport, "tcp");
    assert.equal(plain.conn.hostname, "127.0.0.1");
    assert.ok(
      Number.isInteger(plain.conn.port) && plain.conn.port > 0 &&
        plain.conn.port < 65536,
      `connection port ${plain.conn.port}`,
    );
    const given = await (await target.fetch("/", {
      remoteAddr: { hostname: "192.0.2.7", port: 5555 },
    })).json();
    assert.deepEqual(given.remote, {
      transport: "tcp",
      hostname: "192.0.2.7",
      port: 5555,
    });
    assert.equal(given.addr, "192.0.2.7");
    assert.equal(given.port, "5555");
    assert.equal(given.conn.hostname, "127.0.0.1");
  },
);

parity(
  "a header block over maxHeaderBytes is a 431, the handler not called",
  async (kind) => {
    let calls = 0;
    await using target = open(kind, () => {
      calls++;
      return new Response("no");
    }, { maxHeaderBytes: 2000 });
    const response = await target.fetch("/", {
      headers: { "x-big": "y".repeat(3000) },
    });
    assert.equal(response.status, 431);
    await response.body?.cancel();
    assert.equal(calls, 0);
  },
);

// ---------------------------------------------------------------------------
// Failures of the handler.

parity("handler failures go to onError, whose answer is sent", async (kind) => {
  const seen: unknown[] = [];
  await using target = open(kind, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/throw") throw new Error("thrown");
    if (path === "/reject") return Promise.reject(new Error("rejected"));
    if (path === "/not-a-response") return "nope" as unknown as Response;
    return new Response(
      new ReadableStream({
        pull() {
          throw new Error("body failed at once");
        },
      }),
    );
  }, {
    onError(error) {
      seen.push(error);
      return new Response("handled", { status: 503 });
    },
  });
  for (const path of ["/throw", "/reject", "/not-a-response", "/body"]) {
    const response = await target.fetch(path);
    assert.equal(response.status, 503, path);
    assert.equal(await response.text(), "handled", path);
  }
  assert.deepEqual(seen.map((error) => (error as Error).message), [
    "thrown",
    "rejected",
    "the handler did not return a Response",
    "body failed at once",
  ]);
});

parity("without onError a failure is logged and answered 500", async (kind) => {
  const originalError = console.error;
  const logged: unknown[][] = [];
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    await using target = open(kind, () => {
      throw new Error("secret detail");
    });
    const response = await target.fetch("/");
    assert.equal(response.status, 500);
    assert.equal(await response.text(), "Internal Server Error\n");
  } finally {
    console.error = originalError;
  }
  assert.equal(logged.length, 1);
  assert.equal((logged[0]![0] as Error).message, "secret detail");
});

// A body that fails after part of it went out: the head can't be taken back,
// so the connection just ends. Without a length that is a clean (short) end;
// with one, the cut is visible (truncated_response, as nginx cuts its own
// client off). The handler's failure is reported to onError, info.completed
// and request.signal either way.
for (const declared of [false, true]) {
  parity(
    `a body that fails midway ${
      declared
        ? "with a content-length: truncated_response"
        : "without a length: a short clean end"
    }`,
    async (kind) => {
      const failure = new Error("body broke");
      const seen: unknown[] = [];
      let info: ScgiHandlerInfo | undefined;
      let signal: AbortSignal | undefined;
      await using target = open(kind, (request, handlerInfo) => {
        info = handlerInfo;
        signal = request.signal;
        let n = 0;
        return new Response(
          new ReadableStream({
            pull(controller) {
              if (++n === 3) throw failure;
              controller.enqueue(encoder.encode(`chunk${n};`));
            },
          }, { highWaterMark: 0 }),
          declared ? { headers: { "content-length": "100" } } : {},
        );
      }, {
        onError(error) {
          seen.push(error);
          return new Response("too late", { status: 500 });
        },
      });
      const response = await target.fetch("/");
      assert.equal(response.status, 200);
      assert.equal(
        response.headers.get("content-length"),
        declared ? "100" : null,
      );
      const reader = response.body!.getReader();
      let text = "";
      let error: unknown;
      try {
        for (let r = await reader.read(); !r.done; r = await reader.read()) {
          text += new TextDecoder().decode(r.value);
        }
      } catch (caught) {
        error = caught;
      }
      assert.equal(text, "chunk1;chunk2;");
      if (declared) {
        assert.ok(error instanceof ScgiClientError, String(error));
        assert.equal(error.code, "truncated_response");
      } else {
        assert.equal(error, undefined);
      }
      assert.deepEqual(await within(outcome(info!.completed), "completed"), {
        rejected: failure,
      });
      assert.deepEqual(seen, [failure]);
      assert.equal(signal!.reason, failure);
    },
  );
}

// ---------------------------------------------------------------------------
// The client going away.

parity(
  "cancelling the response body ends the handler's body and aborts request.signal",
  async (kind) => {
    const cancelled = Promise.withResolvers<unknown>();
    let info: ScgiHandlerInfo | undefined;
    let signal: AbortSignal | undefined;
    await using target = open(kind, (request, handlerInfo) => {
      info = handlerInfo;
      signal = request.signal;
      return new Response(endless(cancelled.resolve));
    });
    const response = await target.fetch("/");
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel(new Error("the test is done with it"));
    // The server learns the client is gone when a write fails: the body is
    // cancelled as the connection closes, the signal gets the write's error.
    assert.ok(
      isConnectionClosed(await within(cancelled.promise, "the body's cancel")),
    );
    const reason = await within(aborted(signal!), "request.signal");
    assert.ok(isWriteFailure(reason), String(reason));
    assert.deepEqual(await within(outcome(info!.completed), "completed"), {
      rejected: reason,
    });
  },
);

parity(
  "aborting init.signal mid-body errors the body and ends the handler's",
  async (kind) => {
    const cancelled = Promise.withResolvers<unknown>();
    let info: ScgiHandlerInfo | undefined;
    let signal: AbortSignal | undefined;
    await using target = open(kind, (request, handlerInfo) => {
      info = handlerInfo;
      signal = request.signal;
      return new Response(endless(cancelled.resolve));
    });
    const controller = new AbortController();
    const response = await target.fetch("/", { signal: controller.signal });
    const reader = response.body!.getReader();
    await reader.read();
    const reason = new DOMException("the test gave up", "AbortError");
    controller.abort(reason);
    await assert.rejects(reader.read(), (error) => error === reason);
    assert.ok(
      isConnectionClosed(await within(cancelled.promise, "the body's cancel")),
    );
    const signalReason = await within(aborted(signal!), "request.signal");
    assert.ok(isWriteFailure(signalReason), String(signalReason));
    assert.notEqual(signalReason, reason);
    assert.deepEqual(await within(outcome(info!.completed), "completed"), {
      rejected: signalReason,
    });
  },
);

parity(
  "an init.signal aborted before the call rejects at once; the handler is not called",
  async (kind) => {
    let calls = 0;
    await using target = open(kind, () => {
      calls++;
      return new Response("no");
    });
    const reason = new Error("never mind");
    await assert.rejects(
      target.fetch("/", { signal: AbortSignal.abort(reason) }),
      (error) => error === reason,
    );
    assert.equal(calls, 0);
  },
);

for (const abortOnHangUp of [false, true]) {
  parity(
    `aborting init.signal before the head rejects at once (abortOnHangUp: ${abortOnHangUp})`,
    async (kind) => {
      const started = Promise.withResolvers<void>();
      const gate = Promise.withResolvers<void>();
      const cancelled = Promise.withResolvers<unknown>();
      let info: ScgiHandlerInfo | undefined;
      let signal: AbortSignal | undefined;
      let returned = false;
      await using target = open(kind, async (request, handlerInfo) => {
        info = handlerInfo;
        signal = request.signal;
        started.resolve();
        await gate.promise;
        returned = true;
        return new Response(endless(cancelled.resolve));
      }, { abortOnHangUp });
      const controller = new AbortController();
      const fetching = target.fetch("/", { signal: controller.signal });
      await within(started.promise, "the handler to start");
      const reason = new DOMException("the test gave up", "AbortError");
      controller.abort(reason);
      await assert.rejects(
        within(fetching, "the call to reject"),
        (error) => error === reason,
      );
      assert.equal(returned, false);
      if (abortOnHangUp) {
        // The end of input is the client leaving: the signal aborts at once,
        // the answer is not awaited, and the late one's body is released.
        const hungUp = await within(aborted(signal!), "request.signal");
        assert.ok(hungUp instanceof DOMException);
        assert.equal(hungUp.name, "AbortError");
        assert.equal(hungUp.message, "the front end closed the connection");
        assert.deepEqual(await within(outcome(info!.completed), "completed"), {
          rejected: hungUp,
        });
        gate.resolve();
        assert.equal(
          await within(cancelled.promise, "the late body's cancel"),
          undefined,
        );
      } else {
        // Nothing tells the server until it writes: the handler runs on,
        // then its writes fail.
        assert.equal(signal!.aborted, false);
        gate.resolve();
        assert.ok(
          isConnectionClosed(
            await within(cancelled.promise, "the body's cancel"),
          ),
        );
        const failed = await within(aborted(signal!), "request.signal");
        assert.ok(isWriteFailure(failed), String(failed));
        assert.deepEqual(await within(outcome(info!.completed), "completed"), {
          rejected: failed,
        });
      }
    },
  );
}

// ---------------------------------------------------------------------------
// Gemini.

parity("a gemini:// request gets raw Gemini answers", async (kind) => {
  await using target = open(kind, (request, info) => {
    const path = new URL(request.url).pathname;
    if (path === "/missing") return gemini.notFound();
    return gemini.success(`# ${info.env.GEMINI_URL}`);
  });
  const found = await target.fetch("gemini://example.com/hello");
  assert.deepEqual(readGeminiStatus(found), {
    status: 20,
    meta: "text/gemini",
  });
  assert.equal(await found.text(), "# gemini://example.com/hello");
  const missing = await target.fetch("gemini://example.com/missing");
  assert.equal(readGeminiStatus(missing)?.status, 51);
  await missing.body?.cancel();
});

parity(
  "GEMINI_URL in env, or protocol gemini, answers in Gemini",
  async (kind) => {
    await using target = open(kind, () => new Response(null, { status: 404 }), {
      protocol: "gemini",
    });
    const forced = await target.fetch("/");
    assert.deepEqual(readGeminiStatus(forced), {
      status: 51,
      meta: "Not Found",
    });
    await using auto = open(
      kind,
      (_request, info) => gemini.success(`# ${info.env.XITZIN_GREETING}`),
    );
    const viaEnv = await auto.fetch("/", {
      env: { GEMINI_URL: "gemini://example.com/", XITZIN_GREETING: "Hello" },
    });
    assert.deepEqual(readGeminiStatus(viaEnv), {
      status: 20,
      meta: "text/gemini",
    });
    assert.equal(await viaEnv.text(), "# Hello");
  },
);
