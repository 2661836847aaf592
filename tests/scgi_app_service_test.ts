// examples/scgi-app.service: its ExecStart= grants exactly the flags that
// docs/cli.md's least-permissions table gives `serve --socket --workers 1`
// (tests/cli_serve_docs_test.ts runs that row for real), it reloads with
// SIGHUP to the supervisor's pid, stops with SIGTERM after a little more than
// the graceful shutdown's deadline, and `systemd-analyze verify` accepts it.

import assert from "node:assert/strict";
import { findBinary } from "./_peer.ts";

const UNIT = new URL("../examples/scgi-app.service", import.meta.url);
const CLI_DOC = new URL("../docs/cli.md", import.meta.url);
const DENO_IN_UNIT = "/usr/local/bin/deno";

/** The unit's `Key=value` settings (every value of a repeated key). */
function settings(text: string): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!match) continue;
    found.set(match[1]!, [...(found.get(match[1]!) ?? []), match[2]!]);
  }
  return found;
}

/** The one value of `key`. */
function one(unit: Map<string, string[]>, key: string): string {
  const values = unit.get(key) ?? [];
  assert.equal(values.length, 1, `exactly one ${key}=`);
  return values[0]!;
}

/** The Flags cell of the docs/cli.md row whose Command cell is `command`. */
async function docRow(command: string): Promise<string> {
  for (const line of (await Deno.readTextFile(CLI_DOC)).split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    if (cells[1] === "`" + command + "`") return cells[2]!;
  }
  throw new Error(`no row for ${command} in docs/cli.md`);
}

Deno.test("examples/scgi-app.service grants what docs/cli.md says serve --socket --workers 1 needs", async () => {
  const unit = settings(await Deno.readTextFile(UNIT));
  const [deno, run, ...rest] = one(unit, "ExecStart").split(/\s+/);
  assert.equal(deno, DENO_IN_UNIT);
  assert.equal(run, "run");
  const cli = rest.indexOf("jsr:@scgi/scgi/cli");
  assert.ok(cli > 0, "ExecStart= runs jsr:@scgi/scgi/cli");
  const flags = rest.slice(0, cli);
  const args = rest.slice(cli + 1);
  assert.deepEqual(args.slice(0, 4), [
    "serve",
    "/srv/app/app.ts",
    "--socket",
    "/run/scgi-app/app.sock",
  ]);
  assert.equal(args[args.indexOf("--workers") + 1], "1");
  // The table's row, with its placeholders filled in as the unit does.
  const row = await docRow("serve app.ts --socket /run/app.sock --workers 1");
  const expected = row.replaceAll("`", "")
    .replaceAll("<app folder>", "/srv/app")
    .replaceAll("/run/app.sock", "/run/scgi-app/app.sock")
    .replaceAll("<deno>", DENO_IN_UNIT)
    .split(/\s+/);
  assert.deepEqual(flags, expected);
  assert.ok(!flags.some((flag) => flag === "-A" || flag === "--allow-all"));
  // The socket lives in RuntimeDirectory=.
  assert.equal(one(unit, "RuntimeDirectory"), "scgi-app");
});

Deno.test("examples/scgi-app.service reloads with SIGHUP and stops after the graceful deadline", async () => {
  const text = await Deno.readTextFile(UNIT);
  const unit = settings(text);
  assert.equal(one(unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
  assert.equal(one(unit, "KillSignal"), "SIGTERM");
  assert.equal(one(unit, "Restart"), "on-failure");
  assert.equal(one(unit, "Type"), "simple");
  assert.ok(one(unit, "User"));
  const args = one(unit, "ExecStart").split(/\s+/);
  const deadline = Number(args[args.indexOf("--shutdown-timeout") + 1]);
  assert.ok(deadline > 0, "ExecStart= names --shutdown-timeout");
  assert.ok(
    Number(one(unit, "TimeoutStopSec")) > deadline,
    "TimeoutStopSec= is longer than --shutdown-timeout",
  );

  const systemdAnalyze = findBinary("systemd-analyze");
  if (!systemdAnalyze) {
    console.log("skip: systemd-analyze verify: systemd-analyze not installed");
    return;
  }
  // verify wants ExecStart='s binary to exist: use this deno.
  const dir = await Deno.makeTempDir({ prefix: "scgi-app-service-" });
  try {
    await Deno.writeTextFile(
      `${dir}/scgi-app.service`,
      text.replaceAll(DENO_IN_UNIT, Deno.execPath()),
    );
    const verify = await new Deno.Command(systemdAnalyze, {
      args: ["verify", `${dir}/scgi-app.service`],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(verify.stdout) +
      new TextDecoder().decode(verify.stderr);
    assert.equal(verify.success, true, said);
    assert.equal(said.trim(), "", "systemd-analyze verify complained");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
