// The output of an answer with a body, shared by the CGI and the Gemini
// encoders and by everything that writes answers (the server, the test
// client): the head, then the body chunks as the response produces them,
// each handed to a sink that takes the next only when it has taken the last
// (backpressure). Pushing into a sink, rather than pulling from a generator,
// costs one promise per chunk instead of a generator and its promises per
// answer; `headAndBody` turns it into a generator for the codec's public
// iterator API. Private to the package.

/** Where output chunks go, one at a time. */
export interface ChunkSink {
  /** Takes a chunk; the next one comes only once this settles. */
  write(chunk: Uint8Array<ArrayBuffer>): void | Promise<void>;
  /**
   * Set by the writer while it waits on the body: calling it cancels the
   * body, so a wait for a chunk that may never come ends (the sink's peer
   * went away).
   */
  stopBody: ((reason: unknown) => void) | undefined;
}

import { bodyKind } from "./_static_body.ts";

const PENDING = Symbol("pending");

/**
 * Writes the head and the body of `response` to `sink`. A body that is
 * complete at once (a string, bytes, JSON) goes out as one chunk with the
 * head, which `head` is told the length of (0 for no body at all); a
 * streamed body gets its head straight away. With `withBody` false (HEAD,
 * 204, 304, a Gemini answer without content) the body is cancelled and only
 * the head goes out, told no length. Resolves after the last chunk was
 * taken; rejects when the body or the sink fails, with the body cancelled.
 */
export async function writeHeadAndBody(
  sink: ChunkSink,
  head: (contentLength: number | undefined) => Uint8Array<ArrayBuffer>,
  response: Response,
  withBody = true,
): Promise<void> {
  const kind = bodyKind(response);
  if (kind === "static" && withBody) {
    const bytes = await response.bytes();
    const start = head(bytes.length);
    const out = new Uint8Array(start.length + bytes.length);
    out.set(start);
    out.set(bytes, start.length);
    await sink.write(out);
    return;
  }
  const body = kind === "none" ? null : response.body;
  if (!withBody || body === null) {
    body?.cancel().catch(() => {});
    await sink.write(head(withBody ? 0 : undefined));
    return;
  }
  const reader = body.getReader();
  let finished = false;
  // A cancelled read ends as if the body were complete: the stop is
  // remembered so that it fails the output instead.
  let stopped: { reason: unknown } | undefined;
  sink.stopBody = (reason) => {
    sink.stopBody = undefined;
    stopped = { reason };
    reader.cancel(reason).catch(() => {});
  };
  const check = <T>(result: T): T => {
    if (stopped) {
      throw stopped.reason ?? new DOMException("output stopped", "AbortError");
    }
    return result;
  };
  try {
    // A body that is already there settles within a few microtasks; then
    // head and body go out in one write with a length. A body still being
    // produced must not hold the head back.
    let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
    const firstRead = reader.read();
    const first = check(await soon(firstRead));
    if (first === PENDING) {
      pending = firstRead;
      await sink.write(head(undefined));
    } else if (first.done) {
      finished = true;
      await sink.write(head(0));
      return;
    } else {
      const firstChunk = bytes(first.value);
      const nextRead = reader.read();
      const second = check(await soon(nextRead));
      const complete = second !== PENDING && second.done;
      const start = head(complete ? firstChunk.length : undefined);
      const out = new Uint8Array(start.length + firstChunk.length);
      out.set(start);
      out.set(firstChunk, start.length);
      finished = complete;
      await sink.write(out);
      if (complete) return;
      if (second === PENDING) pending = nextRead;
      else await sink.write(bytes(second.value));
    }
    while (true) {
      const result = check(await (pending ?? reader.read()));
      pending = undefined;
      if (result.done) {
        finished = true;
        return;
      }
      await sink.write(bytes(result.value));
    }
  } finally {
    if (!finished) sink.stopBody?.(undefined);
    sink.stopBody = undefined;
  }
}

/**
 * {@linkcode writeHeadAndBody} as an async generator: each chunk is yielded
 * and the next is produced only when the consumer asks. Ending the iteration
 * early, or aborting `signal`, cancels the body.
 */
export async function* headAndBody(
  head: (contentLength: number | undefined) => Uint8Array<ArrayBuffer>,
  response: Response,
  signal: AbortSignal | undefined,
  withBody = true,
): AsyncGenerator<Uint8Array<ArrayBuffer>, void, undefined> {
  if (signal?.aborted) {
    response.body?.cancel(signal.reason).catch(() => {});
    throw signal.reason;
  }
  // One chunk at a time passes from the writer to the consumer: the
  // writer's write() waits until the consumer comes back for more.
  let chunk: Uint8Array<ArrayBuffer> | undefined;
  let handOver = Promise.withResolvers<void>();
  let take: PromiseWithResolvers<void> | undefined;
  let stopped = false;
  const sink: ChunkSink = {
    write(value) {
      if (stopped) throw new DOMException("output stopped", "AbortError");
      chunk = value;
      take = Promise.withResolvers<void>();
      handOver.resolve();
      return take.promise;
    },
    stopBody: undefined,
  };
  const onAbort = () => sink.stopBody?.(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  let failure: { error: unknown } | undefined;
  let done = false;
  const writing = writeHeadAndBody(sink, head, response, withBody).then(
    () => (done = true),
    (error) => (failure = { error }),
  ).finally(() => handOver.resolve());
  try {
    while (true) {
      await handOver.promise;
      if (chunk !== undefined) {
        const value = chunk;
        const taken = take!;
        chunk = undefined;
        handOver = Promise.withResolvers<void>();
        yield value;
        taken.resolve();
        continue;
      }
      await writing;
      if (failure) throw failure.error;
      if (done) return;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    if (!done && !failure) {
      stopped = true;
      sink.stopBody?.(signal?.reason);
      take?.reject(new DOMException("output stopped", "AbortError"));
      await writing;
    }
  }
}

function bytes(chunk: unknown): Uint8Array<ArrayBuffer> {
  if (chunk instanceof Uint8Array) return chunk as Uint8Array<ArrayBuffer>;
  throw new TypeError("response body yielded a chunk that is not a Uint8Array");
}

// Settles with the promise's result when that comes within a few
// microtasks (a body that is already there), else with PENDING. The ticks
// stop as soon as the promise settles.
async function soon<T>(promise: Promise<T>): Promise<T | typeof PENDING> {
  let settled = false;
  const mark = () => (settled = true);
  promise.then(mark, mark);
  for (let tick = 0; tick < 16 && !settled; tick++) await null;
  return settled ? await promise : PENDING;
}
