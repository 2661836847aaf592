// The reason-phrase table.

import assert from "node:assert/strict";
import { statusText } from "../codec/status_text.ts";

Deno.test("statusText knows the common reasons", () => {
  const expected: [number, string][] = [
    [100, "Continue"],
    [200, "OK"],
    [201, "Created"],
    [204, "No Content"],
    [206, "Partial Content"],
    [301, "Moved Permanently"],
    [302, "Found"],
    [303, "See Other"],
    [304, "Not Modified"],
    [307, "Temporary Redirect"],
    [308, "Permanent Redirect"],
    [400, "Bad Request"],
    [401, "Unauthorized"],
    [403, "Forbidden"],
    [404, "Not Found"],
    [405, "Method Not Allowed"],
    [411, "Length Required"],
    [413, "Content Too Large"],
    [418, "I'm a Teapot"],
    [422, "Unprocessable Content"],
    [429, "Too Many Requests"],
    [431, "Request Header Fields Too Large"],
    [500, "Internal Server Error"],
    [502, "Bad Gateway"],
    [503, "Service Unavailable"],
    [504, "Gateway Timeout"],
  ];
  for (const [status, reason] of expected) {
    assert.equal(statusText(status), reason, String(status));
  }
});

Deno.test("statusText is empty for codes without a reason", () => {
  for (
    const status of [0, 99, 199, 299, 306, 420, 599, 600, 999, -1, 1.5, NaN]
  ) {
    assert.equal(statusText(status), "", String(status));
  }
});

Deno.test("statusText reasons are valid reason phrases for every code", () => {
  for (let status = 100; status <= 599; status++) {
    const reason = statusText(status);
    assert.match(reason, /^[\x20-\x7e]*$/, String(status));
    assert.equal(reason, reason.trim(), String(status));
    // Every reason is one `Response` accepts.
    if (reason && status >= 200) {
      new Response(null, { status, statusText: reason });
    }
  }
});
