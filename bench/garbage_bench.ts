/**
 * Garbage per request: the bytes V8 allocates for each request, for the
 * floor (bench/floor.ts) and `serve()` answering `Hello, world\n`, side by
 * side. Each server runs with `--v8-flags=--trace-gc-nvp`, whose line per
 * collection says how much was allocated since the one before; the sum over
 * a fixed number of requests from `scgi bench` (after a warm-up), divided by
 * that number, is the figure. Medians of `--rounds`; the goal for
 * `serve()` is under 8 KB.
 *
 * ```sh
 * deno run --allow-run=deno --allow-read --allow-net=127.0.0.1 \
 *   bench/garbage_bench.ts --requests 100000 --rounds 3
 * ```
 *
 * This is a script, not a test.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve } from "../server.ts";
import { freePort } from "../tests/_peer.ts";
import { fixed, HELLO, markdownTable, median, ratio } from "./_util.ts";

const here = new URL(".", import.meta.url).pathname;
// By name, so that --allow-run=deno is enough (Deno.execPath() may be a
// symlink's target that the flag does not name).
const deno = "deno";

/** A server child whose collections are summed as they are reported. */
class Traced {
  allocated = 0;
  readonly #process: Deno.ChildProcess;
  readonly #reading: Promise<void>;

  constructor(script: string, args: string[]) {
    this.#process = new Deno.Command(deno, {
      args: [
        "run",
        "--allow-net=127.0.0.1",
        "--v8-flags=--trace-gc-nvp",
        script,
        ...args,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#reading = this.#read();
  }

  async #read(): Promise<void> {
    let rest = "";
    const decoder = new TextDecoder();
    for await (const chunk of this.#process.stdout) {
      const lines = (rest + decoder.decode(chunk, { stream: true })).split(
        "\n",
      );
      rest = lines.pop()!;
      for (const line of lines) {
        const match = /"allocated":(\d+)/.exec(line);
        if (match) this.allocated += Number(match[1]);
      }
    }
  }

  async stop(): Promise<void> {
    try {
      this.#process.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.#process.status;
    await this.#reading;
  }
}

async function load(port: number, requests: number): Promise<number> {
  const { stdout, code } = await new Deno.Command(deno, {
    args: [
      "run",
      `--allow-net=127.0.0.1:${port}`,
      `${here}../cli.ts`,
      "bench",
      "-n",
      String(requests),
      "-c",
      "64",
      "--json",
      `scgi://127.0.0.1:${port}/`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  if (code !== 0) throw new Error(`scgi bench exited with ${code}`);
  const result = JSON.parse(new TextDecoder().decode(stdout));
  return result.requests as number;
}

async function listening(port: number): Promise<void> {
  for (let i = 0; i < 400; i++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  throw new Error(`nothing listens on ${port}`);
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 300));

/** Bytes allocated per request by one server over `requests` requests. */
async function measure(
  which: "floor" | "serve",
  requests: number,
): Promise<number> {
  const port = freePort();
  const server = which === "floor"
    ? new Traced(`${here}floor.ts`, [String(port)])
    : new Traced(`${here}garbage_bench.ts`, ["--serve", String(port)]);
  try {
    await listening(port);
    await load(port, Math.min(20_000, requests));
    await settle();
    const before = server.allocated;
    const done = await load(port, requests);
    await settle();
    return (server.allocated - before) / done;
  } finally {
    await server.stop();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      serve: { type: "string" },
      requests: { type: "string", default: "100000" },
      rounds: { type: "string", default: "3" },
    },
  });
  if (values.serve !== undefined) {
    serve(
      { hostname: "127.0.0.1", port: Number(values.serve), onListen() {} },
      () => new Response(HELLO, { headers: { "content-type": "text/plain" } }),
    );
  } else {
    const requests = Number(values.requests);
    const rounds = Number(values.rounds);
    const floor: number[] = [];
    const server: number[] = [];
    for (let round = 1; round <= rounds; round++) {
      console.error(`round ${round}/${rounds}`);
      floor.push(await measure("floor", requests));
      server.push(await measure("serve", requests));
    }
    const f = median(floor);
    const s = median(server);
    console.log(
      `garbage per request, medians of ${rounds} round(s) of ${requests} requests (scgi bench -c 64):\n`,
    );
    console.log(markdownTable([
      ["server", "bytes allocated per request", "vs the floor", "goal"],
      ["the floor", fixed(f), "1.00x", ""],
      [
        "`serve()`",
        fixed(s),
        ratio(s, f),
        s < 8192 ? "< 8 KB: met" : "< 8 KB: not met",
      ],
    ]));
  }
}
