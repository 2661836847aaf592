// nginx (scgi_pass) in front of serve(), over TCP and a Unix socket, with the
// configs docs/deployment.md shows (docs/configs/nginx*.conf).

import assert from "node:assert/strict";
import {
  deploymentDocProblems,
  type FrontEndQuirks,
  frontEndSuite,
  interopApp,
  renderConfig,
  startBackend,
  startFrontEnd,
} from "./_front_end.ts";
import { findBinary, peerTest, startPeer, waitForListen } from "./_peer.ts";

const NGINX: FrontEndQuirks = {
  // nginx 1.22 sends a header that came twice as two variables.
  repeatsHeaderVariables: true,
  joinedCookie: "a=1; b=2",
  chunkedUpload: "body",
  // With `X-Accel-Buffering: no` from the backend.
  streams: true,
  clientGone: "aborted",
  // nginx sends neither (DOCUMENT_URI holds the decoded path).
  scriptNameAndPathInfo: [undefined, undefined],
  backendDown: 502,
};

frontEndSuite("nginx", "tcp", "nginx.conf", NGINX, peerTest);
frontEndSuite("nginx", "unix", "nginx-unix.conf", NGINX, peerTest);

peerTest(
  ["nginx"],
  "nginx balances across backends and skips one that is down (nginx-upstream.conf)",
  async () => {
    const apps = ["one", "two", "three"].map((name) => interopApp(name));
    await using one = await startBackend("tcp", apps[0]!.handler);
    await using two = await startBackend("tcp", apps[1]!.handler);
    await using three = await startBackend("unix", apps[2]!.handler);
    await using front = await startFrontEnd("nginx", "nginx-upstream.conf", {
      BACKEND_PORT: one.values.BACKEND_PORT!,
      BACKEND_PORT_2: two.values.BACKEND_PORT!,
      SOCKET: three.values.SOCKET!,
    });
    const names = async (count: number) => {
      const seen = new Map<string, number>();
      for (let i = 0; i < count; i++) {
        const response = await front.fetch("/whoami");
        const name = await response.text();
        assert.equal(response.status, 200, name);
        seen.set(name, (seen.get(name) ?? 0) + 1);
      }
      return seen;
    };
    // Round robin: every backend gets its share.
    const all = await names(30);
    assert.deepEqual([...all.keys()].sort(), ["one", "three", "two"]);

    // One goes away: every request still succeeds, on the others.
    await two.stop();
    const rest = await names(30);
    assert.deepEqual([...rest.keys()].sort(), ["one", "three"]);
    assert.equal(rest.get("one")! + rest.get("three")!, 30);
  },
);

peerTest(
  ["nginx"],
  "the systemd unit's ExecStart (deno-scgi.service) runs the app behind nginx-unix.conf",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "scgi-unit-" });
    await Deno.chmod(dir, 0o711);
    try {
      const socket = `${dir}/app.sock`;
      const unit = await renderConfig("deno-scgi.service", {
        DENO: Deno.execPath(),
        APP: new URL("../examples/interop_app.ts", import.meta.url).pathname,
        SOCKET: socket,
      });
      const systemdAnalyze = findBinary("systemd-analyze");
      if (systemdAnalyze) {
        await Deno.writeTextFile(`${dir}/deno-app.service`, unit);
        const verify = await new Deno.Command(systemdAnalyze, {
          args: ["verify", `${dir}/deno-app.service`],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const said = new TextDecoder().decode(verify.stdout) +
          new TextDecoder().decode(verify.stderr);
        assert.equal(verify.success, true, said);
        assert.equal(said.trim(), "", "systemd-analyze verify complained");
      }
      // Run ExecStart= with Environment= as systemd would (%C: the cache root).
      const setting = (key: string) =>
        unit.split("\n").filter((line) => line.startsWith(`${key}=`))
          .map((line) => line.slice(key.length + 1));
      const [execStart] = setting("ExecStart");
      assert.ok(execStart, "the unit has an ExecStart=");
      const env: Record<string, string> = {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      };
      for (const assignment of setting("Environment").join(" ").split(/\s+/)) {
        const [key, ...value] = assignment.split("=");
        env[key!] = value.join("=").replaceAll("%C", `${dir}/cache`);
      }
      const [command, ...args] = execStart.split(/\s+/);
      const app = startPeer(command!, args, { env });
      try {
        await waitForListen({ path: socket }, 15_000, app.alive);
        assert.equal((await Deno.stat(socket)).mode! & 0o777, 0o660);
        await using front = await startFrontEnd("nginx", "nginx-unix.conf", {
          SOCKET: socket,
        });
        const health = await front.fetch("/health");
        assert.equal(await health.text(), "ok\n");
        const stream = await front.fetch("/stream");
        assert.equal(
          await stream.text(),
          "line 1\nline 2\nline 3\nline 4\nline 5\n",
        );
        const upload = await front.fetch("/upload", {
          method: "POST",
          body: new Uint8Array(300_000),
        });
        assert.deepEqual(await upload.json(), { bytes: 300_000 });
      } finally {
        // `systemctl stop`: SIGTERM, and the app shuts down by itself.
        await app.stop();
      }
      assert.match(app.output(), /stopped/, app.output());
      await assert.rejects(Deno.lstat(socket), Deno.errors.NotFound);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("docs/deployment.md quotes docs/configs/ exactly", async () => {
  assert.deepEqual(await deploymentDocProblems(), []);
});
