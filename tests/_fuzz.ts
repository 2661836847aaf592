// Test helpers for the robustness tests: a seeded PRNG, generators and
// mutators of SCGI requests and CGI responses (so a failing fuzz case can be
// replayed from its seed), and small raw-socket helpers shared by the limit,
// timeout, shutdown and client-failure tests.

const encoder = new TextEncoder();

/** Bytes of a string (UTF-8). */
export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(text) as Uint8Array<ArrayBuffer>;
}

/** Concatenated byte arrays. */
export function concat(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * A small, fast, seeded PRNG (mulberry32): the same seed gives the same
 * cases on every machine, which is what makes a fuzz failure replayable.
 */
export class Random {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** One element of a list. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** `length` random bytes. */
  bytes(length: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.int(256);
    return out;
  }
}

/**
 * The seed from `FUZZ_SEED`; else, in CI, a fixed one (a submission must not
 * land or fail by the luck of the draw); else a fresh one, so that runs on
 * developers' machines keep exploring. Printed so a run replays.
 */
export function fuzzSeed(): number {
  const given = Deno.env.get("FUZZ_SEED");
  if (given !== undefined && given !== "") {
    const seed = Number(given);
    if (!Number.isSafeInteger(seed)) {
      throw new TypeError(`FUZZ_SEED ${given} is not an integer`);
    }
    return seed >>> 0;
  }
  if (Deno.env.get("CI")) return CI_SEED;
  return (Math.random() * 2 ** 32) >>> 0;
}

// Any seed will do; this one ran clean at 400,000 cases.
const CI_SEED = 1928149163;

// Extra variables of a valid request (the ones that make up the URL and
// method are set once, with valid values).
const NAMES = [
  "QUERY_STRING",
  "SERVER_PROTOCOL",
  "REMOTE_ADDR",
  "REMOTE_PORT",
  "HTTP_HOST",
  "HTTP_COOKIE",
  "HTTP_X_FORWARDED_FOR",
  "CONTENT_TYPE",
  "PATH_INFO",
  "SCRIPT_NAME",
  "HTTPS",
];
const METHODS = ["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS"];

/** A well-formed request: its variables and body. */
export interface ValidRequest {
  env: [string, string][];
  body: Uint8Array<ArrayBuffer>;
}

/** A random well-formed request (what a front end would send). */
export function validRequest(random: Random): ValidRequest {
  const env: [string, string][] = [];
  const method = random.pick(METHODS);
  env.push(["REQUEST_METHOD", method]);
  env.push(["REQUEST_URI", "/" + randomText(random, random.int(30))]);
  env.push(["SERVER_NAME", "localhost"]);
  env.push(["SERVER_PORT", String(1 + random.int(65535))]);
  const extra = random.int(8);
  for (let i = 0; i < extra; i++) {
    env.push([random.pick(NAMES), randomText(random, random.int(40))]);
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  let body = new Uint8Array(0);
  if (hasBody && random.chance(0.6)) {
    // Now and then a body larger than a socket read; filled, not random,
    // because random bytes one by one would dominate the run time.
    body = random.chance(0.02)
      ? new Uint8Array(70_000 + random.int(1000)).fill(random.int(256))
      : random.bytes(random.int(300));
  }
  return { env, body };
}

const ALPHABET = [
  ..."abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/?=&%._-é",
];

function randomText(random: Random, length: number): string {
  let text = "";
  for (let i = 0; i < length; i++) text += random.pick(ALPHABET);
  return text;
}

// 1001 to 1010 extra variables, built once: one more than the default limit.
const MANY: [string, string][] = Array.from(
  { length: 1010 },
  (_, i): [string, string] => [`V${i}`, ""],
);

/**
 * The wire bytes of a well-formed request: `CONTENT_LENGTH` first, `SCGI=1`,
 * then the variables (a name may repeat, as nginx sends a repeated header).
 */
export function encodeValid(request: ValidRequest): Uint8Array<ArrayBuffer> {
  return rawRequest([
    ["CONTENT_LENGTH", String(request.body.length)],
    ["SCGI", "1"],
    ...request.env.filter(([name]) =>
      name !== "CONTENT_LENGTH" && name !== "SCGI"
    ),
  ], request.body);
}

/**
 * A netstring around a hand-built header block, with no checks, so that
 * duplicate or missing `CONTENT_LENGTH` and bad values can be sent.
 */
export function rawRequest(
  pairs: readonly (readonly [string, string])[],
  body: Uint8Array = new Uint8Array(0),
): Uint8Array<ArrayBuffer> {
  let block = "";
  for (const [name, value] of pairs) block += `${name}\0${value}\0`;
  const bytes = utf8(block);
  return concat([utf8(`${bytes.length}:`), bytes, utf8(","), body]);
}

/** The mutations the request fuzzer applies, by name (for messages). */
export const REQUEST_MUTATIONS = [
  "random bytes",
  "truncate",
  "bad length",
  "huge length",
  "bad digit",
  "leading zero",
  "missing comma",
  "insert NUL",
  "drop NUL",
  "duplicate CONTENT_LENGTH",
  "missing CONTENT_LENGTH",
  "bad CONTENT_LENGTH",
  "huge CONTENT_LENGTH",
  "short body",
  "flip byte",
  "insert bytes",
  "bad SCGI",
  "empty name",
  "many variables",
  "valid",
] as const;

/** One generated request: its bytes and how it was made. */
export interface FuzzRequest {
  bytes: Uint8Array<ArrayBuffer>;
  mutation: (typeof REQUEST_MUTATIONS)[number];
}

/** A request, well-formed or mutated in one of the ways listed above. */
export function fuzzRequest(random: Random): FuzzRequest {
  const mutation = random.pick(REQUEST_MUTATIONS);
  const valid = validRequest(random);
  const bytes = encodeValid(valid);
  const pairs: [string, string][] = [
    ["CONTENT_LENGTH", String(valid.body.length)],
    ["SCGI", "1"],
    ...valid.env,
  ];
  const colon = bytes.indexOf(0x3a);
  const headLength = Number(new TextDecoder().decode(bytes.subarray(0, colon)));
  const comma = colon + 1 + headLength;
  const replaceLength = (text: string) =>
    concat([utf8(text), bytes.subarray(colon)]);
  let out: Uint8Array<ArrayBuffer>;
  switch (mutation) {
    case "random bytes":
      out = random.bytes(random.int(200));
      if (random.chance(0.5) && out.length > 0) {
        // Random bytes behind a plausible length reach the block parser.
        out = concat([utf8(`${out.length - 1}:`), out]);
      }
      break;
    case "truncate":
      out = bytes.slice(0, random.int(bytes.length));
      break;
    case "bad length":
      out = replaceLength(
        String(Math.max(0, headLength + random.int(21) - 10)),
      );
      break;
    case "huge length":
      out = replaceLength(
        random.pick(["65537", "99999999999999999999", "9".repeat(200)]),
      );
      break;
    case "bad digit":
      out = bytes.slice();
      out[random.int(colon + 1)] = random.pick([
        0x2d,
        0x2b,
        0x20,
        0x78,
        0x2c,
        0x3a,
        0x00,
      ]);
      break;
    case "leading zero":
      out = concat([utf8("0"), bytes]);
      break;
    case "missing comma":
      out = concat([bytes.subarray(0, comma), bytes.subarray(comma + 1)]);
      break;
    case "insert NUL": {
      const at = colon + 1 + random.int(headLength);
      out = concat([
        bytes.subarray(0, at),
        new Uint8Array(1),
        bytes.subarray(at),
      ]);
      break;
    }
    case "drop NUL": {
      const block = bytes.subarray(colon + 1, comma);
      const nuls: number[] = [];
      block.forEach((byte, i) => byte === 0 && nuls.push(i));
      const at = colon + 1 + random.pick(nuls);
      out = concat([bytes.subarray(0, at), bytes.subarray(at + 1)]);
      break;
    }
    case "duplicate CONTENT_LENGTH":
      out = rawRequest([...pairs, [
        "CONTENT_LENGTH",
        String(valid.body.length),
      ]], valid.body);
      break;
    case "missing CONTENT_LENGTH":
      out = rawRequest(pairs.slice(1), valid.body);
      break;
    case "bad CONTENT_LENGTH":
      out = rawRequest([
        [
          "CONTENT_LENGTH",
          random.pick(["", "-1", "1.5", " 3", "0x10", "1e3", "+4", "٣"]),
        ],
        ...pairs.slice(1),
      ], valid.body);
      break;
    case "huge CONTENT_LENGTH":
      out = rawRequest([
        [
          "CONTENT_LENGTH",
          random.pick([
            "99999999999999999",
            "9".repeat(40),
            "9007199254740993",
          ]),
        ],
        ...pairs.slice(1),
      ]);
      break;
    case "short body":
      out = rawRequest([
        ["CONTENT_LENGTH", String(valid.body.length + 1 + random.int(100))],
        ...pairs.slice(1),
      ], valid.body);
      break;
    case "flip byte": {
      out = bytes.slice();
      const count = 1 + random.int(4);
      for (let i = 0; i < count; i++) {
        out[random.int(Math.min(out.length, comma + 2))] = random.int(256);
      }
      break;
    }
    case "insert bytes": {
      const at = random.int(bytes.length);
      out = concat([
        bytes.subarray(0, at),
        random.bytes(1 + random.int(8)),
        bytes.subarray(at),
      ]);
      break;
    }
    case "bad SCGI":
      out = rawRequest([
        pairs[0]!,
        ["SCGI", random.pick(["0", "2", "", "1.0"])],
        ...pairs.slice(2),
      ], valid.body);
      break;
    case "empty name":
      out = rawRequest([...pairs, ["", "x"]], valid.body);
      break;
    case "many variables": {
      const many = MANY.slice(0, 1001 + random.int(10));
      out = rawRequest([...pairs, ...many], valid.body);
      break;
    }
    case "valid":
      out = bytes;
      break;
  }
  return { bytes: out, mutation };
}

/** A random well-formed CGI response. */
export function validResponse(random: Random): Uint8Array<ArrayBuffer> {
  const lineEnd = random.chance(0.5) ? "\r\n" : "\n";
  const lines: string[] = [];
  const body = random.bytes(random.int(200));
  const form = random.int(3);
  if (form === 0) lines.push(`Status: ${200 + random.int(400)} Something`);
  if (form === 1) lines.push(`HTTP/1.1 ${200 + random.int(400)} OK`);
  lines.push("Content-Type: application/octet-stream");
  if (random.chance(0.5)) lines.push(`Content-Length: ${body.length}`);
  if (random.chance(0.3)) lines.push("Set-Cookie: a=1", "Set-Cookie: b=2");
  if (random.chance(0.2)) lines.push("Location: /elsewhere");
  return concat([utf8(lines.join(lineEnd) + lineEnd + lineEnd), body]);
}

/** A CGI response, well-formed or mutated (for the client side). */
export function fuzzResponse(random: Random): Uint8Array<ArrayBuffer> {
  const bytes = validResponse(random);
  switch (random.int(9)) {
    case 0:
      return random.bytes(random.int(300));
    case 1:
      return bytes.slice(0, random.int(bytes.length));
    case 2: {
      const out = bytes.slice();
      const count = 1 + random.int(6);
      for (let i = 0; i < count; i++) {
        out[random.int(out.length)] = random.pick([
          0,
          10,
          13,
          58,
          32,
          random.int(256),
        ]);
      }
      return out;
    }
    case 3:
      return concat([
        utf8(
          `Status: ${
            random.pick(["99", "1000", "abc", "600", "199", "", "200x"])
          }\r\n\r\n`,
        ),
        bytes,
      ]);
    case 4:
      return concat([utf8(`X-Big: ${"a".repeat(70_000)}\r\n`), bytes]);
    case 5:
      return concat([
        utf8("Content-Length: 1000\r\n\r\n"),
        random.bytes(random.int(999)),
      ]);
    case 6:
      return concat([
        utf8(
          random.pick([
            "\r\n",
            "\n",
            ": x\n\n",
            "No colon\n\n",
            "Bad Name: 1\n\n",
          ]),
        ),
        bytes,
      ]);
    default:
      return bytes;
  }
}

/** Splits bytes into random chunks, as a socket might deliver them. */
export function chunked(random: Random, bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const size = 1 + random.int(random.chance(0.3) ? 8 : 4096);
    chunks.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

/**
 * Records unhandled promise rejections (and stops them from ending the
 * process) so a test can fail on them with a clear message.
 */
export function trackUnhandledRejections(): {
  check(): void;
  [Symbol.dispose](): void;
} {
  const seen: unknown[] = [];
  const listener = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    seen.push(event.reason);
  };
  globalThis.addEventListener("unhandledrejection", listener);
  return {
    check() {
      if (seen.length > 0) {
        throw new Error(
          `${seen.length} unhandled rejection(s): ${
            seen.map((r) => String((r as Error)?.stack ?? r)).join("\n")
          }`,
        );
      }
    },
    [Symbol.dispose]() {
      globalThis.removeEventListener("unhandledrejection", listener);
    },
  };
}

/** What a raw exchange with the server got back. */
export interface RawResult {
  /** Every byte received before the end or a reset. */
  bytes: Uint8Array<ArrayBuffer>;
  /** The read error that ended it (a reset), if any. */
  error?: unknown;
}

/**
 * Sends bytes on a new connection, optionally half-closes, and reads until
 * the server closes (or resets) the connection.
 */
export async function rawExchange(
  addr: Deno.Addr,
  request: Uint8Array,
  options: { closeWrite?: boolean } = {},
): Promise<RawResult> {
  const conn = "path" in addr
    ? await Deno.connect({ transport: "unix", path: addr.path })
    : await Deno.connect({
      hostname: (addr as Deno.NetAddr).hostname,
      port: (addr as Deno.NetAddr).port,
    });
  const writing = (async () => {
    try {
      if (request.length > 0) await conn.write(request);
      if (options.closeWrite ?? true) await conn.closeWrite();
    } catch {
      // The server may answer and close before it has read everything.
    }
  })();
  const result = await readToEnd(conn);
  await writing;
  try {
    conn.close();
  } catch {
    // Released by reading to the end.
  }
  return result;
}

/** Reads a connection until it ends or fails. */
export async function readToEnd(conn: Deno.Conn): Promise<RawResult> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  let error: unknown;
  while (true) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch (e) {
      error = e;
      break;
    }
    if (n === null) break;
    parts.push(buffer.slice(0, n));
  }
  return { bytes: concat(parts), ...(error !== undefined ? { error } : {}) };
}

/** The status of raw CGI output, or undefined when it has no status line. */
export function statusOf(bytes: Uint8Array): number | undefined {
  const match = new TextDecoder().decode(bytes.subarray(0, 40)).match(
    /^Status: ([0-9]{3})/,
  );
  return match ? Number(match[1]) : undefined;
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `condition` holds (bounded, so a bug fails instead of hanging). */
export async function until(
  condition: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}
