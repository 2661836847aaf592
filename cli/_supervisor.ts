// The supervisor of `scgi serve --workers N`: starts N workers
// (cli/_worker.ts) with the permissions of cli/_permissions.ts, restarts one
// that dies, replaces all of them on SIGHUP and one that has served
// --max-requests, always starting the replacement and waiting until it
// listens before the old one stops accepting, and runs the app's scheduled
// jobs, each run in one worker. It never listens itself.

import { scgiUrl } from "../server.ts";
import { CliError, onStopSignal } from "./_args.ts";
import type { JobSpec } from "./_control.ts";
import { describe, Scheduler } from "./_cron.ts";
import {
  type ExtraFlags,
  type Listen,
  localModules,
  workerFlags,
} from "./_permissions.ts";
import type { WorkerConfig } from "./_worker.ts";
import {
  exitText,
  KILL_GRACE,
  startWorker,
  type WorkerProcess as Worker,
} from "./_worker_process.ts";

/** What `scgi serve` hands the supervisor. */
export interface SupervisorOptions {
  /** The app module's absolute path. */
  app: string;
  workers: number;
  listen: Listen;
  socketMode?: number;
  maxRequests?: number;
  /** Milliseconds; the workers' default when absent. */
  shutdownTimeout?: number;
  extra: ExtraFlags;
}

/** A worker that exits before it listens this often in a row ends it all. */
const MAX_START_FAILURES = 5;
/** How long a retired worker on a Unix socket keeps accepting. */
const SETTLE = 500;
const WORKER = new URL("./_worker.ts", import.meta.url).href;

/** Runs the workers until SIGINT/SIGTERM; resolves to the exit status. */
export async function supervise(options: SupervisorOptions): Promise<number> {
  const { app, listen } = options;
  const onSocket = "path" in listen;
  const shutdownTimeout = options.shutdownTimeout ?? 30_000;
  const url = onSocket
    ? scgiUrl({ transport: "unix", path: listen.path })
    : scgiUrl({
      transport: "tcp",
      hostname: listen.hostname,
      port: listen.port,
    });
  const log = (text: string) => console.error(text);
  const flagsFor = async () =>
    workerFlags(
      listen,
      await localModules(app, options.extra.plain),
      options.extra,
    );

  let flags = await flagsFor();
  let slots: (Worker | undefined)[] = new Array(options.workers).fill(
    undefined,
  );
  const everyone = new Set<Worker>();
  const failures: number[] = slots.map(() => 0);
  let stopping = false;
  let jobSpecs: JobSpec[] = [];
  let runId = 0;
  const finished = Promise.withResolvers<number>();
  let fatal: unknown;
  /** Once every worker is gone after a stop: 0, or the fatal error. */
  const finishIfDone = () => {
    if (!stopping || everyone.size > 0) return;
    if (fatal === undefined) finished.resolve(0);
    else finished.reject(fatal);
  };

  const spawn = (slot: number, permissions = flags): Worker => {
    const token = crypto.randomUUID();
    const config: WorkerConfig = {
      token,
      app,
      listen: onSocket
        ? {
          path: listen.beside,
          final: listen.path,
          ...(options.socketMode !== undefined
            ? { socketMode: options.socketMode }
            : {}),
        }
        : { hostname: listen.hostname, port: listen.port },
      ...(options.maxRequests !== undefined
        ? { maxRequests: options.maxRequests }
        : {}),
      ...(options.shutdownTimeout !== undefined
        ? { shutdownTimeout: options.shutdownTimeout }
        : {}),
      settle: SETTLE,
    };
    const worker = startWorker(
      slot,
      [
        "run",
        ...(onSocket ? [] : ["--unstable-net"]),
        ...permissions,
        WORKER,
        JSON.stringify(config),
      ],
      token,
      {
        onRecycle(served) {
          if (stopping || slots[slot] !== worker) return;
          log(
            `worker ${
              slot + 1
            } pid ${worker.pid} served ${served} requests; replacing it`,
          );
          enqueue(() => replace(slot, worker));
        },
        onExit(status, wasReady) {
          everyone.delete(worker);
          if (stopping) return finishIfDone();
          if (wasReady && slots[slot] === worker) {
            slots[slot] = undefined;
            log(
              `worker ${slot + 1} pid ${worker.pid} exited (${
                exitText(status)
              }); restarting`,
            );
            enqueue(() => restart(slot));
          }
        },
      },
    );
    everyone.add(worker);
    return worker;
  };

  /** Ends a worker's life gracefully, and surely. */
  const retiring = new Set<Worker>();
  const retire = (worker: Worker) => {
    worker.state = "retiring";
    retiring.add(worker);
    worker.send({ t: "retire" });
    const timer = setTimeout(
      () => worker.kill(),
      shutdownTimeout + SETTLE + KILL_GRACE,
    );
    worker.exited.finally(() => {
      clearTimeout(timer);
      retiring.delete(worker);
    });
  };

  /**
   * Starts a worker for `slot` and waits until it listens. On a socket it
   * binds `PATH.new` (Deno 2.9 unlinks a Unix listener's path when it
   * closes, so no worker ever binds the real path: it is only renamed
   * there), which must not be the name of a retiring worker's listener that
   * is still open.
   */
  const bringUp = async (slot: number, permissions = flags) => {
    if (onSocket) await Promise.all([...retiring].map((w) => w.closed));
    const worker = spawn(slot, permissions);
    const jobs = await worker.ready.catch((error) => {
      worker.close();
      throw Object.assign(error as Error, { pid: worker.pid });
    });
    return { worker, jobs };
  };
  /** On a socket: moves a ready worker's socket over the real path. */
  const activate = async (worker: Worker) => {
    if (!onSocket) return;
    worker.send({ t: "activate" });
    await worker.active.catch((error) => {
      worker.close();
      throw error;
    });
  };
  const startFailure = (slot: number, error: unknown) =>
    `worker ${slot + 1} pid ${
      (error as { pid?: number }).pid
    } failed to start: ${(error as Error).message}`;

  // Every change of the set of workers happens in turn.
  let queue = Promise.resolve();
  const enqueue = (operation: () => Promise<void>) => {
    queue = queue.then(operation).catch((error) => fail(error));
  };

  const fail = (error: unknown) => {
    if (stopping) return;
    fatal = error;
    stopAll();
  };

  const stopAll = () => {
    stopping = true;
    scheduler.stop();
    for (const worker of everyone) {
      worker.close();
      const timer = setTimeout(
        () => worker.kill(),
        shutdownTimeout + KILL_GRACE,
      );
      worker.exited.finally(() => clearTimeout(timer));
    }
    finishIfDone();
  };

  /** Fills a slot whose worker died. */
  const restart = async (slot: number) => {
    if (stopping || slots[slot]) return;
    let worker: Worker;
    try {
      worker = (await bringUp(slot)).worker;
      await activate(worker);
    } catch (error) {
      if (stopping) return;
      log(startFailure(slot, error));
      if (++failures[slot]! >= MAX_START_FAILURES) {
        throw new CliError(
          `worker ${
            slot + 1
          } failed to start ${MAX_START_FAILURES} times in a row: ${
            (error as Error).message
          }`,
        );
      }
      setTimeout(() => enqueue(() => restart(slot)), 1000);
      return;
    }
    failures[slot] = 0;
    if (stopping || slots[slot]) return worker.close();
    slots[slot] = worker;
  };

  /** Starts `slot`'s successor; once it listens, retires `old`. */
  const replace = async (slot: number, old: Worker) => {
    if (stopping || slots[slot] !== old) return;
    let fresh: Worker;
    try {
      fresh = (await bringUp(slot)).worker;
      await activate(fresh);
    } catch (error) {
      if (stopping) return;
      log(`${startFailure(slot, error)}; pid ${old.pid} keeps serving`);
      setTimeout(() => enqueue(() => replace(slot, old)), 10_000);
      return;
    }
    if (stopping) return fresh.close();
    slots[slot] = fresh;
    if (old.state !== "exited") retire(old);
  };

  let reloadWaiting = false;
  const reload = async () => {
    reloadWaiting = false;
    if (stopping) return;
    log(`reloading ${app} (SIGHUP)`);
    const failed = (text: string, fresh: Worker[]) => {
      for (const worker of fresh) worker.close();
      const pids = slots.filter((w) => w).map((w) => w!.pid).join(", ");
      log(`reload failed: ${text}; still serving with pid ${pids}`);
    };
    let newFlags: string[];
    try {
      newFlags = await flagsFor();
    } catch (error) {
      return failed((error as Error).message, []);
    }
    const results = await Promise.allSettled(
      slots.map((_, slot) => bringUp(slot, newFlags)),
    );
    const fresh = results.flatMap((r) =>
      r.status === "fulfilled" ? [r.value.worker] : []
    );
    if (stopping) return;
    const bad = results.findIndex((result) => result.status === "rejected");
    if (bad >= 0) {
      const { reason } = results[bad] as PromiseRejectedResult;
      return failed(startFailure(bad, reason), fresh);
    }
    const specs = (results[0] as PromiseFulfilledResult<{ jobs: JobSpec[] }>)
      .value.jobs;
    const oldSpecs = jobSpecs;
    try {
      scheduler.update(specs);
      for (const worker of fresh) await activate(worker);
    } catch (error) {
      scheduler.update(oldSpecs);
      return failed((error as Error).message, fresh);
    }
    if (stopping) return;
    jobSpecs = specs;
    flags = newFlags;
    const old = slots.filter((w): w is Worker => w !== undefined);
    slots = fresh;
    for (const worker of old) if (worker.state !== "exited") retire(worker);
    Promise.all(old.map((w) => w.exited)).then(() => {
      if (!stopping) {
        log(
          `reloaded: pid ${fresh.map((w) => w.pid).join(", ")} serve ${app}`,
        );
      }
    });
  };

  /** Starts every worker: all must come up, or none serves. */
  const startAll = async () => {
    if (onSocket) await refuseLiveSocket(listen.path);
    const results = await Promise.allSettled(
      slots.map((_, slot) => bringUp(slot)),
    );
    const first = results.flatMap((r) =>
      r.status === "fulfilled" ? [r.value.worker] : []
    );
    const bad = results.findIndex((result) => result.status === "rejected");
    if (bad >= 0) {
      for (const worker of first) worker.close();
      throw new CliError(
        startFailure(bad, (results[bad] as PromiseRejectedResult).reason),
      );
    }
    for (const worker of first) await activate(worker);
    slots = first;
    jobSpecs = (results[0] as PromiseFulfilledResult<{ jobs: JobSpec[] }>)
      .value.jobs;
    scheduler.update(jobSpecs);
    for (const spec of jobSpecs) {
      log(`cron job "${spec.name}" runs ${describe(spec)} in one worker`);
    }
    log(
      `Serving ${app} on ${url} with ${options.workers} worker${
        options.workers === 1 ? "" : "s"
      } (pid ${Deno.pid}); SIGHUP reloads`,
    );
    migrationNotice(listen, log);
  };

  const scheduler = new Scheduler(async (name) => {
    const worker = slots.find((w) => w?.state === "ready");
    if (!worker) throw new Error("no worker is ready to run it; skipped");
    const id = ++runId;
    const done = Promise.withResolvers<void>();
    worker.runs.set(id, done);
    worker.send({ t: "run", id, name });
    await done.promise;
  }, log);

  const removeStop = onStopSignal(() => stopAll());
  const onHangUp = () => {
    if (stopping || reloadWaiting) return;
    reloadWaiting = true;
    enqueue(reload);
  };
  Deno.addSignalListener("SIGHUP", onHangUp);
  try {
    enqueue(startAll);
    return await finished.promise;
  } finally {
    removeStop();
    Deno.removeSignalListener("SIGHUP", onHangUp);
  }
}

/**
 * Refuses to take over a socket path where another process serves (the
 * first worker is moved over the path, which would silently replace it);
 * a stale socket file left by a crash is fine.
 */
async function refuseLiveSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch {
    return;
  }
  if (!info.isSocket) {
    throw new CliError(
      `cannot listen on ${path}: it exists and is not a socket`,
    );
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
  } catch {
    return;
  }
  throw new CliError(
    `cannot listen on ${path}: another process is serving on it`,
  );
}

/**
 * Says once that the kernel resets the connections waiting in a closing
 * listener's accept queue instead of handing them to another worker
 * (net.ipv4.tcp_migrate_req, Linux 5.14): a reload or recycle over TCP can
 * then cost a 502 at the front end. Deno reads /proc/sys only with
 * --allow-all; without it the note says what to check.
 */
function migrationNotice(listen: Listen, log: (text: string) => void): void {
  if ("path" in listen || Deno.build.os !== "linux") return;
  const advice =
    "a reload or --max-requests may reset connections waiting in a retiring worker's accept queue (nginx: 502); sysctl -w net.ipv4.tcp_migrate_req=1 hands them to the new workers, or use --socket (see docs/deployment.md)";
  let value: string;
  try {
    value = Deno.readTextFileSync("/proc/sys/net/ipv4/tcp_migrate_req").trim();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return; // Linux < 5.14
    return log(`note: unless net.ipv4.tcp_migrate_req is 1, ${advice}`);
  }
  if (value === "0") log(`note: net.ipv4.tcp_migrate_req is 0: ${advice}`);
}
