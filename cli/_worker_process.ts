// A worker process as the supervisor sees it: started with its flags and
// configuration, its stdin for commands and its stderr read for messages
// (cli/_control.ts), everything else it prints passed on to our stderr.

import {
  command,
  demux,
  type FromWorker,
  type JobSpec,
  type ToWorker,
} from "./_control.ts";
import { JobFailed } from "./_cron.ts";

/** How long a new worker may take to listen. */
const START_TIMEOUT = 60_000;
/** Extra time a stopping worker gets before SIGKILL. */
export const KILL_GRACE = 10_000;

/** `status 1` or `signal SIGKILL`. */
export function exitText(status: Deno.CommandStatus): string {
  return status.signal ? `signal ${status.signal}` : `status ${status.code}`;
}

/** What the supervisor hears from a worker besides its replies. */
export interface WorkerHooks {
  /** It has answered `--max-requests` requests. */
  onRecycle(served: number): void;
  /** It has exited (its last output read); `wasReady`: it had listened. */
  onExit(status: Deno.CommandStatus, wasReady: boolean): void;
}

/** A running worker. */
export interface WorkerProcess {
  slot: number;
  pid: number;
  ready: Promise<JobSpec[]>;
  /** On a socket: moved into place (after `activate`). */
  active: Promise<void>;
  /** Its listener is closed (or it exited). */
  closed: Promise<void>;
  exited: Promise<Deno.CommandStatus>;
  state: "starting" | "ready" | "retiring" | "exited";
  send(message: ToWorker): void;
  /** EOF on its stdin: stop gracefully. */
  close(): void;
  kill(): void;
  /** Scheduled-job runs it was handed, by id. */
  runs: Map<number, { resolve: () => void; reject: (e: Error) => void }>;
}

/**
 * Starts `deno ARGS` as the worker of `slot`; `token` marks its messages.
 * `ready` rejects with the worker's own words when it fails to start, exits
 * first, or does not listen within a minute.
 */
export function startWorker(
  slot: number,
  args: string[],
  token: string,
  hooks: WorkerHooks,
): WorkerProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdin: "piped",
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  const input = child.stdin.getWriter();
  const ready = Promise.withResolvers<JobSpec[]>();
  const active = Promise.withResolvers<void>();
  const closed = Promise.withResolvers<void>();
  const exited = Promise.withResolvers<Deno.CommandStatus>();
  ready.promise.catch(() => {});
  active.promise.catch(() => {});
  let failure: string | undefined;
  let lastLine = "";
  const worker: WorkerProcess = {
    slot,
    pid: child.pid,
    ready: ready.promise,
    active: active.promise,
    closed: closed.promise,
    exited: exited.promise,
    state: "starting",
    send(message) {
      input.write(command(message)).catch(() => {});
    },
    close() {
      input.close().catch(() => {});
    },
    kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    },
    runs: new Map(),
  };
  console.error(`worker ${slot + 1} pid ${child.pid} started`);
  const onMessage = (message: FromWorker) => {
    if (message.t === "ready") {
      worker.state = "ready";
      ready.resolve(message.jobs);
    } else if (message.t === "failed") {
      failure = message.message;
      ready.reject(new Error(failure));
      active.reject(new Error(failure));
    } else if (message.t === "active") {
      active.resolve();
    } else if (message.t === "closed") {
      closed.resolve();
    } else if (message.t === "recycle") {
      hooks.onRecycle(message.served);
    } else if (message.t === "done") {
      const run = worker.runs.get(message.id);
      worker.runs.delete(message.id);
      if (message.error === undefined) run?.resolve();
      else run?.reject(new JobFailed(message.error)); // printed by the worker
    }
  };
  const decoder = new TextDecoder();
  const output = demux(child.stderr, token, onMessage, (bytes) => {
    const text = decoder.decode(bytes, { stream: true });
    const lines = text.split("\n").filter((line) => line.trim() !== "");
    if (lines.length > 0) lastLine = lines.at(-1)!;
    let written = 0;
    try {
      while (written < bytes.length) {
        written += Deno.stderr.writeSync(bytes.subarray(written));
      }
    } catch {
      // Our own stderr is gone; keep reading so the worker never blocks.
    }
  }).catch(() => {});
  const timer = setTimeout(() => {
    if (worker.state !== "starting") return;
    failure = `did not listen within ${START_TIMEOUT / 1000} s`;
    ready.reject(new Error(failure));
    worker.close();
    const kill = setTimeout(() => worker.kill(), KILL_GRACE);
    child.status.finally(() => clearTimeout(kill));
  }, START_TIMEOUT);
  // Its last messages may still be in the pipe when it exits.
  Promise.all([child.status, output]).then(([status]) => {
    clearTimeout(timer);
    closed.resolve();
    const wasReady = worker.state === "ready";
    worker.state = "exited";
    const why = failure ??
      `exited (${exitText(status)})${lastLine ? `: ${lastLine}` : ""}`;
    ready.reject(new Error(why));
    active.reject(new Error(why));
    for (const run of worker.runs.values()) {
      run.reject(new Error(`worker pid ${worker.pid} ${exitText(status)}`));
    }
    hooks.onExit(status, wasReady);
    exited.resolve(status);
  });
  return worker;
}
