// Shared pieces of the `scgi` commands: argument parsing that turns every
// mistake into one line, number/duration checks, and the error types that
// `cli.ts` maps to exit statuses.

import { parseArgs, type ParseArgsConfig } from "node:util";

/** A mistake in the command line: one line on stderr, exit status 2. */
export class UsageError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A failure with its own exit status (curl's numbers where they fit). */
export class CliError extends Error {
  /** The process exit status. */
  readonly exitCode: number;
  /** Creates the error. */
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

/** The option table of a command, as `node:util` `parseArgs` takes it. */
export type Options = NonNullable<ParseArgsConfig["options"]>;

/** What {@linkcode parse} returns: option values and positionals. */
export interface Parsed<T extends Options> {
  values: ReturnType<typeof parseArgs<{ options: T; allowPositionals: true }>>[
    "values"
  ];
  positionals: string[];
}

/**
 * Parses arguments strictly; an unknown option or a missing value becomes a
 * {@linkcode UsageError} with a short message.
 */
export function parse<T extends Options>(
  args: string[],
  options: T,
): Parsed<T> {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values, positionals };
  } catch (error) {
    const message = (error as Error).message;
    const unknown = /^Unknown option '([^']+)'/.exec(message);
    if (unknown) throw new UsageError(`unknown option ${unknown[1]}`);
    const missing = /^Option '([^']+)' argument missing/.exec(message);
    if (missing) {
      throw new UsageError(`option ${missing[1]} needs a value`);
    }
    throw new UsageError(message.split(". ")[0]!);
  }
}

/** A whole number in [min, max], or a usage error naming the option. */
export function integer(
  name: string,
  text: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || value < min || value > max) {
    throw new UsageError(
      `${name} must be a whole number from ${min}${
        max === Number.MAX_SAFE_INTEGER ? " up" : ` to ${max}`
      }, not ${JSON.stringify(text)}`,
    );
  }
  return value;
}

/**
 * A duration in milliseconds from seconds (`10`, `1.5`) or with a unit
 * (`500ms`, `10s`, `2m`).
 */
export function duration(name: string, text: string): number {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$/.exec(text);
  if (!match) {
    throw new UsageError(
      `${name} must be a duration like 10, 1.5s, 500ms or 2m, not ${
        JSON.stringify(text)
      }`,
    );
  }
  const value = Number(match[1]);
  const unit = match[2] ?? "s";
  return unit === "ms" ? value : unit === "s" ? value * 1000 : value * 60_000;
}

/** Checks an `scgi://` or `scgi+unix://` URL. */
export function scgiTarget(text: string | undefined): URL {
  if (text === undefined) {
    throw new UsageError(
      "missing the URL (scgi://HOST:PORT/PATH or scgi+unix://%2Fpath.sock/PATH)",
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "scgi:" && url.protocol !== "scgi+unix:") {
    throw new UsageError(
      `${text} is not an scgi:// or scgi+unix:// URL`,
    );
  }
  if (url.protocol === "scgi+unix:" && !url.hostname) {
    throw new UsageError(
      `${text} names no socket: percent-encode its path as the host (scgi+unix://%2Frun%2Fapp.sock/PATH)`,
    );
  }
  return url;
}

/** Refuses positionals beyond the expected number. */
export function noMore(positionals: string[], expected: number): void {
  if (positionals.length > expected) {
    throw new UsageError(
      `unexpected argument ${JSON.stringify(positionals[expected])}`,
    );
  }
}

/** Writes text to stdout in full. */
export async function out(text: string): Promise<void> {
  await writeAll(Deno.stdout, new TextEncoder().encode(text));
}

/** Writes text to stderr in full. */
export async function err(text: string): Promise<void> {
  await writeAll(Deno.stderr, new TextEncoder().encode(text));
}

/** Writes all bytes, looping over partial writes. */
export async function writeAll(
  writer: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) {
    offset += await writer.write(bytes.subarray(offset));
  }
}

/**
 * Runs until the first SIGINT or SIGTERM, then calls `stop` once; later
 * signals are swallowed so a graceful stop is not cut short (a terminal's
 * Ctrl-C reaches every process of the group, and a supervisor may forward a
 * SIGTERM on top). Returns a function that removes the listeners.
 */
export function onStopSignal(stop: (signal: Deno.Signal) => void): () => void {
  let stopped = false;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const handler = () => {
      if (stopped) return;
      stopped = true;
      stop(signal);
    };
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  return () => {
    for (const [signal, handler] of handlers) {
      Deno.removeSignalListener(signal, handler);
    }
  };
}
