// Every row of the least-permissions tables (docs/cli.md's and the README's)
// is run as written: the command with exactly the row's flags must work (a
// request is answered through it), and without any one of those flags it
// must fail, so a row is neither short of a flag nor holds one too many.
// A row's flags are the code span that starts its second cell; a later
// "`ARGS` adds `FLAGS`" in that cell is run too, as the command plus ARGS
// with the flags plus FLAGS.
//
// Placeholders, filled in the same way in the command and the flags:
// `<app folder>` is examples/ (app.ts is examples/app.ts), `<deno>` the deno
// binary's real path, `N` in `--workers N` is 2, ports 4000 and 8000 become
// free ports, /run/app.sock a socket in a temp dir, and `file` a temp file.

import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { serve } from "../server.ts";
import { freePort } from "./_peer.ts";
import { ROOT, runCli, startCli } from "./_cli.ts";

/** One row of a table, as written. */
interface Row {
  line: string;
  command: string;
  flags: string;
  adds: { args: string; flags: string }[];
}

/** The rows of the table that follows `heading` in a Markdown file. */
async function permissionRows(
  file: string,
  heading: RegExp,
): Promise<Row[]> {
  const text = await Deno.readTextFile(`${ROOT}/${file}`);
  const start = text.search(heading);
  assert.ok(start >= 0, `${file} has no ${heading}`);
  const lines = text.slice(start).split("\n");
  const first = lines.findIndex((line) => line.startsWith("|"));
  assert.ok(first >= 0, `${file}: no table after ${heading}`);
  const rows: Row[] = [];
  for (const line of lines.slice(first + 2)) {
    if (!line.startsWith("|")) break;
    const cells = line.split("|").slice(1, -1).map((cell) => cell.trim());
    const command = /^`([^`]+)`$/.exec(cells[0] ?? "")?.[1];
    const flags = /^`([^`]+)`/.exec(cells[1] ?? "")?.[1];
    assert.ok(command, `${file}: the command is one code span: ${line}`);
    assert.ok(flags, `${file}: the flags cell starts with them: ${line}`);
    const adds = [...(cells[1] ?? "").matchAll(/`([^`]+)` adds `([^`]+)`/g)]
      .map((match) => ({ args: match[1]!, flags: match[2]! }));
    rows.push({ line, command, flags, adds });
  }
  assert.ok(rows.length > 0, `${file}: an empty table`);
  return rows;
}

/** A row with its placeholders filled in, and where things are. */
interface Run {
  args: string[];
  flags: string[];
  socket: string;
  file: string;
}

const WORKERS = 2;
/** Splits flags at spaces, but not inside a placeholder (`<app folder>`). */
const words = (text: string) =>
  text.split(/\s+(?![^<]*>)/).filter((word) => word !== "");
const BODY = "some body\n";

/** Fills in the placeholders of `command` with `flags`. */
function render(
  command: string,
  flags: string,
  dir: string,
): Run {
  const ports = new Map<string, string>();
  const socket = `${dir}/app.sock`;
  const file = `${dir}/body.txt`;
  const fill = (text: string) =>
    text
      .replaceAll("<app folder>", `${ROOT}/examples`)
      .replaceAll("<deno>", Deno.execPath())
      .replaceAll("/run/app.sock", socket)
      .replaceAll("%2Frun%2Fapp.sock", encodeURIComponent(socket))
      .replace(/(?<=^|[\s@=,])file\b/g, file)
      .replace(/\b(4000|8000)\b/g, (port) => {
        if (!ports.has(port)) ports.set(port, String(freePort()));
        return ports.get(port)!;
      });
  const flagList = words(flags).map(fill);
  for (const flag of flagList) {
    assert.match(flag, /^--(allow|deny)-[a-z]+(=\S+)?$/, `a flag: ${flag}`);
  }
  const args = words(command).map(fill).map((arg, i, all) =>
    arg === "app.ts"
      ? `${ROOT}/examples/app.ts`
      : arg === "N" && all[i - 1] === "--workers"
      ? String(WORKERS)
      : arg
  );
  assert.ok(!args.includes("..."), `the command is complete: ${command}`);
  return { args, flags: flagList, socket, file };
}

/** `scgi serve`: it listens, and its workers answer. */
async function checkServe(run: Run): Promise<void> {
  const at = run.args.indexOf("--workers");
  const workers = at >= 0 ? Number(run.args[at + 1]) : 0;
  await using server = startCli(run.flags, run.args);
  const listening = await server.waitForCount(
    /Listening on (scgi(?:\+unix)?:\/\/\S+) \(pid (\d+)\)/g,
    Math.max(workers, 1),
  );
  const url = new URL("api/info", listening[0]![1]!);
  const pids = new Set(listening.map((match) => Number(match[2])));
  const answered = new Set<number>();
  // Every worker answers: the kernel spreads connections by a hash of
  // their addresses, so a few requests reach each of them.
  for (let i = 0; i < 200 && answered.size < pids.size; i++) {
    const response = await scgiFetch(url);
    assert.equal(response.status, 200, server.stderr());
    const { pid } = await response.json();
    assert.ok(pids.has(pid), `pid ${pid} is a listening process`);
    answered.add(pid);
    if (workers === 0) break;
  }
  assert.equal(answered.size, pids.size, `answered: ${[...answered]}`);
  assert.equal((await server.stop()).code, 0, server.stderr());
}

/** The other commands: they reach a backend in this process. */
async function checkClient(run: Run): Promise<void> {
  const [command] = run.args;
  const onUnix = run.args.some((arg) => /^(unix:|scgi\+unix:)/.test(arg));
  const backendPort = onUnix ? 0 : Number(
    run.args.map((arg) => /^(?:scgi:\/\/)?127\.0\.0\.1:(\d+)/.exec(arg))
      .find(Boolean)?.[1],
  );
  assert.ok(onUnix || backendPort > 0, `a backend in ${run.args.join(" ")}`);
  const bodies: string[] = [];
  await using _backend = serve(
    onUnix
      ? { path: run.socket, onListen() {} }
      : { port: backendPort, onListen() {} },
    async (request) => {
      const body = await request.text();
      bodies.push(body);
      return new Response(`backend\n${body}`);
    },
  );
  const sendsBody = run.args.some((arg) => arg.includes(run.file));
  if (sendsBody) await Deno.writeTextFile(run.file, BODY);
  const expected = sendsBody ? BODY : "";
  if (command === "proxy") {
    const listen = run.args[run.args.indexOf("--listen") + 1]!;
    await using proxy = startCli(run.flags, run.args);
    await proxy.waitFor(/Listening on http:\/\/\S+/);
    const response = await fetch(`http://127.0.0.1:${listen}/`);
    const text = await response.text();
    assert.equal(text, "backend\n", `${text}\n${proxy.stderr()}`);
    assert.equal((await proxy.stop()).code, 0, proxy.stderr());
  } else if (command === "request") {
    const result = await runCli(run.flags, run.args);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `backend\n${expected}`, result.stderr);
  } else if (command === "bench") {
    const result = await runCli(run.flags, [...run.args, "-n", "20"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(bodies.length, 20, result.stdout + result.stderr);
  } else {
    assert.fail(`no check for the command ${command}`);
  }
  assert.ok(bodies.length > 0, "the backend was called");
  assert.ok(bodies.every((body) => body === expected), `bodies: ${bodies}`);
}

/** Runs the command with the flags and checks that it did its job. */
async function works(command: string, flags: string): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "scgi-doc-row-" });
  try {
    const run = render(command, flags, dir);
    await (run.args[0] === "serve" ? checkServe(run) : checkClient(run));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The same, with one flag (by index) left out: it must fail for want of it. */
async function failsWithout(
  command: string,
  flags: string,
  index: number,
): Promise<void> {
  const fewer = words(flags).filter((_, i) => i !== index).join(" ");
  let failure: unknown;
  try {
    await works(command, fewer);
  } catch (error) {
    failure = error;
  }
  assert.ok(failure, `${command} works without ${words(flags)[index]}`);
  // It failed for want of a permission, not by chance.
  assert.match(
    String((failure as Error).message ?? failure),
    /Requires|NotCapable|permission|cannot get|needs --allow/i,
    String(failure),
  );
}

/** The commands and flags a row claims: the row, and each of its "adds". */
function claims(row: Row): { command: string; flags: string }[] {
  return [
    { command: row.command, flags: row.flags },
    ...row.adds.map((add) => ({
      command: `${row.command} ${add.args}`,
      flags: `${row.flags} ${add.flags}`,
    })),
  ];
}

for (
  const [file, heading] of [
    ["docs/cli.md", /^## Least permissions$/m],
    ["README.md", /^\| command +\| least permissions/m],
  ] as const
) {
  Deno.test(`${file}: every least-permissions row runs with exactly its flags`, async (t) => {
    for (const row of await permissionRows(file, heading)) {
      for (const { command, flags } of claims(row)) {
        await t.step(`${command} with ${flags}`, () => works(command, flags));
        for (const [index, flag] of words(flags).entries()) {
          await t.step(
            `${command} fails without ${flag}`,
            () => failsWithout(command, flags, index),
          );
        }
      }
    }
  });
}
