/**
 * What the benchmark scripts share: starting and stopping processes by PID
 * (also on Ctrl-C), reading their CPU time and memory from /proc, running a
 * load generator while counting its own CPU time, medians and markdown
 * tables.
 *
 * Deno asks for `--allow-all` before it lets a script read `/proc/PID/*`,
 * so every /proc read goes through a `cat` (or `sh`) subprocess.
 *
 * @module
 */

import {
  findBinary,
  type Peer,
  startPeer,
  waitForListen,
} from "../tests/_peer.ts";

/** The body every benchmark backend answers: 13 bytes. */
export const HELLO = "Hello, world\n";

/** The absolute path of a binary, or an error naming it. */
export function which(name: string): string {
  const path = findBinary(name);
  if (!path) throw new Error(`${name} is not installed`);
  return path;
}

/** A long-running process (a backend, nginx), started and stopped by PID. */
export interface Child extends Peer {
  readonly name: string;
}

/** Every process and temp dir a script started, to be removed at the end. */
export class Cleanup {
  #children: Child[] = [];
  #running = new Set<Deno.ChildProcess>();
  #extraPids = new Set<number>();
  #dirs: string[] = [];
  #done: Promise<void> | undefined;
  #onSignal = () => {
    console.error("interrupted: stopping everything");
    this.stopAll().finally(() => Deno.exit(130));
  };

  constructor() {
    Deno.addSignalListener("SIGINT", this.#onSignal);
    Deno.addSignalListener("SIGTERM", this.#onSignal);
  }

  /** Removes `dir` (recursively) at the end. */
  dir(dir: string): string {
    this.#dirs.push(dir);
    return dir;
  }

  /** Starts a long-running process with its output captured. */
  spawn(
    name: string,
    cmd: string,
    args: string[],
    options: { cwd?: string } = {},
  ): Child {
    const child = Object.assign(startPeer(cmd, args, options), { name });
    this.#children.push(child);
    return child;
  }

  /**
   * Remembers processes a child started (uWSGI's workers, `scgi serve`'s
   * workers): if any outlives its parent's stop, it gets SIGKILL.
   */
  watch(pids: number[]): void {
    for (const pid of pids) this.#extraPids.add(pid);
  }

  /** Stops one child now (SIGTERM, then SIGKILL after 5 s). */
  async stop(child: Child): Promise<void> {
    this.#children = this.#children.filter((c) => c !== child);
    await child.stop();
  }

  /**
   * Runs a short-lived command to its end and returns its stdout; a
   * non-zero exit is an error with its output. Ctrl-C stops it too.
   */
  async run(
    cmd: string,
    args: string[],
    options: { allowFailure?: boolean } = {},
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const process = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#running.add(process);
    try {
      const { code, stdout, stderr } = await process.output();
      const result = {
        code,
        stdout: new TextDecoder().decode(stdout),
        stderr: new TextDecoder().decode(stderr),
      };
      if (code !== 0 && !options.allowFailure) {
        throw new Error(
          `${cmd} ${
            args.join(" ")
          } failed (${code}):\n${result.stdout}${result.stderr}`
            .slice(0, 20_000),
        );
      }
      return result;
    } finally {
      this.#running.delete(process);
    }
  }

  /** Stops everything (newest first) and removes the temp dirs; once. */
  stopAll(): Promise<void> {
    this.#done ??= (async () => {
      Deno.removeSignalListener("SIGINT", this.#onSignal);
      Deno.removeSignalListener("SIGTERM", this.#onSignal);
      for (const process of this.#running) {
        try {
          process.kill("SIGTERM");
        } catch {
          // Already gone.
        }
      }
      for (const child of this.#children.reverse()) await child.stop();
      this.#children = [];
      for (const pid of this.#extraPids) {
        // Only a process that is still one of ours: its command line names
        // what we started (a PID can be reused once it is gone).
        const cmdline = await readProc(pid, "cmdline");
        if (cmdline && /uwsgi|deno/.test(cmdline)) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch {
            // Gone meanwhile.
          }
        }
      }
      for (const dir of this.#dirs) {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    })();
    return this.#done;
  }
}

/**
 * Resolves once the child accepts connections; fails with its output if it
 * exits first.
 */
export async function waitListening(
  addr: { port: number } | { path: string },
  child: Child,
  timeoutMs = 20_000,
): Promise<void> {
  try {
    await waitForListen(addr, timeoutMs, child.alive);
  } catch (error) {
    if (child.alive()) throw error;
    throw new Error(`${child.name} exited:\n${child.output().slice(-20_000)}`);
  }
}

/** Resolves once a file (a Unix socket) exists; fails if the child exits. */
export async function waitForFile(
  path: string,
  child: Child,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      await Deno.lstat(path);
      return;
    } catch {
      if (!child.alive()) {
        throw new Error(
          `${child.name} exited:\n${child.output().slice(-20_000)}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(`${path} did not appear after ${timeoutMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

async function sh(script: string, ...args: string[]): Promise<string> {
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", script, "sh", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout);
}

/** The text of /proc/PID/FILE, or "" when the process is gone. */
export async function readProc(pid: number, file: string): Promise<string> {
  return await sh('cat "/proc/$1/$2" 2>/dev/null', String(pid), file);
}

/** A process and all its descendants (uWSGI's master and workers, …). */
export async function processTree(pid: number): Promise<number[]> {
  const all = [pid];
  for (let i = 0; i < all.length; i++) {
    const text = await sh(
      'cat /proc/"$1"/task/*/children 2>/dev/null',
      String(all[i]),
    );
    for (const child of text.split(/\s+/).filter(Boolean)) {
      all.push(Number(child));
    }
  }
  return all;
}

/**
 * User plus system CPU time of the processes, in milliseconds, summed (each
 * process's /proc/PID/stat already sums its threads; clock ticks are
 * USER_HZ, 1/100 s on Linux).
 */
export async function cpuMs(pids: number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const text = await readProc(pid, "stat");
    if (!text) continue;
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    total += (Number(fields[11]) + Number(fields[12])) * 10;
  }
  return total;
}

/**
 * A memory figure from /proc/PID/status (`VmRSS`, `VmHWM`), in bytes,
 * summed over the processes. For forked processes (uWSGI) pages they share
 * count once per process, so the sum is an upper bound.
 */
export async function memory(pids: number[], field: string): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const text = await readProc(pid, "status");
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    if (match) total += Number(match[1]) * 1024;
  }
  return total;
}

/**
 * Resets the processes' peak RSS (`VmHWM`) by writing 5 to
 * /proc/PID/clear_refs (Linux 4.0+; needs the same user or root). False if
 * it could not, and the peak stays the lifetime peak.
 */
export async function resetPeak(pids: number[]): Promise<boolean> {
  let ok = true;
  for (const pid of pids) {
    const result = await sh(
      'echo 5 > "/proc/$1/clear_refs" 2>/dev/null && echo ok',
      String(pid),
    );
    if (result.trim() !== "ok") ok = false;
  }
  return ok;
}

/**
 * Sets the CPU affinity of every thread of the processes (`taskset -a -p`);
 * threads they start later inherit it.
 */
export async function setAffinity(
  cleanup: Cleanup,
  pids: number[],
  cpus: string,
): Promise<void> {
  for (const pid of pids) {
    await cleanup.run(which("taskset"), ["-a", "-p", "-c", cpus, String(pid)], {
      allowFailure: true,
    });
  }
}

/** A load generator's output and the CPU time it used. */
export interface Measured {
  code: number;
  stdout: string;
  /** User plus system CPU time of the command (and what it waited for), ms. */
  cpuMs: number;
}

// The command runs as a child of sh; once sh has waited for it, its CPU time
// is in sh's cutime/cstime, which a `cat` of /proc/$$/stat (sh's own) shows.
// A trapped SIGTERM/SIGINT passes a SIGTERM on to the command.
const MEASURE = `"$@" & c=$!
trap 'kill $c 2>/dev/null' TERM INT
wait $c
s=$?
printf '\\n%s ' "$s"
cat /proc/$$/stat`;

/**
 * Runs a command to its end and measures its CPU time from outside: the
 * figure is exact, and costs the command nothing.
 */
export async function runMeasured(
  cleanup: Cleanup,
  cmd: string,
  args: string[],
): Promise<Measured> {
  const { stdout } = await cleanup.run(
    "sh",
    ["-c", MEASURE, "sh", cmd, ...args],
    { allowFailure: true },
  );
  const text = stdout.trimEnd();
  const cut = text.lastIndexOf("\n");
  const last = text.slice(cut + 1);
  const space = last.indexOf(" ");
  const code = Number(last.slice(0, space));
  const fields = last.slice(last.lastIndexOf(")") + 2).split(" ");
  return {
    code,
    stdout: text.slice(0, Math.max(cut, 0)),
    cpuMs: (Number(fields[13]) + Number(fields[14])) * 10,
  };
}

/** The median; NaN for none. */
export function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `value / base` as `0.87x`, or `-` without a base. */
export function ratio(value: number, base: number): string {
  return base > 0 && Number.isFinite(value) && Number.isFinite(base)
    ? (value / base).toFixed(2) + "x"
    : "-";
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return Number.isFinite(bytes) ? (bytes / 1024 ** 2).toFixed(1) : "-";
}

/** A number with `digits` decimals, or `-` for NaN. */
export function fixed(value: number, digits = 0): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

/**
 * A markdown table, padded so that it also reads as plain text; the first
 * column is left-aligned, the others right-aligned.
 */
export function markdownTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) =>
    Math.max(3, ...rows.map((row) => row[i]!.length))
  );
  const line = (row: string[]) =>
    "| " +
    row.map((cell, i) =>
      i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)
    ).join(" | ") + " |";
  const rule = "| " +
    widths.map((w, i) => i === 0 ? "-".repeat(w) : "-".repeat(w - 1) + ":")
      .join(" | ") +
    " |";
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join("\n");
}

/** `yes`/`NO` against a goal, or `-` when not measured. */
export function verdict(ok: boolean | undefined): string {
  return ok === undefined ? "-" : ok ? "yes" : "NO";
}

/** The first line of a command's output (`nginx -v`, `wrk -v`), trimmed. */
export async function version(
  cleanup: Cleanup,
  cmd: string,
  args: string[],
): Promise<string> {
  const { stdout, stderr } = await cleanup.run(cmd, args, {
    allowFailure: true,
  });
  return (stdout.trim() || stderr.trim()).split("\n")[0]!.trim();
}
