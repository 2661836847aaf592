// Graceful shutdown (shutdown(), the signal option, SIGTERM in a real
// process, a load burst during shutdown) and the Unix socket's life cycle
// (socketMode, a stale socket file, a live one).

import assert from "node:assert/strict";
import { serve, type ServeOptions } from "../server.ts";
import { scgiFetch } from "../client.ts";
import {
  delay,
  rawExchange,
  rawRequest,
  trackUnhandledRejections,
  until,
  utf8,
} from "./_fuzz.ts";

const quiet = { port: 0, onListen() {} } satisfies ServeOptions;

function refusedOrReset(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionRefused ||
    error instanceof Deno.errors.ConnectionReset;
}

function url(server: { addr: Deno.Addr }, path = "/"): string {
  return `scgi://127.0.0.1:${(server.addr as Deno.NetAddr).port}${path}`;
}

Deno.test("shutdown() stops accepting and lets in-flight requests finish", async () => {
  using unhandled = trackUnhandledRejections();
  const release = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  let aborted = false;
  const server = serve({ ...quiet }, async (request) => {
    started.resolve();
    request.signal.addEventListener("abort", () => (aborted = true));
    await release.promise;
    return new Response("finished");
  });
  const { port } = server.addr as Deno.NetAddr;
  const inFlight = scgiFetch(url(server));
  await started.promise;
  let finished = false;
  const shutdown = server.shutdown().then(() => (finished = true));
  // The listener is closed at once (a connect racing the close may be
  // queued by the kernel first and then reset).
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    (error) => refusedOrReset(error),
  );
  await delay(20);
  assert.equal(finished, false, "shutdown waits for the request in flight");
  release.resolve();
  const response = await inFlight;
  assert.equal(await response.text(), "finished");
  await shutdown;
  assert.equal(aborted, false);
  assert.equal(server.stats.completed, 1);
  // shutdown() again is the same, finished promise.
  await server.shutdown();
  await server.finished;
  unhandled.check();
});

Deno.test("shutdown() aborts what is still running after shutdownTimeout", async () => {
  using unhandled = trackUnhandledRejections();
  const started = Promise.withResolvers<void>();
  let reason: unknown;
  let completedError: unknown;
  const server = serve({ ...quiet, shutdownTimeout: 100 }, (request, info) => {
    info.completed.catch((error) => (completedError = error));
    started.resolve();
    return new Promise<Response>((resolve) => {
      request.signal.addEventListener("abort", () => {
        reason = request.signal.reason;
        resolve(new Response("too late"));
      });
    });
  });
  const inFlight = scgiFetch(url(server)).then(
    (response) => response.body?.cancel(),
    (error) => error,
  );
  await started.promise;
  await server.shutdown();
  assert.ok(reason instanceof DOMException);
  assert.equal((reason as DOMException).name, "AbortError");
  const outcome = await inFlight;
  assert.ok(
    outcome instanceof Error,
    "the client saw the connection end without an answer",
  );
  assert.ok(completedError, "info.completed rejected");
  assert.equal(server.stats.completed, 0);
  unhandled.check();
});

Deno.test("a streaming response still being written at shutdownTimeout is cut off and its body cancelled", async () => {
  using unhandled = trackUnhandledRejections();
  let cancelled = false;
  const server = serve({ ...quiet, shutdownTimeout: 100 }, () =>
    new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(utf8("first"));
        },
        cancel() {
          cancelled = true;
        },
      }),
    ));
  const response = await scgiFetch(url(server));
  const reader = response.body!.getReader();
  assert.deepEqual((await reader.read()).value, utf8("first"));
  await server.shutdown();
  assert.equal(cancelled, true);
  // Without a content-length, the end of a CGI body is the close: the client
  // can only see that nothing more came.
  const rest = await reader.read().catch((error) => error);
  assert.ok(rest instanceof Error || rest.done === true);
  unhandled.check();
});

Deno.test("aborting the signal option shuts down gracefully", async () => {
  using unhandled = trackUnhandledRejections();
  const controller = new AbortController();
  const server = serve(
    { ...quiet, signal: controller.signal },
    () => new Response("ok"),
  );
  const response = await scgiFetch(url(server));
  assert.equal(await response.text(), "ok");
  controller.abort();
  await server.finished;
  const { port } = server.addr as Deno.NetAddr;
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port }),
    (error) => refusedOrReset(error),
  );
  // An already aborted signal: the server never serves.
  const never = serve(
    { ...quiet, signal: AbortSignal.abort() },
    () => new Response("no"),
  );
  await never.finished;
  unhandled.check();
});

const SIGNAL_SCRIPT = `
import { serve } from ${
  JSON.stringify(new URL("../server.ts", import.meta.url).href)
};
const sigterm = Promise.withResolvers();
const onTerm = () => {
  Deno.removeSignalListener("SIGTERM", onTerm);
  sigterm.resolve();
};
Deno.addSignalListener("SIGTERM", onTerm);
const server = serve({
  port: 0,
  handleSignals: true,
  onListen(addr) { console.log(JSON.stringify(addr)); },
}, () => new Response(new ReadableStream({
  async start(controller) {
    controller.enqueue(new TextEncoder().encode("before "));
    await sigterm.promise;
    controller.enqueue(new TextEncoder().encode("after"));
    controller.close();
  },
})));
await server.finished;
console.log("finished " + JSON.stringify(server.stats));
`;

Deno.test("handleSignals: SIGTERM lets the request in flight complete, then the process exits 0", async () => {
  using unhandled = trackUnhandledRejections();
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/server.ts`;
    await Deno.writeTextFile(script, SIGNAL_SCRIPT);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--no-lock",
        "--allow-net=127.0.0.1",
        "--allow-read",
        script,
      ],
      env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("\n")) {
      const { done, value } = await lines.read();
      if (done) break;
      out += value;
    }
    const stderr = new Response(child.stderr).text();
    const addr = JSON.parse(out.split("\n")[0]!) as Deno.NetAddr;
    const response = await scgiFetch(`scgi://127.0.0.1:${addr.port}/`);
    const body = response.body!.getReader();
    const first = await body.read();
    assert.equal(new TextDecoder().decode(first.value), "before ");
    child.kill("SIGTERM");
    let rest = "";
    while (true) {
      const { done, value } = await body.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    assert.equal(rest, "after");
    while (true) {
      const { done, value } = await lines.read();
      if (done) break;
      out += value;
    }
    const status = await child.status;
    const errors = await stderr;
    assert.equal(status.code, 0, errors);
    assert.match(out, /finished .*"completed":1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  unhandled.check();
});

Deno.test("a burst during shutdown: every accepted request is answered in full, never truncated", async () => {
  using unhandled = trackUnhandledRejections();
  const REQUESTS = 200;
  const WORKERS = 20;
  const server = serve(
    { ...quiet, shutdownTimeout: 30_000 },
    async (request) => {
      const n = new URL(request.url).searchParams.get("n")!;
      await delay(Number(n) % 7);
      const body = `answer ${n} `.repeat(200);
      return new Response(
        new ReadableStream({
          async start(controller) {
            // Streamed in two parts so a cut in the middle would show.
            controller.enqueue(utf8(body.slice(0, 1000)));
            await delay(1);
            controller.enqueue(utf8(body.slice(1000)));
            controller.close();
          },
        }),
      );
    },
  );
  let next = 0;
  let answered = 0;
  let refused = 0;
  let shutdown: Promise<void> | undefined;
  const worker = async () => {
    while (next < REQUESTS) {
      const n = next++;
      if (n === REQUESTS / 4) shutdown = server.shutdown();
      const request = rawRequest([
        ["CONTENT_LENGTH", "0"],
        ["REQUEST_METHOD", "GET"],
        ["REQUEST_URI", `/?n=${n}`],
        ["QUERY_STRING", `n=${n}`],
      ]);
      let result;
      try {
        result = await rawExchange(server.addr, request);
      } catch (error) {
        assert.ok(refusedOrReset(error), String(error));
        refused++;
        continue;
      }
      if (result.bytes.length === 0) {
        // Reset or closed in the backlog before any byte was accepted.
        refused++;
        continue;
      }
      const text = new TextDecoder().decode(result.bytes);
      const bodyStart = text.indexOf("\r\n\r\n") + 4;
      assert.match(text, /^Status: 200 OK\r\n/);
      assert.equal(
        text.slice(bodyStart),
        `answer ${n} `.repeat(200),
        `request ${n} was truncated`,
      );
      answered++;
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));
  await shutdown;
  assert.equal(answered + refused, REQUESTS);
  assert.ok(answered >= REQUESTS / 4 - WORKERS, `only ${answered} answered`);
  assert.ok(refused > 0, "the listener closed mid-burst");
  // Every connection the server accepted got its whole answer.
  assert.equal(server.stats.accepted, answered);
  assert.equal(server.stats.completed, answered);
  unhandled.check();
});

Deno.test("a Unix socket gets socketMode", async () => {
  using unhandled = trackUnhandledRejections();
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/app.sock`;
    await using server = serve(
      { path, socketMode: 0o600, onListen() {} },
      () => new Response("unix"),
    );
    await until(
      () => "path" in server.addr && server.stats !== undefined,
      "listening",
    );
    assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o600);
    const response = await scgiFetch(
      `scgi+unix://${encodeURIComponent(path)}/`,
    );
    assert.equal(await response.text(), "unix");
    await server.shutdown();
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  unhandled.check();
});

// A socket file that nobody listens on, as a crashed process leaves it.
async function staleSocket(path: string): Promise<void> {
  const listener = Deno.listen({ transport: "unix", path: `${path}.tmp` });
  await Deno.rename(`${path}.tmp`, path);
  listener.close();
}

Deno.test("a stale socket file from a crashed process is replaced on start", async () => {
  using unhandled = trackUnhandledRejections();
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/app.sock`;
    await staleSocket(path);
    assert.ok((await Deno.lstat(path)).isSocket);
    let listening = false;
    await using _server = serve({
      path,
      socketMode: 0o660,
      onListen() {
        listening = true;
      },
    }, () => new Response("replaced"));
    await until(() => listening, "the server to listen");
    assert.equal((await Deno.lstat(path)).mode! & 0o777, 0o660);
    const response = await scgiFetch(
      `scgi+unix://${encodeURIComponent(path)}/`,
    );
    assert.equal(await response.text(), "replaced");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  unhandled.check();
});

Deno.test("a live socket is not taken over: finished rejects with AddrInUse", async () => {
  using unhandled = trackUnhandledRejections();
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/app.sock`;
    await using live = serve(
      { path, onListen() {} },
      () => new Response("live"),
    );
    const intruder = serve(
      { path, handleSignals: true, onListen() {} },
      () => new Response("intruder"),
    );
    await assert.rejects(intruder.finished, Deno.errors.AddrInUse);
    // It left nothing behind (no signal handler, no listener) and the live
    // server keeps working on its socket.
    // (No shutdown() call: a server that never started must clean up itself.)
    const response = await scgiFetch(
      `scgi+unix://${encodeURIComponent(path)}/`,
    );
    assert.equal(await response.text(), "live");
    void live;
    // A path that is not a socket is never removed.
    const file = `${dir}/plain`;
    await Deno.writeTextFile(file, "keep me");
    const wrong = serve({ path: file, onListen() {} }, () => new Response(""));
    await assert.rejects(wrong.finished, Deno.errors.AddrInUse);
    assert.equal(await Deno.readTextFile(file), "keep me");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  unhandled.check();
});
