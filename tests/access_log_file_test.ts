// accessLog writing to files: every line reaches the disk when it is
// written (tail -f sees it), flush() means on disk, close() closes, and a
// process that ends normally leaves every line behind.

import assert from "node:assert/strict";
import { accessLog } from "../middleware/mod.ts";
import { scgiFetch } from "../client.ts";
import { serve } from "../server.ts";
import { testClient } from "../testing.ts";

const LINE = /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/(\w+) HTTP\/1\.1" 200 2$/;

function lines(text: string): string[] {
  assert.ok(text.endsWith("\n"), JSON.stringify(text));
  return text.slice(0, -1).split("\n");
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "scgi-access-log-" });
}

Deno.test("accessLog({ path }): each line is in the file once flush() resolves", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/access.log`;
    // Appended to, as nginx opens its logs: what is there stays.
    await Deno.writeTextFile(path, "earlier line\n");
    const log = accessLog({ path, format: "common" });
    const client = testClient(log(() => new Response("ok")));
    await (await client.fetch("/one")).text();
    await log.flush();
    // Read by another handle, as tail -f does, while the log is open.
    let text = await Deno.readTextFile(path);
    assert.equal(lines(text).length, 2, text);
    assert.equal(lines(text)[0], "earlier line");
    assert.match(lines(text)[1]!, LINE);
    await (await client.fetch("/two")).text();
    await log.flush();
    text = await Deno.readTextFile(path);
    assert.deepEqual(
      lines(text).slice(1).map((line) => line.match(LINE)?.[1]),
      ["one", "two"],
    );
    await log.close();
    await log.close(); // once is enough; again does nothing
    // After close, lines are dropped and counted, never written to a
    // closed file.
    await (await client.fetch("/late")).text();
    assert.equal(log.dropped, 1);
    assert.equal(lines(await Deno.readTextFile(path)).length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("accessLog: a Deno.FsFile sink gets each line at once; close() closes it", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/access.log`;
    const file = await Deno.open(path, { append: true, create: true });
    {
      await using log = accessLog({ sink: file, format: "common" });
      await (await testClient(log(() => new Response("ok"))).fetch("/f"))
        .text();
      await log.flush();
      assert.match(lines(await Deno.readTextFile(path))[0]!, LINE);
    }
    // `await using` closed the file.
    assert.throws(() => file.statSync(), Deno.errors.BadResource);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("accessLog: a file's writable stream, which Deno holds back until 64 KiB, gets its lines out on close()", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/access.log`;
    const file = await Deno.open(path, { append: true, create: true });
    const log = accessLog({ sink: file.writable, format: "common" });
    await (await testClient(log(() => new Response("ok"))).fetch("/w")).text();
    await log.close();
    assert.match(lines(await Deno.readTextFile(path))[0]!, LINE);
    // Closing the stream closed the file.
    assert.throws(() => file.statSync(), Deno.errors.BadResource);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("accessLog({ path }): a bad path fails at setup, not at the first request", async () => {
  const dir = await tempDir();
  try {
    assert.throws(
      () => accessLog({ path: `${dir}/missing/access.log` }),
      Deno.errors.NotFound,
    );
    assert.throws(
      () => accessLog({ path: `${dir}/a.log`, sink: () => {} }),
      TypeError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("accessLog({ path }): a server process that logs one request and exits normally leaves the line on disk", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/access.log`;
    const script = `${dir}/app.ts`;
    const root = new URL("../", import.meta.url).href;
    // No flush, no close: the server shuts down and the program ends.
    await Deno.writeTextFile(
      script,
      `
import { accessLog } from "${root}middleware/access_log.ts";
import { serve } from "${root}server.ts";
import { scgiFetch } from "${root}client.ts";

const log = accessLog({ path: Deno.args[0], format: "common" });
const server = serve({ port: 0, onListen() {} }, log(() => new Response("ok")));
const { port } = server.addr;
console.log(await (await scgiFetch(\`scgi://127.0.0.1:\${port}/exit\`)).text());
await server.shutdown();
`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-read",
        "--allow-write",
        "--allow-net=127.0.0.1",
        script,
        path,
      ],
      stdout: "piped",
      stderr: "piped",
      env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
    }).output();
    const decoder = new TextDecoder();
    assert.equal(
      output.code,
      0,
      decoder.decode(output.stderr) + decoder.decode(output.stdout),
    );
    assert.equal(decoder.decode(output.stdout), "ok\n");
    const text = await Deno.readTextFile(path).catch((error) => `${error}`);
    assert.equal(lines(text).length, 1, text);
    assert.equal(lines(text)[0]!.match(LINE)?.[1], "exit");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("accessLog({ path }): the lines of a real server, none lost", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir}/access.log`;
    await using log = accessLog({ path, format: "common" });
    await using server = serve(
      { port: 0, onListen() {} },
      log(() => new Response("ok")),
    );
    const { port } = server.addr as Deno.NetAddr;
    const names = Array.from({ length: 20 }, (_, i) => `r${i}`);
    await Promise.all(
      names.map(async (name) =>
        await (await scgiFetch(`scgi://127.0.0.1:${port}/${name}`)).text()
      ),
    );
    await server.shutdown();
    await log.flush();
    const logged = lines(await Deno.readTextFile(path)).map((line) =>
      line.match(LINE)?.[1]
    );
    assert.deepEqual(logged.toSorted(), names.toSorted());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
