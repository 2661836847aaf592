// Real HTTP front ends (nginx, lighttpd, Apache mod_proxy_scgi) in front of
// an in-process `serve()`, for the interop tests. Each front end runs from a
// temp dir with its config rendered from the very template that
// docs/deployment.md quotes (docs/configs/), on a free loopback port, and is
// stopped by PID: never a system service.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  type ScgiHandler,
  type ScgiHandlerInfo,
  type ScgiServer,
  serve,
} from "../server.ts";
import {
  findBinary,
  freePort,
  type Peer,
  startPeer,
  waitForListen,
} from "./_peer.ts";

/** The front ends under test. */
export type FrontEndKind = "nginx" | "lighttpd" | "apache";

/** How each front end is started: its binary and arguments. */
const BINARIES: Record<FrontEndKind, string> = {
  nginx: "nginx",
  lighttpd: "lighttpd",
  apache: "apache2",
};

/** The binary a front end needs, for `peerTest`. */
export function frontEndBinary(kind: FrontEndKind): string {
  return BINARIES[kind];
}

const CONFIGS = new URL("../docs/configs/", import.meta.url);

/** Reads a template from docs/configs/ and fills in its `{{NAME}}`s. */
export async function renderConfig(
  template: string,
  values: Record<string, string | number>,
): Promise<string> {
  const text = await Deno.readTextFile(new URL(template, CONFIGS));
  const rendered = text.replace(/\{\{([A-Z0-9_]+)\}\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`${template} needs {{${name}}}`);
    return String(value);
  });
  return rendered;
}

/** A running front end. */
export interface FrontEnd extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  readonly origin: string;
  readonly port: number;
  /** Its private temp dir (config, temp files, pid file). */
  readonly dir: string;
  readonly peer: Peer;
  /** An HTTP client of its own, so no pooled connection outlives it. */
  readonly client: Deno.HttpClient;
  /** `fetch` against the front end: `path` starts with `/`. */
  fetch(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

/**
 * Starts a front end with `template` rendered into its temp dir. `values`
 * fill the template's placeholders besides `{{PORT}}` and `{{DIR}}`.
 */
export async function startFrontEnd(
  kind: FrontEndKind,
  template: string,
  values: Record<string, string | number>,
): Promise<FrontEnd> {
  const binary = findBinary(BINARIES[kind]);
  if (!binary) throw new Error(`${BINARIES[kind]} is not installed`);
  const dir = await Deno.makeTempDir({ prefix: `scgi-${kind}-` });
  // Apache's workers drop to `nobody` when started as root; they only need
  // to pass through the dir (to reach a socket in it), never to list it.
  await Deno.chmod(dir, 0o711);
  const port = freePort();
  const config = `${dir}/${template}`;
  await Deno.writeTextFile(
    config,
    await renderConfig(template, { ...values, PORT: port, DIR: dir }),
  );
  const root = Deno.uid() === 0;
  let args: string[];
  let env: Record<string, string> | undefined;
  switch (kind) {
    case "nginx":
      // `-e stderr` before the config is read: the compiled-in error log
      // under /var/log may not be writable.
      args = [
        "-p",
        `${dir}/`,
        "-c",
        config,
        "-e",
        "stderr",
        "-g",
        `daemon off; pid ${dir}/nginx.pid;${root ? " user root;" : ""}`,
      ];
      break;
    case "lighttpd":
      args = ["-D", "-f", config];
      break;
    case "apache":
      args = ["-D", "FOREGROUND", "-f", config];
      // Debian's envvars (APACHE_RUN_DIR and friends) are not needed: the
      // config names every path. A bare environment keeps what Apache passes
      // to the backend (it leaks PATH) predictable.
      env = { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C" };
      break;
  }
  const peer = startPeer(binary, args, {
    cwd: dir,
    ...(env ? { env } : {}),
  });
  const client = Deno.createHttpClient({});
  const stop = async () => {
    await peer.stop();
    client.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    await waitForListen({ port }, 15_000, peer.alive);
  } catch (error) {
    await stop();
    throw new Error(`${kind} did not start:\n${peer.output()}`, {
      cause: error,
    });
  }
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    port,
    dir,
    peer,
    client,
    fetch: (path, init = {}) => fetch(origin + path, { ...init, client }),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** Which transport the front end uses to reach the backend. */
export type Transport = "tcp" | "unix";

/** A `serve()` backend plus the template values that point at it. */
export interface Backend extends AsyncDisposable {
  readonly server: ScgiServer;
  /** `{ BACKEND_PORT }` or `{ SOCKET }`. */
  readonly values: Record<string, string | number>;
  stop(): Promise<void>;
}

/** Starts `serve()` in-process on a free port or a socket in a temp dir. */
export async function startBackend(
  transport: Transport,
  handler: ScgiHandler,
): Promise<Backend> {
  const options = { onListen() {}, onError: logless500, shutdownTimeout: 2000 };
  if (transport === "tcp") {
    const server = serve({ ...options, port: 0 }, handler);
    const { port } = server.addr as Deno.NetAddr;
    const stop = () => server.shutdown();
    return {
      server,
      values: { BACKEND_PORT: port },
      stop,
      [Symbol.asyncDispose]: stop,
    };
  }
  const dir = await Deno.makeTempDir({ prefix: "scgi-backend-" });
  await Deno.chmod(dir, 0o711);
  const path = `${dir}/app.sock`;
  // 0o666: Apache's workers run as `nobody` when the tests run as root. A
  // real deployment uses 0o660 and the web server's group (deployment.md).
  const server = serve({ ...options, path, socketMode: 0o666 }, handler);
  await waitForListen({ path });
  const stop = async () => {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  return {
    server,
    values: { SOCKET: path },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

// The throwing route is expected; its stack in the test log is noise.
function logless500(): Response {
  return new Response("Internal Server Error\n", { status: 500 });
}

// ---------------------------------------------------------------------------
// The app the front ends talk to.

/** What `/echo` answers. */
export interface EchoReport {
  method: string;
  url: string;
  headers: [string, string][];
  envList: [string, string][];
  env: Record<string, string>;
  bodyLength: number;
  bodySha256: string;
  body: string;
}

/** How a request whose client left mid-response ended, as the app saw it. */
export type GoneOutcome = "aborted" | "completed";

/** The size of the big response. */
export const BIG_BYTES = 50 * 1024 * 1024;
const BIG_CHUNK = 1024 * 1024;

const BIG_PATTERN = new Uint8Array(BIG_CHUNK).map((_, j) =>
  (j * 31 + 7) & 0xff
);

/** Chunk `i` of the big response: a pattern stamped with its index. */
export function bigChunk(i: number): Uint8Array<ArrayBuffer> {
  const chunk = BIG_PATTERN.slice();
  const view = new DataView(chunk.buffer);
  // Stamped at both ends and in the middle, so a lost, repeated or
  // reordered stretch changes the hash.
  for (const at of [0, BIG_CHUNK / 2, BIG_CHUNK - 4]) view.setUint32(at, i);
  return chunk;
}

let bigHash: string | undefined;

/** The SHA-256 (hex) of the whole big response. */
export function bigSha256(): string {
  if (bigHash) return bigHash;
  const hash = createHash("sha256");
  for (let i = 0; i < BIG_BYTES / BIG_CHUNK; i++) hash.update(bigChunk(i));
  return bigHash = hash.digest("hex");
}

/** The test app and the hooks a test uses to coordinate with it. */
export interface InteropApp {
  handler: (request: Request, info: ScgiHandlerInfo) => Promise<Response>;
  /** Lets `/stream?id=` send its second chunk. */
  release(id: string): void;
  /** How `/forever?id=` ended. */
  outcome(id: string): Promise<GoneOutcome>;
  /** Requests seen, by path. */
  readonly seen: Map<string, number>;
}

/** How long `/stream` waits for the test before sending chunk 2 anyway. */
const STREAM_FALLBACK_MS = 5000;

/** Builds the app: see the routes in the switch below. */
export function interopApp(name = "app"): InteropApp {
  const gates = new Map<string, PromiseWithResolvers<void>>();
  const outcomes = new Map<string, PromiseWithResolvers<GoneOutcome>>();
  const seen = new Map<string, number>();
  const gate = (id: string) => {
    let g = gates.get(id);
    if (!g) gates.set(id, g = Promise.withResolvers<void>());
    return g;
  };
  const outcomeOf = (id: string) => {
    let o = outcomes.get(id);
    if (!o) outcomes.set(id, o = Promise.withResolvers<GoneOutcome>());
    return o;
  };
  const encoder = new TextEncoder();

  const handler: InteropApp["handler"] = async (request, info) => {
    const url = new URL(request.url);
    const path = url.pathname;
    seen.set(path, (seen.get(path) ?? 0) + 1);
    const id = url.searchParams.get("id") ?? "";
    if (path.startsWith("/echo")) {
      const hash = createHash("sha256");
      let bodyLength = 0;
      const parts: Uint8Array[] = [];
      if (request.body) {
        for await (const chunk of request.body) {
          hash.update(chunk);
          bodyLength += chunk.length;
          if (bodyLength <= 4096) parts.push(chunk);
        }
      }
      const report: EchoReport = {
        method: request.method,
        url: request.url,
        headers: [...request.headers],
        envList: info.envList.map(([k, v]) => [k, v]),
        env: { ...info.env },
        bodyLength,
        bodySha256: hash.digest("hex"),
        body: new TextDecoder().decode(
          new Uint8Array(parts.flatMap((p) => [...p])),
        ),
      };
      return Response.json(report, {
        headers: { "x-method": request.method, "x-app": name },
      });
    }
    switch (path) {
      case "/whoami":
        return new Response(name);
      case "/cookies": {
        const headers = new Headers({ "content-type": "text/plain" });
        headers.append("set-cookie", "a=1; Path=/; HttpOnly");
        headers.append("set-cookie", "b=2; Path=/; Max-Age=60");
        headers.append("set-cookie", "c=3, with a comma; Path=/");
        return new Response(request.headers.get("cookie") ?? "", { headers });
      }
      case "/redirect":
        return new Response(null, {
          status: 302,
          headers: { location: "http://example.com/elsewhere?x=%C3%A9" },
        });
      case "/redirect-relative":
        return new Response(null, {
          status: 302,
          headers: { location: "/echo/target?from=redirect" },
        });
      case "/status/204":
        return new Response(null, { status: 204, headers: { "x-seen": "1" } });
      case "/status/304":
        return new Response(null, {
          status: 304,
          headers: { etag: '"v1"' },
        });
      case "/status/404":
        return new Response("no such thing\n", { status: 404 });
      case "/throw":
        throw new Error("the handler failed on purpose");
      case "/stream": {
        const g = gate(id);
        let sent = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (sent === 0) {
              controller.enqueue(encoder.encode("chunk 1\n"));
            } else if (sent === 1) {
              // Waits for the test to have received chunk 1; a front end
              // that buffers never lets it, so after a while go on anyway and
              // let the test see both chunks arrive together.
              let timer: ReturnType<typeof setTimeout> | undefined;
              await Promise.race([
                g.promise,
                new Promise((r) => timer = setTimeout(r, STREAM_FALLBACK_MS)),
              ]);
              clearTimeout(timer);
              gates.delete(id);
              controller.enqueue(encoder.encode("chunk 2\n"));
            } else {
              controller.close();
            }
            sent++;
          },
        });
        return new Response(body, {
          headers: {
            "content-type": "text/plain",
            // nginx passes the response on as it comes only with this.
            "x-accel-buffering": "no",
          },
        });
      }
      case "/big": {
        let i = 0;
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (i === BIG_BYTES / BIG_CHUNK) return controller.close();
            controller.enqueue(bigChunk(i++));
          },
        }, { highWaterMark: 0 });
        return new Response(body, {
          headers: {
            "content-type": "application/octet-stream",
            "content-length": String(BIG_BYTES),
          },
        });
      }
      case "/forever": {
        // Ticks until the front end stops reading, with a bound so that a
        // front end that reads to the end (lighttpd) ends it too.
        const o = outcomeOf(id);
        request.signal.addEventListener("abort", () => o.resolve("aborted"));
        info.completed.then(
          () => o.resolve("completed"),
          () => o.resolve("aborted"),
        );
        let ticks = 0;
        const tick = encoder.encode("tick ".repeat(200) + "\n");
        const body = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (ticks++ >= 400) return controller.close();
            await new Promise((r) => setTimeout(r, 5));
            controller.enqueue(tick);
          },
        }, { highWaterMark: 0 });
        return new Response(body, {
          headers: { "content-type": "text/plain", "x-accel-buffering": "no" },
        });
      }
      case "/load":
        return new Response(`ok ${url.searchParams.get("i")}`);
      default:
        return new Response("not found\n", { status: 404 });
    }
  };
  return {
    handler,
    release: (id) => gate(id).resolve(),
    outcome: (id) => outcomeOf(id).promise,
    seen,
  };
}

// ---------------------------------------------------------------------------
// The cases, the same for every front end.

/** What a front end does differently: documented behaviour, asserted. */
export interface FrontEndQuirks {
  /** A request header sent twice arrives as two same-named variables. */
  repeatsHeaderVariables: boolean;
  /** `Cookie` sent twice, as the app's `cookie` header sees it. */
  joinedCookie: string;
  /** A `transfer-encoding: chunked` upload: its body arrives, or this status. */
  chunkedUpload: "body" | number;
  /** Chunk 1 reaches the client before chunk 2 is produced. */
  streams: boolean;
  /** How the app sees a client that leaves mid-response. */
  clientGone: GoneOutcome;
  /**
   * `SCRIPT_NAME` and `PATH_INFO` for `/echo/café/a b` mounted at `/`
   * (`undefined`: not sent). The URL never depends on them.
   */
  scriptNameAndPathInfo: [string | undefined, string | undefined];
  /** The status a client gets when nothing listens at the backend address. */
  backendDown: number;
}

/** Runs every case as a step of `t` against a running front end and app. */
export async function frontEndCases(
  t: Deno.TestContext,
  front: FrontEnd,
  app: InteropApp,
  quirks: FrontEndQuirks,
): Promise<void> {
  const echo = async (path: string, init: RequestInit = {}) => {
    const response = await front.fetch(path, init);
    const text = await response.text();
    assert.equal(response.status, 200, text);
    return { response, report: JSON.parse(text) as EchoReport };
  };

  await t.step("GET, HEAD, POST, PUT, DELETE", async () => {
    const { report } = await echo("/echo/methods?x=1");
    assert.equal(report.method, "GET");
    assert.equal(new URL(report.url).pathname, "/echo/methods");
    assert.equal(report.bodyLength, 0);

    const head = await front.fetch("/echo/methods", { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("x-method"), "HEAD");
    assert.equal(await head.text(), "");

    for (const method of ["POST", "PUT"]) {
      const body = `${method} body: grüße ✓`;
      const { report } = await echo("/echo/body", {
        method,
        body,
        headers: { "content-type": "text/plain; charset=utf-8" },
      });
      assert.equal(report.method, method);
      assert.equal(report.body, body);
      assert.equal(report.bodyLength, new TextEncoder().encode(body).length);
      assert.equal(
        new Headers(report.headers).get("content-type"),
        "text/plain; charset=utf-8",
      );
    }
    const { report: deleted } = await echo("/echo/item/7", {
      method: "DELETE",
    });
    assert.equal(deleted.method, "DELETE");
    assert.equal(new URL(deleted.url).pathname, "/echo/item/7");
  });

  await t.step("query strings with %-escapes and UTF-8", async () => {
    const path = "/echo/caf%C3%A9/a%20b?q=%25x%26y&u=%C3%A9&plus=a+b&raw=ü";
    const { report } = await echo(path);
    const url = new URL(report.url);
    assert.equal(url.pathname, "/echo/caf%C3%A9/a%20b");
    assert.equal(decodeURIComponent(url.pathname), "/echo/café/a b");
    assert.equal(url.searchParams.get("q"), "%x&y");
    assert.equal(url.searchParams.get("u"), "é");
    assert.equal(url.searchParams.get("plus"), "a b");
    assert.equal(url.searchParams.get("raw"), "ü");
    assert.deepEqual(
      [report.env.SCRIPT_NAME, report.env.PATH_INFO],
      quirks.scriptNameAndPathInfo,
    );
  });

  await t.step("a 3000-character URL", async () => {
    const long = "x".repeat(1000) + "%C3%A9".repeat(200) + "y".repeat(800);
    const { report } = await echo(`/echo/long?v=${long}`);
    assert.equal(report.url.length > 3000, true);
    assert.equal(
      new URL(report.url).searchParams.get("v"),
      "x".repeat(1000) + "é".repeat(200) + "y".repeat(800),
    );
  });

  await t.step("many headers", async () => {
    const headers = new Headers();
    for (let i = 0; i < 40; i++) headers.set(`x-many-${i}`, `value ${i}`);
    const { report } = await echo("/echo/headers", { headers });
    const received = new Headers(report.headers);
    for (let i = 0; i < 40; i++) {
      assert.equal(received.get(`x-many-${i}`), `value ${i}`);
    }
  });

  await t.step("repeated request headers (curl)", async () => {
    const { status, body } = await curl([
      "-H",
      "X-Multi: a",
      "-H",
      "X-Multi: b",
      "-H",
      "Cookie: a=1",
      "-H",
      "Cookie: b=2",
      `${front.origin}/echo/repeat`,
    ]);
    assert.equal(status, 200, body);
    const report = JSON.parse(body) as EchoReport;
    const headers = new Headers(report.headers);
    assert.equal(headers.get("x-multi"), "a, b");
    assert.equal(report.env.HTTP_X_MULTI, "a, b");
    assert.equal(headers.get("cookie"), quirks.joinedCookie);
    const multi = report.envList.filter(([name]) => name === "HTTP_X_MULTI");
    assert.deepEqual(
      multi.map(([, value]) => value),
      quirks.repeatsHeaderVariables ? ["a", "b"] : ["a, b"],
    );
  });

  await t.step("cookies in, several Set-Cookie out", async () => {
    const response = await front.fetch("/cookies", {
      headers: { cookie: "session=abc; theme=dark" },
    });
    assert.equal(response.status, 200);
    assert.equal(await response.text(), "session=abc; theme=dark");
    assert.deepEqual(response.headers.getSetCookie(), [
      "a=1; Path=/; HttpOnly",
      "b=2; Path=/; Max-Age=60",
      "c=3, with a comma; Path=/",
    ]);
  });

  await t.step("redirects: absolute and relative Location", async () => {
    const absolute = await front.fetch("/redirect", { redirect: "manual" });
    await absolute.body?.cancel();
    assert.equal(absolute.status, 302);
    assert.equal(
      absolute.headers.get("location"),
      "http://example.com/elsewhere?x=%C3%A9",
    );
    const relative = await front.fetch("/redirect-relative", {
      redirect: "manual",
    });
    await relative.body?.cancel();
    assert.equal(relative.status, 302);
    assert.equal(
      relative.headers.get("location"),
      "/echo/target?from=redirect",
    );
    // As a browser does: follow it.
    const followed = await front.fetch("/redirect-relative");
    const report = await followed.json() as EchoReport;
    assert.equal(followed.redirected, true);
    assert.equal(new URL(followed.url).pathname, "/echo/target");
    assert.equal(new URL(report.url).search, "?from=redirect");
  });

  await t.step("204, 304, 404, and a throwing handler's 500", async () => {
    const noContent = await front.fetch("/status/204");
    assert.equal(noContent.status, 204);
    assert.equal(noContent.headers.get("x-seen"), "1");
    assert.equal(await noContent.text(), "");
    const notModified = await front.fetch("/status/304");
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.get("etag"), '"v1"');
    assert.equal(await notModified.text(), "");
    const notFound = await front.fetch("/status/404");
    assert.equal(notFound.status, 404);
    assert.equal(await notFound.text(), "no such thing\n");
    const failed = await front.fetch("/throw");
    assert.equal(failed.status, 500);
    assert.equal(await failed.text(), "Internal Server Error\n");
  });

  await t.step("chunked upload (curl)", async () => {
    const body = new Uint8Array(200_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13) & 0xff;
    const file = `${front.dir}/upload.bin`;
    await Deno.writeFile(file, body);
    const before = app.seen.get("/echo/chunked") ?? 0;
    const { status, body: text } = await curl([
      "-H",
      "Transfer-Encoding: chunked",
      "-H",
      "Content-Type: application/octet-stream",
      "--data-binary",
      `@${file}`,
      `${front.origin}/echo/chunked`,
    ]);
    if (quirks.chunkedUpload === "body") {
      assert.equal(status, 200, text);
      const report = JSON.parse(text) as EchoReport;
      assert.equal(report.method, "POST");
      assert.equal(report.bodyLength, body.length);
      assert.equal(
        report.bodySha256,
        createHash("sha256").update(body).digest("hex"),
      );
      // The front end de-chunked it: nothing hop-by-hop reaches the app.
      assert.equal(new Headers(report.headers).has("transfer-encoding"), false);
    } else {
      assert.equal(status, quirks.chunkedUpload, text);
      assert.equal(app.seen.get("/echo/chunked") ?? 0, before);
    }
  });

  await t.step(
    "a streamed response reaches the client as produced",
    async () => {
      const id = crypto.randomUUID();
      const response = await front.fetch(`/stream?id=${id}`);
      assert.equal(response.status, 200);
      const reader = response.body!.getReader();
      const decoder = new TextDecoder();
      let received = "";
      while (!received.includes("chunk 1\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        received += decoder.decode(value, { stream: true });
      }
      const beforeRelease = received;
      app.release(id);
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        received += decoder.decode(value, { stream: true });
      }
      assert.equal(received, "chunk 1\nchunk 2\n");
      if (quirks.streams) {
        assert.equal(
          beforeRelease,
          "chunk 1\n",
          "chunk 2 came with chunk 1: the front end held the response back",
        );
      }
    },
  );

  await t.step("a 50 MB response, length and SHA-256", async () => {
    const expected = bigSha256();
    const response = await front.fetch("/big");
    assert.equal(response.status, 200);
    const hash = createHash("sha256");
    let length = 0;
    for await (const chunk of response.body!) {
      hash.update(chunk);
      length += chunk.length;
    }
    assert.equal(length, BIG_BYTES);
    assert.equal(hash.digest("hex"), expected);
  });

  await t.step("a client that goes away mid-response", async () => {
    const id = crypto.randomUUID();
    const controller = new AbortController();
    const response = await front.fetch(`/forever?id=${id}`, {
      signal: controller.signal,
    });
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    const first = await reader.read();
    assert.equal(first.done, false);
    controller.abort();
    await reader.read().catch(() => {});
    assert.equal(await app.outcome(id), quirks.clientGone);
  });

  await t.step("a burst: 200 requests, 20 at a time", async () => {
    let next = 0;
    const failures: string[] = [];
    const worker = async () => {
      while (next < 200) {
        const i = next++;
        const response = await front.fetch(`/load?i=${i}`);
        const text = await response.text();
        if (response.status !== 200 || text !== `ok ${i}`) {
          failures.push(`${i}: ${response.status} ${text.slice(0, 80)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    assert.deepEqual(failures, []);
    assert.equal(app.seen.get("/load"), 200);
  });
}

/** Runs curl like a browser would be run: status and body back. */
export async function curl(
  args: string[],
): Promise<{ status: number; body: string }> {
  const output = await new Deno.Command("curl", {
    args: ["-sS", "--max-time", "30", "-w", "\n%{http_code}", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`curl failed: ${new TextDecoder().decode(output.stderr)}`);
  }
  const cut = text.lastIndexOf("\n");
  return { status: Number(text.slice(cut + 1)), body: text.slice(0, cut) };
}

/**
 * Registers the full matrix test for one front end over one transport:
 * starts the app, the front end on `template`, runs every case, stops both.
 */
export function frontEndSuite(
  kind: FrontEndKind,
  transport: Transport,
  template: string,
  quirks: FrontEndQuirks,
  register: (
    binaries: string[],
    name: string,
    fn: (t: Deno.TestContext) => Promise<void>,
  ) => void,
): void {
  register(
    [frontEndBinary(kind), "curl"],
    `${kind} over ${transport} (${template})`,
    async (t) => {
      const app = interopApp();
      await using backend = await startBackend(transport, app.handler);
      await using front = await startFrontEnd(kind, template, backend.values);
      await frontEndCases(t, front, app, quirks);
      await t.step("the backend is down", async () => {
        await backend.stop();
        const response = await front.fetch("/echo/down");
        await response.body?.cancel();
        assert.equal(response.status, quirks.backendDown);
      });
      if (Deno.env.get("SCGI_INTEROP_LOG")) console.log(front.peer.output());
    },
  );
}

/**
 * Problems with how docs/deployment.md quotes docs/configs/: a block after
 * `<!-- file: configs/X -->` must be X exactly, a block after
 * `<!-- excerpt: configs/X -->` a run of whole lines of X, and every config
 * file must be quoted in full or in part.
 */
export async function deploymentDocProblems(): Promise<string[]> {
  const docs = new URL("../docs/", import.meta.url);
  const text = await Deno.readTextFile(new URL("deployment.md", docs));
  const problems: string[] = [];
  const quoted = new Set<string>();
  const marker =
    /<!-- (file|excerpt): (configs\/[^ ]+) -->\n\n```[a-z]*\n([\s\S]*?)^```$/gm;
  for (const [, kind, name, block] of text.matchAll(marker)) {
    quoted.add(name!);
    let file: string;
    try {
      file = await Deno.readTextFile(new URL(name!, docs));
    } catch {
      problems.push(`${name} is quoted but does not exist`);
      continue;
    }
    // `deno fmt` takes the indentation off a block's first lines, so an
    // excerpt is compared line by line without it.
    const lines = (t: string) => t.split("\n").map((l) => l.trimStart());
    const same = kind === "file"
      ? block === file
      : `\n${lines(file).join("\n")}`.includes(`\n${lines(block!).join("\n")}`);
    if (!same) problems.push(`the ${kind} of ${name} differs from the file`);
  }
  for await (const entry of Deno.readDir(CONFIGS)) {
    if (!quoted.has(`configs/${entry.name}`)) {
      problems.push(`configs/${entry.name} is not quoted`);
    }
  }
  return problems;
}
