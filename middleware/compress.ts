/**
 * Response compression: gzip or deflate with the built-in
 * `CompressionStream`, negotiated from `Accept-Encoding`, streamed without
 * buffering the body.
 *
 * A response is left as it is when the status has no body or is partial
 * (1xx, 204, 206), it already has `Content-Encoding` or
 * `Cache-Control: no-transform`, or its type is already compressed (images
 * other than SVG, audio, video, zip, gzip, woff, PDF…) or is an event
 * stream. Otherwise `Vary: Accept-Encoding` is added (merged with an existing
 * `Vary`), and when the client accepts gzip or deflate and the body is not
 * smaller than `threshold` (a known `Content-Length`, or a body that is
 * complete at once), the body is compressed, `Content-Length` removed and a
 * strong `ETag` made weak.
 *
 * A `304` and the answer to a `HEAD` carry the `ETag` and `Vary` the 200 to a
 * `GET` would (RFC 9110 §15.4.5, §9.3.2): a `HEAD` gets the GET's
 * `Content-Encoding` too and its body is cancelled rather than compressed; a
 * `304` (or a `HEAD` answered without a body), whose size is not known, gets
 * `Vary` and a weak `ETag` unless a `Content-Length` under `threshold` says
 * the 200 is sent as it is.
 *
 * @example
 * ```ts
 * import { compress } from "./compress.ts";
 * import { testClient } from "../testing.ts";
 *
 * const app = compress()(() => new Response("hello ".repeat(1000)));
 * const response = await testClient(app).fetch("/", {
 *   headers: { "accept-encoding": "gzip" },
 * });
 * console.assert(response.headers.get("content-encoding") === "gzip");
 * const text = await new Response(
 *   response.body!.pipeThrough(new DecompressionStream("gzip")),
 * ).text();
 * console.assert(text.length === 6000);
 * ```
 *
 * @module
 */

import type { Middleware } from "./types.ts";

/** A content coding `compress()` can produce. */
export type CompressionEncoding = "gzip" | "deflate";

/** Options of {@linkcode compress}. */
export interface CompressOptions {
  /**
   * Bodies smaller than this many bytes are sent as they are: compressing
   * them saves less than the coding costs.
   * @default {1024}
   */
  threshold?: number;
  /**
   * The codings offered, in the order preferred when the client rates them
   * equally.
   * @default {["gzip", "deflate"]}
   */
  encodings?: readonly CompressionEncoding[];
  /**
   * Decides by `Content-Type` (lower case, parameters removed; `""` when
   * absent) whether a body is worth compressing.
   * @default {isCompressible}
   */
  compressible?: (contentType: string) => boolean;
}

const ALREADY_COMPRESSED = new Set([
  "application/gzip",
  "application/x-gzip",
  "application/zip",
  "application/x-zip-compressed",
  "application/zstd",
  "application/x-bzip2",
  "application/x-xz",
  "application/x-7z-compressed",
  "application/x-rar-compressed",
  "application/vnd.rar",
  "application/pdf",
  "application/wasm",
  "font/woff",
  "font/woff2",
  "text/event-stream",
]);

/**
 * The default test of {@linkcode CompressOptions.compressible}: everything
 * except types that are compressed already (images other than SVG, audio,
 * video, archives, woff fonts, PDF) and event streams (which must reach the
 * client chunk by chunk, and a compressor holds data back).
 *
 * @param contentType The media type, lower case, without parameters.
 * @returns Whether compressing it pays.
 *
 * @example
 * ```ts
 * import { isCompressible } from "./compress.ts";
 *
 * console.assert(isCompressible("text/html"));
 * console.assert(isCompressible("image/svg+xml"));
 * console.assert(!isCompressible("image/png"));
 * console.assert(!isCompressible("application/zip"));
 * ```
 */
export function isCompressible(contentType: string): boolean {
  if (contentType === "image/svg+xml") return true;
  const top = contentType.slice(0, contentType.indexOf("/") + 1);
  if (top === "image/" || top === "audio/" || top === "video/") return false;
  return !ALREADY_COMPRESSED.has(contentType);
}

/**
 * Picks the coding for an `Accept-Encoding` header: the offered coding with
 * the highest q-value (`x-gzip` counts as gzip, `*` rates codings not
 * named), ties broken by the order of `offered`. `undefined` means identity:
 * no header, nothing acceptable, or identity rated higher than any offered
 * coding.
 *
 * @param header The request's `Accept-Encoding`.
 * @param offered The codings available, most preferred first.
 * @returns The coding to use, or `undefined` for none.
 *
 * @example
 * ```ts
 * import { negotiateEncoding } from "./compress.ts";
 *
 * console.assert(negotiateEncoding("deflate, gzip;q=0.5", ["gzip", "deflate"]) === "deflate");
 * console.assert(negotiateEncoding("gzip;q=0, *", ["gzip", "deflate"]) === "deflate");
 * console.assert(negotiateEncoding("br", ["gzip", "deflate"]) === undefined);
 * ```
 */
export function negotiateEncoding(
  header: string | null,
  offered: readonly CompressionEncoding[] = ["gzip", "deflate"],
): CompressionEncoding | undefined {
  if (!header) return undefined;
  const rated = new Map<string, number>();
  for (const part of header.split(",")) {
    const [rawName, ...params] = part.split(";");
    let name = rawName!.trim().toLowerCase();
    if (!name) continue;
    if (name === "x-gzip") name = "gzip";
    let q = 1;
    for (const param of params) {
      const [key, value] = param.split("=").map((s) => s.trim());
      if (key?.toLowerCase() === "q") {
        q = value !== undefined && /^(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)$/
            .test(value)
          ? Number(value)
          : 0;
      }
    }
    rated.set(name, Math.max(rated.get(name) ?? 0, q));
  }
  const star = rated.get("*");
  let best: CompressionEncoding | undefined;
  let bestQ = 0;
  for (const coding of offered) {
    const q = rated.get(coding) ?? star ?? 0;
    if (q > bestQ) {
      best = coding;
      bestQ = q;
    }
  }
  if (best === undefined) return undefined;
  const identity = rated.get("identity");
  return identity !== undefined && identity > bestQ ? undefined : best;
}

/**
 * Compression middleware: wraps a handler so that its responses are gzip-
 * or deflate-compressed for clients that accept it.
 *
 * @param options Threshold, offered codings and the type test.
 * @returns The middleware: `(handler) => handler`.
 *
 * @example
 * ```ts
 * import { compress } from "./compress.ts";
 * import { serve } from "../server.ts";
 *
 * const handler = compress({ threshold: 512 })(() =>
 *   new Response("<p>hello</p>".repeat(100), { headers: { "content-type": "text/html" } })
 * );
 * await using server = serve({ port: 0, onListen() {} }, handler);
 * ```
 */
export function compress(
  options: CompressOptions = {},
): Middleware {
  const threshold = options.threshold ?? 1024;
  const offered = options.encodings ?? ["gzip", "deflate"];
  const compressible = options.compressible ?? isCompressible;
  for (const coding of offered) {
    if (coding !== "gzip" && coding !== "deflate") {
      throw new TypeError(`compress() can't produce ${coding}`);
    }
  }
  return (handler) => async (request, info) => {
    const response = await handler(request, info);
    const head = request.method === "HEAD";
    if (!eligible(response, head, compressible)) return response;
    const headers = new Headers(response.headers);
    headers.set("vary", mergeVary(headers.get("vary")));
    const coding = negotiateEncoding(
      request.headers.get("accept-encoding"),
      offered,
    );
    const declared = response.headers.get("content-length");
    if (
      coding === undefined ||
      (declared !== null && /^[0-9]+$/.test(declared) &&
        Number(declared) < threshold)
    ) {
      return rebuild(response, response.body, headers);
    }
    if (response.body === null) {
      // A 304, or a HEAD answered without a body: the validators of the
      // compressed 200, whose size is unknown here. A weak ETag is never
      // wrong; a coding is claimed only for bytes seen.
      weaken(headers);
      return rebuild(response, null, headers);
    }
    const body = await smallBody(response.body, threshold, declared === null);
    if (body.small) return rebuild(response, body.bytes, headers);
    headers.delete("content-length");
    headers.set("content-encoding", coding);
    weaken(headers);
    if (head) {
      // The head of the GET, without compressing a body nobody receives.
      body.stream.cancel().catch(() => {});
      return rebuild(response, null, headers);
    }
    return rebuild(
      response,
      body.stream.pipeThrough(
        new CompressionStream(coding) as unknown as ReadableWritablePair<
          Uint8Array<ArrayBuffer>,
          Uint8Array
        >,
      ),
      headers,
    );
  };
}

// Whether the answer depends on Accept-Encoding. A 304 and a HEAD carry the
// ETag and Vary that the 200 to a GET would (RFC 9110 9.3.2, 15.4.5).
function eligible(
  response: Response,
  head: boolean,
  compressible: (contentType: string) => boolean,
): boolean {
  const { status, headers } = response;
  if (status < 200 || status === 204 || status === 206) return false;
  if (response.body === null && status !== 304 && !head) return false;
  if (headers.has("content-encoding")) return false;
  if (
    /(?:^|,)\s*no-transform\s*(?:,|$)/i.test(headers.get("cache-control") ?? "")
  ) {
    return false;
  }
  const type = (headers.get("content-type") ?? "").split(";")[0]!.trim()
    .toLowerCase();
  return compressible(type);
}

// The compressed bytes are another representation: a strong ETag of the
// identity one becomes weak.
function weaken(headers: Headers): void {
  const etag = headers.get("etag");
  if (etag && !etag.startsWith("W/")) headers.set("etag", `W/${etag}`);
}

function mergeVary(vary: string | null): string {
  if (!vary) return "Accept-Encoding";
  const names = vary.split(",").map((name) => name.trim().toLowerCase());
  if (names.includes("*") || names.includes("accept-encoding")) return vary;
  return `${vary}, Accept-Encoding`;
}

function rebuild(
  response: Response,
  body: BodyInit | null,
  headers: Headers,
): Response {
  return new Response(body, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
}

type Peeked =
  | { small: true; bytes: Uint8Array<ArrayBuffer> }
  | { small: false; stream: ReadableStream<Uint8Array> };

const PENDING = Symbol("pending");

// A body without a stated length that is complete at once (a string, bytes,
// JSON) and under the threshold is not worth compressing. Only what is
// already there is looked at: a body still being produced is never waited
// for.
async function smallBody(
  body: ReadableStream<Uint8Array>,
  threshold: number,
  unknownLength: boolean,
): Promise<Peeked> {
  if (!unknownLength || threshold <= 0) return { small: false, stream: body };
  const reader = body.getReader();
  const seen: Uint8Array[] = [];
  let size = 0;
  while (size < threshold) {
    const read = reader.read();
    const result = await Promise.race([read, microtasks(16)]);
    if (result === PENDING) {
      return { small: false, stream: replay(seen, reader, read) };
    }
    if (result.done) {
      const bytes = new Uint8Array(size);
      let offset = 0;
      for (const chunk of seen) {
        bytes.set(chunk, offset);
        offset += chunk.length;
      }
      return { small: true, bytes };
    }
    seen.push(result.value);
    size += result.value.length;
  }
  return { small: false, stream: replay(seen, reader) };
}

function replay(
  seen: Uint8Array[],
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pending?: Promise<ReadableStreamReadResult<Uint8Array>>,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const chunk = seen.shift();
      if (chunk) {
        controller.enqueue(chunk);
        return;
      }
      const result = await (pending ?? reader.read());
      pending = undefined;
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

async function microtasks(count: number): Promise<typeof PENDING> {
  for (let i = 0; i < count; i++) await null;
  return PENDING;
}
