// OpenTelemetry for serve() and scgiFetch, through the standard
// `@opentelemetry/api` that Deno's built-in exporter serves (`OTEL_DENO=true`).
// Nothing here runs unless telemetry is on: `telemetryEnabled()` is asked once
// per server (and is a cached boolean for the client), and only then is the
// API imported, the handler wrapped, a span started per call. With it off,
// the hot path is exactly what it was. No SDK: spans and metrics go wherever
// Deno (or an SDK the application registered) sends them.
//
// What is emitted mirrors Deno.serve and fetch (Deno 2.9): a server span
// named after the method with the url.* attributes and the status code (a
// string, as Deno writes it), an error status from 500 on; a client span the
// same way, an error status from 400 on; and Deno.serve's four metrics under
// its names, units, bucket boundaries and attributes. The SCGI side adds
// what the CGI variables know: client.address/port (REMOTE_ADDR/PORT),
// server.address/port, user_agent.original and both body sizes. See
// docs/telemetry.md. Private to the package.

// Inline, so that the module works however it is imported (from JSR, a path
// or a URL) without an import map entry.
// deno-lint-ignore no-import-prefix
import type * as Api from "npm:@opentelemetry/api@^1.9.0";
import { httpVariableOf } from "../codec/_cgi_to_request.ts";
import { bodyKind, plainAnswer } from "../codec/_static_body.ts";

type Handler<I> = (request: Request, info: I) => Response | Promise<Response>;

/** What a traced server handler reads from its info. */
export interface TracedInfo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly completed: Promise<void>;
}

/** The instruments, once the API is loaded. */
export interface Otel {
  api: typeof Api;
  tracer: Api.Tracer;
  /**
   * Where a server span's context keeps the incoming tracestate, which
   * Deno's spans do not carry on to their children: `{ traceId, state }`.
   */
  traceState: symbol;
  duration: Api.Histogram;
  active: Api.UpDownCounter;
  requestSize: Api.Histogram;
  responseSize: Api.Histogram;
}

// The global the API registers its providers under; Deno registers its own
// there at startup when OTEL_DENO=true (no permission needed to look).
const API_GLOBAL = Symbol.for("opentelemetry.js.api.1");
const SCOPE = "@scgi/scgi";
// Deno.serve's buckets (the semantic conventions' advice).
const DURATION_BUCKETS = [
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
];
const SIZE_BUCKETS = [0, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

const utf8 = new TextEncoder();

let enabled: boolean | undefined;
let loading: Promise<Otel | undefined> | undefined;

/**
 * Whether telemetry is on: Deno's exporter is (`OTEL_DENO=true`, seen as
 * the API global it registers, or read from the environment where that is
 * allowed), or the application registered an OpenTelemetry SDK before
 * this was first asked. Decided once per process.
 */
export function telemetryEnabled(): boolean {
  return enabled ??= detect();
}

function detect(): boolean {
  if ((globalThis as Record<symbol, unknown>)[API_GLOBAL] !== undefined) {
    return true;
  }
  try {
    const env = { name: "env", variable: "OTEL_DENO" } as const;
    if (Deno.permissions.querySync(env).state !== "granted") return false;
    return Deno.env.get("OTEL_DENO") === "true";
  } catch {
    return false;
  }
}

/** The API and the instruments, loaded on first use (undefined on failure). */
export function load(): Promise<Otel | undefined> {
  // deno-lint-ignore no-import-prefix
  return loading ??= import("npm:@opentelemetry/api@^1.9.0").then(
    (api) => {
      const meter = api.metrics.getMeter(SCOPE);
      const sizeAdvice = { advice: { explicitBucketBoundaries: SIZE_BUCKETS } };
      return {
        api,
        tracer: api.trace.getTracer(SCOPE),
        traceState: api.createContextKey("scgi incoming tracestate"),
        duration: meter.createHistogram("http.server.request.duration", {
          unit: "s",
          description: "Duration of HTTP server requests.",
          advice: { explicitBucketBoundaries: DURATION_BUCKETS },
        }),
        active: meter.createUpDownCounter("http.server.active_requests", {
          unit: "{request}",
          description: "Number of active HTTP server requests.",
        }),
        requestSize: meter.createHistogram("http.server.request.body.size", {
          unit: "By",
          description: "Size of HTTP server request bodies.",
          ...sizeAdvice,
        }),
        responseSize: meter.createHistogram("http.server.response.body.size", {
          unit: "By",
          description: "Size of HTTP server response bodies.",
          ...sizeAdvice,
        }),
      };
    },
    (error) => {
      console.error(
        "scgi: telemetry is off, @opentelemetry/api failed:",
        error,
      );
      return undefined;
    },
  );
}

// The CGI variables as a carrier: `traceparent` is HTTP_TRACEPARENT.
const ENV_GETTER: Api.TextMapGetter<TracedInfo["env"]> = {
  get: (env, key) => env[httpVariableOf(key)] ?? undefined,
  keys: (env) =>
    Object.keys(env).filter((name) => name.startsWith("HTTP_")).map((name) =>
      name.slice(5).toLowerCase().replaceAll("_", "-")
    ),
};

/**
 * Wraps a server's handler (once, at serve() time) so that each request gets
 * a server span, a child of the trace its `HTTP_TRACEPARENT` and
 * `HTTP_TRACESTATE` name, with the handler running inside it; the span ends
 * and the metrics are recorded when the answer was delivered (or could not
 * be). `failed` turns a handler failure into the answer, as the server does.
 */
export function traceHandler<I extends TracedInfo>(
  handler: Handler<I>,
  failed: (error: unknown) => Promise<Response>,
): Handler<I> {
  let otel: Otel | null | undefined;
  const ready = load().then((loaded) => (otel = loaded ?? null));
  return (request, info) => {
    if (otel) return serveTraced(otel, handler, failed, request, info);
    if (otel === null) return handler(request, info);
    return ready.then(() =>
      otel
        ? serveTraced(otel, handler, failed, request, info)
        : handler(request, info)
    );
  };
}

async function serveTraced<I extends TracedInfo>(
  otel: Otel,
  handler: Handler<I>,
  failed: (error: unknown) => Promise<Response>,
  request: Request,
  info: I,
): Promise<Response> {
  const { api, tracer } = otel;
  const start = performance.now();
  const env = info.env;
  const method = request.method;
  const url = new URL(request.url);
  const scheme = url.protocol.slice(0, -1);
  const attributes: Api.Attributes = urlAttributes(method, url);
  const requestBytes = Number(env.CONTENT_LENGTH) || 0;
  setIf(attributes, "client.address", env.REMOTE_ADDR);
  setIf(attributes, "client.port", port(env.REMOTE_PORT));
  setIf(attributes, "server.address", env.SERVER_NAME);
  setIf(attributes, "server.port", port(env.SERVER_PORT));
  const version = protocolVersion(env.SERVER_PROTOCOL);
  setIf(attributes, "network.protocol.version", version);
  setIf(attributes, "user_agent.original", env.HTTP_USER_AGENT);
  attributes["http.request.body.size"] = requestBytes;
  const parent = api.propagation.extract(api.context.active(), env, ENV_GETTER);
  const span = tracer.startSpan(
    method,
    { kind: api.SpanKind.SERVER, attributes },
    parent,
  );
  const activeAttributes = {
    "http.request.method": method,
    "url.scheme": scheme,
  };
  otel.active.add(1, activeAttributes);

  let status: number | undefined;
  let responseBytes = 0;
  let ended = false;
  const end = (failure: { error: unknown } | undefined) => {
    if (ended) return;
    ended = true;
    const error = failure?.error as { name?: unknown; message?: unknown };
    // A handler that did not answer in time gets the server's 503.
    if (status === undefined && error?.name === "TimeoutError") status = 503;
    const metric: Api.Attributes = { ...activeAttributes };
    if (version !== undefined) metric["network.protocol.version"] = version;
    if (status !== undefined) {
      metric["http.response.status_code"] = status;
      span.setAttribute("http.response.status_code", String(status));
    }
    if (failure) {
      const type = String(error?.name ?? "Error");
      metric["error.type"] = type;
      span.setAttribute("error.type", type);
      span.setStatus({
        code: api.SpanStatusCode.ERROR,
        message: String(error?.message ?? failure.error),
      });
    } else if (status !== undefined && status >= 500) {
      span.setAttribute("error.type", String(status));
      span.setStatus({ code: api.SpanStatusCode.ERROR });
    }
    span.setAttribute("http.response.body.size", responseBytes);
    span.end();
    otel.active.add(-1, activeAttributes);
    otel.duration.record((performance.now() - start) / 1000, metric);
    otel.requestSize.record(requestBytes, metric);
    otel.responseSize.record(responseBytes, metric);
  };
  info.completed.then(
    () => end(undefined),
    (error) => end({ error }),
  );

  let response: Response;
  try {
    const incoming = api.trace.getSpanContext(parent);
    const state = incoming?.traceState?.serialize();
    const inner = api.trace.setSpan(parent, span);
    response = await api.context.with(
      state
        ? inner.setValue(otel.traceState, { traceId: incoming!.traceId, state })
        : inner,
      handler,
      undefined,
      request,
      info,
    );
    if (!(response instanceof Response)) {
      throw new TypeError("the handler did not return a Response");
    }
  } catch (error) {
    if (error instanceof Error) span.recordException(error);
    response = await failed(error);
  }
  if (ended) return response;
  status = response.status;
  return await measured(response, method, (bytes) => (responseBytes += bytes));
}

/**
 * The response as it will be written, its body's size told to `count`: at
 * once when it is known (a plain answer, a length, no body), else as each
 * chunk of a stream goes out.
 */
async function measured(
  response: Response,
  method: string,
  count: (bytes: number) => void,
): Promise<Response> {
  const status = response.status;
  if (
    method === "HEAD" || status === 204 || status === 304 ||
    status === 101 || status === 205
  ) {
    return response;
  }
  const plain = plainAnswer(response);
  if (plain) {
    count(
      typeof plain.body === "string"
        ? utf8.encode(plain.body).length
        : plain.body.length,
    );
    return response;
  }
  const kind = bodyKind(response);
  if (kind === "none" || response.body === null) return response;
  if (kind === "static") {
    // All there already: read it and hand the same bytes on.
    const bytes = await response.bytes();
    count(bytes.length);
    return new Response(bytes, response);
  }
  const reader = response.body.getReader();
  const counted = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const result = await reader.read();
      if (result.done) {
        controller.close();
      } else {
        count(result.value.byteLength);
        controller.enqueue(result.value);
      }
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return new Response(counted, response);
}

// The attributes Deno.serve and fetch put on every span.
export function urlAttributes(method: string, url: URL): Api.Attributes {
  return {
    "http.request.method": method,
    "url.full": url.href,
    "url.scheme": url.protocol.slice(0, -1),
    "url.path": url.pathname,
    "url.query": url.search.slice(1),
  };
}

function setIf(
  attributes: Api.Attributes,
  name: string,
  value: string | number | undefined,
): void {
  if (value !== undefined && value !== "") attributes[name] = value;
}

function port(value: string | undefined): number | undefined {
  const number = Number(value);
  return value && Number.isInteger(number) && number > 0 ? number : undefined;
}

// "HTTP/1.1" -> "1.1", as Deno.serve reports network.protocol.version.
function protocolVersion(protocol: string | undefined): string | undefined {
  const slash = protocol?.indexOf("/") ?? -1;
  return slash >= 0 ? protocol!.slice(slash + 1) : undefined;
}
