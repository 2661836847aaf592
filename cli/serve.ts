/**
 * `scgi serve`: serves a module's default export over SCGI, the way
 * `deno serve` serves it over HTTP; with `--workers N`, in N processes that
 * share the port.
 *
 * @module
 */

import { dirname, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { type ScgiHandler, scgiUrl, serve as scgiServe } from "../server.ts";
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

/** The help text of `scgi serve`. */
export const HELP = `Usage: scgi serve [options] APP.ts

Serves APP.ts over SCGI. APP.ts default-exports an object with a fetch
method (the 'deno serve' convention, a Hono app) or a handler function
(request, info) => Response. SIGINT/SIGTERM stop it gracefully.

Options:
  -p, --port N             TCP port (default 4000)
      --hostname HOST      address to listen on (default 127.0.0.1: SCGI
                           trusts its front end, keep it private)
  -s, --socket PATH        listen on a Unix socket instead of TCP
      --socket-mode MODE   octal file mode of the socket (e.g. 660)
  -w, --workers N          run N worker processes sharing the TCP port
                           (SO_REUSEPORT; Linux); a worker that dies is
                           restarted
      --reuse-port         listen with SO_REUSEPORT (needs --unstable-net;
                           --workers passes it to each worker)
      --shutdown-timeout S seconds a graceful stop waits for requests
                           (default 30)
  -h, --help               show this help

Examples:
  scgi serve app.ts
  scgi serve app.ts --port 4001 --hostname 127.0.0.1
  scgi serve app.ts --socket /run/app/scgi.sock --socket-mode 660
  scgi serve app.ts --port 4000 --workers 4

Least permissions (see docs/cli.md):
  deno run --allow-net=127.0.0.1:4000 --allow-read=. cli.ts serve app.ts
`;

/** Runs `scgi serve` with its arguments; resolves to the exit status. */
export async function serve(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    port: { type: "string", short: "p" },
    hostname: { type: "string" },
    socket: { type: "string", short: "s" },
    "socket-mode": { type: "string" },
    workers: { type: "string", short: "w" },
    "reuse-port": { type: "boolean" },
    "shutdown-timeout": { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    await out(HELP);
    return 0;
  }
  noMore(positionals, 1);
  const app = positionals[0];
  if (app === undefined) throw new UsageError("missing the app module");
  if (values.socket !== undefined && values.port !== undefined) {
    throw new UsageError("give either --port or --socket, not both");
  }
  const port = values.port !== undefined
    ? integer("--port", values.port, 0, 65535)
    : 4000;
  const hostname = values.hostname ?? "127.0.0.1";
  let socketMode: number | undefined;
  if (values["socket-mode"] !== undefined) {
    if (!/^[0-7]{3,4}$/.test(values["socket-mode"])) {
      throw new UsageError(
        `--socket-mode must be octal like 660, not ${
          JSON.stringify(values["socket-mode"])
        }`,
      );
    }
    socketMode = parseInt(values["socket-mode"], 8);
  }
  const shutdownTimeout = values["shutdown-timeout"] !== undefined
    ? duration("--shutdown-timeout", values["shutdown-timeout"])
    : undefined;
  const appPath = resolve(app);

  if (values.workers !== undefined) {
    const workers = integer("--workers", values.workers, 1, 256);
    if (values.socket !== undefined) {
      throw new UsageError(
        "--workers shares a TCP port; with a Unix socket run one 'scgi serve' per socket",
      );
    }
    if (port === 0) {
      throw new UsageError("--workers needs a --port other than 0");
    }
    return await supervise(
      workers,
      appPath,
      port,
      hostname,
      values["shutdown-timeout"],
    );
  }

  const handler = await loadHandler(appPath);
  let server;
  try {
    server = scgiServe({
      ...(values.socket !== undefined
        ? { path: resolve(values.socket) }
        : { port, hostname }),
      ...(socketMode !== undefined ? { socketMode } : {}),
      ...(values["reuse-port"] ? { reusePort: true } : {}),
      ...(shutdownTimeout !== undefined ? { shutdownTimeout } : {}),
      onListen: (addr) =>
        console.error(`Listening on ${scgiUrl(addr)} (pid ${Deno.pid})`),
    }, handler);
  } catch (error) {
    throw new CliError(
      `cannot listen on ${values.socket ?? `${hostname}:${port}`}: ${
        (error as Error).message
      }`,
    );
  }
  const removeSignals = onStopSignal(() => server.shutdown());
  try {
    await server.finished;
  } finally {
    removeSignals();
  }
  return 0;
}

/** Imports the app module and finds its handler. */
async function loadHandler(path: string): Promise<ScgiHandler> {
  try {
    await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new CliError(`${path} does not exist`);
    }
    throw error;
  }
  let module: { default?: unknown };
  try {
    module = await import(pathToFileURL(path).href);
  } catch (error) {
    throw new CliError(
      `cannot load ${path}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
  const app = module.default;
  if (typeof app === "function") return app as ScgiHandler;
  if (
    app && typeof app === "object" && "fetch" in app &&
    typeof app.fetch === "function"
  ) {
    return (app.fetch as ScgiHandler).bind(app);
  }
  throw new CliError(
    `${path} has no default export with a fetch method or handler function`,
  );
}

/**
 * Runs `workers` processes of `scgi serve --reuse-port` (see
 * {@linkcode workerFlags} for their permissions), restarts one that dies,
 * and on SIGINT/SIGTERM stops them all gracefully.
 */
async function supervise(
  workers: number,
  appPath: string,
  port: number,
  hostname: string,
  shutdownTimeout: string | undefined,
): Promise<number> {
  const args = [
    "run",
    ...workerFlags(appPath, hostname, port),
    new URL("../cli.ts", import.meta.url).href,
    "serve",
    appPath,
    "--port",
    String(port),
    "--hostname",
    hostname,
    "--reuse-port",
    ...(shutdownTimeout !== undefined
      ? ["--shutdown-timeout", shutdownTimeout]
      : []),
  ];
  const exec = Deno.execPath();
  let stopping = false;
  const children = new Map<number, Deno.ChildProcess>();
  const exits: Promise<void>[] = [];
  const allDone = Promise.withResolvers<void>();
  let running = 0;

  const start = (slot: number) => {
    const child = new Deno.Command(exec, {
      args,
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const started = Date.now();
    children.set(slot, child);
    running++;
    console.error(`worker ${slot} pid ${child.pid} started`);
    exits.push(child.status.then(async (status) => {
      running--;
      if (stopping) {
        if (running === 0) allDone.resolve();
        return;
      }
      console.error(
        `worker ${slot} pid ${child.pid} exited (${
          status.signal ? `signal ${status.signal}` : `status ${status.code}`
        }); restarting`,
      );
      // One that dies at once (a broken app, a busy port) is retried
      // slowly, not in a tight loop.
      if (Date.now() - started < 1000) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      if (!stopping) start(slot);
      else if (running === 0) allDone.resolve();
    }));
  };

  for (let slot = 1; slot <= workers; slot++) start(slot);
  console.error(
    `Serving ${appPath} on scgi://${
      hostname.includes(":") ? `[${hostname}]` : hostname
    }:${port}/ with ${workers} workers (pid ${Deno.pid})`,
  );
  const removeSignals = onStopSignal(() => {
    stopping = true;
    for (const child of children.values()) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
    }
  });
  try {
    await allDone.promise;
  } finally {
    removeSignals();
  }
  await Promise.all(exits);
  return 0;
}

const KINDS = ["read", "write", "net", "env", "sys", "run", "ffi"] as const;

/**
 * The flags of a worker: `--unstable-net`, every permission this process
 * holds in full, and for those it holds only in part, the scopes a worker
 * needs (the port, the app's folder). Deno can't list a partial grant, and
 * forbids reading /proc/self/cmdline without --allow-all, so this is as
 * close as a copy of the command line gets.
 */
function workerFlags(
  appPath: string,
  hostname: string,
  port: number,
): string[] {
  const flags = ["--unstable-net"];
  for (const name of KINDS) {
    if (Deno.permissions.querySync({ name }).state === "granted") {
      flags.push(`--allow-${name}`);
      continue;
    }
    if (name === "net") {
      const host = `${
        hostname.includes(":") ? `[${hostname}]` : hostname
      }:${port}`;
      if (Deno.permissions.querySync({ name, host }).state !== "granted") {
        throw new CliError(`--workers needs --allow-net=${host}`);
      }
      flags.push(`--allow-net=${host}`);
    } else if (name === "read") {
      const folder = dirname(appPath);
      if (
        Deno.permissions.querySync({ name, path: folder }).state !== "granted"
      ) {
        throw new CliError(
          `--workers needs --allow-read=${folder} (the app's folder)`,
        );
      }
      flags.push(`--allow-read=${folder}`);
    }
  }
  return flags;
}
