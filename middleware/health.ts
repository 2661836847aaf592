/**
 * A health endpoint for load balancers and process supervisors: `GET` (or
 * `HEAD`) on the path (default `/healthz`) answers `200 ok` without calling
 * the app. An optional check (a database ping, a queue depth) turns the
 * answer into `503 unavailable` when it returns `false`, throws or takes
 * longer than `timeout`; the reason is never put in the answer, as the
 * endpoint is often reachable from outside.
 *
 * @example
 * ```ts
 * import { health } from "./health.ts";
 * import { testClient } from "../testing.ts";
 *
 * let up = true;
 * const app = health({ check: () => up })(() => new Response("app"));
 * const client = testClient(app);
 * console.assert(await (await client.fetch("/healthz")).text() === "ok\n");
 * up = false;
 * console.assert((await client.fetch("/healthz")).status === 503);
 * console.assert(await (await client.fetch("/other")).text() === "app");
 * ```
 *
 * @module
 */

import type { Middleware } from "./types.ts";

/** Options of {@linkcode health}. */
export interface HealthOptions {
  /** The endpoint's path (the request URL's path, exactly). @default {"/healthz"} */
  path?: string;
  /**
   * Says whether the service is healthy: `false` or an exception means
   * 503. Without it, the endpoint answers 200 while the process serves.
   */
  check?: () => boolean | void | Promise<boolean | void>;
  /** Milliseconds the check may take before it counts as failed. @default {5000} */
  timeout?: number;
}

/**
 * Health-endpoint middleware.
 *
 * @param options The path, an optional check and its timeout.
 * @returns The middleware: `(handler) => handler`.
 *
 * @example
 * ```ts
 * import { health } from "./health.ts";
 *
 * const handler = health({ path: "/up" })(() => new Response("app"));
 * const response = await handler(new Request("http://localhost/up"), {} as never);
 * console.assert(response.status === 200);
 * ```
 */
export function health(
  options: HealthOptions = {},
): Middleware {
  const path = options.path ?? "/healthz";
  const timeout = options.timeout ?? 5000;
  return (handler) => async (request, info) => {
    if (new URL(request.url).pathname !== path) {
      return handler(request, info);
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", {
        status: 405,
        headers: { ...TEXT, allow: "GET, HEAD" },
      });
    }
    const healthy = options.check
      ? await runCheck(options.check, timeout)
      : true;
    return new Response(healthy ? "ok\n" : "unavailable\n", {
      status: healthy ? 200 : 503,
      headers: TEXT,
    });
  };
}

const TEXT = {
  "content-type": "text/plain; charset=utf-8",
  "cache-control": "no-store",
};

async function runCheck(
  check: NonNullable<HealthOptions["check"]>,
  timeout: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const result = await Promise.race([
      Promise.resolve().then(check),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), timeout);
      }),
    ]);
    return result !== false;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
