/**
 * The handle of one public call: what `Database.cancel(promise)`, an `AbortSignal` and a
 * deadline act on. An interruption rejects the caller at once; if a statement is running,
 * the server's cancel goes out, and a connection that does not stop within the grace period
 * is destroyed. A connection on which a cancel was sent is reused only if that cancel visibly
 * hit this call's statement, so a late cancel can never land on another caller's query.
 */
import type { Connection } from '../drivers/driver.js';
import { QueryCanceled, QueryTimeout, type DatabaseError, type Dialect } from '../core/errors.js';
import { settlesWithin } from '../core/timers.js';

const RESOLVED = Promise.resolve();

interface CallOwner {
  readonly name: string;
  readonly dialect: Dialect;
  readonly interruptGraceMs: number;
}

const NOOP = (): void => {};

/** What `Database.cancel()` acts on: a call, or a `runInteraction`. */
export interface Cancelable {
  /** The promise the caller was given. */
  promise?: Promise<unknown>;
  interrupt(error: DatabaseError): void;
  cancelSent?: Promise<void>;
  /** Links of the pending list. */
  prevPending?: Cancelable;
  nextPending?: Cancelable;
  linked?: boolean;
}

/**
 * The calls that have not settled, linked through themselves: adding and removing one is a few
 * pointer writes, where a WeakMap from promise to call measured about 0.7 µs per call (its
 * entries are ephemerons for the garbage collector), a Map about as much (identity hashes), and a
 * property on the promise took V8's fast path for `await` away from every caller. Only
 * `cancel(promise)` walks it, through the calls in flight.
 */
export class PendingCalls {
  private head?: Cancelable;

  add(node: Cancelable): void {
    node.linked = true;
    node.prevPending = undefined;
    node.nextPending = this.head;
    if (this.head) this.head.prevPending = node;
    this.head = node;
  }

  remove(node: Cancelable): void {
    if (!node.linked) return;
    node.linked = false;
    if (node.prevPending) node.prevPending.nextPending = node.nextPending;
    else this.head = node.nextPending;
    if (node.nextPending) node.nextPending.prevPending = node.prevPending;
    node.prevPending = node.nextPending = undefined;
  }

  find(promise: unknown): Cancelable | undefined {
    for (let node = this.head; node; node = node.nextPending) if (node.promise === promise) return node;
    return undefined;
  }
}

export class CallHandle implements Cancelable {
  reject: (error: unknown) => void = NOOP;
  promise?: Promise<unknown>;
  prevPending?: Cancelable;
  nextPending?: Cancelable;
  linked?: boolean;
  /** The connection while a statement of this call runs on it. */
  connection?: Connection;
  interruption?: DatabaseError;
  /** What the call waited for before its statement, when spans or metrics want it (ms); its try (spans). */
  poolWaitMs?: number;
  recoveryWaitMs?: number;
  attempt?: number;
  /** Settles once the server's cancel request was delivered (or failed). */
  cancelSent: Promise<void> = RESOLVED;
  private cancelWentOut = false;
  /** The statement ended with the server's cancel error: the cancel was used up. */
  cancelConsumed = false;
  private settled = false;
  private timer?: NodeJS.Timeout;
  private deadlineAt?: number;
  private timeoutMs?: number;
  private signal?: AbortSignal;
  private onAbort?: () => void;

  constructor(private readonly owner: CallOwner) {}

  /** The call's body finished (not merely interrupted). */
  get finished(): boolean {
    return this.settled;
  }

  get isSettled(): boolean {
    return this.settled || this.interruption !== undefined;
  }

  /** True when the connection must not be reused: a cancel went out that may not have landed yet. */
  get poisoned(): boolean {
    return this.cancelWentOut && !this.cancelConsumed;
  }

  /** Milliseconds left before the deadline, at most `fallback` (and at least 1); `fallback` when the call has no deadline. */
  remainingMs(fallback: number): number {
    if (this.deadlineAt === undefined) return fallback;
    return Math.max(1, Math.min(fallback, this.deadlineAt - Date.now()));
  }

  deadline(ms: number): void {
    this.deadlineAt = Date.now() + ms;
    this.timeoutMs = ms;
    this.timer = setTimeout(() => this.expire(), ms);
  }

  /** Interrupts the call with its `QueryTimeout` now: its deadline is reached (a wait bounded by `remainingMs` ended first). */
  expire(): void {
    if (this.timer) clearTimeout(this.timer);
    const ms = this.timeoutMs ?? 0;
    this.interrupt(
      new QueryTimeout(`query on database "${this.owner.name}" exceeded its timeout of ${ms} ms (QueryOptions.timeoutMs / queryTimeoutMs)`, {
        timeoutMs: ms,
        database: this.owner.name,
        dialect: this.owner.dialect,
      }),
    );
  }

  watch(signal: AbortSignal): void {
    this.signal = signal;
    this.onAbort = () => this.interrupt(new QueryCanceled('query canceled by its AbortSignal', { database: this.owner.name, dialect: this.owner.dialect }));
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  interrupt(error: DatabaseError): void {
    if (this.isSettled) return;
    this.interruption = error;
    this.reject(error);
    const connection = this.connection;
    if (!connection) return;
    this.cancelWentOut = true;
    // A cancel that is not delivered within the grace period is given up on (the connection is
    // destroyed below), so the lease waiting for it is always released.
    this.cancelSent = settlesWithin(connection.cancel(), this.owner.interruptGraceMs, true).then(() => {});
    const grace = setTimeout(() => {
      if (this.connection === connection) connection.destroy();
    }, this.owner.interruptGraceMs);
    grace.unref();
  }

  throwIfInterrupted(): void {
    if (this.interruption) throw this.interruption;
  }

  /** Notes how the statement ended, to know whether a cancel that went out was used up. */
  statementFailed(error: unknown): void {
    // Only the cancel's own error proves it was used up: a server-side statement timeout can end
    // the statement first, and our cancel request may then still be on its way.
    if (this.cancelWentOut && error instanceof QueryCanceled) this.cancelConsumed = true;
  }

  settle(): void {
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.signal && this.onAbort) this.signal.removeEventListener('abort', this.onAbort);
  }
}
