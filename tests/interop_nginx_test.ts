// nginx (scgi_pass) in front of serve(), over TCP and a Unix socket, with the
// configs docs/deployment.md shows (docs/configs/nginx*.conf).

import assert from "node:assert/strict";
import {
  type FrontEndQuirks,
  frontEndSuite,
  interopApp,
  startBackend,
  startFrontEnd,
} from "./_front_end.ts";
import { peerTest } from "./_peer.ts";

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
