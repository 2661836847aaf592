/**
 * No nginx: load generators straight against SCGI servers, side by side in
 * one run (see bench/README.md):
 *
 * - servers: the floor (bench/floor.ts, TCP), `serve()` answering
 *   `Hello, world\n`, and `scgi serve app.ts --workers 1` and `--workers 2`
 * - generators: `scgi bench` (cli/bench.ts) and, where gcc is installed, the
 *   C load generator bench/scgi_load.c, built from source into a temp dir
 * - and a loop of `scgiFetch` calls against the floor, for the client's own
 *   cost per request
 *
 * Reported: requests/s, p99, the server's CPU time per request (all its
 * processes) and the client's, `scgi bench` / C tool against the floor
 * (goal ≥ 0.9), workers 2 / workers 1 (goal ≥ 1.6).
 *
 * ```sh
 * deno run --allow-run --allow-read --allow-write=/tmp --allow-net=127.0.0.1 \
 *   --allow-env=PATH bench/direct_bench.ts --quick
 * ```
 *
 * This is a script, not a test.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { serve } from "../server.ts";
import { scgiFetch } from "../client.ts";
import { findBinary, freePort } from "../tests/_peer.ts";
import {
  type Child,
  Cleanup,
  cpuMs,
  fixed,
  HELLO,
  markdownTable,
  median,
  processTree,
  ratio,
  runMeasured,
  verdict,
  version,
  waitListening,
  which,
} from "./_util.ts";

/** The permissions the script needs, printed with the command line. */
const FLAGS =
  "--allow-run --allow-read --allow-write=/tmp --allow-net=127.0.0.1 --allow-env=PATH";

const APP = `export default {
  fetch: () =>
    new Response(${
  JSON.stringify(HELLO)
}, { headers: { "content-type": "text/plain" } }),
};
`;

// ---------------------------------------------------------------------------
// Child modes: the serve() server, and the scgiFetch loop.

function runServe(port: number): void {
  serve(
    { hostname: "127.0.0.1", port, onListen() {} },
    () => new Response(HELLO, { headers: { "content-type": "text/plain" } }),
  );
}

/** What the scgiFetch loop prints, as one JSON line. */
interface LoopResult {
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  errors: number;
  latencyMs: { p99: number };
}

/**
 * `loops` concurrent loops of `scgiFetch(url)` and reading the body, for
 * `seconds` (each loop makes at least one call).
 */
async function fetchLoop(
  url: string,
  loops: number,
  seconds: number,
): Promise<void> {
  const started = performance.now();
  const stop = started + seconds * 1000;
  let requests = 0;
  let errors = 0;
  const latencies: number[] = [];
  await Promise.all(Array.from({ length: loops }, async () => {
    do {
      const t = performance.now();
      try {
        const response = await scgiFetch(url);
        const text = await response.text();
        if (response.status === 200 && text === HELLO) {
          requests++;
          latencies.push(performance.now() - t);
        } else {
          errors++;
        }
      } catch {
        errors++;
      }
    } while (performance.now() < stop);
  }));
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const result: LoopResult = {
    requests,
    seconds: elapsed,
    requestsPerSecond: requests / elapsed,
    errors,
    latencyMs: {
      p99: latencies[Math.floor(0.99 * (latencies.length - 1))] ?? NaN,
    },
  };
  console.log(JSON.stringify(result));
}

// ---------------------------------------------------------------------------
// The driver.

interface Options {
  duration: number;
  warmup: number;
  rounds: number;
  connections: number;
  servers: ServerName[];
  generators: GeneratorName[];
  fetchLoop: boolean;
}

const SERVERS = ["floor", "serve", "workers-1", "workers-2"] as const;
type ServerName = typeof SERVERS[number];
const LABELS: Record<ServerName, string> = {
  floor: "bare Deno loop (floor)",
  serve: "serve()",
  "workers-1": "scgi serve --workers 1",
  "workers-2": "scgi serve --workers 2",
};
const GENERATORS = ["c", "scgi-bench"] as const;
type GeneratorName = typeof GENERATORS[number];
const GENERATOR_LABELS: Record<GeneratorName | "fetch", string> = {
  c: "C tool (scgi_load.c)",
  "scgi-bench": "scgi bench",
  fetch: "scgiFetch loop",
};

const USAGE = `deno run ${FLAGS} bench/direct_bench.ts [options]

  --quick              one round, 3 s per run
  --duration S         seconds per run (default 5)
  --warmup S           unmeasured seconds per server first (default 1)
  --rounds N           rounds; tables show medians (default 3)
  -c, --connections N  concurrent connections / scgiFetch loops (default 64)
  --servers LIST       default ${SERVERS.join(",")}
  --generators LIST    default ${GENERATORS.join(",")}
  --no-fetch-loop      skip the scgiFetch loop
`;

function positive(name: string, text: string, zero = false): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || (!zero && n === 0)) {
    throw new Error(`${name} ${text}: not a positive whole number`);
  }
  return n;
}

function list<T extends string>(
  name: string,
  text: string,
  all: readonly T[],
): T[] {
  const items = text.split(",").map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    if (!all.includes(item as T)) {
      throw new Error(`${name}: unknown ${item} (one of ${all.join(", ")})`);
    }
  }
  return all.filter((item) => items.includes(item));
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      duration: { type: "string" },
      warmup: { type: "string", default: "1" },
      rounds: { type: "string" },
      connections: { type: "string", short: "c", default: "64" },
      servers: { type: "string", default: SERVERS.join(",") },
      generators: { type: "string", default: GENERATORS.join(",") },
      "no-fetch-loop": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  return {
    duration: positive(
      "--duration",
      values.duration ?? (values.quick ? "3" : "5"),
    ),
    warmup: positive("--warmup", values.warmup, true),
    rounds: positive("--rounds", values.rounds ?? (values.quick ? "1" : "3")),
    connections: positive("--connections", values.connections),
    servers: list("--servers", values.servers, SERVERS),
    generators: list("--generators", values.generators, GENERATORS),
    fetchLoop: !values["no-fetch-loop"],
  };
}

interface Run {
  rps: number;
  p99: number;
  requests: number;
  errors: number;
  /** Server CPU per request (all its processes), µs. */
  serverUs: number;
  /** Client CPU per request, less its start-up, µs. */
  clientUs: number;
  /** The server's CPU time per process, as shares, for the log. */
  split: string;
}

async function main(options: Options): Promise<void> {
  const cleanup = new Cleanup();
  try {
    await bench(cleanup, options);
  } finally {
    await cleanup.stopAll();
  }
}

async function bench(cleanup: Cleanup, options: Options): Promise<void> {
  const dir = cleanup.dir(
    await Deno.makeTempDir({ prefix: "direct-bench-" }),
  );
  const deno = Deno.execPath();
  const self = new URL(import.meta.url).pathname;
  const floorScript = new URL("./floor.ts", import.meta.url).pathname;
  const cli = new URL("../cli.ts", import.meta.url).pathname;
  const skipped: string[] = [];

  // The C tool, built from source.
  let cTool: string | undefined;
  if (options.generators.includes("c")) {
    const gcc = findBinary("gcc");
    if (!gcc) {
      skipped.push("the C tool: gcc is not installed");
    } else {
      cTool = `${dir}/scgi_load`;
      await cleanup.run(gcc, [
        "-O2",
        "-o",
        cTool,
        new URL("./scgi_load.c", import.meta.url).pathname,
      ]);
    }
  }
  const generators = options.generators.filter((g) => g !== "c" || cTool);
  if (generators.length === 0) throw new Error("no load generator to run");
  await Deno.writeTextFile(`${dir}/app.ts`, APP);

  // The servers, each on its own port.
  const ports: Partial<Record<ServerName, number>> = {};
  const trees: Partial<Record<ServerName, number[]>> = {};
  for (const name of options.servers) {
    const port = freePort();
    let child: Child;
    let listening = 1;
    if (name === "floor") {
      child = cleanup.spawn(name, deno, [
        "run",
        "--allow-net=127.0.0.1",
        floorScript,
        String(port),
      ], { cwd: dir });
    } else if (name === "serve") {
      child = cleanup.spawn(name, deno, [
        "run",
        "--allow-net=127.0.0.1",
        self,
        "--serve",
        String(port),
      ], { cwd: dir });
    } else {
      listening = name === "workers-2" ? 2 : 1;
      child = cleanup.spawn(name, deno, [
        "run",
        `--allow-net=127.0.0.1:${port}`,
        `--allow-read=${dir}`,
        `--allow-run=${deno}`,
        cli,
        "serve",
        `${dir}/app.ts`,
        "--port",
        String(port),
        "--workers",
        String(listening),
      ], { cwd: dir });
    }
    await waitListening({ port }, child);
    if (name.startsWith("workers")) {
      // Every worker says "Listening on … (pid N)" once it listens.
      const deadline = Date.now() + 20_000;
      while (
        (child.output().match(/Listening on/g)?.length ?? 0) < listening
      ) {
        if (!child.alive() || Date.now() > deadline) {
          throw new Error(
            `${name}: not every worker listens:\n${child.output()}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }
    ports[name] = port;
    trees[name] = await processTree(child.pid);
    cleanup.watch(trees[name]!.slice(1));
    if (name.startsWith("workers") && trees[name]!.length !== listening + 1) {
      throw new Error(
        `${name}: expected ${listening} workers, found pids ${trees[name]}`,
      );
    }
  }
  for (const reason of skipped) console.error(`skipped: ${reason}`);

  const c = options.connections;
  const target = (name: ServerName) => `127.0.0.1:${ports[name]}`;
  const generate = async (
    generator: GeneratorName | "fetch",
    name: ServerName,
    seconds: number,
  ) => {
    if (generator === "c") {
      return await runMeasured(cleanup, cTool!, [
        "-c",
        String(c),
        "-d",
        String(seconds),
        target(name),
      ]);
    }
    if (generator === "scgi-bench") {
      return await runMeasured(cleanup, deno, [
        "run",
        `--allow-net=${target(name)}`,
        cli,
        "bench",
        `scgi://${target(name)}/`,
        ...(seconds > 0
          ? ["-c", String(c), "-d", `${seconds}s`]
          : ["-c", "1", "-n", "1"]),
        "--json",
      ]);
    }
    return await runMeasured(cleanup, deno, [
      "run",
      `--allow-net=${target(name)}`,
      self,
      "--fetch-loop",
      `scgi://${target(name)}/`,
      String(seconds > 0 ? c : 1),
      String(seconds),
    ]);
  };
  const parse = (stdout: string, what: string) => {
    const line = stdout.trim().split("\n").at(-1) ?? "";
    try {
      return JSON.parse(line) as {
        requests: number;
        requestsPerSecond: number;
        errors: number | Record<string, number>;
        statuses?: Record<string, number>;
        latencyMs: { p99: number };
      };
    } catch {
      throw new Error(`${what}: cannot read its output:\n${stdout}`);
    }
  };
  const measure = async (
    generator: GeneratorName | "fetch",
    name: ServerName,
    startupMs: number,
  ): Promise<Run> => {
    const tree = trees[name]!;
    const each = (pids: number[]) => Promise.all(pids.map((p) => cpuMs([p])));
    const before = await each(tree);
    const measured = await generate(generator, name, options.duration);
    const after = await each(tree);
    const deltas = after.map((ms, i) => ms - before[i]!);
    const used = deltas.reduce((sum, ms) => sum + ms, 0);
    const result = parse(measured.stdout, `${generator} against ${name}`);
    let errors = typeof result.errors === "number"
      ? result.errors
      : Object.values(result.errors).reduce((sum, n) => sum + n, 0);
    for (const [status, n] of Object.entries(result.statuses ?? {})) {
      if (!status.startsWith("2")) errors += n;
    }
    const n = result.requests;
    return {
      rps: result.requestsPerSecond,
      p99: result.latencyMs.p99,
      requests: n,
      errors,
      serverUs: n > 0 ? used * 1000 / n : NaN,
      clientUs: n > 0 ? (measured.cpuMs - startupMs) * 1000 / n : NaN,
      // How the CPU time spread over the processes (supervisor, workers).
      split: tree.length > 1
        ? deltas.map((ms) => `${fixed(used > 0 ? 100 * ms / used : NaN)}%`)
          .join("/")
        : "",
    };
  };

  const versions = [
    `deno ${Deno.version.deno}`,
    ...(cTool ? [await version(cleanup, which("gcc"), ["--version"])] : []),
  ];
  console.log(`# direct bench (no nginx), ${new Date().toISOString()}\n`);
  console.log("```sh");
  console.log(`deno run ${FLAGS} bench/direct_bench.ts ${Deno.args.join(" ")}`);
  console.log("```\n");
  console.log(
    `${
      versions.join(", ")
    }; ${navigator.hardwareConcurrency} CPUs, no pinning. ` +
      `${c} connections, ${options.rounds} round(s) x ${options.duration} s per server and generator` +
      (options.warmup ? ` after ${options.warmup} s unmeasured` : "") +
      `; medians over rounds. Client CPU is less its start-up (the same command doing one request).`,
  );
  for (const reason of skipped) console.log(`Skipped: ${reason}.`);

  if (options.warmup > 0) {
    for (const name of options.servers) {
      await generate(generators[0]!, name, options.warmup);
    }
  }

  const results: Record<string, Run[]> = {};
  const key = (generator: string, name: string) => `${generator} ${name}`;
  const startupOf = async (generator: GeneratorName | "fetch") => {
    if (generator === "c") return 0;
    const base = options.servers.includes("floor")
      ? "floor"
      : options.servers[0]!;
    return (await generate(generator, base, 0)).cpuMs;
  };
  const log = (what: string, run: Run) =>
    console.error(
      `${what}: ${fixed(run.rps)} req/s, p99 ${
        fixed(run.p99, 2)
      } ms, server CPU ${fixed(run.serverUs, 1)} us/req, client CPU ${
        fixed(run.clientUs, 1)
      } us/req` + (run.split ? ` (server CPU by process ${run.split})` : "") +
        (run.errors ? `, ${run.errors} errors` : ""),
    );
  for (let round = 1; round <= options.rounds; round++) {
    const startup: Record<string, number> = {};
    for (const generator of generators) {
      startup[generator] = await startupOf(generator);
    }
    console.error(
      `round ${round} start-up CPU (one request): ${
        generators.map((g) => `${g} ${startup[g]} ms`).join(", ")
      }`,
    );
    for (const name of options.servers) {
      for (const generator of generators) {
        const run = await measure(generator, name, startup[generator]!);
        (results[key(generator, name)] ??= []).push(run);
        log(`round ${round} ${generator} -> ${name}`, run);
      }
    }
    if (options.fetchLoop && options.servers.includes("floor")) {
      const startupMs = await startupOf("fetch");
      const run = await measure("fetch", "floor", startupMs);
      (results[key("fetch", "floor")] ??= []).push(run);
      log(
        `round ${round} scgiFetch loop -> floor (start-up CPU ${startupMs} ms)`,
        run,
      );
    }
  }

  const med = (
    generator: string,
    name: string,
    field: Exclude<keyof Run, "split">,
  ) => {
    const runs = results[key(generator, name)];
    return runs ? median(runs.map((r) => r[field])) : NaN;
  };
  const rows = [[
    "server",
    "load generator",
    "req/s",
    "vs floor",
    "p99 ms",
    "server CPU µs/req",
    "vs floor",
    "client CPU µs/req",
    "errors",
  ]];
  for (const name of options.servers) {
    for (const generator of generators) {
      const runs = results[key(generator, name)]!;
      rows.push([
        LABELS[name],
        GENERATOR_LABELS[generator],
        fixed(med(generator, name, "rps")),
        ratio(med(generator, name, "rps"), med(generator, "floor", "rps")),
        fixed(med(generator, name, "p99"), 2),
        fixed(med(generator, name, "serverUs"), 1),
        ratio(
          med(generator, name, "serverUs"),
          med(generator, "floor", "serverUs"),
        ),
        fixed(med(generator, name, "clientUs"), 1),
        String(runs.reduce((sum, r) => sum + r.errors, 0)),
      ]);
    }
  }
  console.log(`\n## Servers by load generator, ${c} connections\n`);
  console.log(markdownTable(rows));

  const goals = [["figure", "value", "goal", "met"]];
  const goal = (text: string, value: number, target: number) =>
    goals.push([
      text,
      Number.isFinite(value) ? `${value.toFixed(3)}x` : "-",
      `≥ ${target}x`,
      verdict(Number.isFinite(value) ? value >= target : undefined),
    ]);
  goal(
    "scgi bench / C tool, req/s against the floor",
    med("scgi-bench", "floor", "rps") / med("c", "floor", "rps"),
    0.9,
  );
  for (const generator of generators) {
    goal(
      `workers 2 / workers 1, req/s (${GENERATOR_LABELS[generator]})`,
      med(generator, "workers-2", "rps") / med(generator, "workers-1", "rps"),
      1.6,
    );
  }
  console.log("\n## Goals\n");
  console.log(markdownTable(goals));

  if (options.servers.includes("floor")) {
    const clients = [...generators, ...(options.fetchLoop ? ["fetch"] : [])];
    const cost = [[
      "client",
      "req/s",
      "client CPU µs/req",
      "vs C tool",
      "vs scgi bench",
      "p99 ms",
      "errors",
    ]];
    for (const client of clients) {
      cost.push([
        client === "fetch"
          ? `scgiFetch, ${c} loops`
          : GENERATOR_LABELS[client as GeneratorName],
        fixed(med(client, "floor", "rps")),
        fixed(med(client, "floor", "clientUs"), 1),
        ratio(med(client, "floor", "clientUs"), med("c", "floor", "clientUs")),
        ratio(
          med(client, "floor", "clientUs"),
          med("scgi-bench", "floor", "clientUs"),
        ),
        fixed(med(client, "floor", "p99"), 2),
        String(
          (results[key(client, "floor")] ?? []).reduce(
            (sum, r) => sum + r.errors,
            0,
          ),
        ),
      ]);
    }
    console.log(
      `\n## Client cost per request, against the floor, ${c} connections\n`,
    );
    console.log(markdownTable(cost));
  }
}

if (import.meta.main) {
  const args = Deno.args;
  if (args[0] === "--serve") {
    runServe(Number(args[1]));
  } else if (args[0] === "--fetch-loop") {
    await fetchLoop(args[1]!, Number(args[2]), Number(args[3]));
  } else {
    await main(parseOptions(args));
  }
}
