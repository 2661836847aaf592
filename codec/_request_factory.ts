// Making the Request a server hands its handler, at the cost a server can
// pay per request. Two things make `new Request(url, init)` expensive for
// that: it runs the whole RequestInit conversion, and in Deno 2.9 its inner
// request is an object literal with getters and setters, whose accessor
// pairs V8 keeps in the old generation. Every young object such a request
// reaches then survives the next scavenge: under load each scavenge copies
// megabytes and takes milliseconds (the tail latency), and the heap grows.
// `Deno.serve` avoids both by building its requests from an inner request
// of its own; this does the same, the way Deno's own `clone()` does: an
// empty branded Request (`new Request(brand)`) given an inner request, its
// headers made from the list when first read.
//
// It also makes the signal lazily: the handler's `request.signal` (and
// `clone()`, `new Request(request)`, `fetch(request)`, which all read the
// same internal getter) gets the signal `signal()` makes on first use, so a
// handler that never looks at it costs no AbortController.
//
// Both rest on how Deno builds its Request, found by the symbols'
// descriptions and checked once at start-up against a Request built the
// standard way. If anything differs (another Deno), requests are built with
// `new Request` and the lazy signal alone (or, without that either, with the
// signal made up front): the same behaviour, only slower. Private to the
// package.

const BaseRequest = globalThis.Request;
type Fields = Record<symbol, unknown>;

function symbolOf(
  object: object,
  description: string,
): symbol | undefined {
  return Object.getOwnPropertySymbols(object).find((key) =>
    key.description === description
  );
}

const PROBE = new BaseRequest("http://localhost/", {
  method: "POST",
  body: "probe",
});
const BRAND = symbolOf(PROBE, "[[webidl.brand]]");
const INNER = symbolOf(PROBE, "request");
const GUARD = symbolOf(PROBE, "headers guard");
const SIGNAL = (() => {
  const key = symbolOf(BaseRequest.prototype, "signal");
  if (key === undefined) return undefined;
  const descriptor = Object.getOwnPropertyDescriptor(
    BaseRequest.prototype,
    key,
  );
  return typeof descriptor?.get === "function" ? key : undefined;
})();
// Deno's class for a request body, taken from a request that has one.
const InnerBody = (() => {
  if (INNER === undefined) return undefined;
  const body = ((PROBE as unknown as Fields)[INNER] as { body?: unknown })
    ?.body;
  const constructor = (body as { constructor?: unknown } | undefined)
    ?.constructor;
  return typeof constructor === "function"
    ? constructor as new (source: unknown) => {
      source: unknown;
      length: number | null;
    }
    : undefined;
})();

// What a Deno inner request holds; the same fields `cloneInnerRequest`
// copies. A class rather than a literal with accessors: see above.
class InnerRequest {
  methodInner: string;
  headerList: [string, string][];
  body: unknown;
  redirectMode = "follow";
  redirectCount = 0;
  urlList: (() => string)[];
  urlListProcessed: string[];
  clientRid = null;
  blobUrlEntry = null;

  constructor(
    method: string,
    url: string,
    headerList: [string, string][],
    body: unknown,
  ) {
    this.methodInner = method;
    this.headerList = headerList;
    this.body = body;
    this.urlList = [() => url];
    this.urlListProcessed = [url];
  }

  get method(): string {
    return this.methodInner;
  }

  set method(method: string) {
    this.methodInner = method;
  }

  url(): string {
    return this.urlListProcessed[0] ??= this.urlList[0]!();
  }

  currentUrl(): string {
    const last = this.urlList.length - 1;
    return this.urlListProcessed[last] ??= this.urlList[last]!();
  }
}

// Named `Request` so that it prints as one.
const ServerRequest = class Request extends BaseRequest {
  #makeSignal: (() => AbortSignal) | undefined;
  #signal: AbortSignal | undefined;

  constructor(
    url: string,
    init: RequestInit | undefined,
    signal: (() => AbortSignal) | undefined,
  ) {
    // Without an init, the empty branded Request `direct` fills in.
    super(init === undefined ? BRAND as unknown as string : url, init);
    this.#makeSignal = signal;
  }

  get [SIGNAL ?? Symbol("unused")](): AbortSignal {
    if (this.#signal === undefined) {
      const make = this.#makeSignal;
      this.#signal = make
        ? make()
        : Reflect.get(BaseRequest.prototype, SIGNAL!, this);
    }
    return this.#signal!;
  }
};

/** A request as the server builds it. */
export interface RequestParts {
  /** An absolute URL; not yet parsed. */
  url: string;
  /** A token; normalized here as `new Request` would. */
  method: string;
  /** Lower-case names, values as `Headers` keeps them. */
  headers: [string, string][];
  /** The body, if the method may have one. */
  body: Uint8Array<ArrayBuffer> | ReadableStream<Uint8Array> | null;
  /** Makes the request's signal when it is first read. */
  signal?: (() => AbortSignal) | undefined;
}

const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT"]);
const FORBIDDEN = new Set(["CONNECT", "TRACE", "TRACK"]);

/** The method as `new Request` stores it; throws for a forbidden one. */
export function normalizeMethod(method: string): string {
  const upper = method.toUpperCase();
  if (FORBIDDEN.has(upper)) {
    throw new TypeError(`Method ${method} is forbidden`);
  }
  return NORMALIZED.has(upper) ? upper : method;
}

function direct(parts: RequestParts): Request {
  // Parsing as `new Request` does; an invalid URL throws a TypeError.
  const url = new URL(parts.url).href;
  const source = parts.body;
  let body: unknown = null;
  if (source !== null) {
    if (source instanceof ReadableStream) {
      body = new InnerBody!(source);
    } else {
      const inner = new InnerBody!({ body: source, consumed: false });
      inner.source = source;
      inner.length = source.byteLength;
      body = inner;
    }
  }
  const request = new ServerRequest(url, undefined, parts.signal);
  const fields = request as unknown as Fields;
  fields[INNER!] = new InnerRequest(parts.method, url, parts.headers, body);
  fields[GUARD!] = "request";
  return request;
}

function standard(parts: RequestParts): Request {
  const init: RequestInit = {
    method: parts.method,
    headers: parts.headers,
    body: parts.body,
  };
  if (SIGNAL !== undefined) {
    return new ServerRequest(parts.url, init, parts.signal);
  }
  if (parts.signal) init.signal = parts.signal();
  return new BaseRequest(parts.url, init);
}

// The short way only where it gives what `new Request` gives.
function directWorks(): boolean {
  if (!BRAND || !INNER || !GUARD || !SIGNAL || !InnerBody) return false;
  try {
    const parts: RequestParts = {
      url: "http://example.com:8080/a%20b/c?d=e",
      method: "POST",
      headers: [["x-one", "1"], ["content-length", "3"], ["accept", "a, b"]],
      body: new Uint8Array([1, 2, 3]),
    };
    const made = direct(parts);
    const expected = new BaseRequest(parts.url, {
      method: parts.method,
      headers: parts.headers,
      body: new Uint8Array([1, 2, 3]),
    });
    const describe = (request: Request) =>
      JSON.stringify([
        request.url,
        request.method,
        [...request.headers],
        request.redirect,
        request.cache,
        request.credentials,
        request.integrity,
        request.keepalive,
        request.mode,
        request.referrer,
        request.referrerPolicy,
        request.bodyUsed,
        request.body instanceof ReadableStream,
        request.signal.aborted,
      ]);
    const reference = describe(expected);
    return describe(made) === reference &&
      describe(made.clone()) === reference &&
      describe(new BaseRequest(made)) === reference &&
      describe(direct({ ...parts, body: null, method: "GET" })) ===
        describe(new BaseRequest(parts.url, { headers: parts.headers }));
  } catch {
    return false;
  }
}

/** Whether requests are built the short way on this runtime. */
export const directRequests: boolean = directWorks();

/** Builds the request `parts` describe, the fastest way that works here. */
export const makeRequest: (parts: RequestParts) => Request = directRequests
  ? direct
  : standard;
