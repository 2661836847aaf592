// What `scgi serve --workers` gives its workers: never more than the
// supervisor holds (a --deny-* the supervisor got binds the workers too),
// enough for an app that imports from a sibling folder, and a supervisor
// that gives up, with the worker's error, when workers cannot start.

import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { freePort } from "./_peer.ts";
import { runCli, startCli } from "./_cli.ts";

const DENO = Deno.execPath();

/** True while a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

async function get(port: number, path: string): Promise<[number, string]> {
  const response = await scgiFetch(`scgi://127.0.0.1:${port}${path}`);
  return [response.status, await response.text()];
}

// An app that reports what it may do: reading a file named in the query,
// and the state of every permission kind.
const PROBE_APP = `
export default {
  async fetch(request: Request) {
    const url = new URL(request.url);
    const file = url.searchParams.get("read");
    if (file) {
      try {
        return new Response(await Deno.readTextFile(file));
      } catch (error) {
        return new Response((error as Error).name, { status: 403 });
      }
    }
    const kinds = ["read", "write", "net", "env", "sys", "run", "ffi", "import"] as const;
    const states: Record<string, string> = { pid: String(Deno.pid) };
    for (const name of kinds) {
      const status = Deno.permissions.querySync({ name });
      states[name] = status.state + (status.partial ? " partial" : "");
    }
    const port = url.searchParams.get("port");
    if (port) {
      states.listen = Deno.permissions.querySync({ name: "net", host: "127.0.0.1:" + port }).state;
    }
    return Response.json(states);
  },
};
`;

Deno.test("scgi serve --workers: a --deny-read of the supervisor binds its workers (NotCapable, as in one process)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-deny-" });
  try {
    await Deno.writeTextFile(`${dir}/app.ts`, PROBE_APP);
    await Deno.writeTextFile(`${dir}/secret.txt`, "the secret\n");
    await Deno.writeTextFile(`${dir}/public.txt`, "public\n");
    for (const workers of [[], ["--workers", "2"]]) {
      const port = freePort();
      await using server = startCli(
        [
          `--allow-net=127.0.0.1:${port}`,
          "--allow-read",
          "--deny-read=secret.txt",
          `--allow-run=${DENO}`,
        ],
        ["serve", "app.ts", "--port", String(port), ...workers],
        { cwd: dir },
      );
      await server.waitFor(/Listening on scgi:\/\/127\.0\.0\.1:\d+\//);
      const label = workers.length ? "workers" : "one process";
      // Several requests, so that both workers answer some.
      for (let i = 0; i < 10; i++) {
        assert.deepEqual(
          await get(port, `/?read=${dir}/secret.txt`),
          [403, "NotCapable"],
          label,
        );
        assert.deepEqual(
          await get(port, "/?read=secret.txt"),
          [403, "NotCapable"],
          label,
        );
        // What the supervisor may read in the app's folder, a worker may too.
        assert.deepEqual(
          await get(port, `/?read=${dir}/public.txt`),
          [200, "public\n"],
          label,
        );
      }
      assert.equal((await server.stop()).code, 0, server.stderr());
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers: workers get net for their address and read for the app, nothing else the supervisor has", async () => {
  const dir = await Deno.makeTempDir({ prefix: "scgi-least-" });
  try {
    await Deno.writeTextFile(`${dir}/app.ts`, PROBE_APP);
    const port = freePort();
    await using server = startCli(
      [
        "--allow-net",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-sys",
        "--allow-ffi",
        `--allow-run=${DENO}`,
      ],
      ["serve", `${dir}/app.ts`, "--port", String(port), "--workers", "2"],
    );
    await server.waitForCount(/Listening on scgi:\/\/127\.0\.0\.1:\d+\//g, 2);
    const pids = new Set<string>();
    for (let i = 0; i < 40 && pids.size < 2; i++) {
      const [status, body] = await get(port, `/?port=${port}`);
      assert.equal(status, 200, body);
      const states = JSON.parse(body);
      pids.add(states.pid);
      assert.deepEqual(
        { ...states, pid: undefined },
        {
          pid: undefined,
          // The supervisor's read has no --deny-read: workers get it whole.
          read: "granted",
          write: "prompt",
          net: "prompt",
          listen: "granted",
          env: "prompt",
          sys: "prompt",
          run: "prompt",
          ffi: "prompt",
          import: states.import,
        },
      );
    }
    assert.equal(pids.size, 2, "both workers answered");
    assert.equal((await server.stop()).code, 0, server.stderr());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function siblingApp(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "scgi-sibling-" });
  await Deno.mkdir(`${dir}/srv`);
  await Deno.mkdir(`${dir}/lib`);
  await Deno.writeTextFile(
    `${dir}/lib/lib.ts`,
    `export const greeting = "hello from lib";\n`,
  );
  await Deno.writeTextFile(
    `${dir}/srv/app.ts`,
    `import { greeting } from "../lib/lib.ts";\n` +
      `export default { fetch: () => new Response(greeting + " " + Deno.pid) };\n`,
  );
  return dir;
}

Deno.test("scgi serve --workers: an app importing from a sibling folder works when the supervisor may read both", async () => {
  const dir = await siblingApp();
  try {
    for (const workers of [[], ["--workers", "2"]]) {
      const port = freePort();
      await using server = startCli(
        [
          `--allow-net=127.0.0.1:${port}`,
          `--allow-read=${dir}/srv,${dir}/lib`,
          `--allow-run=${DENO}`,
        ],
        ["serve", `${dir}/srv/app.ts`, "--port", String(port), ...workers],
      );
      await server.waitFor(/Listening on scgi:\/\/127\.0\.0\.1:\d+\//);
      const [status, body] = await get(port, "/");
      assert.equal(status, 200, server.stderr());
      assert.match(body, /^hello from lib \d+$/);
      assert.equal((await server.stop()).code, 0, server.stderr());
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve --workers: workers that cannot start stop the supervisor with their error and status 1", async () => {
  const dir = await siblingApp();
  try {
    const port = freePort();
    // The supervisor may read the app's folder but not ../lib: one process
    // fails to load the app, and so does every worker.
    const flags = [
      `--allow-net=127.0.0.1:${port}`,
      `--allow-read=${dir}/srv`,
      `--allow-run=${DENO}`,
    ];
    const single = await runCli(flags, [
      "serve",
      `${dir}/srv/app.ts`,
      "--port",
      String(port),
    ]);
    assert.equal(single.code, 1);
    assert.match(single.stderr, /cannot load .*app\.ts: .*lib\.ts/);

    await using server = startCli(flags, [
      "serve",
      `${dir}/srv/app.ts`,
      "--port",
      String(port),
      "--workers",
      "2",
    ]);
    const status = await Promise.race([
      server.status,
      new Promise<null>((resolve) => {
        const timer = setTimeout(() => resolve(null), 20_000);
        server.status.finally(() => clearTimeout(timer));
      }),
    ]);
    assert.ok(status, `the supervisor still runs:\n${server.stderr()}`);
    assert.equal(status.code, 1, server.stderr());
    // The last line says why, in the worker's words.
    const last = server.stderr().trimEnd().split("\n").at(-1)!;
    assert.match(last, /^scgi serve: .*cannot load .*app\.ts: .*lib\.ts/);
    const pids = [...server.stderr().matchAll(/pid (\d+) started/g)];
    assert.ok(pids.length >= 2, server.stderr());
    for (const [, pid] of pids) assert.ok(!alive(Number(pid)), `${pid} runs`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
