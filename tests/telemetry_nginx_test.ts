// OpenTelemetry behind real nginx: nginx (docs/configs/nginx.conf, scgi_pass)
// passes the client's `traceparent` header as HTTP_TRACEPARENT, so a serve()
// backend running with OTEL_DENO=true puts its span into the caller's trace.
// Skips with a printed reason when nginx is not installed.

import assert from "node:assert/strict";
import { startFrontEnd } from "./_front_end.ts";
import { startOtlpReceiver, startTelemetryApp } from "./_otlp_receiver.ts";
import { peerTest } from "./_peer.ts";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT = "00f067aa0ba902b7";

peerTest(
  ["nginx"],
  "telemetry: behind nginx, the backend's span joins the caller's traceparent",
  async () => {
    await using receiver = startOtlpReceiver();
    const app = await startTelemetryApp(receiver.env());
    let stderr = "";
    let echoed: { traceparent: string | null; tracestate: string | null };
    try {
      await using front = await startFrontEnd("nginx", "nginx.conf", {
        BACKEND_PORT: app.backend,
      });
      const response = await front.fetch("/nginx/echo?n=1", {
        headers: {
          traceparent: `00-${TRACE}-${PARENT}-01`,
          tracestate: "vendor=1",
        },
      });
      const text = await response.text();
      assert.equal(response.status, 200, text);
      echoed = JSON.parse(text);
    } finally {
      stderr = await app.stop();
    }
    // nginx passed the header on, as the variable.
    assert.equal(echoed.traceparent, `00-${TRACE}-${PARENT}-01`);
    assert.equal(echoed.tracestate, "vendor=1");
    const spans = receiver.spans.filter((span) =>
      span.scope === "@scgi/scgi" && span.attributes["url.path"] ===
        "/nginx/echo"
    );
    const context = `spans:\n${
      JSON.stringify(receiver.spans, null, 1)
    }\nstderr:\n${stderr}`;
    assert.equal(spans.length, 1, context);
    const span = spans[0]!;
    assert.equal(span.kind, 2, "a server span");
    assert.equal(span.traceId, TRACE);
    assert.equal(span.parentSpanId, PARENT);
    assert.equal(span.name, "GET");
    assert.equal(span.attributes["url.query"], "n=1");
    assert.equal(span.attributes["http.response.status_code"], "200");
    // REMOTE_ADDR, as nginx saw the client.
    assert.equal(span.attributes["client.address"], "127.0.0.1");
    assert.equal(span.status.code, 0);
  },
);
