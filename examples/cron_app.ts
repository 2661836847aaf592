/**
 * An app with scheduled jobs beside it, for `scgi serve` (docs/cron.md):
 * `heartbeat` runs every 10 seconds (a timer), `nightly` at 03:00 UTC
 * (`Deno.cron`, so `scgi serve` needs `--unstable-cron`). Each run counts
 * itself, and appends `name id pid` to the file named by `CRON_LOG` when
 * that is set; the page shows the counts of the process that answers.
 *
 * One process:
 *
 *     deno run --unstable-cron --allow-net=127.0.0.1:4000 \
 *       --allow-read=examples --allow-env=CRON_LOG --allow-write=/tmp/cron.log \
 *       cli.ts serve examples/cron_app.ts --port 4000
 *
 * Two workers (each run goes to one of them; the workers get the env and
 * write grants through `--`, as the supervisor holds them; `--allow-run`
 * names the real deno binary, `Deno.execPath()`, not a symlink to it):
 *
 *     deno run --unstable-cron --allow-net=127.0.0.1:4000 \
 *       --allow-read=examples --allow-run="$(realpath "$(command -v deno)")" \
 *       --allow-env=CRON_LOG --allow-write=/tmp/cron.log \
 *       cli.ts serve examples/cron_app.ts --port 4000 --workers 2 \
 *       -- --allow-env=CRON_LOG --allow-write=/tmp/cron.log
 *
 * with `CRON_LOG=/tmp/cron.log` in the environment. To only count, leave it
 * unset and drop both `--allow-write` flags (the module still reads
 * `CRON_LOG`, so keep `--allow-env=CRON_LOG`, after `--` too).
 *
 * @module
 */

/** What a job's handler is called with by `scgi serve`. */
interface JobContext {
  name: string;
  id: number;
}

const counts: Record<string, number> = { heartbeat: 0, nightly: 0 };
const log = Deno.env.get("CRON_LOG");

async function record({ name, id }: JobContext): Promise<void> {
  counts[name] = (counts[name] ?? 0) + 1;
  if (log) {
    await Deno.writeTextFile(log, `${name} ${id} ${Deno.pid}\n`, {
      append: true,
    });
  }
}

/** The app's scheduled jobs, run by `scgi serve`. */
export const cron = {
  heartbeat: { every: "10s", handler: record },
  nightly: { schedule: "0 3 * * *", handler: record },
};

/** The page: the job runs this process has made. */
export default {
  fetch(): Response {
    return new Response(
      `pid ${Deno.pid}: heartbeat ran ${counts.heartbeat} times, nightly ${counts.nightly}\n`,
      { headers: { "content-type": "text/plain; charset=utf-8" } },
    );
  },
};
