// The gateway's failover for a backend that never accepts the connection
// (its listen backlog is full, so the kernel drops the SYN and the connect
// times out): nothing was sent, so, as nginx's default
// `scgi_next_upstream error timeout`, the request goes to the next backend
// and the silent one is marked down for `retryInterval`.

import assert from "node:assert/strict";
import { scgiProxy } from "../gateway.ts";
import { type ScgiServer, serve } from "../server.ts";

const quiet = { port: 0, onListen() {} };

function portOf(server: ScgiServer): number {
  return (server.addr as Deno.NetAddr).port;
}

/** A TCP listener whose accept queue is full: a new connect to it hangs. */
interface Unaccepting {
  readonly port: number;
  /** Closes the listener and the connections that fill its queue. */
  close(): void;
}

async function unaccepting(): Promise<Unaccepting> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const fillers: Deno.Conn[] = [];
  const close = () => {
    listener.close();
    for (const conn of fillers) conn.close();
  };
  try {
    // Nobody accepts; each connect completes in the kernel until the queue
    // is full, and the first one that doesn't is the proof it is.
    while (true) {
      const give = new AbortController();
      const timer = setTimeout(() => give.abort(), 250);
      try {
        fillers.push(
          await Deno.connect({
            hostname: "127.0.0.1",
            port,
            signal: give.signal,
          }),
        );
      } catch (error) {
        // Timed out, not refused: the queue is full.
        assert.ok(give.signal.aborted, `connect failed: ${error}`);
        break;
      } finally {
        clearTimeout(timer);
      }
      assert.ok(fillers.length < 5000, "the accept queue never filled");
    }
  } catch (error) {
    close();
    throw error;
  }
  return { port, close };
}

Deno.test("gateway: a backend that does not accept within connectTimeout is skipped and marked down", async () => {
  const stuck = await unaccepting();
  let stuckClosed = false;
  try {
    await using b = serve(quiet, () => new Response("b"));
    const handler = scgiProxy({
      backends: [{ port: stuck.port }, { port: portOf(b) }],
      connectTimeout: 200,
      retryInterval: 60_000,
    });
    // The first request tries the stuck backend first (round robin starts
    // there), gives up on it after connectTimeout and goes on to b.
    const first = await handler(new Request("http://h/one"));
    assert.equal(first.status, 200, await first.clone().text());
    assert.equal(await first.text(), "b");

    // The stuck one recovers and answers now, but it is marked down for
    // retryInterval: round robin would otherwise give it every other
    // request, so all of them going to b shows it was marked.
    stuck.close();
    stuckClosed = true;
    await using _a = serve(
      { ...quiet, port: stuck.port },
      () => new Response("a"),
    );
    const later: string[] = [];
    for (let i = 0; i < 4; i++) {
      const response = await handler(new Request("http://h/more"));
      assert.equal(response.status, 200);
      later.push(await response.text());
    }
    assert.deepEqual(later, ["b", "b", "b", "b"]);
  } finally {
    if (!stuckClosed) stuck.close();
  }
});

Deno.test("gateway: when no backend accepts in time, each is tried and the answer is 504 with the reasons", async () => {
  const one = await unaccepting();
  try {
    const two = await unaccepting();
    try {
      const handler = scgiProxy({
        backends: [{ port: one.port }, { port: two.port }],
        connectTimeout: 200,
      });
      const response = await handler(new Request("http://h/"));
      assert.equal(response.status, 504);
      assert.equal(
        await response.text(),
        `no SCGI backend reachable: no connection to 127.0.0.1:${one.port} within 200 ms; ` +
          `no connection to 127.0.0.1:${two.port} within 200 ms\n`,
      );
    } finally {
      two.close();
    }
  } finally {
    one.close();
  }
});
