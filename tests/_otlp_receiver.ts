// A small OTLP/HTTP JSON receiver on loopback, for the telemetry tests: it
// takes what Deno's exporter posts to /v1/traces and /v1/metrics
// (OTEL_EXPORTER_OTLP_PROTOCOL=http/json) and keeps the spans and metrics in
// a flat form. Each export is answered only after it was read, so once the
// exporting process has exited, everything it flushed is here.

/** An attribute value as OTLP JSON encodes it, made plain. */
export type AttributeValue = string | number | boolean | undefined;

/** One exported span. */
export interface ReceivedSpan {
  scope: string;
  name: string;
  /** 1 internal, 2 server, 3 client (OTLP's SpanKind). */
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  /** 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  attributes: Record<string, AttributeValue>;
  /** Each attribute's OTLP type: `stringValue`, `intValue`, ... */
  types: Record<string, string>;
  events: { name: string; attributes: Record<string, AttributeValue> }[];
}

/** One metric point, from the last export that had it. */
export interface ReceivedMetric {
  scope: string;
  name: string;
  unit: string;
  description: string;
  kind: "histogram" | "sum" | "gauge";
  bounds: number[] | undefined;
  points: {
    attributes: Record<string, AttributeValue>;
    /** A histogram's count, a sum's or gauge's value. */
    value: number;
    sum: number | undefined;
  }[];
}

/** A running receiver. */
export interface OtlpReceiver extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`, for OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** By scope and name; a later export replaces an earlier one. */
  readonly metrics: Map<string, ReceivedMetric>;
  /** Environment variables that make a Deno process export here. */
  env(): Record<string, string>;
  close(): Promise<void>;
}

// deno-lint-ignore no-explicit-any
type Json = any;

function plain(value: Json): [AttributeValue, string] {
  const [type, inner] = Object.entries(value ?? {})[0] ?? ["", undefined];
  if (type === "intValue") return [Number(inner), type];
  return [inner as AttributeValue, type];
}

function attributes(
  list: Json[] | undefined,
): [Record<string, AttributeValue>, Record<string, string>] {
  const values: Record<string, AttributeValue> = {};
  const types: Record<string, string> = {};
  for (const { key, value } of list ?? []) {
    [values[key], types[key]] = plain(value);
  }
  return [values, types];
}

/** Starts a receiver on a free loopback port. */
export function startOtlpReceiver(): OtlpReceiver {
  const spans: ReceivedSpan[] = [];
  const metrics = new Map<string, ReceivedMetric>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const path = new URL(request.url).pathname;
      const body: Json = await request.json().catch(() => ({}));
      if (path === "/v1/traces") {
        for (const resource of body.resourceSpans ?? []) {
          for (const scoped of resource.scopeSpans ?? []) {
            for (const span of scoped.spans ?? []) {
              const [values, types] = attributes(span.attributes);
              spans.push({
                scope: scoped.scope?.name ?? "",
                name: span.name,
                kind: span.kind,
                traceId: span.traceId,
                spanId: span.spanId,
                parentSpanId: span.parentSpanId ?? "",
                status: {
                  code: span.status?.code ?? 0,
                  message: span.status?.message ?? "",
                },
                attributes: values,
                types,
                events: (span.events ?? []).map((event: Json) => ({
                  name: event.name,
                  attributes: attributes(event.attributes)[0],
                })),
              });
            }
          }
        }
      } else if (path === "/v1/metrics") {
        for (const resource of body.resourceMetrics ?? []) {
          for (const scoped of resource.scopeMetrics ?? []) {
            const scope = scoped.scope?.name ?? "";
            for (const metric of scoped.metrics ?? []) {
              const kind = (["histogram", "sum", "gauge"] as const).find((
                key,
              ) => key in metric);
              if (!kind) continue;
              const points = metric[kind].dataPoints ?? [];
              metrics.set(`${scope} ${metric.name}`, {
                scope,
                name: metric.name,
                unit: metric.unit ?? "",
                description: metric.description ?? "",
                kind,
                bounds: points[0]?.explicitBounds,
                points: points.map((point: Json) => ({
                  attributes: attributes(point.attributes)[0],
                  value: Number(point.count ?? point.asInt ?? point.asDouble),
                  sum: point.sum,
                })),
              });
            }
          }
        }
      }
      return Response.json({});
    },
  );
  const endpoint = `http://127.0.0.1:${server.addr.port}`;
  const close = () => server.shutdown();
  return {
    endpoint,
    spans,
    metrics,
    env: () => ({
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_SERVICE_NAME: "scgi-telemetry-test",
      OTEL_BSP_SCHEDULE_DELAY: "50",
      OTEL_METRIC_EXPORT_INTERVAL: "100",
    }),
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** tests/_telemetry_app.ts running in a child process. */
export interface TelemetryApp extends AsyncDisposable {
  /** The HTTP front end's port (Deno.serve: scgiFetch and scgiProxy). */
  readonly front: number;
  /** The SCGI backend's port (serve()). */
  readonly backend: number;
  /**
   * Closes its standard input and waits for it to exit (having flushed its
   * spans and metrics); resolves to what it wrote to stderr.
   */
  stop(): Promise<string>;
}

const APP = new URL("./_telemetry_app.ts", import.meta.url).pathname;

/**
 * Starts the app with `env` added to this process's environment (the
 * receiver's `env()` for telemetry on) and waits until it listens.
 */
export async function startTelemetryApp(
  env: Record<string, string>,
): Promise<TelemetryApp> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", APP],
    env: { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1", ...env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  const writer = child.stdin.getWriter();
  let stopped: Promise<string> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      await writer.close().catch(() => {});
      // Whatever else it prints is not needed; reading on lets it exit.
      while (!(await reader.read()).done) {
        // Drained.
      }
      await child.status;
      return await stderr;
    })();
  let line = "";
  while (!line.includes("\n")) {
    const { done, value } = await reader.read();
    if (done) {
      throw new Error(`the telemetry app did not start:\n${await stop()}`);
    }
    line += value;
  }
  const ports = JSON.parse(line.slice(0, line.indexOf("\n")));
  return {
    front: ports.front,
    backend: ports.backend,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}
