/**
 * `scgi request`: curl for SCGI. Sends one request to an SCGI backend and
 * prints the response body.
 *
 * @module
 */

import { scgiFetch } from "../client.ts";
import { ScgiClientError } from "../codec/errors.ts";
import { statusText } from "../codec/status_text.ts";
import {
  CliError,
  duration,
  noMore,
  out,
  parse,
  scgiTarget,
  UsageError,
  writeAll,
} from "./_args.ts";

/** The help text of `scgi request`. */
export const HELP = `Usage: scgi request [options] URL

Sends one request to an SCGI backend (curl for SCGI) and prints the response
body on stdout. URL is scgi://HOST:PORT/PATH?QUERY, or
scgi+unix://%2Fpercent%2Fencoded.sock/PATH for a Unix socket.

Options:
  -X, --request METHOD     request method (default GET, or POST with data)
  -H, --header 'N: V'      add a request header (repeatable)
  -d, --data DATA          send DATA as the body (@FILE reads a file without
                           its line breaks, @- reads stdin); repeated -d are
                           joined with '&'; content-type defaults to
                           application/x-www-form-urlencoded
      --data-binary DATA   send DATA exactly (@FILE reads a file, @- stdin)
  -e, --env NAME=VALUE     add a CGI variable (repeatable)
  -i, --include            print the status line and headers before the body
  -f, --fail               exit 22 and print nothing for a status >= 400
  -m, --max-time SECONDS   give up after this long (exit 28)
      --json               print {status, statusText, headers, body} as JSON
  -h, --help               show this help

Exit status: 0 success, 2 bad arguments, 7 could not connect, 22 status
>= 400 with --fail, 28 timeout, 1 any other failure (a malformed response).

Examples:
  scgi request scgi://127.0.0.1:4000/
  scgi request -i -X POST -d 'name=deno' scgi://127.0.0.1:4000/form
  scgi request -H 'Content-Type: text/xml' --data-binary @call.xml \\
    scgi://127.0.0.1:5000/RPC2             # rtorrent's XML-RPC
  scgi request -e REMOTE_USER=alice scgi+unix://%2Frun%2Fapp.sock/me
`;

/** Runs `scgi request` with its arguments; resolves to the exit status. */
export async function request(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    request: { type: "string", short: "X" },
    header: { type: "string", short: "H", multiple: true },
    data: { type: "string", short: "d", multiple: true },
    "data-binary": { type: "string" },
    env: { type: "string", short: "e", multiple: true },
    include: { type: "boolean", short: "i" },
    fail: { type: "boolean", short: "f" },
    "max-time": { type: "string", short: "m" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    await out(HELP);
    return 0;
  }
  noMore(positionals, 1);
  const url = scgiTarget(positionals[0]);

  const headers = new Headers();
  for (const line of values.header ?? []) {
    const colon = line.indexOf(":");
    if (colon <= 0) {
      throw new UsageError(
        `header ${JSON.stringify(line)} is not 'Name: value'`,
      );
    }
    try {
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    } catch {
      throw new UsageError(`header ${JSON.stringify(line)} is not valid`);
    }
  }
  const env: Record<string, string> = {};
  for (const pair of values.env ?? []) {
    const equals = pair.indexOf("=");
    if (equals <= 0) {
      throw new UsageError(`-e ${JSON.stringify(pair)} is not NAME=VALUE`);
    }
    env[pair.slice(0, equals)] = pair.slice(equals + 1);
  }
  if (values.data && values["data-binary"] !== undefined) {
    throw new UsageError("give either -d or --data-binary, not both");
  }
  let body: Uint8Array<ArrayBuffer> | undefined;
  if (values.data) {
    const parts: string[] = [];
    for (const data of values.data) {
      parts.push(
        data.startsWith("@")
          ? new TextDecoder().decode(await readData(data.slice(1)))
            .replace(/[\r\n]/g, "")
          : data,
      );
    }
    body = new TextEncoder().encode(parts.join("&"));
  } else if (values["data-binary"] !== undefined) {
    const data = values["data-binary"];
    body = data.startsWith("@")
      ? await readData(data.slice(1))
      : new TextEncoder().encode(data);
  }
  if (body && !headers.has("content-type")) {
    headers.set("content-type", "application/x-www-form-urlencoded");
  }
  const method = values.request ?? (body ? "POST" : "GET");
  const maxTime = values["max-time"] !== undefined
    ? duration("--max-time", values["max-time"])
    : undefined;

  let response: Response;
  try {
    response = await scgiFetch(url, {
      method,
      headers,
      ...(body ? { body } : {}),
      ...(Object.keys(env).length > 0 ? { env } : {}),
      ...(maxTime !== undefined
        ? { signal: AbortSignal.timeout(maxTime) }
        : {}),
    });
  } catch (error) {
    throw failure(error, maxTime);
  }
  if (values.fail && response.status >= 400) {
    await response.body?.cancel();
    throw new CliError(
      `${url.href} answered ${response.status} ${response.statusText}`.trim(),
      22,
    );
  }
  try {
    if (values.json) {
      const text = await response.text();
      await out(
        JSON.stringify({
          status: response.status,
          statusText: response.statusText || statusText(response.status),
          headers: [...response.headers],
          body: text,
        }) + "\n",
      );
      return 0;
    }
    if (values.include) {
      let head = `Status: ${response.status} ${
        response.statusText || statusText(response.status)
      }\r\n`;
      for (const [name, value] of response.headers) {
        head += `${name}: ${value}\r\n`;
      }
      await out(head + "\r\n");
    }
    if (response.body) {
      for await (const chunk of response.body) {
        await writeAll(Deno.stdout, chunk);
      }
    }
  } catch (error) {
    throw failure(error, maxTime);
  }
  return 0;
}

async function readData(path: string): Promise<Uint8Array<ArrayBuffer>> {
  try {
    if (path === "-") {
      return new Uint8Array(
        await new Response(Deno.stdin.readable).arrayBuffer(),
      );
    }
    return await Deno.readFile(path);
  } catch (error) {
    throw new CliError(`cannot read ${path}: ${(error as Error).message}`, 26);
  }
}

function failure(error: unknown, maxTime: number | undefined): CliError {
  if (error instanceof ScgiClientError) {
    if (error.cause instanceof Deno.errors.NotCapable) {
      return new CliError(`${error.message} (docs/cli.md lists the flags)`, 1);
    }
    switch (error.code) {
      case "connection_refused":
      case "connection_failed":
        return new CliError(error.message, 7);
      case "connect_timeout":
      case "head_timeout":
      case "idle_timeout":
        return new CliError(error.message, 28);
      default:
        return new CliError(error.message, 1);
    }
  }
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return new CliError(
      `no complete answer within --max-time ${maxTime} ms`,
      28,
    );
  }
  if (error instanceof Deno.errors.BrokenPipe) {
    // stdout closed early (piped into head): nothing more to say.
    return new CliError("", 0);
  }
  return new CliError((error as Error)?.message ?? String(error), 1);
}
