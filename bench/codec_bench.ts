// Benchmarks of the sans-I/O codec: `deno bench bench/codec_bench.ts`.
//
// Each group has a baseline, the cost the codec can't avoid (building the
// `Request` or `Response` it hands over), so `deno bench` prints how many
// times that cost each step takes.

import {
  type CgiEnv,
  cgiFromRequest,
  encodeCgiResponse,
  encodeRequestHead,
  parseHeaderBlock,
  readCgiResponse,
  readRequestHead,
  requestFromCgi,
} from "../mod.ts";

const encoder = new TextEncoder();

// What nginx 1.22 with Debian's scgi_params sends for a browser's GET.
const nginxVariables: [string, string][] = [
  ["CONTENT_LENGTH", "0"],
  ["REQUEST_METHOD", "GET"],
  ["REQUEST_URI", "/articles/scgi?page=2"],
  ["QUERY_STRING", "page=2"],
  ["CONTENT_TYPE", ""],
  ["DOCUMENT_URI", "/articles/scgi"],
  ["DOCUMENT_ROOT", "/var/www/html"],
  ["SCGI", "1"],
  ["SERVER_PROTOCOL", "HTTP/1.1"],
  ["REQUEST_SCHEME", "https"],
  ["HTTPS", "on"],
  ["REMOTE_ADDR", "203.0.113.42"],
  ["REMOTE_PORT", "53412"],
  ["SERVER_PORT", "443"],
  ["SERVER_NAME", "blog.example.com"],
  ["HTTP_HOST", "blog.example.com"],
  [
    "HTTP_USER_AGENT",
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
  ],
  [
    "HTTP_ACCEPT",
    "text/html,*/*;q=0.8",
  ],
  ["HTTP_ACCEPT_LANGUAGE", "en-GB,en;q=0.5"],
  ["HTTP_ACCEPT_ENCODING", "gzip, deflate, br, zstd"],
  ["HTTP_REFERER", "https://blog.example.com/"],
  ["HTTP_CONNECTION", "keep-alive"],
  ["HTTP_COOKIE", "session=3f9a1c0e; theme=dark"],
  ["HTTP_UPGRADE_INSECURE_REQUESTS", "1"],
  ["HTTP_SEC_FETCH_DEST", "document"],
  ["HTTP_SEC_FETCH_MODE", "navigate"],
];
const block = encoder.encode(
  nginxVariables.map(([name, value]) => `${name}\0${value}\0`).join(""),
);
const wire = new Uint8Array([
  ...encoder.encode(`${block.length}:`),
  ...block,
  0x2c,
]);
const { env, nonUtf8 } = parseHeaderBlock(block);
const url = "https://blog.example.com/articles/scgi?page=2";
const headerPairs: [string, string][] = nginxVariables
  .filter(([name]) => name.startsWith("HTTP_") && name !== "HTTP_CONNECTION")
  .map((
    [name, value],
  ) => [name.slice(5).replaceAll("_", "-").toLowerCase(), value]);

// What a client sends for a typical request.
const clientRequest = new Request("http://127.0.0.1:4000/api/items?id=7", {
  headers: { accept: "application/json", "user-agent": "deno-scgi-bench" },
});
const clientEnv = cgiFromRequest(clientRequest, {
  remoteAddr: { hostname: "127.0.0.1", port: 51000 },
});

const cgiAnswer = encoder.encode(
  "Status: 200 OK\r\nContent-Type: text/plain;charset=UTF-8\r\n" +
    "Content-Length: 14\r\nX-Request-Id: 42\r\n\r\nHello, world!\n",
);

if (wire.length < 650 || wire.length > 800 || nginxVariables.length < 25) {
  throw new Error(`the nginx head is ${wire.length} bytes, not about 700`);
}

Deno.bench({
  name: "new Request(url, { headers }) (baseline)",
  group: "request in",
  baseline: true,
  fn() {
    new Request(url, { headers: headerPairs });
  },
});

Deno.bench({
  name:
    `parseHeaderBlock (${nginxVariables.length} variables, ${block.length} bytes)`,
  group: "request in",
  fn() {
    parseHeaderBlock(block);
  },
});

Deno.bench({
  name: `readRequestHead from one chunk (${wire.length} bytes)`,
  group: "request in",
  async fn() {
    await readRequestHead(ReadableStream.from([wire]));
  },
});

Deno.bench({
  name: "requestFromCgi",
  group: "request in",
  fn() {
    requestFromCgi(env as CgiEnv, { nonUtf8 });
  },
});

Deno.bench({
  name: "readRequestHead + requestFromCgi",
  group: "request in",
  async fn() {
    const head = await readRequestHead(ReadableStream.from([wire]));
    requestFromCgi(head.env, { body: head.body, nonUtf8: head.nonUtf8 });
  },
});

Deno.bench({
  name: "new Request(url, { headers }) (baseline)",
  group: "request out",
  baseline: true,
  fn() {
    new Request("http://127.0.0.1:4000/api/items?id=7", {
      headers: { accept: "application/json", "user-agent": "deno-scgi-bench" },
    });
  },
});

Deno.bench({
  name: `encodeRequestHead (${clientEnv.length + 2} variables)`,
  group: "request out",
  fn() {
    encodeRequestHead(clientEnv, 0);
  },
});

Deno.bench({
  name: "cgiFromRequest + encodeRequestHead",
  group: "request out",
  fn() {
    encodeRequestHead(
      cgiFromRequest(clientRequest, {
        remoteAddr: { hostname: "127.0.0.1", port: 51000 },
      }),
      0,
    );
  },
});

Deno.bench({
  name: "new Response(text) + arrayBuffer() (baseline)",
  group: "response",
  baseline: true,
  async fn() {
    await new Response("Hello, world!\n").arrayBuffer();
  },
});

Deno.bench({
  name: "encodeCgiResponse(new Response(text)), chunks collected",
  group: "response",
  async fn() {
    await Array.fromAsync(encodeCgiResponse(new Response("Hello, world!\n")));
  },
});

Deno.bench({
  name: `readCgiResponse (${cgiAnswer.length} bytes) + arrayBuffer()`,
  group: "response",
  async fn() {
    const response = await readCgiResponse(ReadableStream.from([cgiAnswer]));
    await response.arrayBuffer();
  },
});
