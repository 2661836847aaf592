/**
 * nginx in front of several backends at once, side by side:
 *
 * - `scgi`: this toolkit's `serve()` over SCGI on TCP (`scgi_pass`)
 * - `scgi-unix`: the same over a Unix socket
 * - `http`: `Deno.serve` over HTTP (`proxy_pass` with upstream keepalive),
 *   what a Deno user would pick instead of SCGI: the baseline
 * - `uwsgi`: uWSGI's SCGI socket with a trivial WSGI app
 *
 * Each answers `hello\n` to a GET, counts an upload, and streams a download.
 * `wrk --latency` drives each at several concurrencies (requests/s, p99);
 * then one large upload and one large download per backend through nginx
 * (MiB/s, and the backend's peak RSS from /proc/PID/status VmHWM).
 *
 * ```sh
 * deno run --allow-run --allow-net --allow-read --allow-write --allow-env \
 *   bench/nginx_bench.ts --duration 5 --rounds 3 --size 1GiB
 * ```
 *
 * See bench/README.md. This is a script, not a test.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve } from "../server.ts";
import {
  findBinary,
  freePort,
  type Peer,
  startPeer,
  waitForListen,
} from "../tests/_peer.ts";

const HELLO = "hello\n";
const CHUNK = 64 * 1024;

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
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "${HELLO.length}")])
    return [b"hello\\n"]
`;

// ---------------------------------------------------------------------------
// The driver.

interface Options {
  duration: number;
  rounds: number;
  concurrency: number[];
  size: number;
  backends: string[];
  pin: boolean;
  wrkThreads: number;
  skipLoad: boolean;
  skipTransfer: boolean;
}

const ALL_BACKENDS = ["http", "scgi", "scgi-unix", "uwsgi"];
const BASELINE = "http";

function parseSize(text: string): number {
  const match = /^([0-9.]+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)$/i.exec(
    text.trim(),
  );
  if (!match) throw new Error(`--size ${text}: use e.g. 64MiB or 1GiB`);
  const unit = match[2]!.toLowerCase().replace(/i?b$/, "");
  const scale = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(match[1]) * scale);
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      duration: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
      concurrency: { type: "string", default: "10,50,200" },
      size: { type: "string", default: "1GiB" },
      backends: { type: "string", default: ALL_BACKENDS.join(",") },
      "no-pin": { type: "boolean", default: false },
      "wrk-threads": { type: "string", default: "1" },
      "skip-load": { type: "boolean", default: false },
      "skip-transfer": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log(
      "deno run --allow-run --allow-net --allow-read --allow-write --allow-env bench/nginx_bench.ts\n" +
        "  [--duration S=5] [--rounds N=3] [--concurrency 10,50,200] [--size 1GiB]\n" +
        `  [--backends ${
          ALL_BACKENDS.join(",")
        }] [--no-pin] [--wrk-threads 1]\n` +
        "  [--skip-load] [--skip-transfer]",
    );
    Deno.exit(0);
  }
  const backends = values.backends.split(",").map((b) => b.trim()).filter(
    Boolean,
  );
  for (const backend of backends) {
    if (!ALL_BACKENDS.includes(backend)) {
      throw new Error(`unknown backend ${backend}`);
    }
  }
  if (!backends.includes(BASELINE)) backends.unshift(BASELINE);
  return {
    duration: Number(values.duration),
    rounds: Number(values.rounds),
    concurrency: values.concurrency.split(",").map(Number),
    size: parseSize(values.size),
    backends,
    pin: !values["no-pin"],
    wrkThreads: Number(values["wrk-threads"]),
    skipLoad: values["skip-load"],
    skipTransfer: values["skip-transfer"],
  };
}

function which(name: string): string {
  const path = findBinary(name);
  if (!path) throw new Error(`${name} is not installed`);
  return path;
}

/** A backend or nginx, started (pinned to `cpu` with taskset) by PID. */
interface Child extends Peer {
  name: string;
}

function spawn(
  name: string,
  cmd: string,
  args: string[],
  cpu: string | undefined,
  cwd: string,
): Child {
  // taskset execs the command, so the PID is the process's own.
  const [command, argv] = cpu
    ? [which("taskset"), ["-c", cpu, cmd, ...args]]
    : [cmd, args];
  return Object.assign(startPeer(command, argv, { cwd }), { name });
}

// Resolves once the child accepts connections; fails with its output if it
// exits first.
async function waitListening(
  addr: { port: number } | { path: string },
  child: Child,
): Promise<void> {
  try {
    await waitForListen(addr, 15_000, child.alive);
  } catch (error) {
    if (child.alive()) throw error;
    throw new Error(`${child.name} exited:\n${child.output().slice(-20_000)}`);
  }
}

async function run(cmd: string, args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const out = new TextDecoder().decode(stdout);
  if (code !== 0) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed (${code}):\n${out}${
        new TextDecoder().decode(stderr)
      }`,
    );
  }
  return out;
}

function nginxConf(
  dir: string,
  port: number,
  upstreams: Record<string, string>,
): string {
  const root = Deno.uid() === 0 ? "user root;\n" : "";
  const locations = Object.entries(upstreams).map(([name, target]) =>
    name === "http"
      ? `    location /http/ {
      proxy_pass http://deno_http;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
    }`
      : `    location /${name}/ {
      include /etc/nginx/scgi_params;
      scgi_pass ${target};
    }`
  ).join("\n");
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
  upstream deno_http {
    server ${upstreams.http};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${port};
${locations}
  }
}
`;
}

interface WrkResult {
  rps: number;
  p99: number;
  errors: number;
  requests: number;
  /** Backend CPU time per request, in microseconds. */
  cpuUs: number;
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

function parseWrk(text: string): WrkResult {
  const rps = /Requests\/sec:\s+([0-9.]+)/.exec(text);
  const p99 = /^\s*99%\s+([0-9.]+)(us|ms|s|m)\s*$/m.exec(text);
  if (!rps || !p99) throw new Error(`cannot read wrk output:\n${text}`);
  let errors = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0);
  const socket =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
      text,
    );
  if (socket) errors += socket.slice(1).reduce((sum, n) => sum + Number(n), 0);
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? 0);
  return {
    rps: Number(rps[1]),
    p99: toMs(p99[1]!, p99[2]!),
    errors,
    requests,
    cpuUs: NaN,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

// Deno asks for --allow-all to read /proc/PID/*, so a subprocess does it.
async function procStatus(pid: number, field: string): Promise<number> {
  const text = await run("cat", [`/proc/${pid}/status`]);
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return match ? Number(match[1]) * 1024 : NaN;
}

// User plus system CPU time of a process, in milliseconds (from
// /proc/PID/stat, in clock ticks of 1/100 s on Linux).
async function cpuMs(pid: number): Promise<number> {
  const text = await run("cat", [`/proc/${pid}/stat`]);
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

// Writing 5 to clear_refs resets VmHWM (Linux 4.0+), so each transfer gets
// its own peak. Without it the peak is the process's lifetime peak.
async function resetPeak(pid: number): Promise<boolean> {
  try {
    await run("sh", ["-c", `echo 5 > /proc/${Number(pid)}/clear_refs`]);
    return true;
  } catch {
    return false;
  }
}

interface Transfer {
  mibps: number;
  /** RSS when the transfer starts (after the load test the heap has grown). */
  startRss: number;
  peakRss: number;
  ok: boolean;
  note: string;
}

async function transfer(
  url: string,
  direction: "upload" | "download",
  size: number,
  file: string,
  pid: number,
  pin: string | undefined,
): Promise<Transfer> {
  const fresh = await resetPeak(pid);
  const startRss = await procStatus(pid, "VmRSS");
  const maxTime = String(Math.ceil(size / (5 * 1024 * 1024)) + 60);
  const args = [
    "-sS",
    "--max-time",
    maxTime,
    "-w",
    "\n%{http_code} %{time_total} %{size_upload} %{size_download}",
    ...(direction === "upload"
      ? ["-o", "-", "-X", "POST", "-H", "Expect:", "-T", file, `${url}/upload`]
      : ["-o", "/dev/null", `${url}/download?bytes=${size}`]),
  ];
  const curl = which("curl");
  const out = await run(
    pin ? which("taskset") : curl,
    pin ? ["-c", pin, curl, ...args] : args,
  );
  const lines = out.trim().split("\n");
  const [code, time, up, down] = lines.at(-1)!.split(" ");
  const moved = Number(direction === "upload" ? up : down);
  let ok = code === "200" && moved === size;
  if (direction === "upload" && lines[0]?.trim() !== String(size)) ok = false;
  return {
    mibps: size / 1024 ** 2 / Number(time),
    startRss,
    peakRss: await procStatus(pid, "VmHWM"),
    ok,
    note: `${code}${ok ? "" : ` moved ${moved} answer ${lines[0]}`}${
      fresh ? "" : " (lifetime peak)"
    }`,
  };
}

const mib = (bytes: number) => (bytes / 1024 ** 2).toFixed(1);
const ratio = (
  value: number,
  base: number,
) => (base > 0 ? (value / base).toFixed(2) + "x" : "-");

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) =>
    Math.max(...rows.map((row) => row[i]!.length))
  );
  return rows.map((row) =>
    row.map((cell, i) =>
      i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)
    ).join("  ")
  )
    .join("\n");
}

async function main(options: Options): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "nginx-bench-" });
  const cores = navigator.hardwareConcurrency;
  const pin = options.pin && cores >= 2;
  // Backends share the last core (only one is loaded at a time); nginx and
  // wrk/curl share core 0.
  const backendCpu = pin ? String(cores - 1) : undefined;
  const frontCpu = pin ? "0" : undefined;
  const children: Child[] = [];
  const stopAll = async () => {
    for (const child of children.reverse()) await child.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  const onSignal = () => {
    stopAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  try {
    const self = new URL(import.meta.url).pathname;
    const denoArgs = (kind: string, where: string) => [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      self,
      "--serve",
      kind,
      where,
    ];
    const upstreams: Record<string, string> = {};
    const pids: Record<string, number> = {};
    for (const backend of options.backends) {
      let child: Child;
      let addr: { port: number } | { path: string };
      if (backend === "uwsgi") {
        await Deno.writeTextFile(`${dir}/hello_app.py`, WSGI_APP);
        const port = freePort();
        addr = { port };
        // No master: one process that is the worker, so its PID is the one
        // whose memory counts.
        child = spawn(
          "uwsgi",
          which("uwsgi"),
          [
            "--plugin",
            "python3",
            "--scgi-socket",
            `127.0.0.1:${port}`,
            "--wsgi-file",
            `${dir}/hello_app.py`,
            "--processes",
            "1",
            "--die-on-term",
            "--disable-logging",
            "--listen",
            "1024",
          ],
          backendCpu,
          dir,
        );
        upstreams.uwsgi = `127.0.0.1:${port}`;
      } else if (backend === "scgi-unix") {
        const path = `${dir}/scgi.sock`;
        addr = { path };
        child = spawn(
          backend,
          Deno.execPath(),
          denoArgs(backend, path),
          backendCpu,
          dir,
        );
        upstreams[backend] = `unix:${path}`;
      } else {
        const port = freePort();
        addr = { port };
        child = spawn(
          backend,
          Deno.execPath(),
          denoArgs(backend, String(port)),
          backendCpu,
          dir,
        );
        upstreams[backend] = `127.0.0.1:${port}`;
      }
      children.push(child);
      await waitListening(addr, child);
      pids[backend] = child.pid;
    }
    const nginxPort = freePort();
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      nginxConf(dir, nginxPort, upstreams),
    );
    const nginx = spawn(
      "nginx",
      which("nginx"),
      ["-c", `${dir}/nginx.conf`, "-p", dir, "-e", `${dir}/nginx-error.log`],
      frontCpu,
      dir,
    );
    children.push(nginx);
    await waitListening({ port: nginxPort }, nginx);
    const base = (backend: string) =>
      `http://127.0.0.1:${nginxPort}/${backend}`;

    for (const backend of options.backends) {
      const response = await fetch(`${base(backend)}/hello`);
      const text = await response.text();
      if (response.status !== 200 || text !== HELLO) {
        throw new Error(
          `${backend} through nginx answered ${response.status} ${
            JSON.stringify(text)
          }`,
        );
      }
    }

    const versions = {
      deno: Deno.version.deno,
      nginx: await new Deno.Command(which("nginx"), {
        args: ["-v"],
        stderr: "piped",
      }).output().then((o) => new TextDecoder().decode(o.stderr).trim()),
      uwsgi: (await run(which("uwsgi"), ["--version"])).trim(),
      wrk: await new Deno.Command(which("wrk"), {
        args: ["-v"],
        stdout: "piped",
        stderr: "piped",
      }).output().then((o) =>
        new TextDecoder().decode(o.stdout).split("\n")[0]!.trim()
      ),
    };
    console.log(`# nginx bench ${new Date().toISOString()}`);
    console.log(
      `deno ${versions.deno}, ${versions.nginx}, uwsgi ${versions.uwsgi}, ${versions.wrk}; ${cores} cores; ` +
        (pin
          ? `backends pinned to CPU ${backendCpu}, nginx (1 worker) and wrk/curl to CPU ${frontCpu}`
          : "no CPU pinning"),
    );
    console.log(
      `load: ${options.rounds} rounds x ${options.duration}s per backend and concurrency, wrk -t${options.wrkThreads}, medians`,
    );
    const idle: Record<string, number> = {};
    for (const backend of options.backends) {
      idle[backend] = await procStatus(pids[backend]!, "VmRSS");
    }

    if (!options.skipLoad) {
      const results: Record<string, Record<number, WrkResult[]>> = {};
      for (let round = 1; round <= options.rounds; round++) {
        for (const c of options.concurrency) {
          for (const backend of options.backends) {
            const wrkArgs = [
              `-t${Math.min(options.wrkThreads, c)}`,
              `-c${c}`,
              `-d${options.duration}s`,
              "--latency",
              `${base(backend)}/hello`,
            ];
            const cpuBefore = await cpuMs(pids[backend]!);
            const out = await run(
              frontCpu ? which("taskset") : which("wrk"),
              frontCpu ? ["-c", frontCpu, which("wrk"), ...wrkArgs] : wrkArgs,
            );
            const cpuUsed = await cpuMs(pids[backend]!) - cpuBefore;
            const result = parseWrk(out);
            if (result.requests > 0) {
              result.cpuUs = cpuUsed * 1000 / result.requests;
            }
            ((results[backend] ??= {})[c] ??= []).push(result);
            console.error(
              `round ${round} c=${c} ${backend}: ${
                result.rps.toFixed(0)
              } req/s, p99 ${result.p99.toFixed(2)} ms, backend CPU ${
                result.cpuUs.toFixed(0)
              } us/req` +
                (result.errors ? `, ${result.errors} errors` : ""),
            );
          }
        }
      }
      const rows = [[
        "backend",
        "conc",
        "req/s",
        "p99 ms",
        "req/s vs http",
        "p99 vs http",
        "backend CPU us/req",
        "errors",
      ]];
      for (const c of options.concurrency) {
        const baseRps = median(results[BASELINE]![c]!.map((r) => r.rps));
        const baseP99 = median(results[BASELINE]![c]!.map((r) => r.p99));
        for (const backend of options.backends) {
          const runs = results[backend]![c]!;
          const rps = median(runs.map((r) => r.rps));
          const p99 = median(runs.map((r) => r.p99));
          rows.push([
            backend,
            String(c),
            rps.toFixed(0),
            p99.toFixed(2),
            ratio(rps, baseRps),
            ratio(p99, baseP99),
            median(runs.map((r) => r.cpuUs)).toFixed(0),
            String(runs.reduce((sum, r) => sum + r.errors, 0)),
          ]);
        }
      }
      console.log("\n## GET /hello through nginx (wrk)\n");
      console.log(table(rows));
    }

    if (!options.skipTransfer) {
      const file = `${dir}/upload.bin`;
      // A sparse file: curl reads zeros without touching the disk.
      const handle = await Deno.open(file, { create: true, write: true });
      await handle.truncate(options.size);
      handle.close();
      const transfers: Record<string, { up: Transfer; down: Transfer }> = {};
      for (const backend of options.backends) {
        const pid = pids[backend]!;
        const up = await transfer(
          base(backend),
          "upload",
          options.size,
          file,
          pid,
          frontCpu,
        );
        const down = await transfer(
          base(backend),
          "download",
          options.size,
          file,
          pid,
          frontCpu,
        );
        transfers[backend] = { up, down };
        console.error(
          `${backend}: upload ${up.mibps.toFixed(0)} MiB/s peak ${
            mib(up.peakRss)
          } MiB ${up.note}; ` +
            `download ${down.mibps.toFixed(0)} MiB/s peak ${
              mib(down.peakRss)
            } MiB ${down.note}`,
        );
      }
      const b = transfers[BASELINE]!;
      const rows = [[
        "backend",
        "idle RSS",
        "up MiB/s",
        "up RSS start/peak",
        "down MiB/s",
        "down RSS start/peak",
        "up vs http",
        "down vs http",
        "ok",
      ]];
      for (const backend of options.backends) {
        const { up, down } = transfers[backend]!;
        rows.push([
          backend,
          mib(idle[backend]!),
          up.mibps.toFixed(0),
          `${mib(up.startRss)}/${mib(up.peakRss)}`,
          down.mibps.toFixed(0),
          `${mib(down.startRss)}/${mib(down.peakRss)}`,
          ratio(up.mibps, b.up.mibps),
          ratio(down.mibps, b.down.mibps),
          up.ok && down.ok ? "yes" : `NO (${up.note}; ${down.note})`,
        ]);
      }
      console.log(
        `\n## ${
          mib(options.size)
        } MiB upload and download through nginx (curl); RSS in MiB\n`,
      );
      console.log(table(rows));
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    await stopAll();
  }
}

if (import.meta.main) {
  const args = Deno.args;
  if (args[0] === "--serve") {
    runBackend(args[1] ?? "", args[2] ?? "");
  } else {
    await main(parseOptions(args));
  }
}
