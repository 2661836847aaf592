import assert from "node:assert/strict";
import { serve } from "../server.ts";
import { freePort } from "./_peer.ts";
import { oneLine, runCli, startCli } from "./_cli.ts";

const quiet = { port: 0, onListen() {} };
const CLF =
  /^127\.0\.0\.1 - - \[\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "([A-Z]+) (\S+) HTTP\/1\.1" (\d{3}) (\d+|-)$/;

Deno.test("scgi proxy --help has examples", async () => {
  const { code, stdout } = await runCli([], ["proxy", "--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^Usage: scgi proxy --backend ADDR/);
  assert.match(
    stdout,
    /Examples:\n {2}scgi proxy --listen 8000 --backend 127\.0\.0\.1:4000\n/,
  );
});

Deno.test("scgi proxy: bad arguments are one line on stderr and status 2", async () => {
  for (
    const [args, message] of [
      [["proxy"], /give at least one --backend/],
      [["proxy", "--backend", "nowhere"], /is not HOST:PORT or unix:PATH/],
      [
        ["proxy", "-b", "127.0.0.1:1", "--listen", "eighty"],
        /--listen must be PORT or HOST:PORT/,
      ],
      [
        ["proxy", "-b", "127.0.0.1:1", "--mount", "app"],
        /--mount must start with \//,
      ],
      [
        ["proxy", "-b", "127.0.0.1:1", "--max-concurrent", "0"],
        /--max-concurrent must be a whole number from 1/,
      ],
      [
        ["proxy", "-b", "127.0.0.1:1", "--timeout", "forever"],
        /--timeout must be a duration/,
      ],
      [["proxy", "-b", "127.0.0.1:1", "stray"], /unexpected argument "stray"/],
    ] as const
  ) {
    const { code, stdout, stderr } = await runCli([], [...args]);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(stdout, "");
    assert.ok(oneLine(stderr), stderr);
    assert.match(stderr, /^scgi proxy: /);
    assert.match(stderr, message);
  }
});

Deno.test("scgi proxy: fronts backends under a mount, logs each request in common log format", async () => {
  await using backend = serve(quiet, async (request, info) =>
    Response.json({
      script: info.env.SCRIPT_NAME,
      path: info.env.PATH_INFO,
      remote: info.env.REMOTE_ADDR,
      serverPort: info.env.SERVER_PORT,
      body: await request.text(),
    }));
  const backendPort = (backend.addr as Deno.NetAddr).port;
  const down = freePort();
  const port = freePort();
  await using proxy = startCli(
    [`--allow-net=127.0.0.1:${port},127.0.0.1:${backendPort},127.0.0.1:${down}`],
    [
      "proxy",
      "--listen",
      String(port),
      "--mount",
      "/app",
      "-b",
      `127.0.0.1:${down}`,
      "-b",
      `127.0.0.1:${backendPort}`,
    ],
  );
  await proxy.waitFor(/Listening on http:\/\/127\.0\.0\.1:\d+\/app\//);
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 3; i++) {
    const response = await fetch(`${base}/app/x/y?z=1`, {
      method: "POST",
      body: "hi",
    });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      script: "/app",
      path: "/x/y",
      remote: "127.0.0.1",
      serverPort: String(port),
      body: "hi",
    });
  }
  const outside = await fetch(`${base}/elsewhere`);
  assert.equal(outside.status, 404);
  await outside.body?.cancel();
  // Each line is written when its response body has ended (or was
  // cancelled, as the 404's is): wait for the last one.
  await proxy.waitFor(/"GET \/elsewhere HTTP\/1\.1" 404 .*\n/);
  const lines = proxy.stdout().trim().split("\n");
  assert.equal(lines.length, 4, proxy.stdout());
  const [method, target, status, bytes] = lines[0]!.match(CLF)!.slice(1);
  assert.deepEqual([method, target, status], ["POST", "/app/x/y?z=1", "200"]);
  assert.ok(Number(bytes) > 20);
  assert.deepEqual(lines[3]!.match(CLF)!.slice(1, 4), [
    "GET",
    "/elsewhere",
    "404",
  ]);
  assert.equal((await proxy.stop()).code, 0);
});

Deno.test("scgi proxy: an unreachable backend is a 502 with the reason; --json logs", async () => {
  const down = freePort();
  const port = freePort();
  await using proxy = startCli(
    [`--allow-net=127.0.0.1:${port},127.0.0.1:${down}`],
    [
      "proxy",
      "--listen",
      `127.0.0.1:${port}`,
      "--backend",
      `127.0.0.1:${down}`,
      "--json",
    ],
  );
  await proxy.waitFor(/Listening on/);
  const response = await fetch(`http://127.0.0.1:${port}/`);
  assert.equal(response.status, 502);
  assert.equal(
    await response.text(),
    `no SCGI backend reachable: connection refused by 127.0.0.1:${down}\n`,
  );
  const line = JSON.parse((await proxy.waitFor(/\{.*\}\n/))[0]);
  assert.equal(line.status, 502);
  assert.equal(line.method, "GET");
  assert.equal(line.target, "/");
  assert.equal(line.remote, "127.0.0.1");
  assert.equal(typeof line.ms, "number");
  assert.equal((await proxy.stop()).code, 0);
});

Deno.test("scgi proxy: a busy port fails in one line", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const { code, stderr } = await runCli([`--allow-net=127.0.0.1:${port}`], [
      "proxy",
      "--listen",
      String(port),
      "--backend",
      "127.0.0.1:4000",
    ]);
    assert.equal(code, 1);
    assert.ok(oneLine(stderr), stderr);
    assert.match(
      stderr,
      /^scgi proxy: cannot listen on 127\.0\.0\.1:\d+: Address already in use/,
    );
  } finally {
    taken.close();
  }
});

Deno.test("scgi proxy: a Unix socket backend with the documented permissions", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/app.sock`;
  try {
    await using _backend = serve(
      { path, onListen() {} },
      (_request, info) => new Response(`unix ${info.env.PATH_INFO}`),
    );
    const port = freePort();
    await using proxy = startCli(
      [
        `--allow-net=127.0.0.1:${port},unix:${path}`,
        `--allow-read=${path}`,
        `--allow-write=${path}`,
      ],
      [
        "proxy",
        "--listen",
        String(port),
        "--backend",
        `unix:${path}`,
        "--quiet",
      ],
    );
    await proxy.waitFor(/Listening on/);
    const response = await fetch(`http://127.0.0.1:${port}/over/here`);
    assert.equal(await response.text(), "unix /over/here");
    assert.equal((await proxy.stop()).code, 0);
    assert.equal(proxy.stdout(), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi proxy: a client that leaves before the answer is logged 499, its backend call ends at once", async () => {
  const entered = Promise.withResolvers<void>();
  const aborted = Promise.withResolvers<void>();
  // abortOnHangUp: the proxy closing the connection aborts request.signal.
  await using backend = serve(
    { ...quiet, abortOnHangUp: true },
    async (request) => {
      if (new URL(request.url).pathname === "/hang") {
        entered.resolve();
        await new Promise((resolve) =>
          request.signal.addEventListener("abort", resolve, { once: true })
        );
        aborted.resolve();
      }
      return new Response("answer");
    },
  );
  const backendPort = (backend.addr as Deno.NetAddr).port;
  const port = freePort();
  await using proxy = startCli(
    [`--allow-net=127.0.0.1:${port},127.0.0.1:${backendPort}`],
    [
      "proxy",
      "--listen",
      String(port),
      "-b",
      `127.0.0.1:${backendPort}`,
      "--max-concurrent",
      "1",
      "--queue-timeout",
      "0",
      // Only a safety net: the client's departure must end the call first.
      "--timeout",
      "5",
    ],
  );
  await proxy.waitFor(/Listening on/);
  const controller = new AbortController();
  const leaving = fetch(`http://127.0.0.1:${port}/hang`, {
    signal: controller.signal,
  }).catch((error) => error.name);
  await entered.promise;
  controller.abort();
  assert.equal(await leaving, "AbortError");
  // Noticed at once, not after --timeout (which would log 504).
  const [, status, bytes] = await proxy.waitFor(
    /"GET \/hang HTTP\/1\.1" (\d{3}) (\d+|-)\n/,
  );
  assert.deepEqual([status, bytes], ["499", "-"]);
  await aborted.promise;
  // The only slot is free again (no queue: a taken slot would be a 503).
  const next = await fetch(`http://127.0.0.1:${port}/next`);
  assert.equal(next.status, 200);
  assert.equal(await next.text(), "answer");
  assert.equal((await proxy.stop()).code, 0);
});

Deno.test("scgi proxy: a backend that doesn't accept within --connect-timeout is skipped, the request served by the next", async () => {
  // A listener nobody accepts on, its queue full: a connect to it hangs.
  const stuck = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const stuckPort = (stuck.addr as Deno.NetAddr).port;
  const fillers: Deno.Conn[] = [];
  try {
    while (true) {
      const give = new AbortController();
      const timer = setTimeout(() => give.abort(), 250);
      try {
        fillers.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port: stuckPort,
            signal: give.signal,
          }),
        );
      } catch (error) {
        assert.ok(give.signal.aborted, `connect failed: ${error}`);
        break;
      } finally {
        clearTimeout(timer);
      }
      assert.ok(fillers.length < 5000, "the accept queue never filled");
    }
    await using backend = serve(quiet, () => new Response("served"));
    const backendPort = (backend.addr as Deno.NetAddr).port;
    const port = freePort();
    await using proxy = startCli(
      [`--allow-net=127.0.0.1:${port},127.0.0.1:${stuckPort},127.0.0.1:${backendPort}`],
      [
        "proxy",
        "--listen",
        String(port),
        "-b",
        `127.0.0.1:${stuckPort}`,
        "-b",
        `127.0.0.1:${backendPort}`,
        "--connect-timeout",
        "200ms",
        "--quiet",
      ],
    );
    await proxy.waitFor(/Listening on/);
    for (let i = 0; i < 4; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/`);
      assert.equal(response.status, 200, `request ${i}`);
      assert.equal(await response.text(), "served");
    }
    assert.equal((await proxy.stop()).code, 0);
  } finally {
    stuck.close();
    for (const conn of fillers) conn.close();
  }
});
