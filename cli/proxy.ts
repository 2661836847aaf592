/**
 * `scgi proxy`: an HTTP server (`Deno.serve`) in front of SCGI backends,
 * using the gateway of `gateway.ts`, with an access log on stdout.
 *
 * @module
 */

import { parseBackend, scgiProxy } from "../gateway.ts";
import { accessLog } from "../middleware/access_log.ts";
import {
  CliError,
  duration,
  integer,
  noMore,
  onStopSignal,
  out,
  parse,
  UsageError,
} from "./_args.ts";

/** The help text of `scgi proxy`. */
export const HELP =
  `Usage: scgi proxy --backend ADDR [--backend ADDR ...] [options]

An HTTP server in front of SCGI backends, as nginx's scgi_pass would be: the
requests under --mount go to the backends (round robin; one that refuses
connections or doesn't accept within --connect-timeout is skipped for
--retry-interval and the request goes to the next), the rest get 404. A
client that leaves before the answer ends its backend call at once. One
access log line per request on stdout (common log format, or JSON lines with
--json). SIGINT/SIGTERM stop it gracefully.

Options:
  -l, --listen [HOST:]PORT   where to listen for HTTP (default 8000)
      --hostname HOST        address to listen on (default 127.0.0.1)
  -b, --backend ADDR         an SCGI backend: HOST:PORT, [V6]:PORT,
                             unix:/PATH.sock or scgi://HOST:PORT (repeatable)
      --mount PREFIX         path prefix sent as SCRIPT_NAME (default /)
      --max-concurrent N     requests in flight per backend; more wait up to
                             --queue-timeout, then get 503 (default no limit)
      --queue-timeout S      (default 10)
      --retry-interval S     how long a backend that refused or timed out
                             connecting is skipped (default 5)
      --connect-timeout S    how long a backend may take to accept before
                             the next one is tried (default 10)
      --timeout S            504 when a backend sends no head (default 60)
      --json                 access log as JSON lines
  -q, --quiet                no access log
  -h, --help                 show this help

Answers of its own: 502 backend refused or sent a malformed response, 504
backend too slow, 503 every backend busy, 404 outside --mount. Logged 499
(as nginx does): the client left before the answer.

Examples:
  scgi proxy --listen 8000 --backend 127.0.0.1:4000
  scgi proxy --listen 8080 --mount /app -b 127.0.0.1:4000 -b 127.0.0.1:4001
  scgi proxy --listen 127.0.0.1:8000 --backend unix:/run/app/scgi.sock

Least permissions (see docs/cli.md):
  deno run --allow-net=127.0.0.1:8000,127.0.0.1:4000 cli.ts proxy \\
    --listen 8000 --backend 127.0.0.1:4000
`;

/** Runs `scgi proxy` with its arguments; resolves to the exit status. */
export async function proxy(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    listen: { type: "string", short: "l" },
    hostname: { type: "string" },
    backend: { type: "string", short: "b", multiple: true },
    mount: { type: "string" },
    "max-concurrent": { type: "string" },
    "queue-timeout": { type: "string" },
    "retry-interval": { type: "string" },
    "connect-timeout": { type: "string" },
    timeout: { type: "string" },
    json: { type: "boolean" },
    quiet: { type: "boolean", short: "q" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    await out(HELP);
    return 0;
  }
  noMore(positionals, 0);
  if (!values.backend || values.backend.length === 0) {
    throw new UsageError("give at least one --backend HOST:PORT or unix:PATH");
  }
  const backends = values.backend.map((spec) => {
    try {
      return parseBackend(spec);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  });
  let hostname = values.hostname ?? "127.0.0.1";
  let port = 8000;
  if (values.listen !== undefined) {
    const match = /^(?:\[([^\]]+)\]:|([^:]+):)?([0-9]+)$/.exec(values.listen);
    if (!match) {
      throw new UsageError(
        `--listen must be PORT or HOST:PORT, not ${
          JSON.stringify(values.listen)
        }`,
      );
    }
    if (match[1] ?? match[2]) {
      if (values.hostname !== undefined) {
        throw new UsageError(
          "give the host in --listen or --hostname, not both",
        );
      }
      hostname = (match[1] ?? match[2])!;
    }
    port = integer("--listen port", match[3]!, 0, 65535);
  }
  const mount = values.mount ?? "/";
  if (!mount.startsWith("/")) {
    throw new UsageError(
      `--mount must start with /, not ${JSON.stringify(mount)}`,
    );
  }
  const seconds = (name: string, text: string | undefined) =>
    text === undefined ? undefined : duration(name, text);
  const maxConcurrent = values["max-concurrent"] !== undefined
    ? integer("--max-concurrent", values["max-concurrent"], 1)
    : undefined;
  const queueTimeout = seconds("--queue-timeout", values["queue-timeout"]);
  const retryInterval = seconds("--retry-interval", values["retry-interval"]);
  const connectTimeout = seconds(
    "--connect-timeout",
    values["connect-timeout"],
  );
  const headTimeout = seconds("--timeout", values.timeout);

  // The access log middleware, as any app would use it: CLF or JSON lines on
  // stdout, written when each body ends, never holding a response back.
  const log = values.quiet
    ? undefined
    : accessLog({ format: values.json ? "json" : "common" });
  const proxied = (request: Request, info: Deno.ServeHandlerInfo) =>
    handler(request, info);
  const server = listening(`${hostname}:${port}`, () =>
    Deno.serve({
      hostname,
      port,
      onListen: (addr) => {
        const host = addr.hostname.includes(":")
          ? `[${addr.hostname}]`
          : addr.hostname;
        console.error(
          `Listening on http://${host}:${addr.port}${
            mount === "/" ? "/" : mount.replace(/\/*$/, "/")
          } -> ${values.backend!.join(", ")}`,
        );
      },
    }, log ? log(proxied) : proxied));
  // SERVER_PORT is the port this front end listens on, as nginx sends it.
  const handler = scgiProxy({
    backends,
    mount,
    serverPort: server.addr.port,
    ...(maxConcurrent !== undefined ? { maxConcurrent } : {}),
    ...(queueTimeout !== undefined ? { queueTimeout } : {}),
    ...(retryInterval !== undefined ? { retryInterval } : {}),
    ...(connectTimeout !== undefined ? { connectTimeout } : {}),
    ...(headTimeout !== undefined ? { headTimeout } : {}),
  });
  const removeSignals = onStopSignal(() => server.shutdown());
  try {
    await server.finished;
    await log?.flush();
  } finally {
    removeSignals();
  }
  return 0;
}

// A listen failure (port in use, no permission) in one clear line.
function listening<T>(where: string, listen: () => T): T {
  try {
    return listen();
  } catch (error) {
    throw new CliError(
      `cannot listen on ${where}: ${(error as Error).message}`,
    );
  }
}
