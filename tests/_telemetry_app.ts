// The process the telemetry tests run with OTEL_DENO=true (and no
// --allow-env: telemetry must be found without it): an SCGI backend
// (serve()) and an HTTP front end (Deno.serve) that calls it with scgiFetch
// under /direct/ and through scgiProxy under /gw/. Prints
// `{"front":PORT,"backend":PORT}` once both listen, and shuts down when its
// standard input closes, so that Deno flushes every span before exiting.
//
//   deno run --allow-net=127.0.0.1 tests/_telemetry_app.ts

import { scgiFetch } from "../client.ts";
import { scgiProxy } from "../gateway.ts";
import { serve } from "../server.ts";

const backend = serve({
  port: 0,
  onListen() {},
  // The throwing route is expected; its stack in the test log is noise.
  onError: () => new Response("Internal Server Error\n", { status: 500 }),
}, async (request, info) => {
  const path = new URL(request.url).pathname;
  const body = await request.text();
  if (path.endsWith("/fail")) throw new Error("the backend failed");
  if (path.endsWith("/stream")) {
    const encoder = new TextEncoder();
    return new Response(
      ReadableStream.from([encoder.encode("one "), encoder.encode("two")]),
    );
  }
  // A backend that calls another (itself) with a request of its own.
  if (path.endsWith("/hop")) {
    return await scgiFetch(`scgi://127.0.0.1:${backendPort}/inner/echo`);
  }
  if (path.endsWith("/missing")) return new Response("no\n", { status: 404 });
  return Response.json({
    traceparent: info.env.HTTP_TRACEPARENT ?? null,
    tracestate: info.env.HTTP_TRACESTATE ?? null,
    body,
  }, { headers: { "x-backend": "scgi" } });
});
const backendPort = (backend.addr as Deno.NetAddr).port;

// A port nobody listens on, for a call that is refused.
const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const downPort = (closed.addr as Deno.NetAddr).port;
closed.close();

const gateway = scgiProxy({
  backends: [`127.0.0.1:${backendPort}`],
  mount: "/gw",
});

const front = Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen() {} },
  async (request, info) => {
    const url = new URL(request.url);
    if (url.pathname.startsWith("/gw/")) return gateway(request, info);
    const port = url.pathname === "/direct/down" ? downPort : backendPort;
    const remote = info.remoteAddr;
    try {
      return await scgiFetch(
        `scgi://127.0.0.1:${port}${url.pathname}${url.search}`,
        {
          method: request.method,
          headers: request.headers,
          body: request.body,
          remoteAddr: { hostname: remote.hostname, port: remote.port },
        },
      );
    } catch (error) {
      return new Response(`${(error as Error).message}\n`, { status: 502 });
    }
  },
);

console.log(JSON.stringify({ front: front.addr.port, backend: backendPort }));

// Runs until the test closes our standard input.
for await (const _ of Deno.stdin.readable) {
  // Nothing is sent; only the end matters.
}
await front.shutdown();
await backend.shutdown();
