// Starting and stopping real peer processes (nginx, lighttpd, Apache, uWSGI,
// Perl, rtorrent) for the interop tests: from a temp dir, on free loopback
// ports, stopped by PID. Never a system service.

/** Where Debian installs daemons that are not on a normal user's PATH. */
const EXTRA_PATHS = ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"];

/** The absolute path of an executable, or undefined when it isn't installed. */
export function findBinary(name: string): string | undefined {
  const path = Deno.env.get("PATH") ?? "";
  for (const dir of [...path.split(":"), ...EXTRA_PATHS]) {
    if (!dir) continue;
    const candidate = `${dir}/${name}`;
    try {
      const info = Deno.statSync(candidate);
      if (info.isFile && (info.mode ?? 0) & 0o111) return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/**
 * Registers a test that skips, with a printed reason, when a peer binary is
 * missing. In CI (`CI` set) a missing peer is a failure, not a skip: `.ci/run`
 * installs them all.
 */
export function peerTest(
  binaries: string[],
  name: string,
  fn: (t: Deno.TestContext) => void | Promise<void>,
  options: Partial<Deno.TestDefinition> = {},
): void {
  const missing = binaries.filter((binary) => !findBinary(binary));
  if (missing.length > 0 && !Deno.env.get("CI")) {
    Deno.test({
      name: `${name} (skipped: ${missing.join(", ")} not installed)`,
      ignore: true,
      fn() {},
    });
    console.log(`skip: ${name}: ${missing.join(", ")} not installed`);
    return;
  }
  Deno.test({
    ...options,
    name,
    fn: async (t) => {
      if (missing.length > 0) {
        throw new Error(
          `${missing.join(", ")} not installed (CI installs every peer)`,
        );
      }
      await fn(t);
    },
  });
}

/** A port nobody listens on right now. */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Resolves once something accepts connections at the address. */
export async function waitForListen(
  addr: { hostname?: string; port: number } | { path: string },
  timeoutMs = 15_000,
  alive?: () => boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      const conn = "path" in addr
        ? await Deno.connect({ transport: "unix", path: addr.path })
        : await Deno.connect({
          hostname: addr.hostname ?? "127.0.0.1",
          port: addr.port,
        });
      conn.close();
      return;
    } catch (error) {
      if (alive && !alive()) {
        throw new Error(
          `peer exited before listening on ${JSON.stringify(addr)}`,
        );
      }
      if (Date.now() > deadline) {
        throw new Error(
          `nothing listens on ${JSON.stringify(addr)} after ${timeoutMs} ms`,
          { cause: error },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/** A running peer process. */
export interface Peer extends AsyncDisposable {
  readonly pid: number;
  /** What the process printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then SIGKILL after a grace period; waits for the exit. */
  stop(): Promise<void>;
  /** True until the process exits. */
  alive(): boolean;
}

/** Starts a peer process with its output captured. */
export function startPeer(
  command: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Peer {
  const child = new Deno.Command(command, {
    args,
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.env ? { env: options.env } : {}),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) {
      text += decoder.decode(chunk, { stream: true });
    }
  };
  const collecting = Promise.all([
    collect(child.stdout),
    collect(child.stderr),
  ]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    if (!exited) {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, 5000);
      await status;
      clearTimeout(timer);
    } else {
      await status;
    }
    await collecting;
  };
  return {
    pid: child.pid,
    output: () => text,
    stop,
    alive: () => !exited,
    [Symbol.asyncDispose]: stop,
  };
}
