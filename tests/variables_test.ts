// The server scans a header block in place and picks out only the variables
// a Request is built from (codec/_variables.ts). Whatever it picks must be
// exactly what the whole env says, and the checks must fail as the plain
// reading of the block fails.

import assert from "node:assert/strict";
import { decodeVariables } from "../codec/_variables.ts";
import { ScgiProtocolError } from "../codec/errors.ts";

const PICKED = [
  "REQUEST_METHOD",
  "CONTENT_TYPE",
  "CONTENT_LENGTH",
  "GEMINI_URL",
  "HTTPS",
  "REQUEST_SCHEME",
  "REQUEST_URI",
  "SCRIPT_NAME",
  "PATH_INFO",
  "QUERY_STRING",
  "HTTP_HOST",
  "SERVER_NAME",
  "SERVER_PORT",
  "REMOTE_ADDR",
  "REMOTE_PORT",
] as const;

function block(pairs: [string, string][]): Uint8Array {
  return new TextEncoder().encode(
    pairs.map(([name, value]) => `${name}\0${value}\0`).join(""),
  );
}

// The plain reading: split, then join repeats as HTTP does.
function reference(pairs: [string, string][]): Record<string, string> {
  const env: Record<string, string> = Object.create(null);
  for (const [name, value] of pairs) {
    env[name] = name in env
      ? env[name] + (name === "HTTP_COOKIE" ? "; " : ", ") + value
      : value;
  }
  return env;
}

const cases: Record<string, [string, string][]> = {
  "nginx": [
    ["CONTENT_LENGTH", "0"],
    ["SCGI", "1"],
    ["QUERY_STRING", "a=1"],
    ["REQUEST_METHOD", "GET"],
    ["CONTENT_TYPE", ""],
    ["REQUEST_URI", "/x?a=1"],
    ["DOCUMENT_URI", "/x"],
    ["SERVER_PROTOCOL", "HTTP/1.1"],
    ["REQUEST_SCHEME", "http"],
    ["REMOTE_ADDR", "127.0.0.1"],
    ["REMOTE_PORT", "5555"],
    ["SERVER_PORT", "80"],
    ["SERVER_NAME", "localhost"],
    ["HTTP_HOST", "example.com"],
    ["HTTP_USER_AGENT", "curl/8 é"],
    ["HTTP_COOKIE", "a=1"],
    ["HTTP_COOKIE", "b=2"],
    ["HTTP_ACCEPT", "*/*"],
    ["HTTP_ACCEPT", "text/html"],
  ],
  "lighttpd, SCGI last, a Gemini URL": [
    ["CONTENT_LENGTH", "5"],
    ["GEMINI_URL", "gemini://example.com/"],
    ["SCRIPT_NAME", "/app"],
    ["PATH_INFO", "/x"],
    ["HTTPS", "on"],
    ["HTTP_HOST", "a"],
    ["HTTP_HOST", "b"],
    ["HTTP_X", "1"],
    ["SCGI", "1"],
  ],
  "names that only look like the picked ones": [
    ["CONTENT_LENGTH", "0"],
    ["HTTP_", "empty header name"],
    ["HTTP", "no underscore"],
    ["REQUEST_URIS", "longer"],
    ["REQUEST_UR", "shorter"],
    ["SERVER_NAMEX", "x"],
    ["Q", "1"],
  ],
};

Deno.test("variables: the picked variables and HTTP_* list agree with the whole env", () => {
  for (const [name, pairs] of Object.entries(cases)) {
    const decoded = decodeVariables(block(pairs), {});
    const env = reference(pairs);
    assert.deepEqual({ ...decoded.env }, { ...env }, name);
    assert.deepEqual(decoded.envList, pairs, name);
    for (const field of PICKED) {
      assert.equal(decoded[field], env[field], `${name}: ${field}`);
    }
    const http = Object.entries(env).filter(([key]) => key.startsWith("HTTP_"))
      .flat();
    assert.deepEqual(decoded.http, http, name);
    assert.equal(decoded.contentLength, Number(env.CONTENT_LENGTH), name);
  }
});

Deno.test("variables: many headers, one of them repeated far apart", () => {
  const pairs: [string, string][] = [["CONTENT_LENGTH", "0"]];
  for (let i = 0; i < 40; i++) pairs.push([`HTTP_X_${i}`, String(i)]);
  pairs.push(["HTTP_X_3", "again"]);
  const decoded = decodeVariables(block(pairs), {});
  const env = reference(pairs);
  assert.deepEqual(
    decoded.http,
    Object.entries(env).filter(([key]) => key.startsWith("HTTP_")).flat(),
  );
  assert.equal(env.HTTP_X_3, "3, again");
});

Deno.test("variables: a value that is not UTF-8 is read byte for byte", () => {
  const bytes = new Uint8Array([
    ...new TextEncoder().encode("CONTENT_LENGTH\x000\x00HTTP_X\x00"),
    0xff,
    0x41,
    0,
    ...new TextEncoder().encode("REQUEST_URI\x00/\x00"),
  ]);
  const decoded = decodeVariables(bytes, {});
  assert.deepEqual(decoded.http, ["HTTP_X", "\xffA"]);
  assert.equal(decoded.REQUEST_URI, "/");
  assert.deepEqual([...decoded.nonUtf8], ["HTTP_X"]);
  assert.equal(decoded.env.HTTP_X, "\xffA");
});

Deno.test("variables: malformed blocks fail with the status the plain reading gives", () => {
  const status = (bytes: Uint8Array, limits = {}) => {
    try {
      decodeVariables(bytes, limits);
      return 0;
    } catch (error) {
      assert.ok(error instanceof ScgiProtocolError);
      return error.status;
    }
  };
  const text = (value: string) => new TextEncoder().encode(value);
  assert.equal(status(text("CONTENT_LENGTH\x000")), 400, "no final NUL");
  assert.equal(status(text("CONTENT_LENGTH\x000\x00A\x00")), 400, "no value");
  assert.equal(status(text("\x00x\x00CONTENT_LENGTH\x000\x00")), 400);
  assert.equal(status(text("A\x001\x00")), 411, "no CONTENT_LENGTH");
  assert.equal(
    status(text("CONTENT_LENGTH\x001\x00CONTENT_LENGTH\x001\x00")),
    400,
    "CONTENT_LENGTH twice",
  );
  assert.equal(status(text("CONTENT_LENGTH\x00x\x00")), 400);
  assert.equal(status(text("CONTENT_LENGTH\x0099999999999999999\x00")), 413);
  assert.equal(
    status(text("CONTENT_LENGTH\x0010\x00"), { maxBodyBytes: 9 }),
    413,
  );
  assert.equal(status(text("CONTENT_LENGTH\x000\x00SCGI\x002\x00")), 400);
  assert.equal(
    status(text("CONTENT_LENGTH\x000\x00SCGI\x001\x00SCGI\x001\x00")),
    400,
    "SCGI twice is 1, 1",
  );
  // The missing length is found before a bad SCGI, as before.
  assert.equal(status(text("SCGI\x002\x00")), 411);
  assert.equal(
    status(text("CONTENT_LENGTH\x000\x00A\x001\x00B\x002\x00"), {
      maxVariables: 2,
    }),
    431,
  );
  assert.equal(status(text("CONTENT_LENGTH\x000\x00SCGI\x001\x00")), 0);
});
