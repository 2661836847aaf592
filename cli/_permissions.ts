// The `deno run` flags of a worker of `scgi serve --workers`: what a worker
// needs, and never more than the supervisor holds.
//
// Deno cannot list its own flags (and reading /proc/self/cmdline takes
// --allow-all), but `Deno.permissions.querySync` answers for one descriptor
// without prompting, and its `partial` says whether something below it is
// denied. So nothing is copied; every grant is verified:
//
// - net: the one address the worker listens on (for a Unix socket, its path
//   and the path beside it that a reload binds first, with read and write on
//   both), each checked against the supervisor's own permission;
// - read: all of it only if the supervisor's read is unconditional (granted
//   with nothing denied); otherwise the folders of the app's local modules
//   (from `deno info`), each only as far as the supervisor may read it with
//   nothing denied: a folder with a --deny-read somewhere inside is replaced
//   by its entries, recursively, so a denied file is never granted;
// - anything else only when asked for after `--` on the command line, and
//   only if the supervisor holds it with nothing denied.

import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CliError, UsageError } from "./_args.ts";

/** Where a worker listens. */
export type Listen =
  | { hostname: string; port: number }
  | { path: string; beside: string };

const KINDS = [
  "read",
  "write",
  "net",
  "env",
  "sys",
  "run",
  "ffi",
  "import",
] as const;
type Kind = typeof KINDS[number];

/** Deno flags after `--` that grant nothing and may go to workers as given. */
const PLAIN_FLAGS =
  /^(--(config|import-map|lock|node-modules-dir|location|seed|v8-flags|env-file|conditions)(=.+)?|--(no-config|no-lock|frozen|cached-only|no-remote|no-npm|no-prompt|no-check|quiet)|--unstable-[a-z-]+|-c=?.+|-q)$/;

function descriptor(kind: Kind, item?: string): Deno.PermissionDescriptor {
  if (item === undefined) return { name: kind };
  switch (kind) {
    case "read":
    case "write":
    case "ffi":
      return { name: kind, path: resolve(item) };
    case "net":
    case "import":
      return { name: kind, host: item };
    case "env":
      return { name: kind, variable: item };
    case "sys":
      return {
        name: kind,
        kind: item as NonNullable<Deno.SysPermissionDescriptor["kind"]>,
      };
    case "run":
      return { name: kind, command: item };
  }
}

/** True when this process holds the descriptor with nothing below it denied. */
function whole(kind: Kind, item?: string): boolean {
  const status = Deno.permissions.querySync(descriptor(kind, item));
  return status.state === "granted" && !status.partial;
}

/**
 * The parts of `path` this process may read (or write) with nothing denied:
 * `[path]` itself when nothing inside is denied, otherwise its entries'
 * parts, recursively; nothing when it may not read `path` at all.
 */
export function grantedParts(kind: "read" | "write", path: string): string[] {
  const status = Deno.permissions.querySync({ name: kind, path });
  if (status.state !== "granted") return [];
  if (!status.partial) return [path];
  let names: string[];
  try {
    // Listing a folder takes read permission on it, which a partly
    // granted folder has.
    names = [...Deno.readDirSync(path)].map((entry) => entry.name).sort();
  } catch {
    return [];
  }
  return names.flatMap((name) => grantedParts(kind, join(path, name)));
}

/** Drops paths inside another path of the list, and duplicates. */
function outermost(paths: string[]): string[] {
  const sorted = [...new Set(paths)].sort();
  return sorted.filter((path) =>
    !sorted.some((other) =>
      other !== path && (path.startsWith(`${other}/`) || other === "/")
    )
  );
}

/** Flags after `--`: checked, split into permissions and plain flags. */
export interface ExtraFlags {
  /** Grants by kind: `true` for all of a kind, or a list. */
  allow: Map<Kind, true | string[]>;
  /** `--deny-*` and the plain flags, as given. */
  other: string[];
  /** The plain flags alone (for `deno info`). */
  plain: string[];
}

/**
 * Checks the flags given after `--`: `--allow-KIND[=LIST]` only for what
 * this process holds with nothing denied (a folder with something denied
 * inside is narrowed to its granted parts), `--deny-KIND[=LIST]` always, and
 * the Deno flags that grant nothing.
 */
export function checkExtraFlags(flags: string[]): ExtraFlags {
  const extra: ExtraFlags = { allow: new Map(), other: [], plain: [] };
  for (const flag of flags) {
    const match = /^--(allow|deny)-([a-z]+)(?:=(.*))?$/.exec(flag);
    if (!match) {
      if (flag === "-A" || flag === "--allow-all" || !PLAIN_FLAGS.test(flag)) {
        throw new UsageError(
          `after --, give workers --allow-*/--deny-* flags one by one, or Deno flags that grant nothing (--config, --import-map, --unstable-*, ...), not ${flag}`,
        );
      }
      extra.other.push(flag);
      extra.plain.push(flag);
      continue;
    }
    const [, verb, name, list] = match;
    const kind = KINDS.find((k) => k === name);
    if (!kind) throw new UsageError(`unknown permission flag ${flag}`);
    if (verb === "deny") {
      extra.other.push(flag);
      continue;
    }
    if (list === undefined) {
      if (!whole(kind)) {
        throw new CliError(
          `a worker cannot get ${flag}: the supervisor does not hold all of ${kind} (or something in it is denied); list what workers need, e.g. --allow-${kind}=...`,
        );
      }
      extra.allow.set(kind, true);
      continue;
    }
    const items: string[] = [];
    for (const item of list.split(",").filter((item) => item !== "")) {
      if (whole(kind, item)) {
        items.push(kind === "read" || kind === "write" ? resolve(item) : item);
      } else if (
        (kind === "read" || kind === "write") &&
        grantedParts(kind, resolve(item)).length > 0
      ) {
        items.push(...grantedParts(kind, resolve(item)));
      } else {
        throw new CliError(
          `a worker cannot get --allow-${kind}=${item}: the supervisor does not hold it`,
        );
      }
    }
    const before = extra.allow.get(kind);
    if (before !== true) extra.allow.set(kind, [...(before ?? []), ...items]);
  }
  return extra;
}

/**
 * The local files of the app's module graph (code imports only: a type-only
 * import is not loaded), from `deno info --json`; just the app when that
 * fails.
 */
export async function localModules(
  app: string,
  plain: string[],
): Promise<string[]> {
  const fallback = [app];
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", ...plain, app],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      signal: AbortSignal.timeout(60_000),
    }).output();
  } catch {
    return fallback;
  }
  if (!output.success) return fallback;
  interface Info {
    roots: string[];
    redirects: Record<string, string>;
    modules: {
      specifier: string;
      dependencies?: { code?: { specifier: string } }[];
    }[];
  }
  let info: Info;
  try {
    info = JSON.parse(new TextDecoder().decode(output.stdout));
  } catch {
    return fallback;
  }
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const queue = [...info.roots];
  while (queue.length > 0) {
    let specifier = queue.pop()!;
    specifier = info.redirects[specifier] ?? specifier;
    if (seen.has(specifier)) continue;
    seen.add(specifier);
    for (const dependency of bySpecifier.get(specifier)?.dependencies ?? []) {
      if (dependency.code) queue.push(dependency.code.specifier);
    }
  }
  const files = [...seen].filter((s) => s.startsWith("file:")).map((s) =>
    fileURLToPath(s)
  );
  return files.length > 0 ? files : fallback;
}

/** `host:port`, bracketing an IPv6 address. */
export function hostPort(hostname: string, port: number): string {
  return `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

/**
 * The permission flags of a worker that serves the app whose local modules
 * are `modules`, listening at `listen`, with the checked `extra` flags.
 * Throws a {@linkcode CliError} naming the flag the supervisor lacks for
 * the listening address.
 */
export function workerFlags(
  listen: Listen,
  modules: string[],
  extra: ExtraFlags,
): string[] {
  const allow = new Map<Kind, true | string[]>(extra.allow);
  const add = (kind: Kind, items: string[]) => {
    const before = allow.get(kind);
    if (before !== true) allow.set(kind, [...(before ?? []), ...items]);
  };
  if ("path" in listen) {
    for (const path of [listen.path, listen.beside]) {
      const missing = [
        whole("read", path) ? "" : `--allow-read=${path}`,
        whole("write", path) ? "" : `--allow-write=${path}`,
        whole("net", `unix:${path}`) ? "" : `--allow-net=unix:${path}`,
      ].filter(Boolean);
      if (missing.length > 0) {
        throw new CliError(
          `--workers on a socket needs ${
            missing.join(" ")
          } (a reload binds ${listen.beside} and moves it over ${listen.path})`,
        );
      }
    }
    add("read", [listen.path, listen.beside]);
    add("write", [listen.path, listen.beside]);
    add("net", [`unix:${listen.path}`, `unix:${listen.beside}`]);
  } else {
    const host = hostPort(listen.hostname, listen.port);
    if (!whole("net", host)) {
      throw new CliError(`--workers needs --allow-net=${host}`);
    }
    add("net", [host]);
  }
  if (whole("read")) {
    allow.set("read", true);
  } else {
    const folders = modules.map((file) => resolve(file, ".."));
    const parts = [...folders, ...modules].flatMap((path) =>
      grantedParts("read", path)
    );
    add("read", parts);
  }
  const flags = ["--no-prompt"];
  for (const kind of KINDS) {
    const grant = allow.get(kind);
    if (grant === true) {
      flags.push(`--allow-${kind}`);
    } else if (grant && grant.length > 0) {
      // A comma would split the list: such a path is left out.
      const items = kind === "read" || kind === "write"
        ? outermost(grant.filter((item) => !item.includes(",")))
        : [...new Set(grant)];
      flags.push(`--allow-${kind}=${items.join(",")}`);
    }
  }
  return [...flags, ...extra.other];
}
