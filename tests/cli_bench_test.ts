import assert from "node:assert/strict";
import { parseStatus } from "../cli/bench.ts";
import { serve } from "../server.ts";
import { freePort } from "./_peer.ts";
import { oneLine, runCli } from "./_cli.ts";

const quiet = { port: 0, onListen() {} };
const net = (port: number) => [`--allow-net=127.0.0.1:${port}`];

Deno.test("scgi bench --help has examples", async () => {
  const { code, stdout } = await runCli([], ["bench", "--help"]);
  assert.equal(code, 0);
  assert.match(stdout, /^Usage: scgi bench \[options\] URL/);
  assert.match(
    stdout,
    /Examples:\n {2}scgi bench scgi:\/\/127\.0\.0\.1:4000\/\n/,
  );
});

Deno.test("scgi bench: bad arguments are one line on stderr and status 2", async () => {
  for (
    const [args, message] of [
      [["bench"], /missing the URL/],
      [
        ["bench", "-c", "0", "scgi://127.0.0.1:1/"],
        /--connections must be a whole number from 1/,
      ],
      [
        ["bench", "-d", "1s", "-n", "5", "scgi://127.0.0.1:1/"],
        /either --duration or --requests/,
      ],
      [
        ["bench", "-d", "later", "scgi://127.0.0.1:1/"],
        /--duration must be a duration/,
      ],
      [
        ["bench", "http://127.0.0.1/"],
        /not an scgi:\/\/ or scgi\+unix:\/\/ URL/,
      ],
    ] as const
  ) {
    const { code, stdout, stderr } = await runCli([], [...args]);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(stdout, "");
    assert.ok(oneLine(stderr), stderr);
    assert.match(stderr, /^scgi bench: /);
    assert.match(stderr, message);
  }
});

Deno.test("scgi bench -n: exactly N requests, statuses, bytes and latency percentiles as JSON", async () => {
  let seen = 0;
  let bodies = 0;
  await using server = serve(quiet, async (request) => {
    seen++;
    const length = (await request.arrayBuffer()).byteLength;
    bodies += length;
    const path = new URL(request.url).pathname;
    return new Response("x".repeat(100), {
      status: path === "/teapot" ? 418 : 200,
    });
  });
  const port = (server.addr as Deno.NetAddr).port;
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/body`, new Uint8Array(1000));
    const { code, stdout, stderr } = await runCli(
      [...net(port), `--allow-read=${dir}`],
      [
        "bench",
        "-n",
        "200",
        "-c",
        "4",
        "--body",
        `${dir}/body`,
        "--json",
        `scgi://127.0.0.1:${port}/teapot`,
      ],
    );
    assert.equal(code, 0, stderr);
    const result = JSON.parse(stdout);
    assert.equal(result.requests, 200);
    assert.equal(result.connections, 4);
    assert.deepEqual(result.statuses, { "418": 200 });
    assert.deepEqual(result.errors, {});
    assert.ok(result.bytes > 200 * 100, String(result.bytes));
    assert.ok(result.requestsPerSecond > 0);
    const l = result.latencyMs;
    assert.ok(
      0 < l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max,
      JSON.stringify(l),
    );
    assert.equal(seen, 200);
    assert.equal(bodies, 200 * 1000);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi bench -d: runs for a duration and prints a report for people", async () => {
  await using server = serve(quiet, () => new Response("ok"));
  const port = (server.addr as Deno.NetAddr).port;
  const { code, stdout, stderr } = await runCli(net(port), [
    "bench",
    "-d",
    "300ms",
    "-c",
    "2",
    `scgi://127.0.0.1:${port}/`,
  ]);
  assert.equal(code, 0, stderr);
  assert.match(
    stdout,
    /^Benchmarking scgi:\/\/127\.0\.0\.1:\d+\/ with 2 connections for 0\.3s\n/,
  );
  assert.match(stdout, /requests +\d+ in [\d.]+s, [\d.]+ req\/s/);
  assert.match(
    stdout,
    /latency +p50 [\d.]+ ms, p90 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms/,
  );
  assert.match(stdout, /statuses +200: \d+/);
  assert.match(stdout, /errors +none/);
});

Deno.test("scgi bench: errors are counted by kind; nothing answered is exit 1", async () => {
  const down = freePort();
  const refused = await runCli(net(down), [
    "bench",
    "-n",
    "5",
    "-c",
    "1",
    "--json",
    `scgi://127.0.0.1:${down}/`,
  ]);
  assert.equal(refused.code, 1);
  assert.deepEqual(JSON.parse(refused.stdout).errors, {
    "connection refused": 5,
  });
  assert.ok(oneLine(refused.stderr), refused.stderr);
  assert.match(
    refused.stderr,
    /no request got a response \(connection refused: 5\)/,
  );

  // A backend that closes at once, and one that never answers.
  const closing = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closer = (async () => {
    for await (const conn of closing) conn.close();
  })();
  const port = (closing.addr as Deno.NetAddr).port;
  const closed = await runCli(net(port), [
    "bench",
    "-n",
    "3",
    "-c",
    "1",
    "--json",
    `scgi://127.0.0.1:${port}/`,
  ]);
  assert.equal(closed.code, 1);
  const kinds = Object.keys(JSON.parse(closed.stdout).errors);
  assert.ok(
    kinds.every((kind) =>
      kind === "closed without answer" || kind === "connection reset"
    ),
    kinds.join(),
  );
  closing.close();
  await closer;

  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const holder = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  const silentPort = (silent.addr as Deno.NetAddr).port;
  const slow = await runCli(net(silentPort), [
    "bench",
    "-n",
    "2",
    "-c",
    "2",
    "--timeout",
    "200ms",
    "--json",
    `scgi://127.0.0.1:${silentPort}/`,
  ]);
  assert.equal(slow.code, 1);
  assert.deepEqual(JSON.parse(slow.stdout).errors, { timeout: 2 });
  silent.close();
  await holder;
  for (const conn of held) conn.close();
});

Deno.test("scgi bench: parseStatus reads only the status of a CGI head", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  assert.equal(
    parseStatus(bytes("Status: 404 Not Found\r\nContent-Type: x\r\n\r\nbody")),
    404,
  );
  assert.equal(
    parseStatus(bytes("Content-Type: x\r\nStatus: 503\r\n\r\n")),
    503,
  );
  assert.equal(parseStatus(bytes("Content-Type: x\n\nbody")), 200);
  assert.equal(parseStatus(bytes("Location: /x\r\n\r\n")), 302);
  assert.equal(parseStatus(bytes("HTTP/1.1 201 Created\r\n\r\n")), 201);
  assert.equal(parseStatus(bytes("Status: 200 OK\r\nContent-")), 200);
  assert.equal(parseStatus(bytes("Content-Type: text/pl")), 0);
  assert.equal(parseStatus(bytes("garbage line\r\n\r\n")), -1);
  assert.equal(parseStatus(bytes("\r\n")), -1);
  assert.equal(parseStatus(bytes("Status: abc\r\n\r\n")), -1);
});
