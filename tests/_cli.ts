// Running the `scgi` command line as a subprocess in the CLI tests, with
// exactly the permissions docs/cli.md documents for each command.

/** The CLI entry point. */
export const CLI: string = new URL("../cli.ts", import.meta.url).pathname;
/** The repository root. */
export const ROOT: string = new URL("..", import.meta.url).pathname.replace(
  /\/$/,
  "",
);

/** What a finished run printed and returned. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `deno run FLAGS cli.ts ARGS` to its end. */
export async function runCli(
  flags: string[],
  args: string[],
  options: { stdin?: Uint8Array; cwd?: string } = {},
): Promise<CliRun> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...flags, CLI, ...args],
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  if (options.stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(options.stdin);
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

/** A long-running CLI process (serve, proxy) with its output captured. */
export interface CliProcess extends AsyncDisposable {
  readonly pid: number;
  /** Fulfils with the exit status. */
  readonly status: Promise<Deno.CommandStatus>;
  /** Everything printed so far: stdout, stderr. */
  stdout(): string;
  stderr(): string;
  /** Waits until stdout+stderr match, and returns the match. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /**
   * Waits until stdout+stderr hold `count` matches of `pattern` (a global
   * regexp), and returns them all.
   */
  waitForCount(
    pattern: RegExp,
    count: number,
    timeoutMs?: number,
  ): Promise<RegExpMatchArray[]>;
  /** Sends a signal (if still running). */
  kill(signal?: Deno.Signal): void;
  /** SIGTERM, then SIGKILL after 10 s; waits for the exit. */
  stop(): Promise<Deno.CommandStatus>;
}

/** Starts `deno run FLAGS cli.ts ARGS` in the background. */
export function startCli(
  flags: string[],
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): CliProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...flags, CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1", ...options.env },
    ...(options.cwd ? { cwd: options.cwd } : {}),
  }).spawn();
  let out = "";
  let err = "";
  const decoder = () => new TextDecoder();
  const collect = async (
    stream: ReadableStream<Uint8Array>,
    add: (text: string) => void,
  ) => {
    const d = decoder();
    for await (const chunk of stream) add(d.decode(chunk, { stream: true }));
  };
  const collecting = Promise.all([
    collect(child.stdout, (t) => (out += t)),
    collect(child.stderr, (t) => (err += t)),
  ]);
  let exited = false;
  const status = child.status.then(async (s) => {
    exited = true;
    await collecting;
    return s;
  });
  const kill = (signal: Deno.Signal = "SIGTERM") => {
    if (exited) return;
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  };
  const stop = async () => {
    kill("SIGTERM");
    const timer = setTimeout(() => kill("SIGKILL"), 10_000);
    try {
      return await status;
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    pid: child.pid,
    status,
    stdout: () => out,
    stderr: () => err,
    kill,
    stop,
    async waitFor(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const match = (out + err).match(pattern);
        if (match) return match;
        if (exited) {
          throw new Error(`exited before printing ${pattern}:\n${out}${err}`);
        }
        if (Date.now() > deadline) {
          throw new Error(`no ${pattern} after ${timeoutMs} ms:\n${out}${err}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async waitForCount(pattern, count, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (true) {
        const matches = [...(out + err).matchAll(pattern)];
        if (matches.length >= count) return matches;
        if (exited) {
          throw new Error(
            `exited after ${matches.length} of ${count} ${pattern}:\n${out}${err}`,
          );
        }
        if (Date.now() > deadline) {
          throw new Error(
            `${matches.length} of ${count} ${pattern} after ${timeoutMs} ms:\n${out}${err}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** Asserts-friendly: the stderr of a failed run is exactly one line. */
export function oneLine(text: string): boolean {
  return /^[^\n]+\n$/.test(text);
}
