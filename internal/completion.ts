// `info.completed` for a connection: the promise is made only when a handler
// reads it, so a connection records its outcome first and the promise, if
// any, is settled from that. Private to the package.

/** How the answer ended: `null` delivered, `{ error }` not, undefined yet. */
export type Outcome = { error: unknown } | null | undefined;

/** What holds a connection's outcome and, once asked for, its promise. */
export interface Completion {
  completion: PromiseWithResolvers<void> | undefined;
  outcome: Outcome;
}

/** The promise `info.completed` answers, made on first use. */
export function completedPromise(holder: Completion): Promise<void> {
  let completion = holder.completion;
  if (completion === undefined) {
    completion = holder.completion = Promise.withResolvers<void>();
    completion.promise.catch(() => {});
    const outcome = holder.outcome;
    if (outcome === null) completion.resolve();
    else if (outcome !== undefined) completion.reject(outcome.error);
  }
  return completion.promise;
}

/**
 * Records the outcome once: `null` for an answer delivered, else the reason
 * it was not; settles the promise if someone made it.
 */
export function settle(holder: Completion, failure: unknown): void {
  if (holder.outcome !== undefined) return;
  const outcome = failure === null ? null : { error: failure };
  holder.outcome = outcome;
  const completion = holder.completion;
  if (completion === undefined) return;
  if (outcome === null) completion.resolve();
  else completion.reject(outcome.error);
}
