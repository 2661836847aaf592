// scgiFetch against an SCGI server built on libscgi-perl's `SCGI` module,
// which parses strictly: `CONTENT_LENGTH` must come first and `SCGI=1` must
// be there, and a variable with an empty value is dropped.

import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { ScgiClientError } from "../codec/errors.ts";
import { echoCases, startPerlScgi } from "./_backends.ts";
import { peerTest } from "./_peer.ts";

const traits = { name: "perl", dropsEmptyValues: true };

peerTest(["perl"], "perl SCGI: client cases over TCP", async (t) => {
  await using perl = await startPerlScgi("tcp");
  await echoCases(t, perl.base, traits);
});

peerTest(["perl"], "perl SCGI: client cases over a Unix socket", async (t) => {
  await using perl = await startPerlScgi("unix");
  await echoCases(t, perl.base, traits);
});

peerTest(["perl"], "perl SCGI: what the strict parser received", async () => {
  await using perl = await startPerlScgi("tcp");
  const response = await scgiFetch(`${perl.base}/strict`, {
    method: "POST",
    body: "abc",
    env: { X_PRESENT: "1", X_EMPTY: "" },
  });
  const got = await response.json();
  // The module only parses a block that starts with CONTENT_LENGTH and
  // carries SCGI=1; it answered, so both held.
  assert.equal(got.env.CONTENT_LENGTH, "3");
  assert.equal(got.env.SCGI, "1");
  // The empty SCRIPT_NAME and QUERY_STRING the client sends are dropped,
  // and so is an empty extra; the variables after them still arrive.
  assert.equal(got.env.SCRIPT_NAME, undefined);
  assert.equal(got.env.QUERY_STRING, undefined);
  assert.equal(got.env.X_EMPTY, undefined);
  assert.equal(got.env.X_PRESENT, "1");
  assert.equal(got.env.SERVER_SOFTWARE, "deno-scgi");
});

peerTest(
  ["perl"],
  "perl SCGI: a stopped backend gives connection_refused",
  async () => {
    const perl = await startPerlScgi("unix");
    try {
      const ok = await scgiFetch(`${perl.base}/before`);
      assert.equal(ok.status, 200);
      await ok.body?.cancel();
      await perl.peer.stop();
      const error = await scgiFetch(`${perl.base}/after`).then(
        () => assert.fail("a stopped backend answered"),
        (error: unknown) => error,
      );
      assert.ok(error instanceof ScgiClientError, String(error));
      assert.equal(error.code, "connection_refused", error.message);
    } finally {
      await perl.stop();
    }
  },
);
