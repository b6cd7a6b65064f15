/**
 * A meeting point for concurrent test transactions: `wait()` resolves once `parties` callers
 * reached it, and stays open afterwards, so a retried attempt passes straight through.
 */
export interface Barrier {
  wait(): Promise<void>;
  readonly arrived: number;
}

export function barrier(parties: number, timeoutMs = 10_000): Barrier {
  let arrived = 0;
  let open!: () => void;
  let fail!: (error: Error) => void;
  const opened = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  // A barrier nobody completes must fail the test, not hang it.
  const timer = setTimeout(() => fail(new Error(`barrier: ${arrived} of ${parties} arrived within ${timeoutMs} ms`)), timeoutMs);
  opened.catch(() => {});
  return {
    get arrived() {
      return arrived;
    },
    wait() {
      if (++arrived >= parties) {
        clearTimeout(timer);
        open();
      }
      return opened;
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
