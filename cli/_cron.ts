// Scheduled jobs beside the app, the soft cron of old SCGI handlers done
// the Deno way. An app module exports them:
//
//     export const cron = {
//       "prune sessions": { schedule: "*/5 * * * *", handler: prune },
//       heartbeat: { every: "10s", handler: beat },
//     };
//
// A cron `schedule` is run by `Deno.cron` (which needs `--unstable-cron` in
// Deno 2.9 and works offline: it is a local timer, not a service); `every`
// by timers. One scheduler runs them: the process itself without
// `--workers`, the supervisor with it, which hands each run to one worker,
// so a job runs once per tick however many workers there are. A job's
// failure is printed (with its stack) by the process it ran in, once.
// docs/cron.md is the guide.

import { CliError, duration } from "./_args.ts";
import type { JobSpec } from "./_control.ts";

/** What a job's handler is called with. */
export interface JobContext {
  /** The job's name (its key in `export const cron`). */
  name: string;
  /**
   * This run's number, unique within the scheduling process (the
   * supervisor with `--workers`, or the one process) and counting up from
   * 1 across reloads until `scgi serve` itself restarts.
   */
  id: number;
}

/** A job of the app module, with its handler. */
export interface Job {
  spec: JobSpec;
  handler: (context: JobContext) => unknown;
}

/**
 * A job's handler threw (or rejected): already printed, with its stack, by
 * the process it ran in; this carries the first line of its message.
 */
export class JobFailed extends Error {
  /** @param text the first line of what the handler threw */
  constructor(text: string) {
    super(text);
    this.name = "JobFailed";
  }
}

/** Setting an interval longer than this makes it fire at once. */
const MAX_EVERY = 2 ** 31 - 1;

type CronFn = (
  name: string,
  schedule: string | Record<string, unknown>,
  options: { signal?: AbortSignal },
  handler: () => void,
) => Promise<void>;

/** `Deno.cron`, when this process runs with `--unstable-cron`. */
function denoCron(): CronFn | undefined {
  const cron = (Deno as unknown as { cron?: CronFn }).cron;
  return typeof cron === "function" ? cron.bind(Deno) : undefined;
}

/**
 * The jobs of an app module's `cron` export (none when it has none);
 * a malformed one is a {@linkcode CliError} naming it.
 */
export function readJobs(
  module: Record<string, unknown>,
  where: string,
): Map<string, Job> {
  const jobs = new Map<string, Job>();
  const cron = module.cron;
  if (cron === undefined) return jobs;
  const bad = (text: string) => new CliError(`${where}: ${text}`);
  if (!cron || typeof cron !== "object" || Array.isArray(cron)) {
    throw bad("`export const cron` must be an object of jobs by name");
  }
  for (const [name, value] of Object.entries(cron)) {
    // Deno.cron's own rule for names, for every job alike.
    if (!/^[A-Za-z0-9 _-]{1,64}$/.test(name)) {
      throw bad(
        `cron job name ${
          JSON.stringify(name)
        } must be 1 to 64 letters, digits, spaces, - or _`,
      );
    }
    const job = value as Record<string, unknown> | null;
    if (!job || typeof job !== "object" || typeof job.handler !== "function") {
      throw bad(`cron.${name} needs a handler function`);
    }
    const { schedule, every } = job;
    if ((schedule === undefined) === (every === undefined)) {
      throw bad(
        `cron.${name} needs either a schedule (cron expression) or every (an interval)`,
      );
    }
    const spec: JobSpec = { name };
    if (schedule !== undefined) {
      if (
        typeof schedule !== "string" &&
        (!schedule || typeof schedule !== "object")
      ) {
        throw bad(
          `cron.${name}.schedule must be a cron expression or a Deno.CronSchedule`,
        );
      }
      spec.schedule = schedule as string | Record<string, unknown>;
    } else {
      let ms = NaN;
      if (typeof every === "number") ms = every;
      else if (typeof every === "string" && /[a-z]$/.test(every)) {
        try {
          ms = duration("every", every);
        } catch {
          // Said below.
        }
      }
      if (Number.isNaN(ms)) {
        throw bad(
          `cron.${name}.every must be milliseconds (a number) or a duration like "500ms", "10s" or "2m", not ${
            JSON.stringify(every)
          }`,
        );
      }
      if (!(ms >= 1 && ms <= MAX_EVERY)) {
        throw bad(
          `cron.${name}.every must be from 1 ms to ${MAX_EVERY} ms (24.8 days), not ${ms}; use a schedule for longer`,
        );
      }
      spec.every = ms;
    }
    jobs.set(name, {
      spec,
      handler: job.handler as (context: JobContext) => unknown,
    });
  }
  return jobs;
}

/** Says when a job runs, for people. */
export function describe(spec: JobSpec): string {
  return spec.every !== undefined
    ? `every ${spec.every} ms`
    : `on ${JSON.stringify(spec.schedule)} (Deno.cron)`;
}

/**
 * Runs one job's handler in this process: what it throws is printed here,
 * with its stack, and rejects as a {@linkcode JobFailed}.
 */
export async function runJob(
  name: string,
  job: Job | undefined,
  id: number,
): Promise<void> {
  try {
    if (!job) throw new Error("no such job in this process's app module");
    await job.handler({ name, id });
  } catch (error) {
    console.error(
      `cron job "${name}" failed (run ${id}, pid ${Deno.pid}):`,
      error,
    );
    throw new JobFailed(message(error));
  }
}

let checks = 0;

/**
 * Checks that this process can run the cron schedules among `specs`: it
 * has `Deno.cron` (`--unstable-cron`) and `Deno.cron` takes each schedule.
 * A {@linkcode CliError} otherwise.
 */
export function checkSchedules(specs: JobSpec[]): void {
  const cron = denoCron();
  for (const spec of specs) {
    if (spec.schedule === undefined) continue;
    const what = `cron job "${spec.name}" (schedule ${
      JSON.stringify(spec.schedule)
    })`;
    if (!cron) {
      throw new CliError(
        `${what} needs Deno.cron: start scgi serve with deno run --unstable-cron, or give the job an interval (every) instead`,
      );
    }
    // Deno.cron checks a schedule only by registering it: do so under a
    // name of our own and unregister at once, so that a bad schedule
    // changes nothing. (A signal aborted beforehand would leave the job
    // registered in Deno 2.9.)
    const check = new AbortController();
    try {
      cron(`scgi-check-${++checks}`, spec.schedule, {
        signal: check.signal,
      }, () => {}).catch(() => {});
    } catch (error) {
      throw new CliError(`${what}: ${message(error)}`);
    } finally {
      check.abort();
    }
  }
}

interface Scheduled {
  spec: JobSpec;
  stop: () => void;
  running: boolean;
}

/**
 * Runs jobs on their schedules through `run`, one run of a job at a time:
 * a tick that comes while the previous run is still going is skipped and
 * said so.
 */
export class Scheduler {
  readonly #jobs = new Map<string, Scheduled>();
  readonly #run: (name: string) => Promise<void>;
  readonly #log: (text: string) => void;

  constructor(
    run: (name: string) => Promise<void>,
    log: (text: string) => void,
  ) {
    this.#run = run;
    this.#log = log;
  }

  /**
   * Schedules exactly `specs`: a job whose schedule is unchanged keeps
   * running as it was (a reload does not reset its timer), others are
   * stopped, added or replaced. A cron schedule without `Deno.cron`, or one
   * `Deno.cron` refuses, is a {@linkcode CliError}, and nothing changes.
   */
  update(specs: JobSpec[]): void {
    checkSchedules(specs);
    const cron = denoCron();
    const wanted = new Map(specs.map((spec) => [spec.name, spec]));
    for (const [name, job] of this.#jobs) {
      const spec = wanted.get(name);
      if (!spec || JSON.stringify(spec) !== JSON.stringify(job.spec)) {
        job.stop();
        this.#jobs.delete(name);
      }
    }
    for (const spec of specs) {
      if (this.#jobs.has(spec.name)) continue;
      const job: Scheduled = { spec, stop: () => {}, running: false };
      const tick = () => this.#tick(spec.name, job);
      if (spec.every !== undefined) {
        const timer = setInterval(tick, spec.every);
        job.stop = () => clearInterval(timer);
      } else {
        const controller = new AbortController();
        cron!(spec.name, spec.schedule!, { signal: controller.signal }, tick)
          .catch((error) =>
            this.#log(`cron job "${spec.name}": ${message(error)}`)
          );
        job.stop = () => controller.abort();
      }
      this.#jobs.set(spec.name, job);
    }
  }

  /** Stops every schedule (runs in progress go on to their end). */
  stop(): void {
    for (const job of this.#jobs.values()) job.stop();
    this.#jobs.clear();
  }

  #tick(name: string, job: Scheduled): void {
    if (job.running) {
      this.#log(
        `cron job "${name}": the previous run has not ended; skipping this one`,
      );
      return;
    }
    job.running = true;
    this.#run(name).then(
      () => {},
      (error) => {
        // A handler's own failure was printed where it ran.
        if (error instanceof JobFailed) return;
        this.#log(`cron job "${name}" failed: ${message(error)}`);
      },
    ).finally(() => (job.running = false));
  }
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split(
    "\n",
  )[0]!;
}
