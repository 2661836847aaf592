import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { freePort } from "./_peer.ts";
import { oneLine, ROOT, runCli, startCli } from "./_cli.ts";

const EXAMPLES = `${ROOT}/examples`;

Deno.test("scgi serve --help has examples and the least permissions", async () => {
  const { code, stdout } = await runCli([], ["serve", "--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^Usage: scgi serve \[options\] APP\.ts/);
  assert.match(stdout, /Examples:\n {2}scgi serve app\.ts\n/);
  assert.match(stdout, /--allow-net=127\.0\.0\.1:4000 --allow-read=\./);
});

Deno.test("scgi serve: bad arguments are one line on stderr and status 2", async () => {
  for (
    const [args, message] of [
      [["serve"], /missing the app module/],
      [
        ["serve", "app.ts", "--port", "http"],
        /--port must be a whole number from 0 to 65535/,
      ],
      [["serve", "app.ts", "--port", "70000"], /--port must be a whole number/],
      [
        ["serve", "app.ts", "--port", "1", "--socket", "/tmp/x.sock"],
        /either --port or --socket/,
      ],
      [
        ["serve", "app.ts", "--socket-mode", "rw"],
        /--socket-mode must be octal/,
      ],
      [
        ["serve", "app.ts", "--workers", "0"],
        /--workers must be a whole number from 1/,
      ],
      [
        ["serve", "app.ts", "--workers", "2", "--port", "0"],
        /--workers needs a --port other than 0/,
      ],
      [["serve", "app.ts", "--wat"], /unknown option --wat/],
    ] as const
  ) {
    const { code, stdout, stderr } = await runCli([], [...args]);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(stdout, "");
    assert.ok(oneLine(stderr), stderr);
    assert.match(stderr, /^scgi serve: /);
    assert.match(stderr, message);
  }
});

Deno.test("scgi serve: a missing app or one without a handler fails in one line", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/none.ts`, "export const x = 1;\n");
    await Deno.writeTextFile(`${dir}/broken.ts`, "export default {;\n");
    for (
      const [file, message] of [
        ["missing.ts", /missing\.ts does not exist/],
        [
          "none.ts",
          /has no default export with a fetch method or handler function/,
        ],
        ["broken.ts", /cannot load .*broken\.ts/],
      ]
    ) {
      const { code, stderr } = await runCli(
        [`--allow-read=${dir}`, "--allow-net=127.0.0.1"],
        ["serve", `${dir}/${file}`, "--port", "0"],
      );
      assert.equal(code, 1, stderr);
      assert.ok(oneLine(stderr), stderr);
      assert.match(stderr, message as RegExp);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi serve: serves examples/app.ts with the documented permissions, stops on SIGTERM", async () => {
  const port = freePort();
  await using server = startCli(
    [`--allow-net=127.0.0.1:${port}`, `--allow-read=${EXAMPLES}`],
    ["serve", `${EXAMPLES}/app.ts`, "--port", String(port)],
  );
  await server.waitFor(/Listening on scgi:\/\/127\.0\.0\.1:\d+\//);
  const response = await scgiFetch(`scgi://127.0.0.1:${port}/api/info?x=1`);
  assert.equal(response.status, 200);
  const info = await response.json();
  assert.equal(info.pid, server.pid);
  assert.equal(info.pathInfo, "/api/info");
  const page = await scgiFetch(`scgi://127.0.0.1:${port}/`);
  assert.match(await page.text(), /Hello from an SCGI backend/);
  const status = await server.stop();
  assert.equal(status.code, 0, server.stderr());
});

Deno.test("scgi serve --port 0 picks a free port with --allow-net=127.0.0.1", async () => {
  await using server = startCli(
    ["--allow-net=127.0.0.1", `--allow-read=${EXAMPLES}`],
    ["serve", `${EXAMPLES}/app.ts`, "--port", "0"],
  );
  const port = Number(
    (await server.waitFor(/Listening on scgi:\/\/127\.0\.0\.1:(\d+)\//))[1],
  );
  assert.ok(port > 0);
  const response = await scgiFetch(`scgi://127.0.0.1:${port}/api/info`);
  assert.equal((await response.json()).pid, server.pid);
  assert.equal((await server.stop()).code, 0);
});

Deno.test("scgi serve: a default-exported handler function on a Unix socket", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/app.sock`;
  try {
    await Deno.writeTextFile(
      `${dir}/handler.ts`,
      "export default (request: Request) => new Response(`fn ${new URL(request.url).pathname}`);\n",
    );
    await using server = startCli(
      [
        `--allow-read=${dir}`,
        `--allow-write=${path}`,
        `--allow-net=unix:${path}`,
      ],
      ["serve", `${dir}/handler.ts`, "--socket", path, "--socket-mode", "600"],
    );
    await server.waitFor(/Listening on scgi\+unix:/);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const response = await scgiFetch(
      `scgi+unix://${encodeURIComponent(path)}/hi`,
    );
    assert.equal(await response.text(), "fn /hi");
    assert.equal((await server.stop()).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function pidOf(port: number): Promise<number> {
  const response = await scgiFetch(`scgi://127.0.0.1:${port}/api/info`);
  return (await response.json()).pid;
}

Deno.test("scgi serve --workers: N processes share the port; a killed one is replaced; SIGTERM stops all", async () => {
  const port = freePort();
  await using supervisor = startCli(
    [
      `--allow-net=127.0.0.1:${port}`,
      `--allow-read=${EXAMPLES}`,
      `--allow-run=${Deno.execPath()}`,
    ],
    ["serve", `${EXAMPLES}/app.ts`, "--port", String(port), "--workers", "2"],
  );
  const one = Number(
    (await supervisor.waitFor(/worker 1 pid (\d+) started/))[1],
  );
  const two = Number(
    (await supervisor.waitFor(/worker 2 pid (\d+) started/))[1],
  );
  await supervisor.waitFor(new RegExp(`Listening on .*\\(pid ${one}\\)`));
  await supervisor.waitFor(new RegExp(`Listening on .*\\(pid ${two}\\)`));
  // Each request is a new connection from a new source port: the kernel
  // spreads them, so both workers answer within a few dozen requests.
  const seen = new Set<number>();
  for (let i = 0; i < 60 && seen.size < 2; i++) seen.add(await pidOf(port));
  assert.deepEqual([...seen].sort(), [one, two].sort());

  Deno.kill(one, "SIGKILL");
  await supervisor.waitFor(
    new RegExp(`worker 1 pid ${one} exited \\(signal SIGKILL\\); restarting`),
  );
  const replacement = Number(
    (await supervisor.waitFor(
      /worker 1 pid (\d+) started\n(?:.|\n)*worker 1 pid (\d+) started/,
    ))[2],
  );
  assert.notEqual(replacement, one);
  await supervisor.waitFor(
    new RegExp(`Listening on .*\\(pid ${replacement}\\)`),
  );
  const after = new Set<number>();
  for (let i = 0; i < 60 && after.size < 2; i++) after.add(await pidOf(port));
  assert.deepEqual([...after].sort(), [replacement, two].sort());

  const status = await supervisor.stop();
  assert.equal(status.code, 0, supervisor.stderr());
  for (const pid of [two, replacement]) {
    assert.throws(
      () => Deno.kill(pid, "SIGCONT"),
      Deno.errors.NotFound,
      `worker ${pid} still runs`,
    );
  }
});
