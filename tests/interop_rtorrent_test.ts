// scgiFetch calling rtorrent's XML-RPC over SCGI, on TCP
// (`network.scgi.open_port`) and a Unix socket (`network.scgi.open_local`),
// with rtorrent started headless from tests/peers/rtorrent.rc (the file
// docs/rtorrent.md uses). rtorrent is strict: CONTENT_LENGTH first, a
// non-empty body, and a header block of about 2000 bytes at most.

import assert from "node:assert/strict";
import { scgiFetch } from "../client.ts";
import { ScgiClientError } from "../codec/errors.ts";
import { startRtorrent, type Transport } from "./_backends.ts";
import { peerTest } from "./_peer.ts";

function methodCall(method: string): string {
  return `<?xml version="1.0"?><methodCall><methodName>${method}</methodName><params></params></methodCall>`;
}

// Just enough XML-RPC reading for these answers: a fault, or the strings.
function xmlRpcStrings(xml: string): string[] {
  assert.match(xml, /^<\?xml[^>]*\?>\s*<methodResponse>/);
  if (/<fault>/.test(xml)) throw new Error(`XML-RPC fault: ${xml}`);
  const strings: string[] = [];
  for (
    const match of xml.matchAll(/<value><string>([^<]*)<\/string><\/value>/g)
  ) {
    strings.push(
      match[1]!.replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll(
        "&amp;",
        "&",
      ),
    );
  }
  return strings;
}

async function call(base: string, method: string): Promise<string[]> {
  const response = await scgiFetch(`${base}/RPC2`, {
    method: "POST",
    headers: { "content-type": "text/xml" },
    body: methodCall(method),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/xml");
  return xmlRpcStrings(await response.text());
}

for (const transport of ["tcp", "unix"] as Transport[]) {
  peerTest(["rtorrent"], `rtorrent: XML-RPC over ${transport}`, async (t) => {
    await using rtorrent = await startRtorrent(transport);
    await t.step("system.client_version", async () => {
      const [version, ...rest] = await call(
        rtorrent.base,
        "system.client_version",
      );
      assert.match(version ?? "", /^0\.9\.\d+$/);
      assert.deepEqual(rest, []);
    });
    await t.step("system.listMethods", async () => {
      const methods = await call(rtorrent.base, "system.listMethods");
      assert.ok(methods.length > 100, `only ${methods.length} methods`);
      assert.ok(methods.includes("system.client_version"));
      assert.ok(methods.includes("network.scgi.open_local"));
    });
  });
}

peerTest(
  ["rtorrent"],
  "rtorrent: requests it refuses fail clearly",
  async (t) => {
    await using rtorrent = await startRtorrent("tcp");
    const refused = async (init: Parameters<typeof scgiFetch>[1]) => {
      const error = await scgiFetch(`${rtorrent.base}/RPC2`, {
        ...init,
        headTimeout: 5000,
      }).then(
        () => assert.fail("rtorrent answered"),
        (error: unknown) => error,
      );
      assert.ok(error instanceof ScgiClientError, String(error));
      assert.ok(
        ["connection_failed", "malformed_response"].includes(error.code),
        `${error.code}: ${error.message}`,
      );
    };
    await t.step("an empty body: closed without an answer", async () => {
      await refused({ method: "POST", body: "" });
    });
    await t.step("a header block over about 2000 bytes", async () => {
      const env: Record<string, string> = {};
      for (let i = 0; i < 24; i++) env[`X_EXTRA_${i}`] = "v".repeat(88);
      await refused({
        method: "POST",
        body: methodCall("system.client_version"),
        env,
      });
    });
    await t.step("it still answers a request it accepts", async () => {
      const [version] = await call(rtorrent.base, "system.client_version");
      assert.match(version ?? "", /^0\.9\./);
    });
  },
);
