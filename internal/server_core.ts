// The server around the connections: listening (TCP, or a Unix socket with
// its stale-file and mode handling), the accept loop with its connection
// limit, the sweep that enforces every deadline, graceful shutdown and the
// counters. What happens on one connection is in connection.ts. Private to
// the package.

import type { ScgiProtocol } from "../codec/gemini.ts";
import {
  Connection,
  type ConnectionCounters,
  type ConnectionHost,
  type ConnectionLimits,
} from "./connection.ts";
import type { HandlerInfo } from "./handler_info.ts";
import { answerFailure } from "./respond.ts";
import { telemetryEnabled, traceHandler } from "./telemetry.ts";

/** The settings `serve()` resolved from its options (defaults applied). */
export interface CoreSettings extends ConnectionLimits {
  port: number;
  hostname: string;
  path: string | undefined;
  socketMode: number | undefined;
  reusePort: boolean;
  maxConnections: number;
  shutdownTimeout: number;
  protocol: ScgiProtocol | undefined;
  abortOnHangUp: boolean;
  signal: AbortSignal | undefined;
  handleSignals: boolean;
  onListen: ((addr: Deno.Addr) => void) | undefined;
  onError: ((error: unknown) => Response | Promise<Response>) | undefined;
}

/** The counters of `stats`. */
export interface CoreStats extends ConnectionCounters {
  accepted: number;
  active: number;
  handlerErrors: number;
}

/** A running server (the `ScgiServer` that `serve()` returns). */
export class ServerCore implements ConnectionHost, AsyncDisposable {
  readonly limits: ConnectionLimits;
  readonly counters: CoreStats = {
    accepted: 0,
    active: 0,
    completed: 0,
    protocolErrors: 0,
    handlerErrors: 0,
    timeouts: 0,
    aborted: 0,
  };
  readonly protocol: ScgiProtocol | undefined;
  readonly abortOnHangUp: boolean;
  readonly handler: (
    request: Request,
    info: HandlerInfo,
  ) => Response | Promise<Response>;
  readonly #settings: CoreSettings;
  readonly #connections = new ConnectionList();
  readonly #finished = Promise.withResolvers<void>();
  #listener: Deno.Listener | undefined;
  #addr: Deno.Addr;
  // The socket file this server made, to remove only that one on close.
  #socketInode: number | null | undefined;
  #closing = false;
  #accepting = false;
  #refed = true;
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #slotFreed: (() => void) | undefined;
  #signalHandler: (() => void) | undefined;
  #abortListener: (() => void) | undefined;
  #shutdownTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    settings: CoreSettings,
    handler: (
      request: Request,
      info: HandlerInfo,
    ) => Response | Promise<Response>,
  ) {
    this.#settings = settings;
    // Telemetry wraps the handler once, here; with it off, nothing changes.
    this.handler = telemetryEnabled()
      ? traceHandler(handler, this.failed)
      : handler;
    this.limits = settings;
    this.protocol = settings.protocol;
    this.abortOnHangUp = settings.abortOnHangUp;
    this.#finished.promise.catch(() => {});
    const path = settings.path;
    if (path !== undefined) {
      this.#addr = { transport: "unix", path };
      let listener: Deno.Listener | undefined;
      try {
        listener = this.#listenUnix(path);
      } catch (error) {
        if (!(error instanceof Deno.errors.AddrInUse)) throw error;
      }
      if (listener) {
        this.#start(listener);
      } else {
        // A socket file is there: reuse it only if nobody answers on it (a
        // crashed process left it), which takes a connect to find out.
        this.#replaceStaleSocket(path).then(
          (listener) => this.#start(listener),
          (error) => {
            // Never started: drop the signal handlers installed below too.
            this.#closing = true;
            this.#removeSignalHandlers();
            this.#finished.reject(error);
          },
        );
      }
    } else {
      const listener = Deno.listen({
        hostname: settings.hostname,
        port: settings.port,
        ...(settings.reusePort ? { reusePort: true } : {}),
      });
      this.#addr = listener.addr;
      this.#start(listener);
    }
    const signal = settings.signal;
    if (signal) {
      if (signal.aborted) {
        this.shutdown();
      } else {
        this.#abortListener = () => this.shutdown();
        signal.addEventListener("abort", this.#abortListener, { once: true });
      }
    }
    if (settings.handleSignals) {
      this.#signalHandler = () => this.shutdown();
      Deno.addSignalListener("SIGTERM", this.#signalHandler);
      Deno.addSignalListener("SIGINT", this.#signalHandler);
    }
  }

  get addr(): Deno.Addr {
    return this.#addr;
  }

  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  get stats(): Readonly<CoreStats> {
    return { ...this.counters, active: this.#connections.size };
  }

  /** A handler failure, counted and given to onError. */
  failed = (error: unknown): Promise<Response> => {
    this.counters.handlerErrors++;
    return answerFailure(this.#settings.onError, error);
  };

  released(connection: Connection): void {
    this.#connections.delete(connection);
    this.#slotFreed?.();
    if (this.#closing) this.#maybeFinish();
  }

  shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      this.#closeListener();
      this.#removeSignalHandlers();
      this.#slotFreed?.();
      const timeout = this.#settings.shutdownTimeout;
      // Also with no connection now: an accept still pending may yet bring
      // one in. #maybeFinish clears the timer.
      if (Number.isFinite(timeout)) {
        const timer = setTimeout(() => {
          const reason = new DOMException("server shut down", "AbortError");
          for (const connection of this.#connections) connection.abort(reason);
        }, timeout);
        this.#shutdownTimer = timer;
        if (!this.#refed) Deno.unrefTimer(timer);
      }
      this.#maybeFinish();
    }
    return this.#finished.promise;
  }

  ref(): void {
    this.#refed = true;
    this.#listener?.ref();
  }

  unref(): void {
    this.#refed = false;
    this.#listener?.unref();
    if (this.#shutdownTimer !== undefined) {
      Deno.unrefTimer(this.#shutdownTimer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.shutdown();
  }

  #listenUnix(path: string): Deno.Listener {
    const listener = Deno.listen({ transport: "unix", path });
    if (this.#settings.socketMode !== undefined) {
      Deno.chmodSync(path, this.#settings.socketMode);
    }
    try {
      this.#socketInode = Deno.lstatSync(path).ino;
    } catch {
      this.#socketInode = undefined;
    }
    return listener;
  }

  async #replaceStaleSocket(path: string): Promise<Deno.Listener> {
    const info = await Deno.lstat(path);
    if (!info.isSocket) {
      throw new Deno.errors.AddrInUse(`${path} exists and is not a socket`);
    }
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      conn.close();
    } catch (error) {
      if (error instanceof Deno.errors.ConnectionRefused) {
        await Deno.remove(path);
        return this.#listenUnix(path);
      }
      throw error;
    }
    throw new Deno.errors.AddrInUse(`another process is serving on ${path}`);
  }

  #start(listener: Deno.Listener): void {
    this.#listener = listener;
    this.#addr = listener.addr;
    if (!this.#refed) listener.unref();
    if (this.#closing) {
      this.#closeListener();
      this.#maybeFinish();
      return;
    }
    const { headerTimeout, idleTimeout, handlerTimeout } = this.limits;
    const shortest = Math.min(headerTimeout, idleTimeout, handlerTimeout);
    if (Number.isFinite(shortest)) {
      const every = Math.min(1000, Math.max(5, Math.floor(shortest / 4)));
      const sweeper = setInterval(() => this.#sweep(), every);
      this.#sweeper = sweeper;
      Deno.unrefTimer(sweeper);
    }
    const onListen = this.#settings.onListen;
    if (onListen) onListen(listener.addr);
    else console.error(`Listening on ${scgiUrl(listener.addr)}`);
    this.#accepting = true;
    this.#acceptLoop(listener).finally(() => {
      // Only now has the pending accept let go of the socket.
      this.#accepting = false;
      this.#maybeFinish();
    });
  }

  async #acceptLoop(listener: Deno.Listener): Promise<void> {
    const connections = this.#connections;
    const maxConnections = this.#settings.maxConnections;
    while (!this.#closing) {
      if (connections.size >= maxConnections) {
        await new Promise<void>((resolve) => (this.#slotFreed = resolve));
        this.#slotFreed = undefined;
        continue;
      }
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) break;
        // Out of file descriptors and the like: breathe, then go on.
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      this.counters.accepted++;
      const connection = new Connection(conn, this);
      connections.add(connection);
      connection.run();
    }
    this.#closeListener();
    this.#maybeFinish();
  }

  #sweep(): void {
    const now = Date.now();
    for (const connection of this.#connections) connection.expire(now);
  }

  #closeListener(): void {
    const listener = this.#listener;
    if (!listener) return;
    this.#listener = undefined;
    try {
      listener.close();
    } catch {
      // Already closed.
    }
    if ("path" in listener.addr) {
      // Deno leaves the socket file behind, and a stale one would make the
      // next start probe it. Only our own file goes: another server may have
      // put its socket in the same place since (a reload renames a fresh
      // socket over the old one).
      const path = listener.addr.path;
      try {
        const inode = Deno.lstatSync(path).ino;
        if (this.#socketInode === undefined || inode === this.#socketInode) {
          Deno.removeSync(path);
        }
      } catch {
        // Already gone.
      }
    }
  }

  #removeSignalHandlers(): void {
    if (this.#signalHandler) {
      Deno.removeSignalListener("SIGTERM", this.#signalHandler);
      Deno.removeSignalListener("SIGINT", this.#signalHandler);
      this.#signalHandler = undefined;
    }
    if (this.#abortListener) {
      this.#settings.signal?.removeEventListener("abort", this.#abortListener);
      this.#abortListener = undefined;
    }
  }

  #maybeFinish(): void {
    if (
      !this.#closing || this.#listener || this.#accepting ||
      this.#connections.size > 0
    ) return;
    clearInterval(this.#sweeper);
    clearTimeout(this.#shutdownTimer);
    this.#finished.resolve();
  }
}

// The open connections, linked through the connections themselves. Not a
// Set: V8 keeps a long-lived Set's table in the old generation, and each
// connection added to it (with all it reaches: its request, its answer)
// then survives the next scavenge and is promoted. Under load that made
// every scavenge copy about a megabyte and take milliseconds.
class ConnectionList {
  #first: Connection | undefined;
  size = 0;

  add(connection: Connection): void {
    const first = this.#first;
    connection.next = first;
    if (first) first.previous = connection;
    this.#first = connection;
    this.size++;
  }

  delete(connection: Connection): void {
    const { previous, next } = connection;
    if (previous) previous.next = next;
    else if (this.#first === connection) this.#first = next;
    else return;
    if (next) next.previous = previous;
    connection.previous = connection.next = undefined;
    this.size--;
  }

  *[Symbol.iterator](): Generator<Connection> {
    for (let connection = this.#first; connection;) {
      // Read ahead: acting on a connection may take it out of the list.
      const next = connection.next;
      yield connection;
      connection = next;
    }
  }
}

/** The `scgi://` or `scgi+unix://` URL of a listening address. */
export function scgiUrl(addr: Deno.Addr): string {
  if ("path" in addr) return `scgi+unix://${encodeURIComponent(addr.path)}/`;
  if (!("hostname" in addr)) return `scgi://localhost/`;
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  return `scgi://${host}:${addr.port}/`;
}
