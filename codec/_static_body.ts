// Whether a Response's body is already all there (made from a string, bytes,
// JSON or form data) rather than a stream still being produced. Reading such a
// body through `response.body` builds a ReadableStream, a reader and a promise
// per read, only to get bytes that `response.bytes()` hands over at once; so
// the output path asks first and takes the short way when it can.
//
// The Fetch standard has no way to ask, so this looks at how Deno holds the
// body: a Response made from a string keeps it aside until someone reads it
// (its "lazy static body"), and otherwise its inner response's body has a
// `streamOrStatic` that is either a ReadableStream or the static source. The
// answer only picks which public method reads the body (`bytes()` or the
// stream): where Deno holds it differently, everything is "unknown" and the
// stream is read, as for any other body. Private to the package.

const probe = new Response("");
const symbolOf = (description: string) =>
  Object.getOwnPropertySymbols(probe).find((key) =>
    key.description === description
  );
const LAZY_BODY = symbolOf("lazy static body");
const INNER = symbolOf("response");

interface InnerResponse {
  body?: { streamOrStatic?: unknown } | null;
}

/**
 * `"none"` for a response without a body, `"static"` for one whose bytes are
 * all there (so `bytes()` costs nothing and can't wait), `"unknown"` for a
 * stream, or whenever Deno's internals don't say.
 */
export function bodyKind(response: Response): "none" | "static" | "unknown" {
  if (INNER === undefined || LAZY_BODY === undefined) return "unknown";
  const lazy = (response as unknown as Record<symbol, unknown>)[LAZY_BODY];
  if (typeof lazy === "string" || lazy instanceof Uint8Array) return "static";
  const inner = (response as unknown as Record<symbol, unknown>)[INNER] as
    | InnerResponse
    | undefined;
  if (inner === undefined || typeof inner !== "object") return "unknown";
  const body = inner.body;
  if (body === null) return lazy == null ? "none" : "unknown";
  const held = body?.streamOrStatic as
    | { body?: unknown; consumed?: unknown }
    | undefined;
  if (
    held && typeof held === "object" && !(held instanceof ReadableStream) &&
    held.consumed === false &&
    (typeof held.body === "string" || held.body instanceof Uint8Array)
  ) {
    return "static";
  }
  return "unknown";
}

const FAST_STATUS = symbolOf("serve fast status");
const FAST_BODY = symbolOf("serve fast body");
const FAST_KIND = symbolOf("serve fast header kind");
const FAST_TYPE = symbolOf("serve fast content type");
const DEFAULT_TEXT = "text/plain;charset=UTF-8";
const PLAIN_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** A 200 whose only header is its content type, with the body it holds. */
export interface PlainAnswer {
  contentType: string | null;
  body: string | Uint8Array;
}

/**
 * The content of a plain answer: status 200 without a reason phrase of its
 * own, no header but `content-type`,
 * a string or bytes body nobody has read. Deno keeps such answers in a form
 * of their own (for `Deno.serve`'s fast path), from which they can be
 * written without making their `Headers` or their body stream; `undefined`
 * for every other response, and wherever Deno keeps nothing of the kind.
 */
export function plainAnswer(response: Response): PlainAnswer | undefined {
  if (FAST_STATUS === undefined || FAST_BODY === undefined) return undefined;
  const fields = response as unknown as Record<symbol, unknown>;
  if (fields[FAST_STATUS] !== 200 || response.statusText !== "") {
    return undefined;
  }
  const body = fields[FAST_BODY];
  if (typeof body !== "string" && !(body instanceof Uint8Array)) {
    return undefined;
  }
  // The fast fields outlive a read of the body, so ask whether it was read.
  if (!unread(fields)) return undefined;
  const kind = fields[FAST_KIND!];
  let contentType: string | null;
  if (kind === 0) contentType = null;
  else if (kind === 1) contentType = DEFAULT_TEXT;
  else if (kind === 2) {
    const value = fields[FAST_TYPE!];
    if (typeof value !== "string" || !PLAIN_VALUE.test(value)) {
      return undefined;
    }
    contentType = value;
  } else return undefined;
  return { contentType, body };
}

function unread(fields: Record<symbol, unknown>): boolean {
  const lazy = fields[LAZY_BODY!];
  if (typeof lazy === "string" || lazy instanceof Uint8Array) return true;
  const inner = fields[INNER!] as InnerResponse | undefined;
  const held = inner?.body?.streamOrStatic as
    | { consumed?: unknown }
    | undefined;
  return held !== undefined && !(held instanceof ReadableStream) &&
    held.consumed === false;
}

const encoder = new TextEncoder();

/**
 * The CGI output of a plain answer: exactly the bytes `encodeResponseHead`
 * and the body would make (`Status: 200 OK`, the content type, the length),
 * in one array, without the Response's Headers. Written into `scratch` when
 * it fits (the result is then a view of it), else into a new array.
 */
export function encodePlainCgi(
  answer: PlainAnswer,
  scratch?: Uint8Array<ArrayBuffer>,
): Uint8Array<ArrayBuffer> {
  const typeLine = answer.contentType === null
    ? ""
    : `content-type: ${answer.contentType}\r\n`;
  const body = answer.body;
  // The head is ASCII, so its byte length is its string length; the
  // longest one fits in `room`. Into `scratch` without views of it (each is
  // garbage): a string body is encoded once to learn its byte length, then
  // with its head in one go.
  const room = 16 + typeLine.length + 16 + 16 + 4;
  if (scratch !== undefined && scratch.length > room + body.length) {
    if (typeof body === "string") {
      if (body.length <= SMALL_TEXT) {
        const { read, written } = encoder.encodeInto(body, scratch);
        if (read === body.length) {
          const text = head(typeLine, written) + body;
          const whole = encoder.encodeInto(text, scratch);
          if (whole.read === text.length) {
            return scratch.subarray(0, whole.written);
          }
        }
      }
    } else {
      const text = head(typeLine, body.length);
      encoder.encodeInto(text, scratch);
      scratch.set(body, text.length);
      return scratch.subarray(0, text.length + body.length);
    }
  }
  const bytes = typeof body === "string" ? encoder.encode(body) : body;
  const text = head(typeLine, bytes.length);
  const out = new Uint8Array(text.length + bytes.length);
  encoder.encodeInto(text, out);
  out.set(bytes, text.length);
  return out;
}

// Encoding a string body twice is cheaper than a view per request only
// while it is short.
const SMALL_TEXT = 4096;

function head(typeLine: string, length: number): string {
  return "Status: 200 OK\r\n" + typeLine + "content-length: " + length +
    "\r\n\r\n";
}
