// OpenTelemetry end to end, with Deno's real exporter: a child process runs
// an HTTP front end (Deno.serve) that calls a serve() backend with scgiFetch
// and through scgiProxy, with OTEL_DENO=true and the OTLP/HTTP JSON exporter
// pointed at a receiver on loopback. The spans must make one trace: the
// caller's traceparent -> Deno.serve's span -> our client span -> our
// server span; the metrics must carry Deno.serve's names, units, buckets and
// attributes (compared with what Deno.serve itself exported in the same run).

import assert from "node:assert/strict";
import {
  type ReceivedSpan,
  startOtlpReceiver,
  startTelemetryApp,
} from "./_otlp_receiver.ts";

const TRACE = "0af7651916cd43dd8448eb211c80319c";
const PARENT = "b7ad6b7169203331";
const TRACEPARENT = `00-${TRACE}-${PARENT}-01`;
const SERVER = 2;
const CLIENT = 3;
const ERROR = 2;

interface Echo {
  traceparent: string | null;
  tracestate: string | null;
  body: string;
}

/** Deno.serve's span for a path, and the chain under it. */
function chain(spans: ReceivedSpan[], path: string) {
  const front = spans.filter((span) =>
    span.scope === "deno" && span.kind === SERVER &&
    span.attributes["url.path"] === path
  );
  assert.equal(front.length, 1, `one Deno.serve span for ${path}`);
  const client = spans.filter((span) =>
    span.scope === "@scgi/scgi" && span.parentSpanId === front[0]!.spanId
  );
  assert.equal(client.length, 1, `one client span under ${path}`);
  const server = spans.filter((span) =>
    span.scope === "@scgi/scgi" && span.parentSpanId === client[0]!.spanId
  );
  assert.ok(server.length <= 1, `at most one server span for ${path}`);
  return { front: front[0]!, client: client[0]!, server: server[0] };
}

Deno.test("telemetry: front end -> scgiFetch / scgiProxy -> serve() is one trace, with Deno.serve's names", async () => {
  await using receiver = startOtlpReceiver();
  const app = await startTelemetryApp(receiver.env());
  let stderr = "";
  const answers = new Map<string, { status: number; text: string }>();
  try {
    const headers = { traceparent: TRACEPARENT, tracestate: "k=v" };
    for (
      const [method, path] of [
        ["POST", "/direct/echo?x=1"],
        ["GET", "/direct/fail"],
        ["GET", "/direct/stream"],
        ["GET", "/direct/missing"],
        ["GET", "/direct/down"],
        ["GET", "/gw/echo"],
      ] as const
    ) {
      const response = await fetch(`http://127.0.0.1:${app.front}${path}`, {
        method,
        headers,
        ...(method === "POST" ? { body: "hello" } : {}),
      });
      answers.set(path, {
        status: response.status,
        text: await response.text(),
      });
    }
  } finally {
    stderr = await app.stop();
  }
  const spans = receiver.spans;
  const context = `spans:\n${
    JSON.stringify(spans, null, 1)
  }\nstderr:\n${stderr}`;
  assert.deepEqual(
    [...answers.values()].map(({ status }) => status),
    [200, 500, 200, 404, 502, 200],
    context,
  );
  // One trace, the caller's.
  assert.ok(spans.length >= 17, context);
  assert.deepEqual(
    new Set(spans.map((span) => span.traceId)),
    new Set([TRACE]),
  );

  // scgiFetch: a client span under Deno.serve's, our server span under it.
  const echo = chain(spans, "/direct/echo");
  assert.equal(echo.front.parentSpanId, PARENT);
  const { client, server } = echo;
  assert.equal(client.kind, CLIENT);
  assert.equal(client.name, "POST");
  assert.equal(
    client.attributes["url.full"],
    `scgi://127.0.0.1:${app.backend}/direct/echo?x=1`,
  );
  assert.equal(client.attributes["server.address"], "127.0.0.1");
  assert.equal(client.attributes["server.port"], app.backend);
  assert.equal(client.attributes["http.response.status_code"], "200");
  assert.equal(client.types["http.response.status_code"], "stringValue");
  assert.equal(client.status.code, 0);
  assert.ok(server, context);
  assert.equal(server.kind, SERVER);
  assert.equal(server.name, "POST");
  assert.equal(server.attributes["http.request.method"], "POST");
  assert.equal(server.attributes["url.path"], "/direct/echo");
  assert.equal(server.attributes["url.query"], "x=1");
  assert.equal(server.attributes["url.scheme"], "http");
  assert.equal(server.attributes["client.address"], "127.0.0.1");
  assert.equal(server.attributes["network.protocol.version"], "1.1");
  assert.equal(server.attributes["http.request.body.size"], 5);
  const echoText = answers.get("/direct/echo?x=1")!.text;
  assert.equal(
    server.attributes["http.response.body.size"],
    new TextEncoder().encode(echoText).length,
  );
  assert.equal(server.attributes["http.response.status_code"], "200");
  assert.equal(server.types["http.response.status_code"], "stringValue");
  assert.equal(server.status.code, 0);
  // Deno.serve's own attributes, under the same names.
  for (const name of Object.keys(echo.front.attributes)) {
    assert.ok(name in server.attributes, `${name} on our server span`);
  }
  // The backend was sent the client span as HTTP_TRACEPARENT, and the state.
  const sent: Echo = JSON.parse(echoText);
  assert.equal(sent.traceparent, `00-${TRACE}-${client.spanId}-01`);
  assert.equal(sent.tracestate, "k=v");
  assert.equal(sent.body, "hello");

  // A handler that throws: a 500, an error on both sides.
  const fail = chain(spans, "/direct/fail");
  assert.equal(fail.server?.status.code, ERROR);
  assert.equal(fail.server?.attributes["http.response.status_code"], "500");
  assert.equal(fail.server?.attributes["error.type"], "500");
  assert.deepEqual(fail.server?.events.map((event) => event.name), [
    "exception",
  ]);
  assert.equal(fail.client.status.code, ERROR);
  assert.equal(fail.client.attributes["error.type"], "500");

  // A 404 is an error for the client only (as for Deno's fetch and serve).
  const missing = chain(spans, "/direct/missing");
  assert.equal(missing.server?.status.code, 0);
  assert.equal(missing.server?.attributes["http.response.status_code"], "404");
  assert.equal(missing.client.status.code, ERROR);
  assert.equal(missing.client.attributes["error.type"], "404");

  // A streamed body is counted as it goes out.
  const stream = chain(spans, "/direct/stream");
  assert.equal(stream.server?.attributes["http.response.body.size"], 7);

  // A refused connection: the client span fails, no server span.
  const down = chain(spans, "/direct/down");
  assert.equal(down.server, undefined);
  assert.equal(down.client.status.code, ERROR);
  assert.equal(down.client.attributes["error.type"], "connection_refused");

  // The gateway: its backend call's client span is a child of the gateway's
  // server span, and the backend's span a child of that.
  const gateway = chain(spans, "/gw/echo");
  assert.equal(gateway.front.parentSpanId, PARENT);
  assert.equal(gateway.client.kind, CLIENT);
  assert.equal(gateway.client.attributes["server.port"], app.backend);
  assert.ok(gateway.server, context);
  assert.equal(gateway.server.attributes["url.path"], "/gw/echo");
  const viaGateway: Echo = JSON.parse(answers.get("/gw/echo")!.text);
  assert.equal(
    viaGateway.traceparent,
    `00-${TRACE}-${gateway.client.spanId}-01`,
  );

  // Metrics: Deno.serve's names, units, buckets and attribute names.
  const metrics = receiver.metrics;
  const shown = JSON.stringify([...metrics.values()], null, 1);
  for (
    const name of [
      "http.server.request.duration",
      "http.server.active_requests",
      "http.server.request.body.size",
      "http.server.response.body.size",
    ]
  ) {
    const ours = metrics.get(`@scgi/scgi ${name}`);
    const deno = metrics.get(`deno ${name}`);
    assert.ok(ours && deno, `${name} from both\n${shown}`);
    assert.equal(ours.unit, deno.unit, name);
    assert.equal(ours.kind, deno.kind, name);
    assert.equal(ours.description, deno.description, name);
    assert.deepEqual(ours.bounds, deno.bounds, name);
    const keys = (metric: typeof ours) =>
      new Set(metric.points.flatMap((point) => Object.keys(point.attributes)));
    assert.deepEqual(keys(ours), keys(deno), name);
  }
  const duration = metrics.get("@scgi/scgi http.server.request.duration")!;
  // echo, fail, stream, missing and the gateway's echo reached serve().
  assert.equal(duration.points.reduce((n, point) => n + point.value, 0), 5);
  const failed = duration.points.find((point) =>
    point.attributes["http.response.status_code"] === 500
  );
  assert.equal(failed?.value, 1, shown);
  const active = metrics.get("@scgi/scgi http.server.active_requests")!;
  assert.ok(active.points.every((point) => point.value === 0), shown);
  const requestSizes = metrics.get("@scgi/scgi http.server.request.body.size")!;
  const post = requestSizes.points.find((point) =>
    point.attributes["http.request.method"] === "POST"
  );
  assert.equal(post?.sum, 5, shown);
});

Deno.test("telemetry: off without OTEL_DENO, the caller's traceparent passes through untouched", async () => {
  await using receiver = startOtlpReceiver();
  const app = await startTelemetryApp({
    ...receiver.env(),
    OTEL_DENO: "false",
  });
  let stderr = "";
  let sent: Echo;
  try {
    const response = await fetch(
      `http://127.0.0.1:${app.front}/direct/echo`,
      { headers: { traceparent: TRACEPARENT, tracestate: "k=v" } },
    );
    assert.equal(response.status, 200);
    sent = await response.json();
  } finally {
    stderr = await app.stop();
  }
  // A plain header, as without any telemetry: no span was made.
  assert.equal(sent.traceparent, TRACEPARENT, stderr);
  assert.equal(sent.tracestate, "k=v");
  assert.deepEqual(receiver.spans, []);
});

Deno.test("telemetry: tracestate goes on with its trace (through serve() -> scgiFetch too), not with a new one", async () => {
  await using receiver = startOtlpReceiver();
  const app = await startTelemetryApp(receiver.env());
  let stderr = "";
  let fresh: Echo;
  let hop: Echo;
  try {
    const get = async (path: string, traceparent: string) => {
      const response = await fetch(`http://127.0.0.1:${app.front}${path}`, {
        headers: { traceparent, tracestate: "k=v" },
      });
      assert.equal(response.status, 200);
      return await response.json();
    };
    fresh = await get("/direct/echo", "00-not-a-trace-01");
    hop = await get("/direct/hop", TRACEPARENT);
  } finally {
    stderr = await app.stop();
  }
  const spans = receiver.spans;
  // An invalid traceparent: a new trace, and the tracestate stays behind.
  const { client } = chain(spans, "/direct/echo");
  assert.notEqual(client.traceId, TRACE);
  assert.equal(fresh.traceparent, `00-${client.traceId}-${client.spanId}-01`);
  assert.equal(fresh.tracestate, null, stderr);
  // The backend's own scgiFetch: a child of its server span, with the state
  // the request came with (Deno's spans do not carry it to their children).
  const outer = chain(spans, "/direct/hop");
  assert.ok(outer.server, stderr);
  const inner = spans.filter((span) =>
    span.parentSpanId === outer.server!.spanId
  );
  assert.equal(inner.length, 1);
  assert.equal(inner[0]!.kind, CLIENT);
  assert.equal(inner[0]!.attributes["url.path"], "/inner/echo");
  assert.equal(hop.traceparent, `00-${TRACE}-${inner[0]!.spanId}-01`);
  assert.equal(hop.tracestate, "k=v");
});
