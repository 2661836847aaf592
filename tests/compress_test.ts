import assert from "node:assert/strict";
import {
  compress,
  isCompressible,
  negotiateEncoding,
} from "../middleware/mod.ts";
import { serve } from "../server.ts";
import { testClient } from "../testing.ts";
import {
  findBinary,
  freePort,
  peerTest,
  startPeer,
  waitForListen,
} from "./_peer.ts";

const BIG = "Hello, SCGI! ".repeat(500); // 6500 bytes

async function inflate(
  body: ReadableStream<Uint8Array> | Uint8Array,
  coding: "gzip" | "deflate",
): Promise<string> {
  const stream = body instanceof Uint8Array
    ? ReadableStream.from([body])
    : body;
  return await new Response(
    stream.pipeThrough(
      new DecompressionStream(coding) as unknown as ReadableWritablePair<
        Uint8Array<ArrayBuffer>,
        Uint8Array
      >,
    ),
  ).text();
}

Deno.test("negotiateEncoding: q-values, *, identity, x-gzip, bad input", () => {
  const both = ["gzip", "deflate"] as const;
  assert.equal(negotiateEncoding(null, both), undefined);
  assert.equal(negotiateEncoding("", both), undefined);
  assert.equal(negotiateEncoding("gzip", both), "gzip");
  assert.equal(negotiateEncoding("deflate", both), "deflate");
  assert.equal(negotiateEncoding("gzip, deflate, br", both), "gzip");
  assert.equal(negotiateEncoding("deflate, gzip", both), "gzip"); // equal q: ours
  assert.equal(negotiateEncoding("gzip;q=0.5, deflate", both), "deflate");
  assert.equal(negotiateEncoding("GZIP;Q=0.9, deflate;q=0.8", both), "gzip");
  assert.equal(negotiateEncoding("gzip;q=0", both), undefined);
  assert.equal(negotiateEncoding("gzip;q=0, deflate;q=0", both), undefined);
  assert.equal(negotiateEncoding("*", both), "gzip");
  assert.equal(negotiateEncoding("*;q=0", both), undefined);
  assert.equal(negotiateEncoding("gzip;q=0, *", both), "deflate");
  assert.equal(negotiateEncoding("br, *;q=0.1", both), "gzip");
  assert.equal(negotiateEncoding("x-gzip", both), "gzip");
  assert.equal(negotiateEncoding("identity", both), undefined);
  assert.equal(negotiateEncoding("identity;q=1, gzip;q=0.5", both), undefined);
  assert.equal(negotiateEncoding("identity;q=0.1, gzip;q=0.5", both), "gzip");
  assert.equal(negotiateEncoding("gzip;q=2", both), undefined); // not a q-value
  assert.equal(negotiateEncoding("gzip;q=abc, deflate", both), "deflate");
  assert.equal(negotiateEncoding("gzip", ["deflate"]), undefined);
  assert.equal(negotiateEncoding(" , ;, gzip ; q=0.3 ", both), "gzip");
});

Deno.test("isCompressible: text yes, compressed media no", () => {
  for (
    const type of [
      "text/html",
      "application/json",
      "image/svg+xml",
      "",
      "application/javascript",
    ]
  ) {
    assert.ok(isCompressible(type), type);
  }
  for (
    const type of [
      "image/png",
      "image/jpeg",
      "video/mp4",
      "audio/ogg",
      "application/zip",
      "application/gzip",
      "font/woff2",
      "text/event-stream",
      "application/pdf",
    ]
  ) {
    assert.ok(!isCompressible(type), type);
  }
});

Deno.test("compress: gzip and deflate bodies decompress to the original", async () => {
  const client = testClient(
    compress()(() =>
      new Response(BIG, {
        headers: { "content-type": "text/plain", etag: '"v1"' },
      })
    ),
  );
  for (const coding of ["gzip", "deflate"] as const) {
    const response = await client.fetch("/", {
      headers: { "accept-encoding": coding },
    });
    assert.equal(response.headers.get("content-encoding"), coding);
    assert.equal(response.headers.get("vary"), "Accept-Encoding");
    assert.equal(response.headers.get("etag"), 'W/"v1"');
    const bytes = new Uint8Array(await response.arrayBuffer());
    assert.ok(
      bytes.length < BIG.length / 10,
      `${coding}: ${bytes.length} bytes`,
    );
    assert.equal(await inflate(bytes, coding), BIG);
  }
});

Deno.test("compress: what is left alone, and Vary", async () => {
  const bodies: Record<string, () => Response> = {
    "/small": () => new Response("tiny"),
    "/small-declared": () =>
      new Response(BIG, { headers: { "content-length": "10" } }),
    "/png": () =>
      new Response(BIG, { headers: { "content-type": "image/png" } }),
    "/encoded": () =>
      new Response(BIG, { headers: { "content-encoding": "br" } }),
    "/no-transform": () =>
      new Response(BIG, {
        headers: { "cache-control": "public, no-transform" },
      }),
    "/not-modified": () => new Response(null, { status: 304 }),
    "/no-content": () => new Response(null, { status: 204 }),
    "/partial": () => new Response(BIG, { status: 206 }),
    "/vary": () => new Response(BIG, { headers: { vary: "Cookie" } }),
    "/vary-star": () => new Response(BIG, { headers: { vary: "*" } }),
    "/vary-has": () =>
      new Response(BIG, { headers: { vary: "accept-encoding" } }),
  };
  const client = testClient(
    compress()((request) => bodies[new URL(request.url).pathname]!()),
  );
  const get = (path: string, init: RequestInit = {}) =>
    client.fetch(path, {
      headers: { "accept-encoding": "gzip, deflate" },
      ...init,
    });

  const small = await get("/small");
  assert.equal(small.headers.get("content-encoding"), null);
  assert.equal(small.headers.get("vary"), "Accept-Encoding");
  assert.equal(small.headers.get("content-length"), "4");
  assert.equal(await small.text(), "tiny");
  for (
    const path of [
      "/small-declared",
      "/png",
      "/encoded",
      "/no-transform",
      "/partial",
    ]
  ) {
    const response = await get(path);
    assert.notEqual(response.headers.get("content-encoding"), "gzip", path);
    await response.body?.cancel();
  }
  assert.equal((await get("/png")).headers.get("vary"), null);
  assert.equal((await get("/not-modified")).status, 304);
  assert.equal((await get("/no-content")).status, 204);
  const head = await get("/vary", { method: "HEAD" });
  assert.equal(head.headers.get("content-encoding"), "gzip");
  assert.equal(head.headers.get("vary"), "Cookie, Accept-Encoding");
  const vary = await get("/vary");
  assert.equal(vary.headers.get("vary"), "Cookie, Accept-Encoding");
  assert.equal(vary.headers.get("content-length"), null);
  assert.equal(await inflate(vary.body!, "gzip"), BIG);
  const star = await get("/vary-star");
  assert.equal(star.headers.get("vary"), "*");
  await star.body?.cancel();
  const has = await get("/vary-has");
  assert.equal(has.headers.get("vary"), "accept-encoding");
  await has.body?.cancel();
  // Not accepted: identity, but still Vary.
  const plain = await client.fetch("/vary", {
    headers: { "accept-encoding": "gzip;q=0" },
  });
  assert.equal(plain.headers.get("content-encoding"), null);
  assert.equal(plain.headers.get("vary"), "Cookie, Accept-Encoding");
  assert.equal(await plain.text(), BIG);
});

Deno.test("compress: a streamed body is compressed as it comes, never awaited whole", async () => {
  const release = Promise.withResolvers<void>();
  const encoder = new TextEncoder();
  const app = compress()(() =>
    new Response(
      new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(encoder.encode("first "));
          await release.promise; // the head must get out before this
          controller.enqueue(encoder.encode("second"));
          controller.close();
        },
      }),
    )
  );
  const response = await testClient(app).fetch("/", {
    headers: { "accept-encoding": "gzip" },
  });
  assert.equal(response.headers.get("content-encoding"), "gzip");
  release.resolve();
  assert.equal(await inflate(response.body!, "gzip"), "first second");
  // A small streamed body can't be judged by size: it is compressed.
  assert.throws(() => compress({ encodings: ["br" as "gzip"] }), TypeError);
});

Deno.test("compress: threshold 0 compresses everything that qualifies", async () => {
  const client = testClient(
    compress({ threshold: 0, encodings: ["deflate"] })(() => new Response("x")),
  );
  const response = await client.fetch("/", {
    headers: { "accept-encoding": "gzip, deflate" },
  });
  assert.equal(response.headers.get("content-encoding"), "deflate");
  assert.equal(await inflate(response.body!, "deflate"), "x");
});

Deno.test("compress: a 304 carries the ETag and Vary its compressed 200 would (RFC 9110 15.4.5)", async () => {
  // An app that answers If-None-Match itself, comparing weakly as RFC 9110
  // 13.1.2 asks: the client sends back the W/"v1" it got.
  const client = testClient(
    compress()((request) => {
      const match = request.headers.get("if-none-match");
      const headers = { "content-type": "text/html", etag: '"v1"' };
      if (match?.replace(/^W\//, "") === '"v1"') {
        return new Response(null, { status: 304, headers });
      }
      return new Response(BIG, { headers });
    }),
  );
  const full = await client.fetch("/", {
    headers: { "accept-encoding": "gzip" },
  });
  assert.equal(full.status, 200);
  assert.equal(full.headers.get("content-encoding"), "gzip");
  const etag = full.headers.get("etag")!;
  assert.equal(etag, 'W/"v1"');
  assert.equal(full.headers.get("vary"), "Accept-Encoding");
  await full.body!.cancel();

  const notModified = await client.fetch("/", {
    headers: { "accept-encoding": "gzip", "if-none-match": etag },
  });
  assert.equal(notModified.status, 304);
  assert.equal(notModified.headers.get("etag"), etag);
  assert.equal(notModified.headers.get("vary"), "Accept-Encoding");
  assert.equal(notModified.headers.get("content-encoding"), null);
  assert.equal(notModified.body, null);

  // A client that takes no coding gets the strong ETag and still Vary, as
  // its 200 would carry.
  const identity = await client.fetch("/", {
    headers: { "if-none-match": '"v1"' },
  });
  assert.equal(identity.status, 304);
  assert.equal(identity.headers.get("etag"), '"v1"');
  assert.equal(identity.headers.get("vary"), "Accept-Encoding");
});

Deno.test("compress: a 304 whose 200 is not compressed is left alone", async () => {
  const answers: Record<string, Headers> = {
    // Compressed already, or not to be transformed: no Vary, strong ETag.
    "/png": new Headers({ "content-type": "image/png", etag: '"p"' }),
    "/no-transform": new Headers({
      "cache-control": "no-transform",
      etag: '"n"',
    }),
    // Under the threshold by its stated length: Vary only.
    "/small": new Headers({ "content-length": "10", etag: '"s"' }),
  };
  const client = testClient(
    compress()((request) =>
      new Response(null, {
        status: 304,
        headers: answers[new URL(request.url).pathname]!,
      })
    ),
  );
  const get = (path: string) =>
    client.fetch(path, { headers: { "accept-encoding": "gzip" } });
  const png = await get("/png");
  assert.equal(png.headers.get("etag"), '"p"');
  assert.equal(png.headers.get("vary"), null);
  const noTransform = await get("/no-transform");
  assert.equal(noTransform.headers.get("etag"), '"n"');
  assert.equal(noTransform.headers.get("vary"), null);
  const small = await get("/small");
  assert.equal(small.headers.get("etag"), '"s"');
  assert.equal(small.headers.get("vary"), "Accept-Encoding");
});

Deno.test("compress: HEAD carries the head its GET has", async () => {
  let cancelled = 0;
  const client = testClient(
    compress()((request) => {
      const path = new URL(request.url).pathname;
      const headers = { "content-type": "text/plain", etag: '"h"' };
      if (path === "/small") return new Response("tiny", { headers });
      if (path === "/bodiless") return new Response(null, { headers });
      return new Response(
        new ReadableStream<Uint8Array>({
          pull(controller) {
            controller.enqueue(new TextEncoder().encode(BIG));
          },
          cancel() {
            cancelled++;
          },
        }),
        { headers },
      );
    }),
  );
  const ask = (path: string, method: string) =>
    client.fetch(path, { method, headers: { "accept-encoding": "gzip" } });
  const fields = ["content-encoding", "etag", "vary", "content-type"];
  for (const path of ["/", "/small"]) {
    const get = await ask(path, "GET");
    const head = await ask(path, "HEAD");
    for (const name of fields) {
      assert.equal(head.headers.get(name), get.headers.get(name), path + name);
    }
    await get.body?.cancel();
  }
  const get = await ask("/", "GET");
  assert.equal(get.headers.get("content-encoding"), "gzip");
  assert.equal(get.headers.get("etag"), 'W/"h"');
  await get.body!.cancel();
  const head = await ask("/", "HEAD");
  assert.equal(head.headers.get("content-length"), null);
  // The HEAD's body is not compressed for nothing: it is cancelled.
  assert.ok(cancelled >= 2, `cancelled ${cancelled}`);
  // A HEAD answered without a body, its size unknown: Vary and a weak ETag
  // (never wrong), and no claim about the coding of bytes not seen.
  const bodiless = await ask("/bodiless", "HEAD");
  assert.equal(bodiless.headers.get("vary"), "Accept-Encoding");
  assert.equal(bodiless.headers.get("etag"), 'W/"h"');
  assert.equal(bodiless.headers.get("content-encoding"), null);
});

// The raw HTTP/1.0 answer of nginx: no chunking to undo, bytes as nginx sent them.
async function rawGet(
  port: number,
  path: string,
  headers: Record<string, string>,
) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const lines = [
    `GET ${path} HTTP/1.0`,
    "Host: localhost",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  const writer = conn.writable.getWriter();
  await writer.write(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
  writer.releaseLock();
  const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  let split = 0;
  while (
    !(bytes[split] === 13 && bytes[split + 1] === 10 &&
      bytes[split + 2] === 13 && bytes[split + 3] === 10)
  ) split++;
  const head = new TextDecoder().decode(bytes.subarray(0, split)).split("\r\n");
  const status = Number(head[0]!.split(" ")[1]);
  const fields = new Headers(
    head.slice(1).map((line) => {
      const colon = line.indexOf(":");
      return [line.slice(0, colon), line.slice(colon + 1).trim()] as [
        string,
        string,
      ];
    }),
  );
  return { status, headers: fields, body: bytes.subarray(split + 4) };
}

peerTest(
  ["nginx"],
  "compress: through a real nginx (scgi_pass), the bytes decompress",
  async () => {
    const encoder = new TextEncoder();
    await using server = serve(
      { port: 0, onListen() {} },
      compress()((request) => {
        if (new URL(request.url).pathname === "/stream") {
          return new Response(
            ReadableStream.from((async function* () {
              for (let i = 0; i < 50; i++) {
                await new Promise((resolve) => setTimeout(resolve, 1));
                yield encoder.encode(`line ${i}\n`);
              }
            })()),
            {
              headers: {
                "content-type": "text/plain",
                "x-accel-buffering": "no",
              },
            },
          );
        }
        return new Response(BIG, { headers: { "content-type": "text/html" } });
      }),
    );
    const backendPort = (server.addr as Deno.NetAddr).port;
    const dir = await Deno.makeTempDir({ prefix: "scgi-compress-nginx-" });
    const port = freePort();
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `
worker_processes 1;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body_temp;
  scgi_temp_path ${dir}/scgi_temp;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  server {
    listen 127.0.0.1:${port};
    location / {
      scgi_param SCGI 1;
      scgi_param REQUEST_METHOD $request_method;
      scgi_param REQUEST_URI $request_uri;
      scgi_param QUERY_STRING $query_string;
      scgi_param CONTENT_TYPE $content_type;
      scgi_param SERVER_PROTOCOL $server_protocol;
      scgi_param REMOTE_ADDR $remote_addr;
      scgi_param SERVER_PORT $server_port;
      scgi_param SERVER_NAME $server_name;
      scgi_param HTTP_HOST $host;
      scgi_pass 127.0.0.1:${backendPort};
    }
  }
}
`,
    );
    const root = Deno.uid() === 0;
    const nginx = startPeer(findBinary("nginx")!, [
      "-p",
      `${dir}/`,
      "-c",
      `${dir}/nginx.conf`,
      "-e",
      "stderr",
      "-g",
      `daemon off; pid ${dir}/nginx.pid;${root ? " user root;" : ""}`,
    ], { cwd: dir });
    try {
      await waitForListen({ port }, 15_000, nginx.alive);
      const gzip = await rawGet(port, "/", { "Accept-Encoding": "gzip" });
      assert.equal(gzip.status, 200);
      assert.equal(gzip.headers.get("content-encoding"), "gzip");
      assert.equal(gzip.headers.get("vary"), "Accept-Encoding");
      assert.equal(gzip.headers.get("content-length"), null);
      assert.equal(await inflate(gzip.body, "gzip"), BIG);

      const deflate = await rawGet(port, "/", {
        "Accept-Encoding": "gzip;q=0.5, deflate",
      });
      assert.equal(deflate.headers.get("content-encoding"), "deflate");
      assert.equal(await inflate(deflate.body, "deflate"), BIG);

      const identity = await rawGet(port, "/", {});
      assert.equal(identity.headers.get("content-encoding"), null);
      assert.equal(identity.headers.get("content-length"), String(BIG.length));
      assert.equal(new TextDecoder().decode(identity.body), BIG);

      const streamed = await rawGet(port, "/stream", {
        "Accept-Encoding": "gzip",
      });
      assert.equal(streamed.headers.get("content-encoding"), "gzip");
      const expected = Array.from({ length: 50 }, (_, i) => `line ${i}\n`).join(
        "",
      );
      assert.equal(await inflate(streamed.body, "gzip"), expected);
    } catch (error) {
      throw new Error(`${error}\nnginx said:\n${nginx.output()}`, {
        cause: error,
      });
    } finally {
      await nginx.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
);
