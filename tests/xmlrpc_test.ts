// The examples' XML-RPC encoder/decoder, and examples/rtorrent_list.ts
// against a real rtorrent holding one torrent whose data is on disk.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  decodeMethodResponse,
  encodeMethodCall,
  XmlRpcFault,
} from "../examples/xmlrpc.ts";
import { listTorrents, xmlRpcCall } from "../examples/rtorrent_list.ts";
import { startRtorrent } from "./_backends.ts";
import { peerTest } from "./_peer.ts";

const response = (value: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<methodResponse>\n<params>\n<param>${value}</param>\n</params>\n</methodResponse>\n`;

Deno.test("xmlrpc: encodes every value kind", () => {
  const xml = encodeMethodCall("d.multicall2", [
    "a<b&c",
    7,
    -(2 ** 31) + 1,
    2 ** 40,
    1.5,
    true,
    null,
    new Date(Date.UTC(2026, 10, 21, 16, 5, 9)),
    new Uint8Array([0, 255, 1]),
    [1, "x"],
    { name: "n", "a&b": false },
    12345678901234567890n,
  ]);
  assert.equal(
    xml,
    '<?xml version="1.0"?><methodCall><methodName>d.multicall2</methodName><params>' +
      "<param><value><string>a&lt;b&amp;c</string></value></param>" +
      "<param><value><i4>7</i4></value></param>" +
      "<param><value><i4>-2147483647</i4></value></param>" +
      "<param><value><i8>1099511627776</i8></value></param>" +
      "<param><value><double>1.5</double></value></param>" +
      "<param><value><boolean>1</boolean></value></param>" +
      "<param><value><nil/></value></param>" +
      "<param><value><dateTime.iso8601>20261121T16:05:09</dateTime.iso8601></value></param>" +
      "<param><value><base64>AP8B</base64></value></param>" +
      "<param><value><array><data><value><i4>1</i4></value><value><string>x</string></value></data></array></value></param>" +
      "<param><value><struct><member><name>name</name><value><string>n</string></value></member>" +
      "<member><name>a&amp;b</name><value><boolean>0</boolean></value></member></struct></value></param>" +
      "<param><value><i8>12345678901234567890</i8></value></param>" +
      "</params></methodCall>",
  );
  assert.throws(() => encodeMethodCall("bad name<"), TypeError);
  assert.throws(() => encodeMethodCall("x", [NaN]), TypeError);
});

Deno.test("xmlrpc: decodes what rtorrent sends, and round-trips", () => {
  assert.deepEqual(
    decodeMethodResponse(response(
      "<value><array><data>\n<value><array><data>\n<value><string>ubuntu.iso</string></value>\n" +
        "<value><string>ABCDEF</string></value>\n<value><i8>4294967296</i8></value>\n" +
        "<value><i8>0</i8></value>\n</data></array></value>\n</data></array></value>",
    )),
    [["ubuntu.iso", "ABCDEF", 4294967296, 0]],
  );
  assert.equal(
    decodeMethodResponse(response("<value>bare &#x263A; &#65;</value>")),
    "bare ☺ A",
  );
  assert.equal(
    decodeMethodResponse(
      response("<value><string>  spaced  </string></value>"),
    ),
    "  spaced  ",
  );
  assert.equal(decodeMethodResponse(response("<value><string/></value>")), "");
  assert.equal(decodeMethodResponse(response("<value></value>")), "");
  assert.equal(
    decodeMethodResponse(response("<value><int>-5</int></value>")),
    -5,
  );
  assert.equal(
    decodeMethodResponse(
      response("<value><i8>99999999999999999999</i8></value>"),
    ),
    99999999999999999999n,
  );
  assert.equal(
    decodeMethodResponse(response("<value><double>2.5</double></value>")),
    2.5,
  );
  assert.equal(
    decodeMethodResponse(response("<value><boolean>0</boolean></value>")),
    false,
  );
  assert.equal(decodeMethodResponse(response("<value><nil/></value>")), null);
  assert.deepEqual(
    decodeMethodResponse(response("<value><base64>AP8B\n</base64></value>")),
    new Uint8Array([0, 255, 1]),
  );
  assert.deepEqual(
    decodeMethodResponse(
      response(
        "<value><dateTime.iso8601>20261121T16:05:09</dateTime.iso8601></value>",
      ),
    ),
    new Date(Date.UTC(2026, 10, 21, 16, 5, 9)),
  );
  assert.deepEqual(
    decodeMethodResponse(response("<value><array><data/></array></value>")),
    [],
  );
  assert.deepEqual(
    decodeMethodResponse(response(
      "<value><struct><member><name>a</name><value><i4>1</i4></value></member><member><name>b</name><value><array><data></data></array></value></member></struct></value>",
    )),
    { a: 1, b: [] },
  );
  // What the encoder writes, the decoder reads.
  const value = [{ s: "<&>", n: [1, 2 ** 40, true] }];
  const call = encodeMethodCall("m", value).replace(/^.*<params>/, "").replace(
    /<\/params>.*$/,
    "",
  );
  assert.deepEqual(
    decodeMethodResponse(
      `<methodResponse><params>${call}</params></methodResponse>`,
    ),
    value[0],
  );
});

Deno.test("xmlrpc: faults and malformed documents", () => {
  const fault = `<?xml version="1.0"?><methodResponse><fault><value><struct>
<member><name>faultCode</name><value><i4>-506</i4></value></member>
<member><name>faultString</name><value><string>Method 'nope' not defined</string></value></member>
</struct></value></fault></methodResponse>`;
  assert.throws(
    () => decodeMethodResponse(fault),
    (error) =>
      error instanceof XmlRpcFault && error.code === -506 &&
      /nope/.test(error.message),
  );
  for (
    const bad of [
      "",
      "<html>oops</html>",
      response("<value><i4>x</i4></value>"),
      response("<value><boolean>2</boolean></value>"),
      response("<value><weird>1</weird></value>"),
      response("<value><string>a</string>"),
      response("<value><i4>1</i4></value>") + "<extra/>",
    ]
  ) {
    assert.throws(() => decodeMethodResponse(bad), SyntaxError, bad);
  }
});

// --- against rtorrent ---------------------------------------------------

function bencode(value: unknown): Uint8Array {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === "number") parts.push(encoder.encode(`i${v}e`));
    else if (typeof v === "string") walk(encoder.encode(v));
    else if (v instanceof Uint8Array) {
      parts.push(encoder.encode(`${v.length}:`), v);
    } else {
      parts.push(encoder.encode("d"));
      for (const key of Object.keys(v as object).sort()) {
        walk(key);
        walk((v as Record<string, unknown>)[key]);
      }
      parts.push(encoder.encode("e"));
    }
  };
  walk(value);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

peerTest(
  ["rtorrent"],
  "rtorrent_list: d.multicall2 lists a real torrent with its completion",
  async () => {
    await using rtorrent = await startRtorrent("tcp");
    const url = `${rtorrent.base}/RPC2`;
    assert.deepEqual(await listTorrents(url), []);

    // A one-file torrent whose data is already in rtorrent's download dir:
    // once its hash check has run, it is 100% complete.
    const data = new TextEncoder().encode(
      "hello from deno-scgi\n".repeat(2000),
    );
    const pieceLength = 16384;
    const pieces: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += pieceLength) {
      pieces.push(
        createHash("sha1").update(data.subarray(i, i + pieceLength)).digest(),
      );
    }
    const info = {
      length: data.length,
      name: "hello.txt",
      "piece length": pieceLength,
      pieces: new Uint8Array(Buffer.concat(pieces)),
    };
    const infoHash = createHash("sha1").update(bencode(info)).digest("hex")
      .toUpperCase();
    await Deno.mkdir(`${rtorrent.dir}/downloads`, { recursive: true });
    await Deno.writeFile(`${rtorrent.dir}/downloads/hello.txt`, data);
    // rtorrent wants a tracker; nothing listens on port 1 of loopback.
    const torrent = bencode({ announce: "http://127.0.0.1:1/announce", info });
    await xmlRpcCall(url, "load.raw_start", ["", torrent]);

    let rows = await listTorrents(url);
    const deadline = Date.now() + 15_000;
    while (rows[0]?.percent !== 100 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      rows = await listTorrents(url);
    }
    assert.deepEqual(rows, [{
      name: "hello.txt",
      hash: infoHash,
      sizeBytes: data.length,
      completedBytes: data.length,
      percent: 100,
    }]);

    await assert.rejects(xmlRpcCall(url, "no.such.method"), XmlRpcFault);
  },
);
