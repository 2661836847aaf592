import assert from "node:assert/strict";
import { serve } from "../server.ts";
import { freePort, peerTest } from "./_peer.ts";
import { startRtorrent } from "./_backends.ts";
import { oneLine, runCli } from "./_cli.ts";

const quiet = { port: 0, onListen() {} };

function echoServer() {
  return serve(quiet, async (request, info) => {
    const url = new URL(request.url);
    if (url.pathname === "/missing") {
      return new Response("no such thing\n", { status: 404 });
    }
    return Response.json({
      method: request.method,
      path: url.pathname,
      query: url.search,
      contentType: request.headers.get("content-type"),
      custom: request.headers.get("x-custom"),
      user: info.env.REMOTE_USER ?? null,
      body: await request.text(),
    }, { headers: { "x-answer": "42" } });
  });
}

const net = (port: number) => [`--allow-net=127.0.0.1:${port}`];

Deno.test("scgi: top-level help, version and unknown commands", async () => {
  const help = await runCli([], ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: scgi COMMAND/);
  assert.match(help.stdout, /serve APP\.ts/);
  const none = await runCli([], []);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /Usage: scgi COMMAND/);
  const bogus = await runCli([], ["frobnicate"]);
  assert.equal(bogus.code, 2);
  assert.ok(oneLine(bogus.stderr), bogus.stderr);
  assert.match(bogus.stderr, /^scgi: unknown command "frobnicate"/);
  const version = await runCli([], ["--version"]);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^scgi \d+\.\d+\.\d+\n$/);
});

Deno.test("scgi request --help has examples", async () => {
  const { code, stdout, stderr } = await runCli([], ["request", "--help"]);
  assert.equal(code, 0);
  assert.equal(stderr, "");
  assert.match(stdout, /^Usage: scgi request/);
  assert.match(
    stdout,
    /Examples:\n {2}scgi request scgi:\/\/127\.0\.0\.1:4000\//,
  );
});

Deno.test("scgi request: bad arguments are one line on stderr and status 2", async () => {
  for (
    const [args, message] of [
      [["request"], /missing the URL/],
      [["request", "--bogus", "scgi://127.0.0.1:1/"], /unknown option --bogus/],
      [
        ["request", "http://example.com/"],
        /is not an scgi:\/\/ or scgi\+unix:\/\/ URL/,
      ],
      [
        ["request", "-H", "NoColon", "scgi://127.0.0.1:1/"],
        /is not 'Name: value'/,
      ],
      [["request", "-e", "=x", "scgi://127.0.0.1:1/"], /is not NAME=VALUE/],
      [
        ["request", "--max-time", "soon", "scgi://127.0.0.1:1/"],
        /--max-time must be a duration/,
      ],
      [["request", "-X"], /option -X, --request <value> needs a value/],
      [
        ["request", "scgi://127.0.0.1:1/", "extra"],
        /unexpected argument "extra"/,
      ],
    ] as const
  ) {
    const { code, stdout, stderr } = await runCli([], [...args]);
    assert.equal(code, 2, args.join(" "));
    assert.equal(stdout, "");
    assert.ok(oneLine(stderr), stderr);
    assert.match(stderr, /^scgi request: /);
    assert.match(stderr, message);
  }
});

Deno.test("scgi request: GET prints the body; -i the head first; --json all", async () => {
  await using server = echoServer();
  const port = (server.addr as Deno.NetAddr).port;
  const plain = await runCli(net(port), [
    "request",
    `scgi://127.0.0.1:${port}/a/b?x=1`,
  ]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.deepEqual(JSON.parse(plain.stdout), {
    method: "GET",
    path: "/a/b",
    query: "?x=1",
    contentType: null,
    custom: null,
    user: null,
    body: "",
  });

  const head = await runCli(net(port), [
    "request",
    "-i",
    "-H",
    "X-Custom: hi",
    `scgi://127.0.0.1:${port}/`,
  ]);
  assert.equal(head.code, 0, head.stderr);
  const [status, ...rest] = head.stdout.split("\r\n");
  assert.equal(status, "Status: 200 OK");
  assert.ok(rest.includes("x-answer: 42"));
  assert.equal(JSON.parse(head.stdout.split("\r\n\r\n")[1]!).custom, "hi");

  const json = await runCli(net(port), [
    "request",
    "--json",
    `scgi://127.0.0.1:${port}/j`,
  ]);
  const parsed = JSON.parse(json.stdout);
  assert.equal(parsed.status, 200);
  assert.deepEqual(
    parsed.headers.find(([name]: string[]) => name === "x-answer"),
    ["x-answer", "42"],
  );
  assert.equal(JSON.parse(parsed.body).path, "/j");
});

Deno.test("scgi request: -d, --data-binary @file, -X and -e", async () => {
  await using server = echoServer();
  const port = (server.addr as Deno.NetAddr).port;
  const url = `scgi://127.0.0.1:${port}/post`;
  const form = await runCli(net(port), [
    "request",
    "-d",
    "a=1",
    "-d",
    "b=2",
    "-e",
    "REMOTE_USER=alice",
    url,
  ]);
  assert.equal(form.code, 0, form.stderr);
  const answer = JSON.parse(form.stdout);
  assert.equal(answer.method, "POST");
  assert.equal(answer.body, "a=1&b=2");
  assert.equal(answer.contentType, "application/x-www-form-urlencoded");
  assert.equal(answer.user, "alice");

  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/call.xml`;
    const xml =
      "<?xml version='1.0'?>\n<methodCall><methodName>system.listMethods</methodName></methodCall>\n";
    await Deno.writeTextFile(file, xml);
    const binary = await runCli(
      [...net(port), `--allow-read=${file}`],
      [
        "request",
        "-X",
        "PUT",
        "-H",
        "Content-Type: text/xml",
        "--data-binary",
        `@${file}`,
        url,
      ],
    );
    assert.equal(binary.code, 0, binary.stderr);
    const sent = JSON.parse(binary.stdout);
    assert.equal(sent.method, "PUT");
    assert.equal(sent.contentType, "text/xml");
    assert.equal(sent.body, xml);

    // -d @file drops line breaks, as curl does.
    const stripped = await runCli([...net(port), `--allow-read=${file}`], [
      "request",
      "-d",
      `@${file}`,
      url,
    ]);
    assert.equal(JSON.parse(stripped.stdout).body, xml.replaceAll("\n", ""));

    const stdin = await runCli(net(port), [
      "request",
      "--data-binary",
      "@-",
      url,
    ], {
      stdin: new TextEncoder().encode("from stdin\n"),
    });
    assert.equal(JSON.parse(stdin.stdout).body, "from stdin\n");

    const missing = await runCli([...net(port), `--allow-read=${dir}`], [
      "request",
      "--data-binary",
      `@${dir}/nope`,
      url,
    ]);
    assert.notEqual(missing.code, 0);
    assert.ok(oneLine(missing.stderr), missing.stderr);
    assert.match(missing.stderr, /cannot read .*nope/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scgi request: --fail on a 404 exits 22 without the body; without it the body prints", async () => {
  await using server = echoServer();
  const port = (server.addr as Deno.NetAddr).port;
  const url = `scgi://127.0.0.1:${port}/missing`;
  const failed = await runCli(net(port), ["request", "--fail", url]);
  assert.equal(failed.code, 22);
  assert.equal(failed.stdout, "");
  assert.ok(oneLine(failed.stderr), failed.stderr);
  assert.match(failed.stderr, /answered 404 Not Found/);
  const shown = await runCli(net(port), ["request", url]);
  assert.equal(shown.code, 0);
  assert.equal(shown.stdout, "no such thing\n");
});

Deno.test("scgi request: an unreachable backend exits 7, a silent one 28 with --max-time", async () => {
  const down = freePort();
  const refused = await runCli(net(down), [
    "request",
    `scgi://127.0.0.1:${down}/`,
  ]);
  assert.equal(refused.code, 7);
  assert.equal(refused.stdout, "");
  assert.ok(oneLine(refused.stderr), refused.stderr);
  assert.match(
    refused.stderr,
    /^scgi request: connection refused by 127\.0\.0\.1:\d+\n$/,
  );

  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  const port = (silent.addr as Deno.NetAddr).port;
  const slow = await runCli(net(port), [
    "request",
    "--max-time",
    "300ms",
    `scgi://127.0.0.1:${port}/`,
  ]);
  assert.equal(slow.code, 28);
  assert.ok(oneLine(slow.stderr), slow.stderr);
  assert.match(slow.stderr, /--max-time 300 ms/);
  silent.close();
  await accepting;
  for (const conn of held) conn.close();
});

Deno.test("scgi request: a Unix socket backend", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/app.sock`;
  try {
    await using _server = serve(
      { path, onListen() {} },
      () => new Response("over unix\n"),
    );
    const { code, stdout, stderr } = await runCli(
      [
        `--allow-read=${path}`,
        `--allow-write=${path}`,
        `--allow-net=unix:${path}`,
      ],
      ["request", `scgi+unix://${encodeURIComponent(path)}/`],
    );
    assert.equal(code, 0, stderr);
    assert.equal(stdout, "over unix\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

peerTest(
  ["rtorrent"],
  "scgi request: calls rtorrent's XML-RPC from the shell",
  async () => {
    await using rtorrent = await startRtorrent("tcp");
    const { port } = rtorrent.backend as { port: number };
    const { code, stdout, stderr } = await runCli(net(port), [
      "request",
      "--fail",
      "-H",
      "Content-Type: text/xml",
      "-d",
      "<?xml version='1.0'?><methodCall><methodName>system.client_version</methodName></methodCall>",
      `scgi://127.0.0.1:${port}/RPC2`,
    ]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /<methodResponse>.*<string>0\.9\.\d+<\/string>/s);
  },
);
