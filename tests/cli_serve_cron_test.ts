// `scgi serve` runs the app module's `export const cron` jobs (docs/cron.md):
// in the one process, or with --workers each run in one worker (once per
// tick, not once per worker), still after a SIGHUP reload with the new
// module's code; a failing job is reported once and serving goes on; a
// schedule without --unstable-cron and a bad `every` are errors at startup.
// Every run appends "version name id pid" to a file; the tests wait
// (bounded) for lines, they never assert on timing.

import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { freePort } from "./_peer.ts";
import { ROOT, runCli, startCli } from "./_cli.ts";

const DENO = Deno.execPath();

/** An app whose job `tick` runs every `every` and logs to `log`. */
function appSource(version: string, log: string, every = "100ms"): string {
  return `export const cron = {
  tick: {
    every: ${JSON.stringify(every)},
    async handler({ name, id }: { name: string; id: number }) {
      if (Deno.env.get("FAIL_FIRST") && id === 1) throw new Error("boom in run " + id);
      await Deno.writeTextFile(${JSON.stringify(log)},
        "${version} " + name + " " + id + " " + Deno.pid + "\\n", { append: true });
    },
  },
};
export default { fetch: () => new Response("${version} " + Deno.pid) };
`;
}

interface Line {
  version: string;
  name: string;
  id: number;
  pid: number;
}

async function lines(log: string): Promise<Line[]> {
  let text = "";
  try {
    text = await Deno.readTextFile(log);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return text.split("\n").filter((line) => line).map((line) => {
    const [version, name, id, pid] = line.split(" ");
    return { version: version!, name: name!, id: Number(id), pid: Number(pid) };
  });
}

/** Waits (bounded) until `log` has `count` lines that pass `keep`. */
async function waitForLines(
  log: string,
  count: number,
  keep: (line: Line) => boolean = () => true,
  timeoutMs = 30_000,
): Promise<Line[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = await lines(log);
    if (all.filter(keep).length >= count) return all;
    if (Date.now() > deadline) {
      throw new Error(`${log} has ${all.length} lines, wanted ${count}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Each run id once, counting up from 1 without a gap. */
function assertOncePerTick(all: Line[]): void {
  const ids = all.map((line) => line.id).sort((a, b) => a - b);
  assert.deepEqual(ids, ids.map((_, i) => i + 1), JSON.stringify(all));
}

function workerPids(stderr: string): Set<number> {
  return new Set(
    [...stderr.matchAll(/worker \d+ pid (\d+) started/g)].map((m) =>
      Number(m[1])
    ),
  );
}

/**
 * `scgi serve app.ts --workers 2` on a free port with the v1 app logging to
 * `runs.log` in `dir`, its grants passed on to the workers; resolves once
 * both workers serve.
 */
async function serveWorkers(dir: string, env: Record<string, string> = {}) {
  const app = `${dir}/app.ts`;
  const log = `${dir}/runs.log`;
  await Deno.writeTextFile(app, appSource("v1", log));
  const port = freePort();
  const grants = [`--allow-write=${log}`, "--allow-env=FAIL_FIRST"];
  const server = startCli(
    [
      `--allow-net=127.0.0.1:${port}`,
      `--allow-read=${dir}`,
      `--allow-run=${DENO}`,
      ...grants,
    ],
    ["serve", app, "--port", String(port), "--workers", "2", "--", ...grants],
    { env },
  );
  try {
    await server.waitFor(/Serving .* with 2 workers/);
  } catch (error) {
    await server[Symbol.asyncDispose]();
    throw error;
  }
  return { app, log, port, server };
}

Deno.test("scgi serve: an every job runs in the one process, with its name and run id", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-cron-" });
  try {
    const app = `${dir}/app.ts`;
    const log = `${dir}/runs.log`;
    await Deno.writeTextFile(app, appSource("v1", log));
    await using server = startCli(
      [
        "--allow-net=127.0.0.1",
        `--allow-read=${dir}`,
        `--allow-write=${log}`,
        "--allow-env=FAIL_FIRST",
      ],
      ["serve", app, "--port", "0"],
    );
    await server.waitFor(/Listening on /);
    await server.waitFor(/cron job "tick" runs every 100 ?ms/);
    const all = await waitForLines(log, 3);
    assertOncePerTick(all);
    for (const line of all) {
      assert.equal(line.name, "tick");
      assert.equal(line.pid, server.pid);
    }
    await server.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers 2: a job runs once per tick in one worker, and goes on after SIGHUP with the new code", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-cron-workers-" });
  try {
    const { app, log, server: started } = await serveWorkers(dir);
    await using server = started;
    const first = workerPids(server.stderr());
    assert.equal(first.size, 2);
    const before = await waitForLines(log, 6);
    assertOncePerTick(before);
    for (const line of before) {
      assert.ok(first.has(line.pid), `run ${line.id} in pid ${line.pid}`);
      assert.notEqual(line.pid, server.pid); // never in the supervisor
    }

    await Deno.writeTextFile(app, appSource("v2", log));
    server.kill("SIGHUP");
    await server.waitFor(/reloaded: /);
    const after = await waitForLines(log, 3, (line) => line.version === "v2");
    assertOncePerTick(after);
    const fresh = new Set(
      [...workerPids(server.stderr())].filter((pid) => !first.has(pid)),
    );
    const v2 = after.filter((line) => line.version === "v2");
    for (const line of v2) {
      assert.ok(fresh.has(line.pid), `v2 run ${line.id} in pid ${line.pid}`);
    }
    // Run ids go on counting across the reload.
    assert.ok(v2[0]!.id > before.length - 1);
    await server.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers 2: a job that throws is reported once on stderr, and runs and requests go on", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-cron-fail-" });
  try {
    const { log, port, server: started } = await serveWorkers(dir, {
      FAIL_FIRST: "1",
    });
    await using server = started;
    await server.waitFor(/cron job "tick" failed \(run 1, pid \d+\)/);
    await waitForLines(log, 2); // runs 2 and 3: after the failure
    const reports = [...server.stderr().matchAll(/boom in run 1/g)];
    assert.equal(reports.length, 1, server.stderr());
    const response = await scgiFetch(`scgi://127.0.0.1:${port}/`);
    assert.equal(response.status, 200);
    assert.match(await response.text(), /^v1 \d+$/);
    await server.stop();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve: a schedule job needs --unstable-cron, said at startup; with it the example starts", async () => {
  const app = `${ROOT}/examples/cron_app.ts`;
  const flags = [
    "--allow-net=127.0.0.1",
    `--allow-read=${ROOT}/examples`,
    "--allow-env=CRON_LOG",
  ];
  const without = await runCli(flags, ["serve", app, "--port", "0"]);
  assert.equal(without.code, 1, without.stderr);
  assert.match(
    without.stderr,
    /cron job "nightly" \(schedule "0 3 \* \* \*"\) needs Deno\.cron: start scgi serve with deno run --unstable-cron/,
  );
  assert.doesNotMatch(without.stderr, /Listening on/);

  await using server = startCli(["--unstable-cron", ...flags], [
    "serve",
    app,
    "--port",
    "0",
  ]);
  const [, port] = await server.waitFor(/Listening on scgi:\/\/[^:]+:(\d+)/);
  await server.waitFor(/cron job "nightly" runs on "0 3 \* \* \*"/);
  assert.match(server.stderr(), /cron job "heartbeat" runs every 10000 ms/);
  const response = await scgiFetch(`scgi://127.0.0.1:${port}/`);
  assert.match(await response.text(), /heartbeat ran 0 times, nightly 0/);
  await server.stop();
});

Deno.test("scgi serve: an invalid every is an error at startup", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-cron-bad-" });
  try {
    const app = `${dir}/app.ts`;
    await Deno.writeTextFile(app, appSource("v1", `${dir}/runs.log`, "soon"));
    const run = await runCli(
      ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
      ["serve", app, "--port", "0"],
    );
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr,
      /cron\.tick\.every must be milliseconds \(a number\) or a duration like "500ms", "10s" or "2m", not "soon"/,
    );
    assert.doesNotMatch(run.stderr, /Listening on/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
