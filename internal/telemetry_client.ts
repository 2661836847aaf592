// The client half of the OpenTelemetry support (see telemetry.ts): the span
// of one scgiFetch call and the variables that carry its context to the
// backend. Private to the package.

// deno-lint-ignore no-import-prefix
import type * as Api from "npm:@opentelemetry/api@^1.9.0";
import { httpVariableOf } from "../codec/_cgi_to_request.ts";
import { load, type Otel, urlAttributes } from "./telemetry.ts";

const RECORD_SETTER: Api.TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/** A started client span: the variables that carry it, and its end. */
export interface ClientSpan {
  /** `HTTP_TRACEPARENT` (and `HTTP_TRACESTATE`) for the backend. */
  readonly variables: Record<string, string>;
  /** Ends the span with the backend's answer. */
  answered(response: Response): void;
  /** Ends the span with the call's failure. */
  failed(error: unknown): void;
}

/**
 * Starts the client span of one scgiFetch call, a child of the current
 * context (the caller's span, e.g. Deno.serve's); undefined when the API
 * could not be loaded.
 */
export async function startClientSpan(
  request: Request,
  url: URL,
  backend: { hostname?: string; port: number } | { path: string },
): Promise<ClientSpan | undefined> {
  const otel = await load();
  if (!otel) return undefined;
  const { api } = otel;
  const attributes = urlAttributes(request.method, url);
  if ("path" in backend) {
    attributes["server.address"] = backend.path;
    attributes["network.transport"] = "unix";
  } else {
    attributes["server.address"] = backend.hostname ?? "127.0.0.1";
    attributes["server.port"] = backend.port;
    attributes["network.transport"] = "tcp";
  }
  const span = otel.tracer.startSpan(request.method, {
    kind: api.SpanKind.CLIENT,
    attributes,
  });
  const active = api.context.active();
  const carrier: Record<string, string> = {};
  api.propagation.inject(
    api.trace.setSpan(active, span),
    carrier,
    RECORD_SETTER,
  );
  if (carrier.traceparent && carrier.tracestate === undefined) {
    const state = traceState(otel, active, request, span.spanContext().traceId);
    if (state) carrier.tracestate = state;
  }
  const variables: Record<string, string> = {};
  for (const [key, value] of Object.entries(carrier)) {
    variables[httpVariableOf(key)] = value;
  }
  return {
    variables,
    answered(response) {
      const status = response.status;
      span.setAttribute("http.response.status_code", String(status));
      if (status >= 400) {
        span.setAttribute("error.type", String(status));
        span.setStatus({
          code: api.SpanStatusCode.ERROR,
          message: response.statusText,
        });
      }
      span.end();
    },
    failed(error) {
      const failure = error as { code?: unknown; name?: unknown };
      span.setAttribute(
        "error.type",
        String(failure?.code ?? failure?.name ?? "Error"),
      );
      if (error instanceof Error) span.recordException(error);
      span.setStatus({
        code: api.SpanStatusCode.ERROR,
        message: String((error as Error)?.message ?? error),
      });
      span.end();
    },
  };
}

// Deno's spans do not hand the tracestate on to their children, so the one
// that came with the trace is found where it was kept: in the context of the
// serve() span it came to, or in the request's own header (a gateway passes
// the headers on) as long as the trace is still the one the header names.
function traceState(
  otel: Otel,
  active: Api.Context,
  request: Request,
  traceId: string,
): string | undefined {
  const kept = active.getValue(otel.traceState) as
    | { traceId: string; state: string }
    | undefined;
  if (kept?.traceId === traceId) return kept.state;
  const header = request.headers.get("traceparent")?.trim().toLowerCase();
  if (header?.split("-")[1] !== traceId) return undefined;
  return request.headers.get("tracestate") ?? undefined;
}
