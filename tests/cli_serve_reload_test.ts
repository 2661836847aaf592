// `scgi serve --workers`: SIGHUP reloads (a fresh set of workers with the
// module loaded anew, the old ones finishing what they have), a reload that
// cannot start leaves the old workers serving, a Unix socket is reloaded by
// binding beside it and moving the new socket over the path, workers never
// outlive their supervisor, and --max-requests replaces a worker.

import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { freePort } from "./_peer.ts";
import { type CliProcess, startCli } from "./_cli.ts";

const DENO = Deno.execPath();

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** Waits (bounded) until no process has this pid. */
async function gone(pid: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} still runs`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** An app that answers its version and pid; `/slow` takes `ms` first. */
function appSource(version: string): string {
  return `export default {
  async fetch(request: Request) {
    const ms = Number(new URL(request.url).searchParams.get("slow") ?? 0);
    if (ms) await new Promise((resolve) => setTimeout(resolve, ms));
    return new Response("${version} " + Deno.pid);
  },
};
`;
}

/** The exit status, or a failure after `timeoutMs`. */
async function exitWithin(
  server: CliProcess,
  timeoutMs = 30_000,
): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`still running:\n${server.stderr()}`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([server.status, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function ask(target: string, query = ""): Promise<[string, number]> {
  const url = target.startsWith("/")
    ? `scgi+unix://${encodeURIComponent(target)}/${query}`
    : `scgi://${target}/${query}`;
  const response = await scgiFetch(url);
  const text = await response.text();
  assert.equal(response.status, 200, text);
  const [version, pid] = text.split(" ");
  return [version!, Number(pid)];
}

function workerPids(server: CliProcess): number[] {
  return [...server.stderr().matchAll(/worker \d+ pid (\d+) started/g)].map((
    match,
  ) => Number(match[1]));
}

Deno.test("scgi serve --workers: SIGHUP starts workers with the changed app, lets the old finish, keeps the supervisor's pid", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-reload-" });
  try {
    const app = `${dir}/app.ts`;
    await Deno.writeTextFile(app, appSource("v1"));
    const port = freePort();
    const target = `127.0.0.1:${port}`;
    await using server = startCli(
      [`--allow-net=${target}`, `--allow-read=${dir}`, `--allow-run=${DENO}`],
      ["serve", app, "--port", String(port), "--workers", "2"],
    );
    await server.waitFor(/Serving .* with 2 workers/);
    const before = workerPids(server);
    assert.equal(before.length, 2);
    assert.equal((await ask(target))[0], "v1");

    // A request in flight when the reload starts is finished by its worker.
    const slow = ask(target, "?slow=1500");
    await new Promise((resolve) => setTimeout(resolve, 100));
    await Deno.writeTextFile(app, appSource("v2"));
    server.kill("SIGHUP");
    await server.waitFor(/reloaded: pid \d+, \d+ serve/);
    const [slowVersion, slowPid] = await slow;
    assert.equal(slowVersion, "v1");
    assert.ok(before.includes(slowPid));

    assert.ok(alive(server.pid), "the supervisor keeps its pid");
    for (const pid of before) await gone(pid);
    const after = workerPids(server).slice(2);
    assert.equal(after.length, 2);
    for (let i = 0; i < 20; i++) {
      const [version, pid] = await ask(target);
      assert.equal(version, "v2");
      assert.ok(after.includes(pid));
    }
    assert.equal((await server.stop()).code, 0, server.stderr());
    for (const pid of after) assert.ok(!alive(pid));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers: a reload that cannot start says why and the old workers keep serving", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-reload-bad-" });
  try {
    const app = `${dir}/app.ts`;
    await Deno.writeTextFile(app, appSource("v1"));
    const port = freePort();
    const target = `127.0.0.1:${port}`;
    await using server = startCli(
      [`--allow-net=${target}`, `--allow-read=${dir}`, `--allow-run=${DENO}`],
      ["serve", app, "--port", String(port), "--workers", "2"],
    );
    await server.waitFor(/Serving .* with 2 workers/);
    const before = workerPids(server);

    for (
      const [source, why] of [
        ["export default {;\n", /cannot load .*app\.ts: .*/],
        ['throw new Error("no database");\n', /no database/],
      ] as const
    ) {
      await Deno.writeTextFile(app, source);
      const count = [...server.stderr().matchAll(/reload failed/g)].length;
      server.kill("SIGHUP");
      const [line] = (await server.waitForCount(
        /reload failed: [^\n]*/g,
        count + 1,
      )).at(-1)!;
      assert.match(line, why);
      assert.match(line, /still serving with pid \d+, \d+/);
      for (let i = 0; i < 10; i++) {
        const [version, pid] = await ask(target);
        assert.equal(version, "v1");
        assert.ok(before.includes(pid));
      }
    }
    // Fixed: the next SIGHUP works.
    await Deno.writeTextFile(app, appSource("v3"));
    server.kill("SIGHUP");
    await server.waitFor(/reloaded: /);
    assert.equal((await ask(target))[0], "v3");
    assert.equal((await server.stop()).code, 0, server.stderr());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --socket --workers 1: a reload binds beside the socket and moves it over the path", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-reload-unix-" });
  try {
    const app = `${dir}/app.ts`;
    const socket = `${dir}/app.sock`;
    await Deno.writeTextFile(app, appSource("v1"));
    await using server = startCli(
      [
        `--allow-read=${dir}`,
        `--allow-write=${socket},${socket}.new`,
        `--allow-net=unix:${socket},unix:${socket}.new`,
        `--allow-run=${DENO}`,
      ],
      [
        "serve",
        app,
        "--socket",
        socket,
        "--socket-mode",
        "660",
        "--workers",
        "1",
      ],
    );
    await server.waitFor(/Serving .* with 1 worker/);
    const [first] = workerPids(server);
    assert.deepEqual(await ask(socket), ["v1", first]);

    for (const version of ["v2", "v3"]) {
      await Deno.writeTextFile(app, appSource(version));
      const count = [...server.stderr().matchAll(/reloaded: /g)].length;
      server.kill("SIGHUP");
      await server.waitForCount(/reloaded: /g, count + 1);
      const pid = workerPids(server).at(-1)!;
      assert.deepEqual(await ask(socket), [version, pid]);
      const info = await Deno.lstat(socket);
      assert.ok(info.isSocket);
      assert.equal(info.mode! & 0o777, 0o660);
      await assert.rejects(Deno.lstat(`${socket}.new`), Deno.errors.NotFound);
    }
    assert.equal((await server.stop()).code, 0, server.stderr());
    for (const pid of workerPids(server)) assert.ok(!alive(pid));
    // The last worker removed the socket it had moved into place.
    await assert.rejects(Deno.lstat(socket), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers: workers exit when the supervisor is killed (SIGKILL)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-orphan-" });
  try {
    const app = `${dir}/app.ts`;
    await Deno.writeTextFile(app, appSource("v1"));
    const port = freePort();
    await using server = startCli(
      [
        `--allow-net=127.0.0.1:${port}`,
        `--allow-read=${dir}`,
        `--allow-run=${DENO}`,
      ],
      ["serve", app, "--port", String(port), "--workers", "2"],
    );
    await server.waitFor(/Serving .* with 2 workers/);
    const pids = workerPids(server);
    server.kill("SIGKILL");
    await exitWithin(server);
    for (const pid of pids) await gone(pid);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers --max-requests: a worker is replaced after N requests, its successor listening first", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-max-requests-" });
  try {
    const app = `${dir}/app.ts`;
    await Deno.writeTextFile(app, appSource("v1"));
    const socket = `${dir}/app.sock`;
    const port = freePort();
    for (
      const [flags, where, target] of [
        [
          [`--allow-net=127.0.0.1:${port}`],
          ["--port", String(port)],
          `127.0.0.1:${port}`,
        ],
        [
          [
            `--allow-write=${socket},${socket}.new`,
            `--allow-net=unix:${socket},unix:${socket}.new`,
          ],
          ["--socket", socket],
          socket,
        ],
      ] as const
    ) {
      await using server = startCli(
        [...flags, `--allow-read=${dir}`, `--allow-run=${DENO}`],
        ["serve", app, ...where, "--workers", "1", "--max-requests", "3"],
      );
      await server.waitFor(/Serving .* with 1 worker/);
      const [first] = workerPids(server);
      // Three requests to the first worker, then it asks to be replaced;
      // every request is answered meanwhile, by one worker or the other.
      const seen: number[] = [];
      for (let i = 0; i < 3; i++) seen.push((await ask(target))[1]);
      assert.deepEqual(seen, [first, first, first]);
      await server.waitFor(
        new RegExp(`worker 1 pid ${first} served 3 requests; replacing it`),
      );
      await gone(first!);
      const [second] = workerPids(server).slice(1);
      assert.ok(second && second !== first);
      assert.deepEqual(await ask(target), ["v1", second]);
      assert.equal((await server.stop()).code, 0, server.stderr());
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers: a worker that keeps failing to restart stops the supervisor with its error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-restart-fail-" });
  try {
    const app = `${dir}/app.ts`;
    await Deno.writeTextFile(app, appSource("v1"));
    const port = freePort();
    await using server = startCli(
      [
        `--allow-net=127.0.0.1:${port}`,
        `--allow-read=${dir}`,
        `--allow-run=${DENO}`,
      ],
      ["serve", app, "--port", String(port), "--workers", "2"],
    );
    await server.waitFor(/Serving .* with 2 workers/);
    const [one, two] = workerPids(server);
    await Deno.writeTextFile(app, 'throw new Error("broken on disk");\n');
    Deno.kill(one!, "SIGKILL");
    const status = await exitWithin(server);
    assert.equal(status.code, 1, server.stderr());
    const last = server.stderr().trimEnd().split("\n").at(-1)!;
    assert.match(
      last,
      /^scgi serve: worker 1 failed to start 5 times in a row: .*broken on disk/,
    );
    await gone(two!);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
