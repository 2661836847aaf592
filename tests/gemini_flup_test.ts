// Our client in Xitzin's role in front of a flup backend, the one in
// Xitzin's own SCGI example. flup is not installable here (no PyPI, no
// Debian package), so `flupBackend` speaks as flup's SCGI server
// (flup/server/scgi_base.py) does, byte for byte:
//
// - it reads the netstring, needs CONTENT_LENGTH, and reads REQUEST_METHOD
//   without a default to log the request: without one the request fails
//   before the app runs and the connection closes with no answer;
// - it writes `Status: <the WSGI status>\r\n`, the app's headers, a
//   `Content-Length` of the first chunk when the app returned a one-piece
//   body without one, a blank line, then the body; an empty body still
//   gets the head. Strings go out as Latin-1 (flup on Python 3).
//
// (flup's start_response also asserts a space after three characters of the
// status, which a Gemini status fails: the app must run under `python -O`.
// The answers below are what flup writes then.)

import assert from "node:assert/strict";
import {
  readCgiResponse,
  readGeminiStatus,
  ScgiClientError,
  scgiFetch,
} from "../mod.ts";

const decoder = new TextDecoder();
const latin1 = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

/** A WSGI app's answer: status, headers, and the iterable it returns. */
interface WsgiAnswer {
  status: string;
  headers: [string, string][];
  body: string[];
}

/** A flup-style SCGI server running `app` (a WSGI app, reduced). */
function flupBackend(app: (environ: Record<string, string>) => WsgiAnswer) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: Record<string, string>[] = [];
  const serveOne = async (conn: Deno.Conn) => {
    const reader = conn.readable.getReader();
    let buffered = new Uint8Array(0);
    const need = async (count: number) => {
      while (buffered.length < count) {
        const { value, done } = await reader.read();
        if (done) throw new Error("EOF");
        const next = new Uint8Array(buffered.length + value.length);
        next.set(buffered);
        next.set(value, buffered.length);
        buffered = next;
      }
    };
    try {
      // The netstring: length, colon, the block, comma.
      let colon = -1;
      while (colon < 0) {
        await need(buffered.length + 1);
        colon = buffered.indexOf(0x3a);
      }
      const size = Number(decoder.decode(buffered.subarray(0, colon)));
      await need(colon + 1 + size + 1);
      if (buffered[colon + 1 + size] !== 0x2c) return;
      const parts = Array.from(
        buffered.subarray(colon + 1, colon + 1 + size),
        (b) => String.fromCharCode(b),
      ).join("").split("\0").slice(0, -1);
      const environ: Record<string, string> = {};
      for (let i = 0; i + 1 < parts.length; i += 2) {
        environ[parts[i]!] = parts[i + 1]!;
      }
      seen.push(environ);
      if (environ.CONTENT_LENGTH === undefined) return;
      // Request.run logs environ['REQUEST_METHOD']: a KeyError without it.
      if (environ.REQUEST_METHOD === undefined) return;
      const answer = app(environ);
      let headersSent = false;
      const write = async (data: string) => {
        let out = "";
        if (!headersSent) {
          headersSent = true;
          const headers = [...answer.headers];
          if (
            !headers.some(([name]) =>
              name.toLowerCase() === "content-length"
            ) &&
            answer.body.length === 1
          ) {
            headers.push(["Content-Length", String(latin1(data).length)]);
          }
          out += `Status: ${answer.status}\r\n`;
          for (const [name, value] of headers) out += `${name}: ${value}\r\n`;
          out += "\r\n";
        }
        await conn.write(latin1(out + data));
      };
      for (const data of answer.body) if (data) await write(data);
      if (!headersSent) await write("");
    } finally {
      reader.releaseLock();
      conn.close();
    }
  };
  const done = (async () => {
    for await (const conn of listener) {
      await serveOne(conn).catch(() => {});
    }
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return {
    backend: { hostname: "127.0.0.1", port },
    seen,
    async [Symbol.asyncDispose]() {
      listener.close();
      await done;
    },
  };
}

/** The app of Xitzin's flup example, with a few more answers. */
function xitzinExampleApp(environ: Record<string, string>): WsgiAnswer {
  const path = environ.PATH_INFO ?? "/";
  const query = environ.QUERY_STRING ?? "";
  switch (path) {
    case "/name":
      return query
        ? { status: "20 text/gemini", headers: [], body: [`# Hi ${query}\n`] }
        : { status: "10 Enter your name:", headers: [], body: [""] };
    case "/old":
      return {
        status: "30 gemini://example.com/new-location",
        headers: [],
        body: [""],
      };
    case "/stream":
      // More than one piece: no Content-Length, the body runs to the close.
      return { status: "20 text/gemini", headers: [], body: ["# a\n", "b\n"] };
    case "/http":
      return {
        status: "200 OK",
        headers: [["Content-Type", "text/plain"]],
        body: ["plain CGI"],
      };
    case "/test":
      return {
        status: "20 text/gemini",
        headers: [],
        body: [`# Hello from SCGI!\n\nPath: ${path}\nQuery: ${query}\n`],
      };
    default:
      return { status: "51 Not found", headers: [], body: [""] };
  }
}

/** Status, headers and body of a response, to compare two of them. */
async function described(response: Response) {
  return {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers],
    body: response.body === null ? null : await response.text(),
  };
}

/** What a raw Gemini answer (Xitzin's mock server's form) reads as. */
async function rawGemini(wire: string) {
  return await described(
    await readCgiResponse(ReadableStream.from([latin1(wire)])),
  );
}

Deno.test("flup: Xitzin's flup example answers read as the raw Gemini answers they stand for", async () => {
  await using flup = flupBackend(xitzinExampleApp);
  // flup needs REQUEST_METHOD, which Xitzin does not send.
  const init = { backend: flup.backend, env: { REQUEST_METHOD: "GET" } };
  const ask = (url: string, protocol?: "auto" | "gemini") =>
    scgiFetch(url, {
      ...init,
      scriptName: "/api",
      ...(protocol ? { protocol } : {}),
    });
  for (const protocol of [undefined, "gemini"] as const) {
    const hello = await ask(
      "gemini://example.com/api/test?search=hello",
      protocol,
    );
    assert.deepEqual(
      await described(hello),
      await rawGemini(
        "20 text/gemini\r\n# Hello from SCGI!\n\nPath: /test\nQuery: search=hello\n",
      ),
    );
    assert.deepEqual(
      await described(await ask("gemini://example.com/api/name", protocol)),
      await rawGemini("10 Enter your name:\r\n"),
    );
    const named = await ask("gemini://example.com/api/name?Ada", protocol);
    assert.deepEqual(readGeminiStatus(named), {
      status: 20,
      meta: "text/gemini",
    });
    assert.equal(await named.text(), "# Hi Ada\n");
    const redirect = await ask("gemini://example.com/api/old", protocol);
    assert.equal(redirect.status, 302);
    assert.deepEqual(
      await described(redirect),
      await rawGemini("30 gemini://example.com/new-location\r\n"),
    );
    assert.deepEqual(
      await described(await ask("gemini://example.com/api/nope", protocol)),
      await rawGemini("51 Not found\r\n"),
    );
    assert.deepEqual(
      await described(await ask("gemini://example.com/api/stream", protocol)),
      await rawGemini("20 text/gemini\r\n# a\nb\n"),
    );
  }
  // What flup was sent: Xitzin's variables, plus the REQUEST_METHOD it needs.
  const first = flup.seen[0]!;
  assert.equal(first.GEMINI_URL, "gemini://example.com/api/test?search=hello");
  assert.equal(first.PATH_INFO, "/test");
  assert.equal(first.QUERY_STRING, "search=hello");
  assert.equal(first.SERVER_NAME, "example.com");
  assert.equal(first.SERVER_PORT, "1965");
  assert.equal(first.CONTENT_LENGTH, "0");
  assert.equal(first.REQUEST_METHOD, "GET");
});

Deno.test("flup: a CGI status from flup is still CGI; without REQUEST_METHOD flup does not answer", async () => {
  await using flup = flupBackend(xitzinExampleApp);
  const plain = await scgiFetch(
    `scgi://127.0.0.1:${flup.backend.port}/http`,
  );
  assert.equal(plain.status, 200);
  assert.equal(plain.statusText, "OK");
  assert.equal(plain.headers.get("content-type"), "text/plain");
  assert.equal(plain.headers.get("content-length"), "9");
  assert.equal(plain.headers.has("x-gemini-status"), false);
  assert.equal(await plain.text(), "plain CGI");
  // "gemini" refuses it.
  await assert.rejects(
    scgiFetch(`scgi://127.0.0.1:${flup.backend.port}/http`, {
      protocol: "gemini",
    }),
    (error: unknown) =>
      error instanceof ScgiClientError && error.code === "malformed_response",
  );
  // Xitzin's variables alone: flup fails before the app and closes.
  await assert.rejects(
    scgiFetch("gemini://example.com/test", { backend: flup.backend }),
    (error: unknown) =>
      error instanceof ScgiClientError &&
      error.code === "malformed_response" &&
      /without answering/.test(error.message),
  );
  assert.equal(flup.seen.at(-1)!.REQUEST_METHOD, undefined);
});
