// Real SCGI backends for the client interop tests: uWSGI with the Python
// echo app, the Perl SCGI echo server, and rtorrent's XML-RPC. Each one runs
// from its own temp dir on a free 127.0.0.1 port or a Unix socket there, and
// is stopped by PID. Never a system service.

import assert from "node:assert/strict";
import { type ScgiBackend, scgiFetch } from "../client.ts";
import {
  findBinary,
  freePort,
  type Peer,
  startPeer,
  waitForListen,
} from "./_peer.ts";

const PEERS = new URL("./peers/", import.meta.url);

/** The files the backends run, by absolute path. */
export const peerFiles = {
  echoApp: new URL("echo_app.py", PEERS).pathname,
  echoScgi: new URL("echo_scgi.pl", PEERS).pathname,
  rtorrentRc: new URL("rtorrent.rc", PEERS).pathname,
};

/** A running backend. Disposing it stops the process and removes its dir. */
export interface RunningBackend extends AsyncDisposable {
  /** Where it listens. */
  readonly backend: ScgiBackend;
  /** `scgi://127.0.0.1:PORT` or `scgi+unix://%2F...sock`, without a path. */
  readonly base: string;
  /** Its temp dir. */
  readonly dir: string;
  /** The process. */
  readonly peer: Peer;
  /** Stops the process (SIGTERM, then SIGKILL) and removes the temp dir. */
  stop(): Promise<void>;
}

/** How to reach a backend: TCP on a free loopback port, or a Unix socket. */
export type Transport = "tcp" | "unix";

/** The `scgi:`/`scgi+unix:` base URL of a backend. */
export function baseUrl(backend: ScgiBackend): string {
  return "path" in backend
    ? `scgi+unix://${encodeURIComponent(backend.path)}`
    : `scgi://${backend.hostname ?? "127.0.0.1"}:${backend.port}`;
}

async function launch(
  prefix: string,
  transport: Transport,
  start: (dir: string, listen: ScgiBackend) => Peer,
): Promise<RunningBackend> {
  const dir = await Deno.makeTempDir({ prefix });
  const backend: ScgiBackend = transport === "unix"
    ? { path: `${dir}/scgi.sock` }
    : { hostname: "127.0.0.1", port: freePort() };
  let peer: Peer | undefined;
  const stop = async () => {
    await peer?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    peer = start(dir, backend);
    const running = peer;
    await waitForListen(backend, 15_000, () => running.alive());
  } catch (error) {
    const output = peer?.output() ?? "";
    await stop();
    throw new Error(`${prefix} did not start:\n${output}`, { cause: error });
  }
  return {
    backend,
    base: baseUrl(backend),
    dir,
    peer,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * uWSGI (`uwsgi-core` with the `python3` plugin) serving a WSGI file over
 * SCGI; by default the echo app.
 */
export function startUwsgi(
  transport: Transport = "tcp",
  options: { wsgiFile?: string; args?: string[] } = {},
): Promise<RunningBackend> {
  return launch(
    "uwsgi-",
    transport,
    (dir, listen) =>
      startPeer(findBinary("uwsgi") ?? "uwsgi", [
        "--plugin",
        "python3",
        "--scgi-socket",
        "path" in listen ? listen.path : `${listen.hostname}:${listen.port}`,
        "--wsgi-file",
        options.wsgiFile ?? peerFiles.echoApp,
        "--master",
        "--processes",
        "1",
        // uWSGI's master treats SIGTERM as "reload" unless told otherwise.
        "--die-on-term",
        "--disable-logging",
        ...(options.args ?? []),
      ], { cwd: dir }),
  );
}

/** The Perl echo server (libscgi-perl's `SCGI` module). */
export function startPerlScgi(
  transport: Transport = "tcp",
): Promise<RunningBackend> {
  return launch(
    "perl-scgi-",
    transport,
    (dir, listen) =>
      startPeer(findBinary("perl") ?? "perl", [
        peerFiles.echoScgi,
        ...("path" in listen
          ? ["--socket", listen.path]
          : ["--port", String(listen.port)]),
      ], { cwd: dir }),
  );
}

/**
 * rtorrent 0.9.x, headless (`system.daemon.set = true` in the rc file), with
 * its XML-RPC on SCGI and no BitTorrent networking. rtorrent opens one SCGI
 * listener only, so TCP and Unix need separate instances.
 */
export function startRtorrent(
  transport: Transport = "tcp",
): Promise<RunningBackend> {
  return launch(
    "rtorrent-",
    transport,
    (dir, listen) =>
      startPeer(findBinary("rtorrent") ?? "rtorrent", [
        // -n: no ~/.rtorrent.rc; the rc file keeps all state under the cwd.
        "-n",
        "-o",
        `import=${peerFiles.rtorrentRc}`,
        "-o",
        "path" in listen
          ? `network.scgi.open_local=${listen.path}`
          : `network.scgi.open_port=${listen.hostname}:${listen.port}`,
      ], { cwd: dir, env: { HOME: dir, TERM: "dumb" } }),
  );
}

/** What an echo backend (echo_app.py, echo_scgi.pl) reports. */
export interface EchoReport {
  peer: string;
  method: string;
  path: string;
  query: string;
  env: Record<string, string>;
  bodyLength: number;
  bodySha256: string;
}

/** The SHA-256 of bytes, as lowercase hex. */
export async function sha256Hex(
  bytes: Uint8Array<ArrayBuffer>,
): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** `length` bytes that hold every byte value, in a scrambled order. */
export function allByteValues(length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 167 + (i >> 8)) & 0xff;
  return bytes;
}

/** What differs between the echo backends. */
export interface EchoPeerTraits {
  /** The `peer` field of its report. */
  name: string;
  /** libscgi-perl drops variables whose value is empty. */
  dropsEmptyValues: boolean;
}

/**
 * The client cases every echo backend must pass, as steps of one test:
 * what the backend reports having received is checked field by field.
 */
export async function echoCases(
  t: Deno.TestContext,
  base: string,
  traits: EchoPeerTraits,
): Promise<void> {
  const report = async (response: Response): Promise<EchoReport> => {
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-type"), "application/json");
    const got = await response.json() as EchoReport;
    assert.equal(got.peer, traits.name);
    return got;
  };

  await t.step(
    "GET: CONTENT_LENGTH 0, SCGI=1, standard variables",
    async () => {
      const got = await report(
        await scgiFetch(`${base}/hello?x=1`, {
          headers: { "x-custom": "yes" },
        }),
      );
      assert.equal(got.method, "GET");
      assert.equal(got.path, "/hello");
      assert.equal(got.query, "x=1");
      assert.equal(got.env.CONTENT_LENGTH, "0");
      assert.equal(got.env.SCGI, "1");
      assert.equal(got.env.REQUEST_URI, "/hello?x=1");
      assert.equal(got.env.SERVER_PROTOCOL, "HTTP/1.1");
      assert.equal(got.env.HTTP_X_CUSTOM, "yes");
      assert.equal(got.bodyLength, 0);
    },
  );

  await t.step("POST a text body", async () => {
    const text = "héllo, SCGI\n".repeat(100);
    const bytes = new TextEncoder().encode(text);
    const got = await report(
      await scgiFetch(`${base}/text`, {
        method: "POST",
        headers: { "content-type": "text/plain; charset=utf-8" },
        body: text,
      }),
    );
    assert.equal(got.method, "POST");
    assert.equal(got.env.CONTENT_LENGTH, String(bytes.length));
    assert.equal(got.env.CONTENT_TYPE, "text/plain; charset=utf-8");
    assert.equal(got.bodyLength, bytes.length);
    assert.equal(got.bodySha256, await sha256Hex(bytes));
  });

  await t.step(
    "1 MB binary body with all byte values, echoed back",
    async () => {
      const bytes = allByteValues(1024 * 1024);
      const got = await report(
        await scgiFetch(`${base}/binary`, { method: "PUT", body: bytes }),
      );
      assert.equal(got.method, "PUT");
      assert.equal(got.bodyLength, bytes.length);
      assert.equal(got.bodySha256, await sha256Hex(bytes));
      const echoed = await scgiFetch(`${base}/raw`, {
        method: "POST",
        body: bytes,
      });
      assert.equal(echoed.status, 200);
      assert.equal(echoed.headers.get("content-length"), String(bytes.length));
      assert.deepEqual(new Uint8Array(await echoed.arrayBuffer()), bytes);
    },
  );

  await t.step("streamed body with a stated content-length", async () => {
    const chunk = allByteValues(64 * 1024);
    const count = 20;
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === count) return controller.close();
        sent++;
        controller.enqueue(chunk.slice());
      },
    });
    const whole = new Uint8Array(chunk.length * count);
    for (let i = 0; i < count; i++) whole.set(chunk, i * chunk.length);
    const got = await report(
      await scgiFetch(`${base}/stream`, {
        method: "POST",
        headers: { "content-length": String(whole.length) },
        body: stream,
      }),
    );
    assert.equal(sent, count);
    assert.equal(got.env.CONTENT_LENGTH, String(whole.length));
    assert.equal(got.bodyLength, whole.length);
    assert.equal(got.bodySha256, await sha256Hex(whole));
  });

  await t.step("path and query with %-escapes and UTF-8", async () => {
    const url = new URL(
      `${base}/caf%C3%A9/ü%20x?a=%2F%26&b=caf%C3%A9&c=ü&d=a+b`,
    );
    const got = await report(await scgiFetch(url));
    assert.equal(got.path, "/café/ü x");
    assert.equal(got.query, "a=%2F%26&b=caf%C3%A9&c=%C3%BC&d=a+b");
    assert.equal(got.env.REQUEST_URI, "/caf%C3%A9/%C3%BC%20x?" + got.query);
    assert.equal(got.env.DOCUMENT_URI, "/café/ü x");
  });

  await t.step("extra init.env variables arrive", async () => {
    const got = await report(
      await scgiFetch(`${base}/env`, {
        env: { XITZIN_STATE: '{"user":"zoë"}', X_APP: "demo", X_EMPTY: "" },
      }),
    );
    assert.equal(got.env.XITZIN_STATE, '{"user":"zoë"}');
    assert.equal(got.env.X_APP, "demo");
    if (traits.dropsEmptyValues) {
      assert.equal(got.env.X_EMPTY, undefined);
    } else {
      assert.equal(got.env.X_EMPTY, "");
    }
  });

  await t.step(
    "HEAD: headers, and no body though the app sends one",
    async () => {
      const response = await scgiFetch(`${base}/head`, { method: "HEAD" });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("x-echo-method"), "HEAD");
      assert.equal(await response.text(), "");
    },
  );

  await t.step("error statuses", async () => {
    for (const status of [404, 500, 503]) {
      const response = await scgiFetch(`${base}/status/${status}`, {
        method: "POST",
        body: "x",
      });
      assert.equal(response.status, status);
      assert.equal(response.headers.get("x-echo-method"), "POST");
      assert.match(
        await response.text(),
        new RegExp(`^status ${status} from `),
      );
    }
  });

  await t.step("several Set-Cookie headers stay apart", async () => {
    const response = await scgiFetch(`${base}/cookies`);
    assert.equal(response.status, 200);
    assert.deepEqual(response.headers.getSetCookie(), [
      "a=1; Path=/",
      "b=2; HttpOnly",
      "c=3; Max-Age=60",
    ]);
    assert.equal(await response.text(), "cookies\n");
  });
}
