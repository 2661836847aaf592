// The gateway's backends: how many calls each has in flight, which are
// marked down and until when, the round-robin order a request tries them in,
// and the queue of requests waiting for a free one. Private to the package.

import type { ScgiBackend, ScgiClient } from "../client.ts";

/** One backend of the gateway and its state. */
export interface BackendSlot {
  client: ScgiClient;
  name: string;
  active: number;
  downUntil: number;
}

interface Waiter {
  resolve: () => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

export class BackendPool {
  #waiters: Waiter[] = [];
  #next = 0;

  constructor(readonly slots: BackendSlot[]) {}

  /** Frees one call of `slot` and wakes the longest-waiting request. */
  release(slot: BackendSlot): void {
    slot.active--;
    const waiter = this.#waiters.shift();
    if (waiter) {
      clearTimeout(waiter.timer);
      waiter.resolve();
    }
  }

  // Backends in round-robin order from the next one: those up first, then
  // those marked down (tried only when no other one takes the request).
  order(): BackendSlot[] {
    const slots = this.slots;
    const start = this.#next;
    this.#next = (start + 1) % slots.length;
    const now = Date.now();
    const up: BackendSlot[] = [];
    const down: BackendSlot[] = [];
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[(start + i) % slots.length]!;
      (slot.downUntil > now ? down : up).push(slot);
    }
    return [...up, ...down];
  }

  /** True once a call was released within `timeout`; false on timeout or abort. */
  waitForSlot(timeout: number, signal: AbortSignal): Promise<boolean> {
    if (timeout <= 0 || signal.aborted) return Promise.resolve(false);
    const waiters = this.#waiters;
    return new Promise((resolve) => {
      const waiter: Waiter = {
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(true);
        },
        timer: undefined,
      };
      const give = () => {
        const at = waiters.indexOf(waiter);
        if (at >= 0) waiters.splice(at, 1);
        signal.removeEventListener("abort", onAbort);
        clearTimeout(waiter.timer);
        resolve(false);
      };
      const onAbort = () => give();
      waiter.timer = setTimeout(give, timeout);
      signal.addEventListener("abort", onAbort, { once: true });
      waiters.push(waiter);
    });
  }
}

/** A backend as the gateway names it in messages: `host:port` or `unix:path`. */
export function describeBackend(backend: ScgiBackend): string {
  if ("path" in backend) return `unix:${backend.path}`;
  const host = backend.hostname ?? "127.0.0.1";
  return `${host.includes(":") ? `[${host}]` : host}:${backend.port}`;
}
