// The channel between `scgi serve --workers` and its workers. The
// supervisor writes one JSON message a line to a worker's stdin (and closes
// it to say "stop": a worker also reads EOF when the supervisor dies, however
// it dies). A worker answers inside its stderr, which the supervisor reads
// and passes on to its own: each message is a frame that starts with a NUL,
// a marker and the worker's secret token, so nothing the app prints is taken
// for one, and everything else goes through byte for byte.

/** What the supervisor tells a worker. */
export type ToWorker =
  /** Move the socket listening beside the real path over it. */
  | { t: "activate" }
  /** Stop accepting, finish what is in flight, exit. */
  | { t: "retire" }
  /** Run a scheduled job now, and answer `done` with the same id. */
  | { t: "run"; id: number; name: string };

/** A job as a worker describes it: its name and when it runs. */
export interface JobSpec {
  name: string;
  /** A Unix cron expression or a `Deno.CronSchedule` (run by Deno.cron). */
  schedule?: string | Record<string, unknown>;
  /** Or an interval in milliseconds (run by timers). */
  every?: number;
}

/** What a worker tells the supervisor. */
export type FromWorker =
  /** Listening (beside the real socket path, for a Unix socket reload). */
  | { t: "ready"; jobs: JobSpec[] }
  /** Could not start (or could not move its socket into place). */
  | { t: "failed"; message: string }
  /** Its socket is now at the real path. */
  | { t: "active" }
  /** Its listener is closed: it accepts no more connections. */
  | { t: "closed" }
  /** It has answered `--max-requests` requests: replace it. */
  | { t: "recycle"; served: number }
  /** A job it was asked to run has ended. */
  | { t: "done"; id: number; error?: string };

const MARKER = "\0scgi-control:";
const encoder = new TextEncoder();

/** A frame carrying `message`, for a worker to write on its stderr. */
export function frame(token: string, message: FromWorker): Uint8Array {
  return encoder.encode(`${MARKER}${token}:${JSON.stringify(message)}\n`);
}

/**
 * Reads a worker's stderr: calls `onMessage` for each frame with the
 * worker's token and `onOutput` with every other byte, in order. A frame
 * split across reads is put back together; bytes that might start a frame
 * wait for the next read (or the end of the stream).
 */
export async function demux(
  stream: ReadableStream<Uint8Array>,
  token: string,
  onMessage: (message: FromWorker) => void,
  onOutput: (bytes: Uint8Array) => void,
): Promise<void> {
  const head = encoder.encode(`${MARKER}${token}:`);
  let pending = new Uint8Array(0);
  const flush = (bytes: Uint8Array) => {
    if (bytes.length > 0) onOutput(bytes);
  };
  for await (const chunk of stream) {
    let buffer = concat(pending, chunk);
    while (true) {
      const at = indexOf(buffer, head);
      if (at < 0) {
        // Keep a tail that could be the start of a frame.
        const keep = partialTail(buffer, head);
        flush(buffer.subarray(0, buffer.length - keep));
        pending = buffer.slice(buffer.length - keep);
        break;
      }
      const end = buffer.indexOf(0x0a, at + head.length);
      if (end < 0) {
        flush(buffer.subarray(0, at));
        pending = buffer.slice(at);
        break;
      }
      flush(buffer.subarray(0, at));
      const json = new TextDecoder().decode(
        buffer.subarray(at + head.length, end),
      );
      try {
        onMessage(JSON.parse(json) as FromWorker);
      } catch {
        // Not ours after all: pass it on.
        flush(buffer.subarray(at, end + 1));
      }
      buffer = buffer.subarray(end + 1);
    }
  }
  flush(pending);
}

/** Calls `onMessage` with each JSON line read from the supervisor. */
export async function readCommands(
  stream: ReadableStream<Uint8Array>,
  onMessage: (message: ToWorker) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = text.indexOf("\n")) >= 0) {
      const line = text.slice(0, newline);
      text = text.slice(newline + 1);
      if (line) onMessage(JSON.parse(line) as ToWorker);
    }
  }
}

/** One line for a worker's stdin. */
export function command(message: ToWorker): Uint8Array {
  return encoder.encode(`${JSON.stringify(message)}\n`);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  for (
    let at = haystack.indexOf(needle[0]!);
    at >= 0 && at + needle.length <= haystack.length;
    at = haystack.indexOf(needle[0]!, at + 1)
  ) {
    if (matchesAt(haystack, needle, at)) return at;
  }
  return -1;
}

function matchesAt(
  haystack: Uint8Array,
  needle: Uint8Array,
  at: number,
): boolean {
  for (let i = 0; i < needle.length; i++) {
    if (haystack[at + i] !== needle[i]) return false;
  }
  return true;
}

/** How many bytes at the end of `buffer` are a proper prefix of `head`. */
function partialTail(buffer: Uint8Array, head: Uint8Array): number {
  const longest = Math.min(head.length - 1, buffer.length);
  for (let keep = longest; keep > 0; keep--) {
    let match = true;
    for (let i = 0; i < keep; i++) {
      if (buffer[buffer.length - keep + i] !== head[i]) {
        match = false;
        break;
      }
    }
    if (match) return keep;
  }
  return 0;
}
