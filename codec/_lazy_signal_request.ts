// A `Request` whose `signal` is made only when someone reads it. A server
// builds one Request per call and most handlers never look at the signal, so
// an AbortController and the signal `new Request` derives from it (a few
// microseconds and a few hundred bytes of garbage each) are wasted work.
// `Deno.serve` makes its requests' signals lazily for the same reason.
//
// Deno's Request reads its signal through one internal getter, keyed by a
// symbol described "signal", everywhere: the `signal` property, `clone()`,
// `new Request(request)` and `fetch(request)`. Overriding that getter in a
// subclass makes all of them see the lazy signal. Where the runtime has no
// such getter, the signal is made up front instead (`lazyRequestSupported`
// is false), which behaves the same, only slower. Private to the codec.

const SIGNAL_KEY: symbol | undefined = (() => {
  for (const key of Object.getOwnPropertySymbols(Request.prototype)) {
    if (key.description !== "signal") continue;
    const descriptor = Object.getOwnPropertyDescriptor(Request.prototype, key);
    if (typeof descriptor?.get === "function") return key;
  }
  return undefined;
})();

/** Whether requests can get their signal lazily on this runtime. */
export const lazyRequestSupported: boolean = SIGNAL_KEY !== undefined;

/** Builds a Request whose signal comes from `signal()` when first read. */
export function lazySignalRequest(
  url: string,
  init: RequestInit,
  signal: () => AbortSignal,
): Request {
  if (SIGNAL_KEY === undefined) {
    return new Request(url, { ...init, signal: signal() });
  }
  return new LazySignalRequest(url, init, signal);
}

const BaseRequest = globalThis.Request;

// Named `Request` so that it prints as one.
const LazySignalRequest = class Request extends BaseRequest {
  #makeSignal: () => AbortSignal;
  #signal: AbortSignal | undefined;

  constructor(url: string, init: RequestInit, signal: () => AbortSignal) {
    super(url, init);
    this.#makeSignal = signal;
  }

  get [SIGNAL_KEY!](): AbortSignal {
    return this.#signal ??= this.#makeSignal();
  }
};
