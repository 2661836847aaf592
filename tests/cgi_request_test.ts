// CGI variables <-> Request, both ways: the URL, headers, methods and body a
// front end's variables describe, the variables a front end would send, and
// the round trip through the wire format.

import assert from "node:assert/strict";
import {
  cgiFromRequest,
  requestFromCgi,
  urlFromCgi,
} from "../codec/cgi_request.ts";
import { encodeRequestHead } from "../codec/header_encoder.ts";
import { type CgiEnv, readRequestHead } from "../codec/request_head.ts";

const encoder = new TextEncoder();

Deno.test("urlFromCgi: scheme from HTTPS or REQUEST_SCHEME", () => {
  const base = { HTTP_HOST: "example.com", REQUEST_URI: "/" };
  assert.equal(urlFromCgi(base), "http://example.com/");
  assert.equal(urlFromCgi({ ...base, HTTPS: "on" }), "https://example.com/");
  assert.equal(urlFromCgi({ ...base, HTTPS: "ON" }), "https://example.com/");
  assert.equal(urlFromCgi({ ...base, HTTPS: "1" }), "https://example.com/");
  assert.equal(urlFromCgi({ ...base, HTTPS: "off" }), "http://example.com/");
  assert.equal(urlFromCgi({ ...base, HTTPS: "" }), "http://example.com/");
  assert.equal(
    urlFromCgi({ ...base, REQUEST_SCHEME: "https" }),
    "https://example.com/",
  );
});

Deno.test("urlFromCgi: authority from HTTP_HOST, else SERVER_NAME and SERVER_PORT", () => {
  const cases: [CgiEnv, string][] = [
    [
      { HTTP_HOST: "a.example:8080", SERVER_NAME: "b.example" },
      "http://a.example:8080/",
    ],
    [{ HTTP_HOST: "a.example:80" }, "http://a.example/"],
    [{ SERVER_NAME: "b.example", SERVER_PORT: "80" }, "http://b.example/"],
    [
      { SERVER_NAME: "b.example", SERVER_PORT: "8080" },
      "http://b.example:8080/",
    ],
    [
      { SERVER_NAME: "b.example", SERVER_PORT: "443", HTTPS: "on" },
      "https://b.example/",
    ],
    [{ SERVER_NAME: "b.example", SERVER_PORT: "443" }, "http://b.example:443/"],
    [
      { SERVER_NAME: "b.example", SERVER_PORT: "80", HTTPS: "on" },
      "https://b.example:80/",
    ],
    [{ SERVER_NAME: "b.example", SERVER_PORT: "http" }, "http://b.example/"],
    [{ SERVER_NAME: "::1", SERVER_PORT: "8080" }, "http://[::1]:8080/"],
    [{ SERVER_NAME: "::1", SERVER_PORT: "80" }, "http://[::1]/"],
    [
      { SERVER_NAME: "[2001:db8::1]", SERVER_PORT: "4000" },
      "http://[2001:db8::1]:4000/",
    ],
    [{ HTTP_HOST: "[::1]:4000" }, "http://[::1]:4000/"],
    [{}, "http://localhost/"],
    [{ SERVER_NAME: "" }, "http://localhost/"],
    // A Host that is not an authority is not trusted.
    [
      { HTTP_HOST: "evil.example/path", SERVER_NAME: "b.example" },
      "http://b.example/",
    ],
    [
      { HTTP_HOST: "user@evil.example", SERVER_NAME: "b.example" },
      "http://b.example/",
    ],
    [{ HTTP_HOST: "a b", SERVER_NAME: "b.example" }, "http://b.example/"],
    [{ HTTP_HOST: "", SERVER_NAME: "b.example" }, "http://b.example/"],
    [{ SERVER_NAME: "bad name/x" }, "http://localhost/"],
  ];
  for (const [env, url] of cases) {
    assert.equal(urlFromCgi(env), url, JSON.stringify(env));
  }
});

Deno.test("urlFromCgi: REQUEST_URI is the target, kept as sent", () => {
  const url = (REQUEST_URI: string, nonUtf8?: ReadonlySet<string>) =>
    urlFromCgi({ HTTP_HOST: "h", REQUEST_URI }, nonUtf8);
  assert.equal(url("/a%20b/c%2Fd?x=%26&y=1"), "http://h/a%20b/c%2Fd?x=%26&y=1");
  assert.equal(url("/a b?c d"), "http://h/a%20b?c%20d");
  assert.equal(url("/café?q=é"), "http://h/caf%C3%A9?q=%C3%A9");
  assert.equal(url("/a#frag"), "http://h/a%23frag");
  assert.equal(url("/a?b#c"), "http://h/a?b%23c");
  assert.equal(url("/a\tb\x7fc"), "http://h/a%09b%7Fc");
  assert.equal(
    url("/caf\xe9?\xff", new Set(["REQUEST_URI"])),
    "http://h/caf%E9?%FF",
  );
  assert.equal(url("http://other.example/p?q=1"), "http://h/p?q=1");
  assert.equal(url("*"), "http://h/*");
  // A target that looks like an authority stays a path.
  assert.equal(url("//evil.example/x"), "http://h//evil.example/x");
  assert.equal(url("/\\evil.example/x"), "http://h//evil.example/x");
  assert.equal(url("///x"), "http://h///x");
});

Deno.test("urlFromCgi: without REQUEST_URI, SCRIPT_NAME + PATH_INFO + QUERY_STRING, escaped", () => {
  const url = (env: CgiEnv, nonUtf8?: ReadonlySet<string>) =>
    urlFromCgi({ HTTP_HOST: "h", ...env }, nonUtf8);
  assert.equal(url({}), "http://h/");
  assert.equal(
    url({
      SCRIPT_NAME: "/app",
      PATH_INFO: "/users/1",
      QUERY_STRING: "a=1&b=2",
    }),
    "http://h/app/users/1?a=1&b=2",
  );
  assert.equal(
    url({ PATH_INFO: "/100% sure?#yes" }),
    "http://h/100%25%20sure%3F%23yes",
  );
  assert.equal(url({ PATH_INFO: "/café" }), "http://h/caf%C3%A9");
  assert.equal(
    url({ PATH_INFO: "/caf\xe9" }, new Set(["PATH_INFO"])),
    "http://h/caf%E9",
  );
  assert.equal(url({ SCRIPT_NAME: "app", PATH_INFO: "" }), "http://h/app");
  assert.equal(
    url({ PATH_INFO: "//evil.example/x" }),
    "http://h//evil.example/x",
  );
  assert.equal(url({ PATH_INFO: "/a\\b" }), "http://h/a%5Cb");
  assert.equal(url({ QUERY_STRING: "q=a b#c" }), "http://h/?q=a%20b%23c");
  assert.equal(
    url({ QUERY_STRING: "q=\xe9" }, new Set(["QUERY_STRING"])),
    "http://h/?q=%E9",
  );
  assert.equal(url({ QUERY_STRING: "" }), "http://h/");
});

Deno.test("urlFromCgi: GEMINI_URL wins when it is a URL", () => {
  assert.equal(
    urlFromCgi({
      GEMINI_URL: "gemini://g.example/docs/café?q",
      HTTP_HOST: "h",
      REQUEST_URI: "/other",
    }),
    "gemini://g.example/docs/caf%C3%A9?q",
  );
  assert.equal(
    urlFromCgi({ GEMINI_URL: "not a url", HTTP_HOST: "h", REQUEST_URI: "/x" }),
    "http://h/x",
  );
});

Deno.test("requestFromCgi: method, URL, headers", () => {
  const request = requestFromCgi({
    CONTENT_LENGTH: "0",
    REQUEST_METHOD: "GET",
    REQUEST_URI: "/search?q=deno",
    HTTPS: "on",
    HTTP_HOST: "example.com",
    HTTP_ACCEPT: "text/html, */*",
    HTTP_COOKIE: "a=1; b=2",
    HTTP_X_FORWARDED_FOR: "192.0.2.1",
    HTTP_USER_AGENT: "curl/8",
    SERVER_NAME: "example.com",
    SERVER_PORT: "443",
    REMOTE_ADDR: "192.0.2.1",
    CONTENT_TYPE: "",
  });
  assert.equal(request.method, "GET");
  assert.equal(request.url, "https://example.com/search?q=deno");
  assert.deepEqual([...request.headers], [
    ["accept", "text/html, */*"],
    ["cookie", "a=1; b=2"],
    ["host", "example.com"],
    ["user-agent", "curl/8"],
    ["x-forwarded-for", "192.0.2.1"],
  ]);
  assert.equal(request.body, null);
});

Deno.test("requestFromCgi: methods", () => {
  const method = (REQUEST_METHOD: string) =>
    requestFromCgi({ REQUEST_METHOD, REQUEST_URI: "/" }).method;
  assert.equal(method(""), "GET");
  assert.equal(requestFromCgi({ REQUEST_URI: "/" }).method, "GET");
  assert.equal(method("get"), "GET");
  assert.equal(method("PATCH"), "PATCH");
  assert.equal(method("PROPFIND"), "PROPFIND");
  assert.equal(method("custom"), "custom");
  for (
    const bad of [
      "CONNECT",
      "TRACE",
      "TRACK",
      "GE T",
      "GET\n",
      "G(E)T",
      "GÉT",
      "GET,POST",
    ]
  ) {
    assert.throws(() => method(bad), TypeError, JSON.stringify(bad));
  }
});

Deno.test("requestFromCgi drops hop-by-hop headers and trusts CONTENT_LENGTH", async () => {
  const request = requestFromCgi({
    CONTENT_LENGTH: "4",
    CONTENT_TYPE: "text/plain",
    REQUEST_METHOD: "POST",
    REQUEST_URI: "/",
    HTTP_CONNECTION: "keep-alive, X-Secret",
    HTTP_KEEP_ALIVE: "timeout=5",
    HTTP_PROXY_CONNECTION: "keep-alive",
    HTTP_TRANSFER_ENCODING: "chunked",
    HTTP_TE: "trailers",
    HTTP_TRAILER: "X-Sum",
    HTTP_UPGRADE: "websocket",
    HTTP_HTTP2_SETTINGS: "AAA",
    HTTP_EXPECT: "100-continue",
    HTTP_CONTENT_LENGTH: "999",
    HTTP_X_KEPT: "yes",
  }, { body: ReadableStream.from([encoder.encode("data")]) });
  assert.deepEqual([...request.headers], [
    ["content-length", "4"],
    ["content-type", "text/plain"],
    ["x-kept", "yes"],
  ]);
  assert.equal(await request.text(), "data");
});

Deno.test("requestFromCgi skips header names and values HTTP can't carry", () => {
  const request = requestFromCgi({
    REQUEST_URI: "/",
    "HTTP_": "empty name",
    "HTTP_BAD NAME": "x",
    "HTTP_X(Y)": "x",
    "HTTP_X:Y": "x",
    HTTP_NEWLINE: "a\r\nInjected: 1",
    HTTP_X_OK: "fine",
    HTTP_ÉTÉ: "non-ASCII name",
  });
  assert.deepEqual([...request.headers], [["x-ok", "fine"]]);
});

Deno.test("requestFromCgi: values are trimmed; CONTENT_TYPE and CONTENT_LENGTH are never doubled", () => {
  const request = requestFromCgi({
    REQUEST_METHOD: "POST",
    REQUEST_URI: "/",
    CONTENT_LENGTH: "4",
    CONTENT_TYPE: " text/plain\t",
    HTTP_CONTENT_TYPE: "application/evil",
    "HTTP_CONTENT-LENGTH": "999",
    HTTP_X_PADDED: "  v a l  ",
    HTTP_X_ONLY_SPACE: "   ",
  });
  assert.deepEqual([...request.headers], [
    ["content-length", "4"],
    ["content-type", "text/plain"],
    ["x-only-space", ""],
    ["x-padded", "v a l"],
  ]);
  // Without CONTENT_TYPE, a Content-Type header is all there is.
  const typed = requestFromCgi({
    REQUEST_URI: "/",
    CONTENT_TYPE: "",
    HTTP_CONTENT_TYPE: "a/b",
  });
  assert.equal(typed.headers.get("content-type"), "a/b");
});

Deno.test("requestFromCgi: non-ASCII values become their bytes; raw bytes stay bytes", () => {
  const request = requestFromCgi({
    REQUEST_URI: "/",
    HTTP_X_UTF8: "café ✓",
    HTTP_X_RAW: "caf\xe9",
    CONTENT_TYPE: "text/plain; name=\xff",
  }, { nonUtf8: new Set(["HTTP_X_RAW", "CONTENT_TYPE"]) });
  assert.equal(request.headers.get("x-utf8"), "caf\xc3\xa9 \xe2\x9c\x93");
  assert.equal(request.headers.get("x-raw"), "caf\xe9");
  assert.equal(request.headers.get("content-type"), "text/plain; name=\xff");
});

Deno.test("requestFromCgi: bytes that are not UTF-8 never become U+FFFD", async () => {
  const bad = Uint8Array.of(0xe9, 0xff, 0xc3, 0x28, 0x80);
  const parts: Uint8Array[] = [encoder.encode("CONTENT_LENGTH\x000\0")];
  for (
    const name of ["REQUEST_URI", "HTTP_X_RAW", "HTTP_COOKIE", "CONTENT_TYPE"]
  ) {
    parts.push(encoder.encode(`${name}\0/p`), bad, encoder.encode("\0"));
  }
  parts.push(encoder.encode("HTTP_HOST\0h\0"));
  const block = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) block.set(p, (offset += p.length) - p.length);
  const wire = new Uint8Array([
    ...encoder.encode(`${block.length}:`),
    ...block,
    0x2c,
  ]);
  const head = await readRequestHead(ReadableStream.from([wire]));
  const request = requestFromCgi(head.env, { nonUtf8: head.nonUtf8 });
  assert.equal(request.url, "http://h/p%E9%FF%C3(%80");
  const raw = "/p\xe9\xff\xc3\x28\x80";
  assert.equal(request.headers.get("x-raw"), raw);
  assert.equal(request.headers.get("cookie"), raw);
  assert.equal(request.headers.get("content-type"), raw);
  for (const [, value] of request.headers) assert.ok(!value.includes("\ufffd"));
  assert.ok(!request.url.includes("%EF%BF%BD"));

  const viaPath = urlFromCgi(
    { HTTP_HOST: "h", PATH_INFO: "/p\xe9", QUERY_STRING: "q=\xff" },
    new Set(["PATH_INFO", "QUERY_STRING"]),
  );
  assert.equal(viaPath, "http://h/p%E9?q=%FF");
});

Deno.test("requestFromCgi: only methods that may have a body get it", async () => {
  const body = () => ReadableStream.from([encoder.encode("12345")]);
  const get = requestFromCgi(
    { REQUEST_METHOD: "GET", CONTENT_LENGTH: "5", REQUEST_URI: "/" },
    { body: body() },
  );
  assert.equal(get.body, null);
  const head = requestFromCgi(
    { REQUEST_METHOD: "HEAD", CONTENT_LENGTH: "5", REQUEST_URI: "/" },
    { body: body() },
  );
  assert.equal(head.body, null);
  const getZero = requestFromCgi({
    REQUEST_METHOD: "GET",
    CONTENT_LENGTH: "0",
    REQUEST_URI: "/",
  });
  assert.equal(getZero.headers.has("content-length"), false);
  for (
    const method of ["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "REPORT"]
  ) {
    const request = requestFromCgi(
      { REQUEST_METHOD: method, CONTENT_LENGTH: "5", REQUEST_URI: "/" },
      { body: body() },
    );
    assert.equal(await request.text(), "12345", method);
    assert.equal(request.headers.get("content-length"), "5");
  }
  const empty = requestFromCgi({
    REQUEST_METHOD: "POST",
    CONTENT_LENGTH: "0",
    REQUEST_URI: "/",
  });
  assert.equal(empty.body, null);
  assert.equal(empty.headers.get("content-length"), "0");
});

Deno.test("requestFromCgi passes the abort signal", () => {
  const controller = new AbortController();
  const request = requestFromCgi({ REQUEST_URI: "/" }, {
    signal: controller.signal,
  });
  assert.equal(request.signal.aborted, false);
  controller.abort(new Error("front end left"));
  assert.equal(request.signal.aborted, true);
});

Deno.test("cgiFromRequest builds what nginx's scgi_params would", () => {
  const request = new Request(
    "https://example.com:8443/app/users/a%20b?x=1&y=%2F",
    {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "content-length": "2",
        accept: "*/*",
        connection: "keep-alive",
        "transfer-encoding": "chunked",
        "x-custom-header": "v",
      },
      body: "{}",
    },
  );
  assert.deepEqual(
    cgiFromRequest(request, {
      scriptName: "/app/",
      remoteAddr: { hostname: "192.0.2.7", port: 51000 },
    }),
    [
      ["REQUEST_METHOD", "POST"],
      ["REQUEST_URI", "/app/users/a%20b?x=1&y=%2F"],
      ["QUERY_STRING", "x=1&y=%2F"],
      ["DOCUMENT_URI", "/app/users/a b"],
      ["SCRIPT_NAME", "/app"],
      ["PATH_INFO", "/users/a b"],
      ["SERVER_PROTOCOL", "HTTP/1.1"],
      ["GATEWAY_INTERFACE", "CGI/1.1"],
      ["SERVER_SOFTWARE", "deno-scgi"],
      ["SERVER_NAME", "example.com"],
      ["SERVER_PORT", "8443"],
      ["HTTPS", "on"],
      ["REMOTE_ADDR", "192.0.2.7"],
      ["REMOTE_PORT", "51000"],
      ["CONTENT_TYPE", "application/json"],
      ["HTTP_ACCEPT", "*/*"],
      ["HTTP_X_CUSTOM_HEADER", "v"],
      ["HTTP_HOST", "example.com:8443"],
    ],
  );
});

Deno.test("cgiFromRequest: mount point, ports, options", () => {
  const env = (url: string, options = {}, init: RequestInit = {}) =>
    new Map(cgiFromRequest(new Request(url, init), options));
  let e = env("http://h/api", { scriptName: "/api" });
  assert.equal(e.get("SCRIPT_NAME"), "/api");
  assert.equal(e.get("PATH_INFO"), "");
  e = env("http://h/apiary/x", { scriptName: "/api" });
  assert.equal(e.get("SCRIPT_NAME"), "");
  assert.equal(e.get("PATH_INFO"), "/apiary/x");
  e = env("http://h/", {});
  assert.equal(e.get("SCRIPT_NAME"), "");
  assert.equal(e.get("PATH_INFO"), "/");
  assert.equal(e.get("SERVER_PORT"), "80");
  assert.equal(e.get("QUERY_STRING"), "");
  assert.equal(e.has("HTTPS"), false);
  assert.equal(e.has("REMOTE_ADDR"), false);
  assert.equal(e.has("CONTENT_TYPE"), false);
  assert.equal(e.get("HTTP_HOST"), "h");
  e = env("https://h/");
  assert.equal(e.get("SERVER_PORT"), "443");
  assert.equal(e.get("HTTPS"), "on");
  e = env("https://h/", { https: false });
  assert.equal(e.has("HTTPS"), false);
  e = env("http://[::1]:4000/x");
  assert.equal(e.get("SERVER_NAME"), "::1");
  assert.equal(e.get("SERVER_PORT"), "4000");
  assert.equal(e.get("HTTP_HOST"), "[::1]:4000");
  e = env("http://h/x", {
    serverName: "front.example",
    serverPort: 8080,
    host: "public.example",
    serverProtocol: "HTTP/2.0",
    serverSoftware: "test",
    remoteAddr: { hostname: "::1" },
  });
  assert.equal(e.get("SERVER_NAME"), "front.example");
  assert.equal(e.get("SERVER_PORT"), "8080");
  assert.equal(e.get("HTTP_HOST"), "public.example");
  assert.equal(e.get("SERVER_PROTOCOL"), "HTTP/2.0");
  assert.equal(e.get("SERVER_SOFTWARE"), "test");
  assert.equal(e.get("REMOTE_ADDR"), "::1");
  assert.equal(e.has("REMOTE_PORT"), false);
  // A host header of the request wins and is not sent twice.
  const list = cgiFromRequest(
    new Request("http://h/", { headers: { host: "virtual.example" } }),
  );
  assert.deepEqual(list.filter(([n]) => n === "HTTP_HOST"), [[
    "HTTP_HOST",
    "virtual.example",
  ]]);
});

Deno.test("cgiFromRequest: decoded paths keep escapes that are not UTF-8 and keep %2F", () => {
  const e = new Map(cgiFromRequest(new Request("http://h/a%FFb/c%2Fd/%C3%A9")));
  assert.equal(e.get("REQUEST_URI"), "/a%FFb/c%2Fd/%C3%A9");
  assert.equal(e.get("PATH_INFO"), "/a%FFb/c%2Fd/é");
  for (const [, value] of e) assert.ok(!value.includes("\ufffd"));
});

Deno.test("cgiFromRequest: header bytes that are UTF-8 are sent as those bytes", async () => {
  // `Headers` hold bytes: "café" sent by a client as UTF-8 is "caf\xc3\xa9" here.
  const request = new Request("http://h/", {
    headers: { "x-name": "caf\xc3\xa9" },
  });
  const head = encodeRequestHead(cgiFromRequest(request), 0);
  const text = String.fromCharCode(...head);
  assert.ok(
    text.includes("HTTP_X_NAME\0caf\xc3\xa9\0"),
    "UTF-8 bytes changed on the wire",
  );
  const decoded = await readRequestHead(ReadableStream.from([head]));
  assert.equal(decoded.env.HTTP_X_NAME, "café");
  assert.equal(
    requestFromCgi(decoded.env).headers.get("x-name"),
    "caf\xc3\xa9",
  );
});

Deno.test("cgiFromRequest -> encodeRequestHead -> readRequestHead -> requestFromCgi reproduces the request", async () => {
  const cases: [string, RequestInit, { scriptName?: string }][] = [
    ["http://example.com/", {}, {}],
    ["https://example.com/search?q=a%20b&x=%E2%9C%93", {
      headers: { accept: "text/html" },
    }, {}],
    ["http://example.com:8080/app/a/b%2Fc?", {}, { scriptName: "/app" }],
    ["http://[::1]:4000/caf%C3%A9/%FF?%FF", { method: "DELETE" }, {}],
    ["http://127.0.0.1/x/../y/./z", {}, {}],
    [
      "https://example.com:443/upload?id=1",
      {
        method: "PUT",
        body: "ü payload",
        headers: {
          "content-type": "text/plain; charset=utf-8",
          cookie: "a=1; b=2",
          "x-multi": "1, 2",
          "x-utf8": "caf\xc3\xa9",
        },
      },
      {},
    ],
    ["http://example.com/p", {
      method: "PATCH",
      body: new Uint8Array(70000).fill(7),
    }, {}],
  ];
  for (const [url, init, options] of cases) {
    const original = new Request(url, init);
    const bodyBytes = new Uint8Array(await original.clone().arrayBuffer());
    const env = cgiFromRequest(original, options);
    const head = encodeRequestHead(env, bodyBytes.length);
    const chunks = [
      head.slice(0, 5),
      head.slice(5),
      bodyBytes.slice(0, 3),
      bodyBytes.slice(3),
    ]
      .filter((c) => c.length > 0);
    const decoded = await readRequestHead(ReadableStream.from(chunks));
    const rebuilt = requestFromCgi(decoded.env, {
      body: decoded.body,
      nonUtf8: decoded.nonUtf8,
    });
    assert.equal(rebuilt.method, original.method, url);
    assert.equal(rebuilt.url, original.url, url);
    const expectedHeaders = new Headers(original.headers);
    expectedHeaders.set("host", new URL(url).host);
    // CONTENT_LENGTH is always sent; only GET and HEAD leave a 0 out.
    if (bodyBytes.length > 0 || !["GET", "HEAD"].includes(original.method)) {
      expectedHeaders.set("content-length", String(bodyBytes.length));
    }
    assert.deepEqual([...rebuilt.headers], [...expectedHeaders], url);
    assert.deepEqual(
      new Uint8Array(await rebuilt.arrayBuffer()),
      bodyBytes,
      url,
    );
  }
});
