// The output of an answer with a body, shared by the CGI and the Gemini
// encoders: the head, then the body chunks as the response produces them,
// pulled only as fast as the caller consumes them. Private to the codec.

const PENDING = Symbol("pending");

/**
 * Yields the head and the body. A body that is complete at once (a string,
 * bytes, JSON) comes out as one chunk with the head, which `head` is told the
 * length of (0 for no body at all); a streamed body gets its head straight
 * away. With `withBody` false (HEAD, 204, 304, a Gemini answer without
 * content) the body is cancelled and only the head goes out, told no length.
 * An aborted `signal` cancels the body, ending a wait for a chunk that may
 * never come. One generator for every answer: it is made per request.
 */
export async function* headAndBody(
  head: (contentLength: number | undefined) => Uint8Array<ArrayBuffer>,
  body: ReadableStream<Uint8Array> | null,
  signal: AbortSignal | undefined,
  withBody = true,
): AsyncGenerator<Uint8Array<ArrayBuffer>, void, undefined> {
  if (!withBody || body === null) {
    body?.cancel().catch(() => {});
    yield head(withBody ? 0 : undefined);
    return;
  }
  const reader = body.getReader();
  let finished = false;
  const cancel = () => reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", cancel, { once: true });
  try {
    signal?.throwIfAborted();
    // A body that is already there settles within a few microtasks; then
    // head and body go out in one write with a length. A body still being
    // produced must not hold the head back.
    let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
    const firstRead = reader.read();
    const first = await soon(firstRead);
    if (first === PENDING) {
      pending = firstRead;
      yield head(undefined);
    } else if (first.done) {
      finished = true;
      yield head(0);
      return;
    } else {
      const firstChunk = bytes(first.value);
      const nextRead = reader.read();
      const second = await soon(nextRead);
      const complete = second !== PENDING && second.done;
      const start = head(complete ? firstChunk.length : undefined);
      const out = new Uint8Array(start.length + firstChunk.length);
      out.set(start);
      out.set(firstChunk, start.length);
      finished = complete;
      yield out;
      if (complete) return;
      if (second === PENDING) pending = nextRead;
      else yield bytes(second.value);
    }
    while (true) {
      const result = await (pending ?? reader.read());
      pending = undefined;
      if (result.done) {
        finished = true;
        return;
      }
      yield bytes(result.value);
    }
  } finally {
    signal?.removeEventListener("abort", cancel);
    if (!finished) cancel();
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
