#!/usr/bin/env -S deno run --allow-run=deno
/**
 * The demo, built from the command line tools: `scgi serve` runs
 * `examples/app.ts` as an SCGI backend, and `scgi proxy` puts an HTTP front
 * end before it, as nginx would be. Open the printed URL; Ctrl-C stops both
 * gracefully.
 *
 *     deno task demo            (or: deno run --allow-run=deno examples/demo.ts [http-port])
 *
 * The demo itself may only start `deno`; each process gets its own least
 * permissions:
 *
 * - `scgi serve`: `--allow-net=127.0.0.1 --allow-read=<examples folder>`
 *   (any loopback port, since it listens on port 0 and reports the port)
 * - `scgi proxy`: `--allow-net=127.0.0.1:<http port>,127.0.0.1:<backend port>`
 *
 * @module
 */

const httpPort = Deno.args[0] ?? "8000";
if (!/^[0-9]{1,5}$/.test(httpPort)) {
  console.error(`demo: the HTTP port must be a number, not ${httpPort}`);
  Deno.exit(2);
}
const cli = new URL("../cli.ts", import.meta.url).pathname;
const examples = new URL(".", import.meta.url).pathname.replace(/\/$/, "");

interface Child {
  name: string;
  process: Deno.ChildProcess;
  /** Resolves with the first stderr match of `pattern`. */
  ready: Promise<RegExpMatchArray>;
}

// Starts `deno run FLAGS cli.ts ARGS`; its stderr is shown as it comes and
// searched for the line that says it is ready.
function start(
  name: string,
  flags: string[],
  args: string[],
  pattern: RegExp,
): Child {
  let process: Deno.ChildProcess;
  try {
    process = new Deno.Command("deno", {
      args: ["run", "--quiet", ...flags, cli, ...args],
      stdin: "null",
      stdout: "inherit",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    console.error(
      `demo: cannot start deno (${(error as Error).message}); is deno on PATH?`,
    );
    Deno.exit(1);
  }
  const ready = Promise.withResolvers<RegExpMatchArray>();
  (async () => {
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of process.stderr) {
      const piece = decoder.decode(chunk, { stream: true });
      Deno.stderr.writeSync(new TextEncoder().encode(piece));
      text += piece;
      const match = text.match(pattern);
      if (match) ready.resolve(match);
    }
    ready.reject(new Error(`${name} exited before it was ready`));
  })();
  ready.promise.catch(() => {});
  return { name, process, ready: ready.promise };
}

const children: Child[] = [];
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  // A terminal's Ctrl-C has already reached the children (same process
  // group); a SIGTERM to the demo alone is passed on here.
  for (const child of children) {
    try {
      child.process.kill("SIGTERM");
    } catch {
      // Already gone.
    }
  }
  await Promise.all(children.map((child) => child.process.status));
  console.log("demo: stopped");
  Deno.exit(code);
};
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, () => stop(0));
}

const backend = start(
  "scgi serve",
  ["--allow-net=127.0.0.1", `--allow-read=${examples}`],
  ["serve", `${examples}/app.ts`, "--port", "0"],
  /Listening on scgi:\/\/127\.0\.0\.1:(\d+)\//,
);
children.push(backend);
let backendPort: string;
try {
  backendPort = (await backend.ready)[1]!;
} catch (error) {
  console.error(`demo: ${(error as Error).message}`);
  await stop(1);
  throw error;
}

const front = start(
  "scgi proxy",
  [`--allow-net=127.0.0.1:${httpPort},127.0.0.1:${backendPort}`],
  ["proxy", "--listen", httpPort, "--backend", `127.0.0.1:${backendPort}`],
  /Listening on (http:\/\/\S+)/,
);
children.push(front);
try {
  const [, url] = await front.ready;
  console.log(`\nOpen ${url} in a browser (Ctrl-C stops both)\n`);
} catch (error) {
  console.error(
    `demo: ${
      (error as Error).message
    } (is port ${httpPort} free? try: deno task demo 8080)`,
  );
  await stop(1);
}

// Either one ending on its own ends the demo.
await Promise.race(children.map((child) => child.process.status));
if (!stopping) {
  console.error("demo: a process exited; stopping the other");
  await stop(1);
}
