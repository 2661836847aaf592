// scgiFetch against uWSGI 2.0 (the python3 plugin) running a WSGI echo app
// over SCGI, on TCP and on a Unix socket, and how the client fails when the
// backend is gone or rejects the request.

import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { ScgiClientError } from "../codec/errors.ts";
import { echoCases, startUwsgi } from "./_backends.ts";
import { peerTest } from "./_peer.ts";

const traits = { name: "uwsgi", dropsEmptyValues: false };

peerTest(["uwsgi"], "uwsgi: client cases over TCP", async (t) => {
  await using uwsgi = await startUwsgi("tcp");
  await echoCases(t, uwsgi.base, traits);
});

peerTest(["uwsgi"], "uwsgi: client cases over a Unix socket", async (t) => {
  await using uwsgi = await startUwsgi("unix");
  assert.match(uwsgi.base, /^scgi\+unix:\/\/%2F/);
  await echoCases(t, uwsgi.base, traits);
});

peerTest(
  ["uwsgi"],
  "uwsgi: a killed backend gives connection_refused",
  async () => {
    for (const transport of ["tcp", "unix"] as const) {
      const uwsgi = await startUwsgi(transport);
      try {
        const ok = await scgiFetch(`${uwsgi.base}/before`);
        assert.equal(ok.status, 200);
        await ok.body?.cancel();
        await uwsgi.peer.stop();
        const error = await scgiFetch(`${uwsgi.base}/after`).then(
          () => assert.fail("a dead backend answered"),
          (error: unknown) => error,
        );
        assert.ok(error instanceof ScgiClientError, String(error));
        assert.equal(
          error.code,
          "connection_refused",
          `${transport}: ${error.message}`,
        );
      } finally {
        await uwsgi.stop();
      }
    }
  },
);

peerTest(
  ["uwsgi"],
  "uwsgi: a header block over its buffer is a clear error, not a hang",
  async () => {
    await using uwsgi = await startUwsgi("tcp");
    // 80 variables of 100 bytes: about 9 KB against uWSGI's 4 KiB buffer.
    const env: Record<string, string> = {};
    for (let i = 0; i < 80; i++) env[`X_EXTRA_${i}`] = "v".repeat(88);
    const error = await scgiFetch(`${uwsgi.base}/big`, {
      env,
      headTimeout: 5000,
    }).then(
      () => assert.fail("uWSGI answered a header block over its buffer"),
      (error: unknown) => error,
    );
    // uWSGI resets the connection (or closes it) without answering.
    assert.ok(error instanceof ScgiClientError, String(error));
    assert.ok(
      ["connection_failed", "malformed_response"].includes(error.code),
      `${error.code}: ${error.message}`,
    );
    // The same backend still serves a request that fits.
    const ok = await scgiFetch(`${uwsgi.base}/small`, {
      env: { X_EXTRA: "v" },
    });
    assert.equal(ok.status, 200);
    assert.equal((await ok.json()).env.X_EXTRA, "v");
  },
);
