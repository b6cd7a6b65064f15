/**
 * Bounding a wait by a timer: the one place that races a promise against the clock. The timer is
 * always cleared when the race is over. It keeps the process alive while it runs (the work may
 * hold nothing else that does, as a child process's unreferenced channel), unless `unref`.
 */

/**
 * Settles like `work`, or rejects with `expired()` if `work` has not settled within `ms`
 * (`onExpiry` runs first, to stop what the work was doing). `ms` not above 0 means no bound.
 * A `work` that loses the race and fails later is not reported as unhandled.
 */
export function withTimeout<T>(work: Promise<T>, ms: number, expired: () => Error, onExpiry?: () => void, unref = false): Promise<T> {
  if (!(ms > 0)) return work;
  work.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onExpiry?.();
      reject(expired());
    }, ms);
    if (unref) timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves when `work` settles or `ms` have passed, whichever comes first: true if the work settled in time. */
export function settlesWithin(work: Promise<unknown>, ms: number, unref = false): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = work.then(
    () => true,
    () => true,
  );
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
    if (unref) timer.unref();
  });
  return Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
}
