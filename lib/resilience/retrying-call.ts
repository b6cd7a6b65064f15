/**
 * Calls a function until it succeeds, waiting between attempts as a backoff iterator says,
 * after txpostgres's `RetryingCall`.
 *
 * `failureTester(error)` decides per failure: throw (or return `false`) to give up with that
 * error, return anything else to retry. By default every failure is retried until the
 * backoff iterator ends, and then the last error is thrown.
 *
 * @example
 * const call = new RetryingCall(fetchRate, 'EUR');
 * const rate = await call.start(backoff({ maxRetries: 5 }), (e) => isTransient(e));
 */
import { DatabaseError, ErrorCode } from '../core/errors.js';
import { backoff } from './backoff.js';
import { systemClock, sleep, type Clock } from './clock.js';

export type FailureTester = (error: unknown) => unknown;

export class RetryingCall<A extends unknown[], R> {
  private iterator?: Iterator<number>;
  private abort = new AbortController();
  /** Failed attempts so far. */
  attempts = 0;
  clock: Clock = systemClock;

  private readonly args: A;

  constructor(
    private readonly fn: (...args: A) => R | Promise<R>,
    ...args: A
  ) {
    this.args = args;
  }

  async start(backoffIterator: Iterable<number> = backoff(), failureTester?: FailureTester): Promise<R> {
    this.iterator = backoffIterator[Symbol.iterator]();
    for (;;) {
      try {
        return await this.fn(...this.args);
      } catch (error) {
        this.attempts++;
        if (failureTester && failureTester(error) === false) throw error;
        const next = this.iterator.next();
        if (next.done) throw error;
        await sleep(this.clock, next.value, this.abort.signal);
      }
    }
  }

  /** Starts the delays over (after a success elsewhere tells you the service is back). */
  resetBackoff(backoffIterator: Iterable<number> = backoff()): void {
    this.iterator = backoffIterator[Symbol.iterator]();
  }

  /** Stops waiting; the pending `start()` rejects. */
  cancel(): void {
    this.abort.abort(new DatabaseError('the retrying call was canceled', { code: ErrorCode.DatabaseClosed }));
  }
}
