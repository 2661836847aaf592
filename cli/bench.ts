/**
 * `scgi bench`: an SCGI load generator (wrk speaks only HTTP). Each request
 * is encoded once; a request is a raw connect, one write, and reads until
 * EOF that count bytes and look only at the status. No `Request` or
 * `Response` objects, so the generator stays far cheaper than the server.
 *
 * @module
 */

import { cgiFromRequest } from "../codec/cgi_request.ts";
import { encodeRequestHead } from "../codec/header_encoder.ts";
import {
  CliError,
  duration,
  err,
  integer,
  noMore,
  out,
  parse,
  scgiTarget,
  UsageError,
  writeAll,
} from "./_args.ts";

/** The help text of `scgi bench`. */
export const HELP = `Usage: scgi bench [options] URL

Load-tests an SCGI backend: CONNECTIONS loops, each sending one request per
connection (SCGI has no keep-alive) for DURATION or until REQUESTS are done.
Prints requests/s, transfer rate, statuses, errors by kind and latency
percentiles; live progress on stderr when it is a terminal.

Options:
  -c, --connections N    concurrent connections (default 10)
  -d, --duration S       how long to run: 10, 10s, 500ms, 1m (default 10s)
  -n, --requests N       run exactly N requests instead of a duration
  -m, --method METHOD    request method (default GET, POST with --body)
  -H, --header 'N: V'    add a request header (repeatable)
      --body FILE        send FILE as every request's body
      --timeout S        a request that takes longer counts as a timeout
                         error (default 10)
      --json             print the results as JSON
  -h, --help             show this help

Exit status: 0 when at least one request got a response, 1 when none did,
2 bad arguments.

Examples:
  scgi bench scgi://127.0.0.1:4000/
  scgi bench -c 32 -d 30s scgi://127.0.0.1:4000/api/items
  scgi bench -n 1000 -m POST --body payload.json --json scgi://127.0.0.1:4000/upload
`;

/** The results of a run, as `--json` prints them. */
export interface BenchResult {
  url: string;
  connections: number;
  seconds: number;
  requests: number;
  requestsPerSecond: number;
  bytes: number;
  bytesPerSecond: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
  latencyMs: {
    p50: number;
    p90: number;
    p99: number;
    max: number;
    mean: number;
  };
}

/** Runs `scgi bench` with its arguments; resolves to the exit status. */
export async function bench(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    connections: { type: "string", short: "c" },
    duration: { type: "string", short: "d" },
    requests: { type: "string", short: "n" },
    method: { type: "string", short: "m" },
    header: { type: "string", short: "H", multiple: true },
    body: { type: "string" },
    timeout: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    await out(HELP);
    return 0;
  }
  noMore(positionals, 1);
  const url = scgiTarget(positionals[0]);
  if (values.duration !== undefined && values.requests !== undefined) {
    throw new UsageError("give either --duration or --requests, not both");
  }
  const connections = values.connections !== undefined
    ? integer("--connections", values.connections, 1, 10_000)
    : 10;
  const limit = values.requests !== undefined
    ? integer("--requests", values.requests, 1)
    : Infinity;
  const runFor = values.requests !== undefined
    ? Infinity
    : duration("--duration", values.duration ?? "10s");
  const timeout = duration("--timeout", values.timeout ?? "10");
  const headers = new Headers();
  for (const line of values.header ?? []) {
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new UsageError(
        `header ${JSON.stringify(line)} is not 'Name: value'`,
      );
    }
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  let body = new Uint8Array(0);
  if (values.body !== undefined) {
    try {
      body = await Deno.readFile(values.body);
    } catch (error) {
      throw new CliError(
        `cannot read ${values.body}: ${(error as Error).message}`,
      );
    }
  }
  const method = values.method ?? (values.body !== undefined ? "POST" : "GET");

  // The request bytes, built once, as the client would build them.
  const unix = url.protocol === "scgi+unix:";
  const target: Deno.ConnectOptions | Deno.UnixConnectOptions = unix
    ? { transport: "unix", path: decodeURIComponent(url.hostname) }
    : {
      hostname: url.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1",
      port: url.port ? Number(url.port) : 4000,
    };
  const httpUrl = new URL(url.pathname + url.search, "http://localhost");
  if (!unix) httpUrl.host = url.host;
  let env: [string, string][];
  try {
    env = cgiFromRequest(new Request(httpUrl, { method, headers }), {
      serverPort: unix ? 80 : (target as Deno.ConnectOptions).port,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const head = encodeRequestHead(env, body.length);
  const wire = new Uint8Array(head.length + body.length);
  wire.set(head);
  wire.set(body, head.length);

  const stats = new Stats();
  const started = performance.now();
  const stopAt = started + runFor;
  let issued = 0;
  // One slot per connection loop, made once: the sweeper closes a request
  // that takes too long. (Not a Map of live connections: a long-lived
  // collection of young objects makes V8 keep them, and what they reach,
  // through every scavenge.)
  const slots: Slot[] = Array.from(
    { length: connections },
    () => ({ conn: undefined, since: 0, timedOut: false }),
  );
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const slot of slots) {
      if (slot.conn && now - slot.since > timeout) {
        slot.timedOut = true;
        try {
          slot.conn.close();
        } catch {
          // Finished meanwhile.
        }
        slot.conn = undefined;
      }
    }
  }, Math.min(250, timeout));
  const tty = Deno.stderr.isTerminal();
  const progress = tty
    ? setInterval(() => {
      const elapsed = (performance.now() - started) / 1000;
      const errors = stats.errorCount();
      err(
        `\r\x1b[K  ${elapsed.toFixed(0)}s  ${stats.count} requests  ${
          (stats.count / elapsed).toFixed(0)
        } req/s  ${errors} errors`,
      ).catch(() => {});
    }, 1000)
    : undefined;

  const buffer = () => new Uint8Array(65536);
  const loop = async (_: unknown, index: number) => {
    const buf = buffer();
    const slot = slots[index]!;
    while (issued < limit && performance.now() < stopAt) {
      issued++;
      await once(target, wire, buf, stats, slot);
    }
  };
  const header = `Benchmarking ${url.href} with ${connections} connection${
    connections === 1 ? "" : "s"
  } ${
    Number.isFinite(limit)
      ? `for ${limit} requests`
      : `for ${(runFor / 1000).toFixed(runFor % 1000 ? 1 : 0)}s`
  }`;
  if (!values.json) await out(header + "\n");
  try {
    await Promise.all(Array.from({ length: connections }, loop));
  } finally {
    clearInterval(sweeper);
    clearInterval(progress);
    if (tty) await err("\r\x1b[K");
  }
  const seconds = (performance.now() - started) / 1000;
  const result = stats.result(url.href, connections, seconds);
  await out(values.json ? JSON.stringify(result) + "\n" : report(result));
  if (result.requests === 0) {
    const [kind, count] = Object.entries(result.errors)[0] ?? ["", 0];
    throw new CliError(
      `no request got a response${kind ? ` (${kind}: ${count})` : ""}`,
    );
  }
  return 0;
}

class Stats {
  count = 0;
  bytes = 0;
  latencies: number[] = [];
  statuses = new Map<number, number>();
  errors = new Map<string, number>();

  error(kind: string): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }

  errorCount(): number {
    let total = 0;
    for (const n of this.errors.values()) total += n;
    return total;
  }

  result(url: string, connections: number, seconds: number): BenchResult {
    const sorted = Float64Array.from(this.latencies).sort();
    const at = (q: number) =>
      sorted.length === 0 ? 0 : round(
        sorted[
          Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)
        ]!,
      );
    let sum = 0;
    for (const value of sorted) sum += value;
    return {
      url,
      connections,
      seconds: round(seconds),
      requests: this.count,
      requestsPerSecond: round(this.count / seconds),
      bytes: this.bytes,
      bytesPerSecond: Math.round(this.bytes / seconds),
      statuses: Object.fromEntries(
        [...this.statuses].sort(([a], [b]) => a - b).map((
          [status, n],
        ) => [String(status), n]),
      ),
      errors: Object.fromEntries(this.errors),
      latencyMs: {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: sorted.length ? round(sorted[sorted.length - 1]!) : 0,
        mean: sorted.length ? round(sum / sorted.length) : 0,
      },
    };
  }
}

const round = (n: number) => Math.round(n * 100) / 100;

interface Slot {
  conn: Deno.Conn | undefined;
  since: number;
  timedOut: boolean;
}

// One request: connect, write, read to EOF. Only the status is parsed.
async function once(
  target: Deno.ConnectOptions | Deno.UnixConnectOptions,
  wire: Uint8Array,
  buf: Uint8Array,
  stats: Stats,
  slot: Slot,
): Promise<void> {
  const start = performance.now();
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect(target as Deno.ConnectOptions);
  } catch (error) {
    stats.error(
      error instanceof Deno.errors.ConnectionRefused ||
        error instanceof Deno.errors.NotFound
        ? "connection refused"
        : `connect: ${(error as Error).name}`,
    );
    // Don't spin on a dead backend.
    await new Promise((resolve) => setTimeout(resolve, 10));
    return;
  }
  slot.conn = conn;
  slot.since = start;
  slot.timedOut = false;
  let received = 0;
  let status = 0;
  let head: Uint8Array | undefined;
  try {
    await writeAll(conn, wire);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      if (status === 0) {
        // Usually the whole head comes in the first read: no copy then.
        head = head ? concat(head, buf.subarray(0, n)) : buf.subarray(0, n);
        status = parseStatus(head);
        head = status === 0 ? head.slice() : undefined;
      }
      received += n;
    }
  } catch (error) {
    slot.conn = undefined;
    stats.error(
      slot.timedOut
        ? "timeout"
        : error instanceof Deno.errors.ConnectionReset ||
            error instanceof Deno.errors.BrokenPipe
        ? "connection reset"
        : `read: ${(error as Error).name}`,
    );
    try {
      conn.close();
    } catch {
      // Closed by the sweeper.
    }
    return;
  }
  slot.conn = undefined;
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  if (received === 0) {
    stats.error("closed without answer");
    return;
  }
  if (status <= 0) {
    stats.error("malformed response");
    return;
  }
  stats.count++;
  stats.bytes += received;
  stats.latencies.push(performance.now() - start);
  stats.statuses.set(status, (stats.statuses.get(status) ?? 0) + 1);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const LF = 0x0a;

/**
 * The status of a CGI response head: 0 while the head is incomplete, -1
 * when it is not a response. `Status:` anywhere in the head, an NPH first
 * line (`HTTP/1.1 200 OK`), `Location` alone means 302, else 200.
 */
export function parseStatus(bytes: Uint8Array): number {
  let start = 0;
  let location = false;
  let first = true;
  while (true) {
    const end = bytes.indexOf(LF, start);
    if (end < 0) return bytes.length > 65536 ? -1 : 0;
    let lineEnd = end;
    if (lineEnd > start && bytes[lineEnd - 1] === 0x0d) lineEnd--;
    if (lineEnd === start) return first ? -1 : location ? 302 : 200;
    const line = ascii(bytes, start, Math.min(lineEnd, start + 64));
    if (first && line.startsWith("HTTP/")) {
      const code = Number(line.slice(9, 12));
      return code >= 100 && code <= 599 ? code : -1;
    }
    first = false;
    const lower = line.toLowerCase();
    if (lower.startsWith("status:")) {
      const code = Number(lower.slice(7).trim().slice(0, 3));
      return code >= 100 && code <= 599 ? code : -1;
    }
    if (lower.startsWith("location:")) location = true;
    else if (!lower.includes(":")) return -1;
    start = end + 1;
  }
}

function ascii(bytes: Uint8Array, start: number, end: number): string {
  let text = "";
  for (let i = start; i < end; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

function report(result: BenchResult): string {
  const rate = (n: number) =>
    n >= 1e9
      ? `${(n / 1e9).toFixed(2)} GB`
      : n >= 1e6
      ? `${(n / 1e6).toFixed(2)} MB`
      : n >= 1e3
      ? `${(n / 1e3).toFixed(2)} kB`
      : `${n} B`;
  const { latencyMs: l } = result;
  const statuses = Object.entries(result.statuses).map(([s, n]) => `${s}: ${n}`)
    .join(", ");
  const errors = Object.entries(result.errors).map(([k, n]) => `${k}: ${n}`)
    .join(", ");
  return [
    `  requests    ${result.requests} in ${result.seconds}s, ${result.requestsPerSecond} req/s`,
    `  transfer    ${rate(result.bytes)}, ${rate(result.bytesPerSecond)}/s`,
    `  latency     p50 ${l.p50} ms, p90 ${l.p90} ms, p99 ${l.p99} ms, max ${l.max} ms (mean ${l.mean} ms)`,
    `  statuses    ${statuses || "none"}`,
    `  errors      ${errors || "none"}`,
    "",
  ].join("\n");
}
