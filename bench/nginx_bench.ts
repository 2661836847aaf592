/**
 * One nginx in front of several backends at once, measured side by side in
 * one run (see bench/README.md for every row, column and flag):
 *
 * - `floor`, `floor-unix`: bench/floor.ts, the bare Deno accept/read/write
 *   loop, over TCP and a Unix socket: the baseline every `serve()` figure is
 *   divided by (same transport)
 * - `uwsgi`, `uwsgi-unix`: uWSGI (C core, a Python WSGI app), a master and
 *   2 worker processes, on its SCGI socket
 * - `http`: `Deno.serve` behind `proxy_pass` without upstream keep-alive;
 *   `http-keepalive` (optional) with `keepalive 64`
 * - `scgi`, `scgi-unix`: this toolkit's `serve()`
 *
 * Every backend answers `Hello, world\n` (13 bytes). `wrk --latency -c 64`
 * through nginx gives requests/s and p99; /proc gives each backend's CPU
 * time per request and peak RSS under the load (summed over its
 * processes). Then 1 GiB up and down through nginx per backend: MiB/s and
 * peak RSS, against `Deno.serve`.
 *
 * ```sh
 * deno run --allow-run --allow-read --allow-write=/tmp --allow-net=127.0.0.1 \
 *   --allow-env=PATH --allow-sys=uid bench/nginx_bench.ts --quick
 * ```
 *
 * This is a script, not a test.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve } from "../server.ts";
import { findBinary, freePort } from "../tests/_peer.ts";
import {
  type Child,
  Cleanup,
  cpuMs,
  fixed,
  HELLO,
  markdownTable,
  median,
  memory,
  mib,
  processTree,
  ratio,
  resetPeak,
  setAffinity,
  verdict,
  version,
  waitForFile,
  waitListening,
  which,
} from "./_util.ts";

const CHUNK = 64 * 1024;

/** The permissions the script needs, printed with the command line. */
const FLAGS =
  "--allow-run --allow-read --allow-write=/tmp --allow-net=127.0.0.1 --allow-env=PATH --allow-sys=uid";

// ---------------------------------------------------------------------------
// The Deno backends: this same file, run as a child with --serve.

async function countBody(request: Request): Promise<number> {
  let total = 0;
  if (request.body) {
    for await (const chunk of request.body) total += chunk.length;
  }
  return total;
}

function download(bytes: number): Response {
  let left = bytes;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (left <= 0) return controller.close();
      const size = Math.min(CHUNK, left);
      left -= size;
      controller.enqueue(new Uint8Array(size).fill(0x78));
    },
  });
  return new Response(stream, {
    headers: {
      "content-type": "application/octet-stream",
      "content-length": String(bytes),
    },
  });
}

async function handle(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname.endsWith("/upload")) {
    return new Response(`${await countBody(request)}\n`);
  }
  if (url.pathname.endsWith("/download")) {
    return download(Number(url.searchParams.get("bytes") ?? "0"));
  }
  return new Response(HELLO, { headers: { "content-type": "text/plain" } });
}

function runBackend(kind: string, where: string): void {
  const quiet = {
    onListen() {},
    onError: () => new Response("error", { status: 500 }),
  };
  if (kind === "http") {
    Deno.serve(
      { hostname: "127.0.0.1", port: Number(where), ...quiet },
      handle,
    );
  } else if (kind === "scgi") {
    serve({ hostname: "127.0.0.1", port: Number(where), ...quiet }, handle);
  } else if (kind === "scgi-unix") {
    serve({ path: where, ...quiet }, handle);
  } else {
    throw new Error(`unknown backend ${kind}`);
  }
}

const WSGI_APP = `
HELLO = ${JSON.stringify(HELLO)}.encode()

def application(environ, start_response):
    path = environ.get("PATH_INFO") or environ.get("DOCUMENT_URI", "")
    if path.endswith("/upload"):
        left = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        total = 0
        while left > 0:
            chunk = stream.read(min(left, ${CHUNK}))
            if not chunk:
                break
            total += len(chunk)
            left -= len(chunk)
        body = b"%d\\n" % total
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path.endswith("/download"):
        size = 0
        for pair in environ.get("QUERY_STRING", "").split("&"):
            if pair.startswith("bytes="):
                size = int(pair[6:])
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
        def chunks(left=size):
            while left > 0:
                n = min(left, ${CHUNK})
                left -= n
                yield b"x" * n
        return chunks()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]
`;

// ---------------------------------------------------------------------------
// The setups.

type Transport = "TCP" | "Unix";

interface Setup {
  name: string;
  label: string;
  transport: Transport;
  kind: "floor" | "uwsgi" | "http" | "scgi";
}

const SETUPS: Setup[] = [
  {
    name: "floor",
    label: "bare Deno loop (floor)",
    transport: "TCP",
    kind: "floor",
  },
  {
    name: "floor-unix",
    label: "bare Deno loop (floor)",
    transport: "Unix",
    kind: "floor",
  },
  {
    name: "uwsgi",
    label: "uWSGI, 2 processes",
    transport: "TCP",
    kind: "uwsgi",
  },
  {
    name: "uwsgi-unix",
    label: "uWSGI, 2 processes",
    transport: "Unix",
    kind: "uwsgi",
  },
  {
    name: "http",
    label: "nginx → Deno.serve (proxy_pass, no keep-alive)",
    transport: "TCP",
    kind: "http",
  },
  {
    name: "http-keepalive",
    label: "nginx → Deno.serve (proxy_pass, keepalive 64)",
    transport: "TCP",
    kind: "http",
  },
  { name: "scgi", label: "serve()", transport: "TCP", kind: "scgi" },
  { name: "scgi-unix", label: "serve()", transport: "Unix", kind: "scgi" },
];
const DEFAULT_SETUPS = SETUPS.map((s) => s.name).filter((n) =>
  n !== "http-keepalive"
);
const floorOf = (t: Transport) => t === "TCP" ? "floor" : "floor-unix";
const uwsgiOf = (t: Transport) => t === "TCP" ? "uwsgi" : "uwsgi-unix";
/** The large-transfer baseline. */
const TRANSFER_BASE = "http";

type Placement = "pinned" | "free";

interface Options {
  duration: number;
  warmup: number;
  rounds: number;
  concurrency: number[];
  size: number;
  setups: string[];
  placements: Placement[];
  wrkThreads: number;
  skipLoad: boolean;
  skipTransfer: boolean;
  /** `--v8-flags=…` for every Deno backend alike (floor, Deno.serve, serve()). */
  v8Flags: string[];
}

const USAGE = `deno run ${FLAGS} bench/nginx_bench.ts [options]

  --quick              one round, 3 s per setup, no large transfers
  --duration S         seconds per wrk run (default 5)
  --warmup S           unmeasured wrk seconds per setup first (default 1)
  --rounds N           rounds; tables show medians (default 3)
  --concurrency LIST   wrk connections (default 64)
  --size SIZE          upload and download size (default 1GiB)
  --backends LIST      default ${DEFAULT_SETUPS.join(",")}
                       (also: http-keepalive)
  --no-pin             no CPU pinning (the default)
  --pin                backends on the last CPU, nginx and wrk on CPU 0
  --pin-both           every load run both not pinned and pinned
  --wrk-threads N      wrk threads (default 1)
  --skip-load, --skip-transfer
  --v8-flags FLAGS     V8 flags for every Deno backend alike, e.g.
                       --v8-flags=--max-semi-space-size=2
`;

function parseSize(text: string): number {
  const match = /^([0-9.]+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)$/i.exec(
    text.trim(),
  );
  if (!match) throw new Error(`--size ${text}: use e.g. 64MiB or 1GiB`);
  const unit = match[2]!.toLowerCase().replace(/i?b$/, "");
  const scale = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(match[1]) * scale);
}

function positive(name: string, text: string, zero = false): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || (!zero && n === 0)) {
    throw new Error(`${name} ${text}: not a positive number`);
  }
  return n;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      warmup: { type: "string", default: "1" },
      rounds: { type: "string" },
      concurrency: { type: "string", default: "64" },
      size: { type: "string", default: "1GiB" },
      backends: { type: "string", default: DEFAULT_SETUPS.join(",") },
      pin: { type: "boolean", default: false },
      "no-pin": { type: "boolean", default: false },
      "pin-both": { type: "boolean", default: false },
      "wrk-threads": { type: "string", default: "1" },
      "skip-load": { type: "boolean", default: false },
      "skip-transfer": { type: "boolean", default: false },
      "v8-flags": { type: "string", default: "" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const setups = values.backends.split(",").map((b) => b.trim()).filter(
    Boolean,
  );
  for (const name of setups) {
    if (!SETUPS.some((s) => s.name === name)) {
      throw new Error(`unknown backend ${name} (see --help)`);
    }
  }
  if (
    [values.pin, values["no-pin"], values["pin-both"]].filter(Boolean).length >
      1
  ) {
    throw new Error("give one of --pin, --no-pin, --pin-both");
  }
  const placements: Placement[] = values["pin-both"]
    ? ["free", "pinned"]
    : values.pin
    ? ["pinned"]
    : ["free"];
  return {
    duration: positive(
      "--duration",
      values.duration ?? (values.quick ? "3" : "5"),
    ),
    warmup: positive("--warmup", values.warmup, true),
    rounds: positive("--rounds", values.rounds ?? (values.quick ? "1" : "3")),
    concurrency: values.concurrency.split(",").map((c) =>
      positive("--concurrency", c)
    ),
    size: parseSize(values.size),
    // In table order.
    setups: SETUPS.map((s) => s.name).filter((n) => setups.includes(n)),
    placements,
    wrkThreads: positive("--wrk-threads", values["wrk-threads"]),
    skipLoad: values["skip-load"],
    skipTransfer: values["skip-transfer"] || values.quick,
    v8Flags: values["v8-flags"] ? [`--v8-flags=${values["v8-flags"]}`] : [],
  };
}

// ---------------------------------------------------------------------------
// nginx and wrk.

function nginxConf(
  dir: string,
  port: number,
  upstreams: Record<string, string>,
): string {
  const root = Deno.uid() === 0 ? "user root;\n" : "";
  const blocks: string[] = [];
  const locations = Object.entries(upstreams).map(([name, target]) => {
    if (name === "http") {
      // nginx's default: HTTP/1.0 and a new backend connection per request.
      return `    location /${name}/ {
      proxy_pass http://${target};
      proxy_set_header Host $host;
    }`;
    }
    if (name === "http-keepalive") {
      blocks.push(`  upstream deno_keepalive {
    server ${target};
    keepalive 64;
  }`);
      return `    location /${name}/ {
      proxy_pass http://deno_keepalive;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }`;
    }
    return `    location /${name}/ {
      include /etc/nginx/scgi_params;
      scgi_pass ${target};
    }`;
  }).join("\n");
  return `${root}daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-client-body;
  proxy_temp_path ${dir}/nginx-proxy;
  scgi_temp_path ${dir}/nginx-scgi;
  fastcgi_temp_path ${dir}/nginx-fastcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  client_max_body_size 0;
  # Stream big responses through nginx's buffers instead of a temp file.
  proxy_max_temp_file_size 0;
  scgi_max_temp_file_size 0;
${blocks.join("\n")}
  server {
    listen 127.0.0.1:${port};
${locations}
  }
}
`;
}

interface LoadResult {
  rps: number;
  p99: number;
  errors: number;
  requests: number;
  /** Backend CPU time per request, in microseconds. */
  cpuUs: number;
  /** Peak RSS of the backend's processes during the run, bytes. */
  peakRss: number;
}

function toMs(value: string, unit: string): number {
  const n = Number(value);
  return unit === "us"
    ? n / 1000
    : unit === "ms"
    ? n
    : unit === "s"
    ? n * 1000
    : n * 60_000;
}

function parseWrk(text: string): Omit<LoadResult, "cpuUs" | "peakRss"> {
  const rps = /Requests\/sec:\s+([0-9.]+)/.exec(text);
  const p99 = /^\s*99%\s+([0-9.]+)(us|ms|s|m)\s*$/m.exec(text);
  if (!rps || !p99) throw new Error(`cannot read wrk output:\n${text}`);
  let errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
      text,
    );
  if (socket) errors += socket.slice(1).reduce((sum, n) => sum + Number(n), 0);
  return {
    rps: Number(rps[1]),
    p99: toMs(p99[1]!, p99[2]!),
    errors,
    requests: Number(/(\d+) requests in/.exec(text)?.[1] ?? 0),
  };
}

interface Transfer {
  mibps: number;
  /** RSS when the transfer starts (after the load test the heap has grown). */
  startRss: number;
  peakRss: number;
  ok: boolean;
  note: string;
}

// ---------------------------------------------------------------------------
// The driver.

async function main(options: Options): Promise<void> {
  const cleanup = new Cleanup();
  try {
    await bench(cleanup, options);
  } finally {
    await cleanup.stopAll();
  }
}

async function bench(cleanup: Cleanup, options: Options): Promise<void> {
  const dir = cleanup.dir(await Deno.makeTempDir({ prefix: "nginx-bench-" }));
  const cores = navigator.hardwareConcurrency;
  const skipped: string[] = [];
  let placements = options.placements;
  if (cores < 2 && placements.includes("pinned")) {
    skipped.push(`pinning: ${cores} CPU, nothing to pin to`);
    placements = ["free"];
  }
  const allCpus = `0-${cores - 1}`;
  const backendCpu = String(cores - 1);
  const frontCpu = "0";
  const wrk = which("wrk");
  const curl = which("curl");
  const nginxBinary = which("nginx");
  const taskset = placements.includes("pinned") ? which("taskset") : "";

  const self = new URL(import.meta.url).pathname;
  const floor = new URL("./floor.ts", import.meta.url).pathname;
  const deno = Deno.execPath();
  const upstreams: Record<string, string> = {};
  const roots: Record<string, Child> = {};
  const setups: Setup[] = [];

  // Start every backend.
  for (const name of options.setups) {
    const setup = SETUPS.find((s) => s.name === name)!;
    const sock = `${dir}/${name}.sock`;
    const unixFlags = [
      `--allow-net=unix:${sock}`,
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
    ];
    let child: Child;
    const port = setup.transport === "TCP" ? freePort() : 0;
    if (setup.kind === "uwsgi") {
      const binary = findBinary("uwsgi");
      if (!binary) {
        skipped.push(`${name}: uwsgi is not installed`);
        continue;
      }
      await Deno.writeTextFile(`${dir}/hello_app.py`, WSGI_APP);
      const socket = setup.transport === "TCP" ? `127.0.0.1:${port}` : sock;
      child = cleanup.spawn(name, binary, [
        "--plugin",
        "python3",
        "--master",
        "--processes",
        "2",
        "--scgi-socket",
        socket,
        "--wsgi-file",
        `${dir}/hello_app.py`,
        "--die-on-term",
        "--disable-logging",
        "--listen",
        "1024",
      ], { cwd: dir });
    } else if (setup.kind === "floor") {
      child = cleanup.spawn(
        name,
        deno,
        setup.transport === "TCP"
          ? [
            "run",
            ...options.v8Flags,
            "--allow-net=127.0.0.1",
            floor,
            String(port),
          ]
          : ["run", ...options.v8Flags, ...unixFlags, floor, `unix:${sock}`],
        { cwd: dir },
      );
    } else {
      const kind = setup.kind === "http"
        ? "http"
        : setup.transport === "TCP"
        ? "scgi"
        : "scgi-unix";
      child = cleanup.spawn(
        name,
        deno,
        setup.transport === "TCP"
          ? [
            "run",
            ...options.v8Flags,
            "--allow-net=127.0.0.1",
            self,
            "--serve",
            kind,
            String(port),
          ]
          : [
            "run",
            ...options.v8Flags,
            ...unixFlags,
            self,
            "--serve",
            kind,
            sock,
          ],
        { cwd: dir },
      );
    }
    try {
      if (setup.transport === "TCP") await waitListening({ port }, child);
      else await waitForFile(sock, child);
    } catch (error) {
      if (setup.kind !== "uwsgi") throw error;
      // uWSGI without its python3 plugin, say: a reason, not a failure.
      skipped.push(
        `${name}: uwsgi did not start: ${
          child.output().trim().split("\n").slice(-3).join(" / ")
        }`,
      );
      await cleanup.stop(child);
      continue;
    }
    roots[name] = child;
    upstreams[name] = setup.transport === "TCP"
      ? `127.0.0.1:${port}`
      : `unix:${sock}`;
    setups.push(setup);
  }
  for (const reason of skipped) console.error(`skipped: ${reason}`);

  const nginxPort = freePort();
  await Deno.writeTextFile(
    `${dir}/nginx.conf`,
    nginxConf(dir, nginxPort, upstreams),
  );
  const nginx = cleanup.spawn(
    "nginx",
    nginxBinary,
    ["-c", `${dir}/nginx.conf`, "-p", dir, "-e", `${dir}/nginx-error.log`],
    { cwd: dir },
  );
  await waitListening({ port: nginxPort }, nginx);
  const base = (name: string) => `http://127.0.0.1:${nginxPort}/${name}`;

  // Every backend answers the same bytes, through nginx.
  for (const { name } of setups) {
    const response = await fetch(`${base(name)}/hello`);
    const text = await response.text();
    if (response.status !== 200 || text !== HELLO) {
      throw new Error(
        `${name} through nginx answered ${response.status} ${
          JSON.stringify(text)
        }`,
      );
    }
  }

  const wrkRun = async (
    name: string,
    c: number,
    seconds: number,
    pinned: boolean,
  ) => {
    const args = [
      `-t${Math.min(options.wrkThreads, c)}`,
      `-c${c}`,
      `-d${seconds}s`,
      "--latency",
      `${base(name)}/hello`,
    ];
    const { stdout } = pinned
      ? await cleanup.run(taskset, ["-c", frontCpu, wrk, ...args])
      : await cleanup.run(wrk, args);
    return parseWrk(stdout);
  };

  // Warm the JITs up (unmeasured), then learn every backend's processes
  // (uWSGI forks its workers after it listens).
  if (options.warmup > 0 && !options.skipLoad) {
    for (const { name } of setups) {
      await wrkRun(name, options.concurrency[0]!, options.warmup, false);
    }
  }
  const trees: Record<string, number[]> = {};
  for (const { name } of setups) {
    trees[name] = await processTree(roots[name]!.pid);
    cleanup.watch(trees[name]!.slice(1));
  }
  const nginxTree = await processTree(nginx.pid);
  const place = async (placement: Placement) => {
    for (const { name } of setups) {
      await setAffinity(
        cleanup,
        trees[name]!,
        placement === "pinned" ? backendCpu : allCpus,
      );
    }
    await setAffinity(
      cleanup,
      nginxTree,
      placement === "pinned" ? frontCpu : allCpus,
    );
  };

  const versions = [
    `deno ${Deno.version.deno}`,
    (await version(cleanup, nginxBinary, ["-v"])).replace(/^.*: /, ""),
    ...(setups.some((s) => s.kind === "uwsgi")
      ? [`uwsgi ${await version(cleanup, which("uwsgi"), ["--version"])}`]
      : []),
    (await version(cleanup, wrk, ["-v"])).replace(/\s*(\[|Copyright).*$/, ""),
  ];
  const describe = (placement: Placement) =>
    placement === "pinned"
      ? `pinned: backends on CPU ${backendCpu}, nginx (1 worker) and wrk/curl on CPU ${frontCpu}`
      : "not pinned: every process on any CPU";
  console.log(`# nginx bench, ${new Date().toISOString()}\n`);
  console.log("```sh");
  console.log(`deno run ${FLAGS} bench/nginx_bench.ts ${Deno.args.join(" ")}`);
  console.log("```\n");
  console.log(`${versions.join(", ")}; ${cores} CPUs.`);
  if (!options.skipLoad) {
    console.log(
      `Load: wrk -t${options.wrkThreads} -c${
        options.concurrency.join("/")
      } GET …/hello (${HELLO.length}-byte body), ${options.rounds} round(s) x ${options.duration} s per setup` +
        (options.warmup ? ` after ${options.warmup} s unmeasured` : "") +
        `; medians over rounds. ${placements.map(describe).join("; ")}.`,
    );
  }
  for (const reason of skipped) console.log(`Skipped: ${reason}.`);

  const idle: Record<string, number> = {};
  for (const { name } of setups) {
    idle[name] = await memory(trees[name]!, "VmRSS");
  }

  if (!options.skipLoad) {
    const results: Record<string, LoadResult[]> = {};
    const key = (p: Placement, c: number, name: string) => `${p} ${c} ${name}`;
    for (let round = 1; round <= options.rounds; round++) {
      for (const placement of placements) {
        await place(placement);
        for (const c of options.concurrency) {
          for (const { name } of setups) {
            const tree = trees[name]!;
            await resetPeak(tree);
            const before = await cpuMs(tree);
            const run = await wrkRun(
              name,
              c,
              options.duration,
              placement === "pinned",
            );
            const used = await cpuMs(tree) - before;
            const result: LoadResult = {
              ...run,
              cpuUs: run.requests > 0 ? used * 1000 / run.requests : NaN,
              peakRss: await memory(tree, "VmHWM"),
            };
            (results[key(placement, c, name)] ??= []).push(result);
            console.error(
              `round ${round} ${placement} c=${c} ${name}: ${
                fixed(result.rps)
              } req/s, p99 ${fixed(result.p99, 2)} ms, CPU ${
                fixed(result.cpuUs, 1)
              } us/req, peak RSS ${mib(result.peakRss)} MiB` +
                (result.errors ? `, ${result.errors} errors` : ""),
            );
          }
        }
      }
    }

    const goals: string[][] = [[
      "goal",
      "placement",
      "conc",
      "TCP",
      "Unix",
      "met",
    ]];
    for (const placement of placements) {
      for (const c of options.concurrency) {
        const med = (name: string, field: keyof LoadResult) => {
          const runs = results[key(placement, c, name)];
          return runs ? median(runs.map((r) => r[field])) : NaN;
        };
        const rows = [[
          "setup",
          "transport",
          "req/s",
          "vs floor",
          "backend CPU µs/req",
          "vs floor",
          "p99 ms",
          "vs uWSGI",
          "peak RSS MiB",
          "errors",
        ]];
        for (const { name, label, transport } of setups) {
          const runs = results[key(placement, c, name)]!;
          const floorName = floorOf(transport);
          const uwsgiName = uwsgiOf(transport);
          rows.push([
            label,
            transport,
            fixed(med(name, "rps")),
            ratio(med(name, "rps"), med(floorName, "rps")),
            fixed(med(name, "cpuUs"), 1),
            ratio(med(name, "cpuUs"), med(floorName, "cpuUs")),
            fixed(med(name, "p99"), 2),
            ratio(med(name, "p99"), med(uwsgiName, "p99")),
            mib(med(name, "peakRss")),
            String(runs.reduce((sum, r) => sum + r.errors, 0)),
          ]);
        }
        console.log(
          `\n## GET /hello through nginx, wrk -c${c}, ${describe(placement)}\n`,
        );
        console.log(markdownTable(rows));

        // The issue's goals for serve(), per transport.
        const goal = (
          text: string,
          value: (t: Transport) => number,
          ok: (v: number) => boolean,
          format: (v: number) => string,
        ) => {
          const tcp = value("TCP");
          const unix = value("Unix");
          const met = [tcp, unix].filter(Number.isFinite);
          goals.push([
            text,
            placement,
            String(c),
            Number.isFinite(tcp) ? format(tcp) : "-",
            Number.isFinite(unix) ? format(unix) : "-",
            verdict(met.length ? met.every(ok) : undefined),
          ]);
        };
        const serveOf = (t: Transport) => t === "TCP" ? "scgi" : "scgi-unix";
        const x = (v: number) => `${v.toFixed(3)}x`;
        goal(
          "serve() req/s ≥ 0.85x floor",
          (t) => med(serveOf(t), "rps") / med(floorOf(t), "rps"),
          (v) => v >= 0.85,
          x,
        );
        goal(
          "serve() CPU/req ≤ 1.4x floor",
          (t) => med(serveOf(t), "cpuUs") / med(floorOf(t), "cpuUs"),
          (v) => v <= 1.4,
          x,
        );
        goal(
          "serve() p99 ≤ 1.5x uWSGI",
          (t) => med(serveOf(t), "p99") / med(uwsgiOf(t), "p99"),
          (v) => v <= 1.5,
          x,
        );
        goal(
          "serve() peak RSS ≤ 80 MiB",
          (t) => med(serveOf(t), "peakRss"),
          (v) => v <= 80 * 1024 ** 2,
          (v) => `${mib(v)} MiB`,
        );
      }
    }
    console.log("\n## Goals (serve() against the same transport)\n");
    console.log(markdownTable(goals));
  }

  if (!options.skipTransfer) {
    // Transfers run once per round, in the first placement.
    await place(placements[0]!);
    await transfers(cleanup, options, {
      dir,
      setups: setups.filter((s) => s.kind !== "floor"),
      trees,
      idle,
      base,
      curl,
      pin: placements[0] === "pinned" ? [taskset, frontCpu] : undefined,
    });
  }
}

async function transfers(
  cleanup: Cleanup,
  options: Options,
  context: {
    dir: string;
    setups: Setup[];
    trees: Record<string, number[]>;
    idle: Record<string, number>;
    base: (name: string) => string;
    curl: string;
    pin: [string, string] | undefined;
  },
): Promise<void> {
  const { dir, setups, trees, idle, base, curl, pin } = context;
  const size = options.size;
  const file = `${dir}/upload.bin`;
  // A sparse file: curl reads zeros without touching the disk.
  const handle = await Deno.open(file, { create: true, write: true });
  await handle.truncate(size);
  handle.close();

  const transfer = async (
    name: string,
    direction: "upload" | "download",
  ): Promise<Transfer> => {
    const tree = trees[name]!;
    const fresh = await resetPeak(tree);
    const startRss = await memory(tree, "VmRSS");
    const maxTime = String(Math.ceil(size / (5 * 1024 * 1024)) + 60);
    const args = [
      "-sS",
      "--max-time",
      maxTime,
      "-w",
      "\n%{http_code} %{time_total} %{size_upload} %{size_download}",
      ...(direction === "upload"
        ? [
          "-o",
          "-",
          "-X",
          "POST",
          "-H",
          "Expect:",
          "-T",
          file,
          `${base(name)}/upload`,
        ]
        : ["-o", "/dev/null", `${base(name)}/download?bytes=${size}`]),
    ];
    const { stdout } = pin
      ? await cleanup.run(pin[0], ["-c", pin[1], curl, ...args])
      : await cleanup.run(curl, args);
    const lines = stdout.trim().split("\n");
    const [code, time, up, down] = lines.at(-1)!.split(" ");
    const moved = Number(direction === "upload" ? up : down);
    let ok = code === "200" && moved === size;
    if (direction === "upload" && lines[0]?.trim() !== String(size)) ok = false;
    return {
      mibps: size / 1024 ** 2 / Number(time),
      startRss,
      peakRss: await memory(tree, "VmHWM"),
      ok,
      note: `${code}${ok ? "" : ` moved ${moved} answer ${lines[0]}`}${
        fresh ? "" : " (lifetime peak)"
      }`,
    };
  };

  const results: Record<string, { up: Transfer[]; down: Transfer[] }> = {};
  for (let round = 1; round <= options.rounds; round++) {
    for (const { name } of setups) {
      const up = await transfer(name, "upload");
      const down = await transfer(name, "download");
      const entry = results[name] ??= { up: [], down: [] };
      entry.up.push(up);
      entry.down.push(down);
      console.error(
        `round ${round} ${name}: upload ${fixed(up.mibps)} MiB/s, RSS ${
          mib(up.startRss)
        }→${mib(up.peakRss)} MiB ${up.note}; download ${
          fixed(down.mibps)
        } MiB/s, RSS ${mib(down.startRss)}→${
          mib(down.peakRss)
        } MiB ${down.note}`,
      );
    }
  }
  const med = (name: string, dir: "up" | "down", field: keyof Transfer) => {
    const runs = results[name]?.[dir];
    return runs ? median(runs.map((r) => Number(r[field]))) : NaN;
  };
  const rows = [[
    "setup",
    "transport",
    "idle RSS",
    "up MiB/s",
    "vs Deno.serve",
    "up RSS start→peak",
    "down MiB/s",
    "vs Deno.serve",
    "down RSS start→peak",
    "ok",
  ]];
  for (const { name, label, transport } of setups) {
    const r = results[name]!;
    const ok = [...r.up, ...r.down].every((t) => t.ok);
    rows.push([
      label,
      transport,
      mib(idle[name]!),
      fixed(med(name, "up", "mibps")),
      ratio(med(name, "up", "mibps"), med(TRANSFER_BASE, "up", "mibps")),
      `${mib(med(name, "up", "startRss"))}→${mib(med(name, "up", "peakRss"))}`,
      fixed(med(name, "down", "mibps")),
      ratio(med(name, "down", "mibps"), med(TRANSFER_BASE, "down", "mibps")),
      `${mib(med(name, "down", "startRss"))}→${
        mib(med(name, "down", "peakRss"))
      }`,
      ok
        ? "yes"
        : `NO (${
          [...r.up, ...r.down].filter((t) => !t.ok).map((t) => t.note).join(
            "; ",
          )
        })`,
    ]);
  }
  console.log(
    `\n## ${
      mib(size)
    } MiB upload and download through nginx (curl), medians over ${options.rounds} round(s); RSS in MiB\n`,
  );
  console.log(markdownTable(rows));
}

if (import.meta.main) {
  const args = Deno.args;
  if (args[0] === "--serve") {
    runBackend(args[1] ?? "", args[2] ?? "");
  } else {
    await main(parseOptions(args));
  }
}
