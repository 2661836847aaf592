/**
 * The `scgi` command line: serve an app over SCGI, put an HTTP front end
 * before SCGI backends, send one request (curl for SCGI), and load-test a
 * backend.
 *
 * Install it (the flags are what all four commands may need; see
 * `docs/cli.md` for the least permissions of each):
 *
 *     deno install -g -n scgi --allow-net --allow-read --allow-write --allow-run jsr:@scgi/scgi/cli
 *
 * @example Running it from a program
 * ```ts ignore
 * import { main } from "./cli.ts";
 *
 * const status = await main(["request", "scgi://127.0.0.1:4000/"]);
 * Deno.exit(status);
 * ```
 *
 * @module
 */

import { bench } from "./cli/bench.ts";
import { proxy } from "./cli/proxy.ts";
import { request } from "./cli/request.ts";
import { serve } from "./cli/serve.ts";
import { CliError, err, out, UsageError } from "./cli/_args.ts";

const VERSION = "0.1.0";

const HELP = `Usage: scgi COMMAND [options]

Commands:
  serve APP.ts      serve a module's default export ({ fetch } or a handler)
                    over SCGI
  proxy             an HTTP server in front of SCGI backends, with an access
                    log
  request URL       send one request to an SCGI backend (curl for SCGI)
  bench URL         load-test an SCGI backend

Run 'scgi COMMAND --help' for a command's options and examples.

Examples:
  scgi serve app.ts --port 4000
  scgi proxy --listen 8000 --backend 127.0.0.1:4000
  scgi request -i scgi://127.0.0.1:4000/
  scgi bench -c 16 -d 10s scgi://127.0.0.1:4000/
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve,
  proxy,
  request,
  bench,
};

/**
 * Runs the `scgi` command line with the given arguments.
 *
 * A mistake in the arguments prints one line on stderr and gives status 2;
 * a failure prints one line and gives the command's status (1 unless its
 * help says otherwise).
 *
 * @param args The arguments after the program name.
 * @returns The exit status.
 *
 * @example
 * ```ts
 * import { main } from "./cli.ts";
 *
 * console.assert(await main(["no-such-command"]) === 2);
 * ```
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "help") {
    await (command === undefined ? err : out)(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === "--help" || command === "-h") {
    await out(HELP);
    return 0;
  }
  if (command === "--version" || command === "-V") {
    await out(`scgi ${VERSION}\n`);
    return 0;
  }
  const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
  if (!run) {
    await err(
      `scgi: unknown command ${
        JSON.stringify(command)
      } (serve, proxy, request, bench; see scgi --help)\n`,
    );
    return 2;
  }
  try {
    return await run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      await err(
        `scgi ${command}: ${error.message} (see scgi ${command} --help)\n`,
      );
      return 2;
    }
    if (error instanceof CliError) {
      if (error.message) await err(`scgi ${command}: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof Deno.errors.NotCapable) {
      await err(
        `scgi ${command}: ${firstLine(error)} (docs/cli.md lists the flags)\n`,
      );
      return 1;
    }
    await err(`scgi ${command}: ${firstLine(error)}\n`);
    return 1;
  }
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0]!;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
