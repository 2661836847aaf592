// One worker of `scgi serve --workers`, and the app loading it shares with
// the single-process `scgi serve`. The supervisor starts this file as the
// main module (`deno run FLAGS _worker.ts CONFIG`) with the permissions
// cli/_permissions.ts worked out, reads its messages from its stderr and
// talks to it on its stdin (cli/_control.ts). EOF on stdin means the
// supervisor is gone or wants it to stop: it stops accepting, finishes what
// is in flight (up to --shutdown-timeout) and exits, so no worker outlives
// its supervisor.

import { pathToFileURL } from "node:url";
import {
  type ScgiHandler,
  type ScgiServer,
  scgiUrl,
  serve,
} from "../server.ts";
import { CliError, onStopSignal } from "./_args.ts";
import { frame, type FromWorker, readCommands } from "./_control.ts";
import { type Job, readJobs, runJob } from "./_cron.ts";

/** An app module's handler and scheduled jobs. */
export interface App {
  handler: ScgiHandler;
  jobs: Map<string, Job>;
}

/** Imports the app module and finds its handler and jobs. */
export async function loadApp(path: string): Promise<App> {
  try {
    await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new CliError(`${path} does not exist`);
    }
    throw error;
  }
  let module: Record<string, unknown>;
  try {
    module = await import(pathToFileURL(path).href);
  } catch (error) {
    throw new CliError(
      `cannot load ${path}: ${(error as Error).message.split("\n")[0]}`,
    );
  }
  const jobs = readJobs(module, path);
  const app = module.default;
  if (typeof app === "function") return { handler: app as ScgiHandler, jobs };
  if (
    app && typeof app === "object" && "fetch" in app &&
    typeof app.fetch === "function"
  ) {
    return { handler: (app.fetch as ScgiHandler).bind(app), jobs };
  }
  throw new CliError(
    `${path} has no default export with a fetch method or handler function`,
  );
}

/** How the supervisor configures a worker (its one argument, as JSON). */
export interface WorkerConfig {
  /** The secret that marks its messages on stderr. */
  token: string;
  /** The app module's absolute path. */
  app: string;
  /**
   * TCP, shared with SO_REUSEPORT; or a Unix socket: `path` beside the
   * real one to listen on, and `final`, the real path, where the socket is
   * moved when the supervisor says `activate`. (Deno 2.9 unlinks a Unix
   * listener's path when it closes: a worker that had bound the real path
   * would unlink its successor's socket on the way out.)
   */
  listen:
    | { hostname: string; port: number }
    | { path: string; final: string; socketMode?: number };
  /** Ask to be replaced after this many requests. */
  maxRequests?: number;
  /** Milliseconds a graceful stop waits for requests in flight. */
  shutdownTimeout?: number;
  /**
   * On a Unix socket, milliseconds to keep accepting after being retired:
   * connections made before the new socket took the path wait in this
   * socket's backlog.
   */
  settle: number;
}

/** Runs a worker to its end; resolves to its exit status. */
export async function runWorker(config: WorkerConfig): Promise<number> {
  const { listen } = config;
  const send = (message: FromWorker) => {
    try {
      const bytes = frame(config.token, message);
      let written = 0;
      while (written < bytes.length) {
        written += Deno.stderr.writeSync(bytes.subarray(written));
      }
    } catch {
      // The supervisor is gone; stdin's EOF stops this worker.
    }
  };
  // A terminal's hang-up reaches the whole process group: the supervisor
  // decides what SIGHUP means (a reload), not each worker.
  Deno.addSignalListener("SIGHUP", () => {});

  let server: ScgiServer | undefined;
  let stopping = false;
  let socketInode: number | undefined;
  // Where our socket is once moved into place.
  let socketAt: string | undefined;
  const running = new Set<Promise<void>>();
  let app: App | undefined;

  const removeSocket = () => {
    // The server removes the path it listened on if it is still its own
    // socket; a socket moved into place by a reload is at another path.
    if (socketAt === undefined || socketInode === undefined) return;
    try {
      if (Deno.lstatSync(socketAt).ino === socketInode) {
        Deno.removeSync(socketAt);
      }
    } catch {
      // Already gone, or never ours.
    }
  };
  const stop = () => {
    if (stopping) return;
    stopping = true;
    server?.shutdown();
    removeSocket();
    send({ t: "closed" });
  };
  const announce = (addr: Deno.Addr) =>
    console.error(`Listening on ${scgiUrl(addr)} (pid ${Deno.pid})`);

  readCommands(Deno.stdin.readable, (message) => {
    if (message.t === "retire") {
      if ("path" in listen) setTimeout(stop, config.settle);
      else stop();
    } else if (message.t === "activate" && "path" in listen) {
      try {
        Deno.renameSync(listen.path, listen.final);
        socketAt = listen.final;
        send({ t: "active" });
        announce({ transport: "unix", path: listen.final });
      } catch (error) {
        send({
          t: "failed",
          message: `cannot move ${listen.path} to ${listen.final}: ${
            (error as Error).message
          }`,
        });
      }
    } else if (message.t === "run") {
      const { id, name } = message;
      const run = runJob(name, app?.jobs.get(name), id).then(
        () => send({ t: "done", id }),
        (error: Error) => send({ t: "done", id, error: error.message }),
      );
      running.add(run);
      run.finally(() => running.delete(run));
    }
  }).then(stop, stop);
  const removeSignals = onStopSignal(stop);

  try {
    app = await loadApp(config.app);
  } catch (error) {
    send({ t: "failed", message: (error as Error).message });
    return 1;
  }
  if (stopping) return 0;
  let handler = app.handler;
  const max = config.maxRequests;
  if (max !== undefined) {
    // Only with --max-requests: without it the app's handler is served
    // as it is.
    const inner = handler;
    let served = 0;
    handler = (request, info) => {
      if (++served === max) send({ t: "recycle", served });
      return inner(request, info);
    };
  }
  const jobs = [...app.jobs.values()].map((job) => job.spec);
  const where = "path" in listen
    ? listen.path
    : `${listen.hostname}:${listen.port}`;
  try {
    server = serve({
      ...("path" in listen
        ? {
          path: listen.path,
          ...(listen.socketMode !== undefined
            ? { socketMode: listen.socketMode }
            : {}),
        }
        : { hostname: listen.hostname, port: listen.port, reusePort: true }),
      ...(config.shutdownTimeout !== undefined
        ? { shutdownTimeout: config.shutdownTimeout }
        : {}),
      onListen: (addr) => {
        if ("path" in addr) {
          try {
            socketInode = Deno.lstatSync(addr.path).ino ?? undefined;
          } catch {
            // Gone already: nothing of ours to remove later.
          }
        }
        if (!("path" in listen)) announce(addr);
        send({ t: "ready", jobs });
      },
    }, handler);
    if (stopping) server.shutdown();
    await server.finished;
  } catch (error) {
    send({
      t: "failed",
      message: `cannot listen on ${where}: ${(error as Error).message}`,
    });
    return 1;
  } finally {
    removeSignals();
  }
  removeSocket();
  await Promise.allSettled(running);
  return 0;
}

if (import.meta.main) {
  Deno.exit(await runWorker(JSON.parse(Deno.args[0]!) as WorkerConfig));
}
