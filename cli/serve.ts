/**
 * `scgi serve`: serves a module's default export over SCGI, the way
 * `deno serve` serves it over HTTP; with `--workers N`, in N processes that
 * share the port, under a supervisor that reloads them on SIGHUP
 * (cli/_supervisor.ts). The app module may also export scheduled jobs
 * (cli/_cron.ts).
 *
 * @module
 */

import { resolve } from "node:path";
import { scgiUrl, serve as scgiServe } from "../server.ts";
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
import { checkSchedules, describe, runJob, Scheduler } from "./_cron.ts";
import { checkExtraFlags } from "./_permissions.ts";
import { supervise } from "./_supervisor.ts";
import { loadApp } from "./_worker.ts";

/** The help text of `scgi serve`. */
export const HELP = `Usage: scgi serve [options] APP.ts [-- WORKER FLAGS]

Serves APP.ts over SCGI. APP.ts default-exports an object with a fetch
method (the 'deno serve' convention, a Hono app) or a handler function
(request, info) => Response; it may also export scheduled jobs
(export const cron = { name: { schedule | every, handler } }).
SIGINT/SIGTERM stop it gracefully.

Options:
  -p, --port N             TCP port (default 4000)
      --hostname HOST      address to listen on (default 127.0.0.1: SCGI
                           trusts its front end, keep it private)
  -s, --socket PATH        listen on a Unix socket instead of TCP
      --socket-mode MODE   octal file mode of the socket (e.g. 660)
  -w, --workers N          run N worker processes under a supervisor: they
                           share the TCP port (SO_REUSEPORT; Linux), one that
                           dies is restarted, SIGHUP replaces them all with
                           the app loaded anew, the old ones finishing
                           their requests (over TCP, set Linux's
                           net.ipv4.tcp_migrate_req=1 or requests queued on
                           a retiring worker are reset). With
                           --socket, N is 1 (a reload binds PATH.new beside
                           the socket and moves it over PATH)
      --max-requests N     with --workers: replace a worker after it has
                           answered N requests (its successor listens first)
      --reuse-port         listen with SO_REUSEPORT (needs --unstable-net)
      --shutdown-timeout S seconds a graceful stop waits for requests
                           (default 30)
  -h, --help               show this help

  After --, Deno flags for the workers beyond what they get by themselves
  (their address, and read access to the app's folders): --allow-env=NAME,
  --allow-write=PATH, --import-map=FILE, ... Each --allow-* must be held by
  the supervisor too; a worker never gets more.

Examples:
  scgi serve app.ts
  scgi serve app.ts --port 4001 --hostname 127.0.0.1
  scgi serve app.ts --socket /run/app/scgi.sock --socket-mode 660
  scgi serve app.ts --port 4000 --workers 4 --max-requests 10000
  scgi serve app.ts --workers 2 -- --allow-env=DATABASE_URL
  kill -HUP <supervisor pid>      # reload: new workers, then the old go

Least permissions (see docs/cli.md):
  deno run --allow-net=127.0.0.1:4000 --allow-read=. cli.ts serve app.ts
  with --workers, add --allow-run=<path of the deno binary>
`;

/** Runs `scgi serve` with its arguments; resolves to the exit status. */
export async function serve(args: string[]): Promise<number> {
  const dash = args.indexOf("--");
  const workerArgs = dash >= 0 ? args.slice(dash + 1) : [];
  const { values, positionals } = parse(
    dash >= 0 ? args.slice(0, dash) : args,
    {
      port: { type: "string", short: "p" },
      hostname: { type: "string" },
      socket: { type: "string", short: "s" },
      "socket-mode": { type: "string" },
      workers: { type: "string", short: "w" },
      "max-requests": { type: "string" },
      "reuse-port": { type: "boolean" },
      "shutdown-timeout": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  );
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
  const socket = values.socket !== undefined
    ? resolve(values.socket)
    : undefined;

  if (values.workers !== undefined) {
    const workers = integer("--workers", values.workers, 1, 256);
    if (socket !== undefined && workers !== 1) {
      throw new UsageError(
        "with --socket, --workers must be 1: one socket path has one listener (for more processes, run one 'scgi serve' per socket behind an upstream group)",
      );
    }
    if (socket === undefined && port === 0) {
      throw new UsageError("--workers needs a --port other than 0");
    }
    const maxRequests = values["max-requests"] !== undefined
      ? integer("--max-requests", values["max-requests"], 1)
      : undefined;
    const extra = checkExtraFlags(workerArgs);
    return await supervise({
      app: appPath,
      workers,
      listen: socket !== undefined
        ? { path: socket, beside: `${socket}.new` }
        : { hostname, port },
      ...(socketMode !== undefined ? { socketMode } : {}),
      ...(maxRequests !== undefined ? { maxRequests } : {}),
      ...(shutdownTimeout !== undefined ? { shutdownTimeout } : {}),
      extra,
    });
  }
  if (values["max-requests"] !== undefined) {
    throw new UsageError(
      "--max-requests needs --workers (a supervisor starts the successor)",
    );
  }
  if (dash >= 0) {
    throw new UsageError(
      "flags after -- are for workers: give --workers, or pass them to deno run",
    );
  }

  const { handler, jobs } = await loadApp(appPath);
  const specs = [...jobs.values()].map((job) => job.spec);
  checkSchedules(specs); // before listening: a job we cannot run is an error
  let server;
  try {
    server = scgiServe({
      ...(socket !== undefined ? { path: socket } : { port, hostname }),
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
  // Scheduled jobs run here, in the one process.
  const running = new Set<Promise<unknown>>();
  let runs = 0;
  const scheduler = new Scheduler(async (name) => {
    const run = runJob(name, jobs.get(name), ++runs);
    running.add(run);
    try {
      await run;
    } finally {
      running.delete(run);
    }
  }, (text) => console.error(text));
  const removeSignals = onStopSignal(() => {
    scheduler.stop();
    server.shutdown();
  });
  try {
    scheduler.update(specs);
    for (const spec of specs) {
      console.error(`cron job "${spec.name}" runs ${describe(spec)}`);
    }
    await server.finished;
  } catch (error) {
    scheduler.stop();
    await server.shutdown();
    throw error;
  } finally {
    removeSignals();
  }
  await Promise.allSettled(running);
  return 0;
}
