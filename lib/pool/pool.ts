/**
 * The connection pool of one `Database`.
 *
 * Why not tarn (knex's pool engine): tarn has no maximum lifetime, no
 * leak detection, no "hand out only clean" reset on release and no validation of connections
 * that sat idle; each would be a wrapper around tarn's own bookkeeping (two sets of counters
 * to keep in step), and its acquire path allocates a pending-operation object, a timeout and
 * two promises per call. This pool is one scheduler in the shape of pg-pool's `_pulseQueue`:
 * idle connections go to waiters in arrival order, a new connection is opened only when
 * nobody returns one, and every hand-off happens in `pulse()`.
 *
 * Invariants: a pooled connection is in exactly one queue, and the queue is its state: `idle`,
 * `busy` (lent), `validating` (pinged before it is lent), `resetting` (cleaned after a release);
 * `move()` is the only way from one to another. Connections being opened have no entry yet
 * (`opening` counts them). `idle + busy + validating + resetting + opening <= max`.
 * Reset and validation are the owner's policy, given as hooks; this file only schedules:
 *
 *   idle ──lend──▶ busy ──release──▶ idle
 *     │              │  └─(inside a transaction, or dirty)──▶ resetting ──reset ok──▶ idle
 *     │              └─(broken, discarded, expired)──▶ closed
 *     └─(idle too long)──▶ validating ──ping ok──▶ busy;  any failure or timeout ──▶ closed
 *
 * A connection is released exactly once; a second release throws. A connection released
 * broken, after a client-side timeout (`discard`), inside a transaction that cannot be rolled
 * back in time, or past its lifetime is destroyed, never handed out again. Errors a connection
 * reports after it was closed are ignored: they are the echo of our own destroy.
 */
import { AcquireTimeout, DatabaseClosed, DatabaseError, ErrorCode } from '../core/errors.js';
import type { Connection } from '../drivers/driver.js';
import type { PoolStats } from '../core/types.js';

export type { PoolStats };
import { inBackground } from '../core/background.js';
import { settlesWithin, withTimeout } from '../core/timers.js';

export interface PoolOptions {
  /** Connections kept open even when idle. Default: 0. */
  min: number;
  /** Most connections open at once. Default: 10. */
  max: number;
  /** An idle connection above `min` closes after this. Default: 30 000. 0: never. */
  idleTimeoutMs: number;
  /** Wait at most this for a free connection, then `AcquireTimeout`. Default: 10 000. */
  acquireTimeoutMs: number;
  /** A connection is closed once this old, when next released or idle. Default: 1 800 000 (30 min). 0: no limit. */
  maxLifetimeMs: number;
  /** Warn once, with the stack that took it, about a connection held longer than this. Default: 0 (off). */
  leakDetectionMs: number;
  /** A connection idle for longer than this is pinged before it is handed out. Default: 30 000. */
  validateAfterIdleMs: number;
}

export interface PoolHooks {
  create(): Promise<Connection>;
  /** A connection could not be opened (the waiter that asked also gets the error). */
  onCreateError?(error: DatabaseError): void;
  /** A pooled connection reported an error while idle or busy. */
  onConnectionError?(error: DatabaseError): void;
  onOpen?(connection: Connection): void;
  /** A new connection opened, in `ms` (metrics). */
  onCreated?(ms: number): void;
  onClose?(connection: Connection): void;
  onLeak?(message: string, stack: string): void;
  /** Proves a connection that sat idle still works (a ping) before it is handed out; rejects if not. */
  validate(connection: Connection): Promise<void>;
  /**
   * Makes a released connection clean before anyone else gets it: called when it comes back
   * inside a transaction, or marked `dirty` (session state may have been set on it). Rejects if
   * it cannot: the connection is then destroyed.
   */
  reset(connection: Connection, dirty: boolean): Promise<void>;
  /** The name used in messages: `default`, `analytics`... */
  name: string;
}

/** A connection on loan from the pool. Give it back with `pool.release(lease)` exactly once. */
export interface Lease {
  readonly connection: Connection;
  /** The pool it came from, and goes back to (`lease.pool.release(lease)`). */
  readonly pool: Pool;
  /** Set by the owner when the connection must not be reused (timeout, protocol error). */
  discard?: boolean;
  /** Set by the owner when session state may have been set on it (settings, a native borrow): it is reset before reuse. */
  dirty?: boolean;
}

/** `new`: opened, not yet in a queue (it goes to a waiter or to `idle` at once). */
type EntryState = 'new' | 'idle' | 'busy' | 'validating' | 'resetting' | 'closed';

interface Entry extends Lease {
  /** Which queue it is in: changed by `move()` only. */
  readonly state: EntryState;
  createdAt: number;
  idleSince: number;
  released: boolean;
  leakTimer?: NodeJS.Timeout;
}

interface Waiter {
  resolve(entry: Entry): void;
  reject(error: unknown): void;
  /** `performance.now()` (monotonic: a clock step moves no deadline) after which it gets its `AcquireTimeout` (Infinity: none), and the wait it asked for. */
  deadline: number;
  timeoutMs: number;
  /** Where the caller asked for the connection, kept for the leak warning (only with `leakDetectionMs`). */
  takenAt?: Error;
}

const NO_TIMEOUT = 0;
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * Bound of the pool's own round trips: the ROLLBACK of a connection released inside a
 * transaction and the validation ping of one idle too long. A connection that does not answer
 * in time (a silent server, a stopped backend) is destroyed rather than waited on forever.
 */
const HOUSEKEEPING_TIMEOUT_MS = 5000;

export class Pool {
  private readonly idle: Entry[] = [];
  private readonly busy = new Set<Entry>();
  private readonly validating = new Set<Entry>();
  private readonly resetting = new Set<Entry>();
  private readonly waiters: Waiter[] = [];
  /** One timer for every waiter's deadline, armed for the earliest (a timer per waiting call cost more than the wait's bookkeeping). */
  private waitTimer?: NodeJS.Timeout;
  private waitTimerAt = Infinity;
  /** Connections being opened: no entry yet. */
  private opening = 0;
  private closed = false;
  private reaper?: NodeJS.Timeout;
  private drainWaiters: Array<() => void> = [];

  constructor(
    readonly options: PoolOptions,
    private readonly hooks: PoolHooks,
  ) {}

  /** The name used in messages and metrics: `default`, `default (replica host:port)`. */
  get name(): string {
    return this.hooks.name;
  }

  stats(): PoolStats {
    return {
      total: this.total(),
      idle: this.idle.length,
      busy: this.busy.size + this.validating.size + this.resetting.size,
      waiting: this.waiters.length,
      max: this.options.max,
    };
  }

  /** Every connection open or being opened. */
  private total(): number {
    return this.idle.length + this.busy.size + this.validating.size + this.resetting.size + this.opening;
  }

  /** True when a caller asking now would have to wait: no idle connection, and no room to open one. */
  isExhausted(): boolean {
    return this.idle.length === 0 && this.total() >= this.options.max;
  }

  /** Rejects every caller waiting for a connection with `error` (the database was marked dead: fail fast). */
  failWaiters(error: unknown): void {
    this.disarmWaitTimer();
    for (const waiter of this.waiters.splice(0)) waiter.reject(error);
  }

  /** Closes every idle connection (they reach a server that is no longer the one wanted: a failover). */
  discardIdle(): void {
    for (const entry of [...this.idle]) void this.closeEntry(entry);
  }

  /** Opens connections until `min` are open. Errors go to `onCreateError`. */
  fill(): void {
    while (!this.closed && this.total() < this.options.min) {
      this.open().then(
        (entry) => this.makeIdle(entry),
        () => {},
      );
    }
  }

  /** Opens one connection and checks it answers; for `verifyOnStartup`. */
  async verify(): Promise<void> {
    const lease = await this.acquire();
    try {
      await lease.connection.ping();
    } finally {
      this.release(lease);
    }
  }

  /** Takes in a connection opened elsewhere (the detector's reconnect); closes it if the pool is full or closed. */
  adopt(connection: Connection): void {
    if (this.closed || this.total() >= this.options.max) {
      void connection.close().catch(() => connection.destroy());
      return;
    }
    this.makeIdle(this.register(connection));
    this.pulse();
  }

  /**
   * A warm idle connection now, without a promise, when one can be lent at once: nobody ahead in
   * line, not closed, not due for validation, no leak detection (whose stack is taken by
   * `acquire`). Undefined otherwise: then `acquire`.
   */
  takeIdle(): Lease | undefined {
    if (this.closed || this.waiters.length > 0 || this.options.leakDetectionMs > 0) return undefined;
    const entry = this.idle[this.idle.length - 1];
    if (entry === undefined || entry.connection.broken || Date.now() - entry.idleSince > this.options.validateAfterIdleMs) return undefined;
    return this.lend(entry);
  }

  acquire(timeoutMs: number = this.options.acquireTimeoutMs, takenAt?: Error): Promise<Lease> {
    if (this.closed) return Promise.reject(this.closedError());
    // Captured here, synchronously in the caller's stack: a connection handed over later, from
    // a `.then`, would otherwise carry a stack that names only the pool.
    if (this.options.leakDetectionMs > 0) takenAt ??= new Error('connection taken here');
    // Fast path: a warm idle connection and nobody ahead in line.
    while (this.waiters.length === 0 && this.idle.length > 0) {
      const entry = this.idle[this.idle.length - 1];
      if (entry.connection.broken) {
        this.destroy(entry);
        continue;
      }
      if (Date.now() - entry.idleSince > this.options.validateAfterIdleMs) return this.validateThenLend(entry, timeoutMs, takenAt);
      return Promise.resolve(this.lend(entry, takenAt));
    }
    return new Promise<Lease>((resolve, reject) => {
      const deadline = timeoutMs > NO_TIMEOUT ? performance.now() + timeoutMs : Infinity;
      this.waiters.push({ resolve, reject, takenAt, deadline, timeoutMs });
      if (deadline < this.waitTimerAt) this.armWaitTimer(deadline);
      this.pulse();
    });
  }

  private armWaitTimer(at: number): void {
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimerAt = at;
    // Unreferenced: a waiter belongs to a call, which keeps the process alive on its own.
    // At most setTimeout's limit (about 24.8 days): a longer delay would fire at once, again and again.
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - performance.now()));
    this.waitTimer = inBackground(() => setTimeout(() => this.expireWaiters(), delay));
    this.waitTimer.unref();
  }

  private disarmWaitTimer(): void {
    if (this.waitTimer) clearTimeout(this.waitTimer);
    this.waitTimer = undefined;
    this.waitTimerAt = Infinity;
  }

  /** Gives the waiters whose deadline passed their `AcquireTimeout`, and arms the timer for the next deadline. */
  private expireWaiters(): void {
    this.waitTimer = undefined;
    this.waitTimerAt = Infinity;
    const now = performance.now();
    let next = Infinity;
    const expired: Waiter[] = [];
    for (let i = 0; i < this.waiters.length; i++) {
      const waiter = this.waiters[i];
      // 1 ms of slack: a timer may fire within the millisecond of its deadline.
      if (waiter.deadline <= now + 1) {
        expired.push(waiter);
        this.waiters.splice(i--, 1);
      } else if (waiter.deadline < next) next = waiter.deadline;
    }
    if (next < Infinity) this.armWaitTimer(next);
    for (const waiter of expired) {
      const s = this.stats();
      waiter.reject(
        new AcquireTimeout(
          `no connection of database "${this.hooks.name}" became free within ${waiter.timeoutMs} ms ` +
            `(pool.max = ${s.max}, ${s.busy} busy, ${s.waiting} waiting); raise pool.max or pool.acquireTimeoutMs, ` +
            `or look for connections that are never released`,
          { database: this.hooks.name },
        ),
      );
    }
  }

  /** Gives a connection back. A second release of the same lease throws. */
  release(lease: Lease): void {
    const entry = lease as Entry;
    if (entry.released) throw new DatabaseError('connection released twice', { code: ErrorCode.DoubleRelease });
    entry.released = true;
    if (entry.leakTimer) clearTimeout(entry.leakTimer);
    entry.leakTimer = undefined;
    const c = entry.connection;
    if (entry.state === 'closed') {
      // Destroyed while on loan (pool shutdown, a housekeeping timeout): nothing to give back.
      this.pulse();
      return;
    }
    if (entry.discard || c.broken || this.closed || this.expired(entry)) {
      this.destroy(entry);
      this.pulse();
      return;
    }
    if (entry.state !== 'busy') throw new DatabaseError(`a lease released while ${entry.state}`, { code: ErrorCode.DoubleRelease });
    const inTransaction = c.transactionStatus === 'transaction' || c.transactionStatus === 'failed';
    if (inTransaction || entry.dirty) {
      // Handed back inside a transaction, or with session state on it: cleaned before anyone else gets it, or dropped.
      this.move(entry, 'resetting');
      this.bounded(entry, this.hooks.reset(c, entry.dirty === true)).then(
        () => {
          if (!c.broken && (c.transactionStatus === 'idle' || c.transactionStatus === 'unknown')) this.makeIdle(entry);
          else this.destroy(entry);
          this.pulse();
        },
        () => {
          this.destroy(entry);
          this.pulse();
        },
      );
      return;
    }
    this.makeIdle(entry);
  }

  /**
   * Stops handing out connections: waiters get `DatabaseClosed`, idle connections close,
   * and the returned promise settles once every busy connection came back or `timeoutMs`
   * passed, after which the rest are destroyed.
   */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    if (this.reaper) clearInterval(this.reaper);
    this.reaper = undefined;
    this.disarmWaitTimer();
    for (const waiter of this.waiters.splice(0)) waiter.reject(this.closedError());
    await Promise.all([...this.idle].map((entry) => this.closeEntry(entry)));
    if (this.total() > 0) {
      await settlesWithin(new Promise<void>((resolve) => this.drainWaiters.push(resolve)), timeoutMs);
      for (const entry of [...this.busy, ...this.validating, ...this.resetting]) this.destroy(entry);
    }
  }

  private closedError(): DatabaseClosed {
    return new DatabaseClosed(`database "${this.hooks.name}" is closed (the application is shutting down)`, {
      database: this.hooks.name,
    });
  }

  private lend(entry: Entry, takenAt?: Error): Entry {
    entry.released = false;
    entry.discard = false;
    entry.dirty = false;
    this.move(entry, 'busy');
    const leakMs = this.options.leakDetectionMs;
    if (leakMs > 0) {
      const taken = takenAt ?? new Error('connection taken here');
      entry.leakTimer = inBackground(() =>
        setTimeout(() => {
          entry.leakTimer = undefined;
          const stack = taken.stack ?? '';
          this.hooks.onLeak?.(
            `a connection of database "${this.hooks.name}" has been held for more than ${leakMs} ms (pool.leakDetectionMs) and not released`,
            stack,
          );
        }, leakMs),
      );
      entry.leakTimer.unref();
    }
    return entry;
  }

  /** A connection idle for longer than `validateAfterIdleMs` answers a ping before it is lent; a dead one is replaced. */
  private async validateThenLend(entry: Entry, timeoutMs: number, takenAt?: Error): Promise<Lease> {
    const started = Date.now();
    this.move(entry, 'validating');
    try {
      await this.bounded(entry, this.hooks.validate(entry.connection));
    } catch {
      this.destroy(entry);
      return this.acquire(Math.max(1, timeoutMs - (Date.now() - started)), takenAt);
    }
    if (this.closed || entry.connection.broken || entry.state !== 'validating') {
      this.destroy(entry);
      return this.acquire(Math.max(1, timeoutMs - (Date.now() - started)), takenAt);
    }
    return this.lend(entry, takenAt);
  }

  /** Settles like `work`, or rejects and destroys the connection if it does not answer within the housekeeping bound. */
  private bounded<T>(entry: Entry, work: Promise<T>): Promise<T> {
    return withTimeout(
      work,
      HOUSEKEEPING_TIMEOUT_MS,
      () => new DatabaseError(`connection did not answer within ${HOUSEKEEPING_TIMEOUT_MS} ms`, { code: ErrorCode.ConnectionLost }),
      () => entry.connection.destroy(),
      true,
    );
  }

  /** The one transition: out of the queue of its state, into the queue of `to`. */
  private move(entry: Entry, to: EntryState): void {
    switch (entry.state) {
      case 'idle': {
        // Usually the last: the stack is taken from its top.
        const i = this.idle.lastIndexOf(entry);
        if (i >= 0) this.idle.splice(i, 1);
        break;
      }
      case 'busy':
        this.busy.delete(entry);
        break;
      case 'validating':
        this.validating.delete(entry);
        break;
      case 'resetting':
        this.resetting.delete(entry);
        break;
      case 'new':
      case 'closed':
        break;
    }
    (entry as { state: EntryState }).state = to;
    switch (to) {
      case 'idle':
        this.idle.push(entry);
        break;
      case 'busy':
        this.busy.add(entry);
        break;
      case 'validating':
        this.validating.add(entry);
        break;
      case 'resetting':
        this.resetting.add(entry);
        break;
      case 'new':
      case 'closed':
        break;
    }
  }

  private makeIdle(entry: Entry): void {
    if (this.closed) {
      void this.closeEntry(entry);
      this.notifyDrained();
      return;
    }
    entry.idleSince = Date.now();
    const waiter = this.waiters.shift();
    if (waiter) {
      if (this.waiters.length === 0) this.disarmWaitTimer();
      waiter.resolve(this.lend(entry, waiter.takenAt));
      return;
    }
    this.move(entry, 'idle');
    this.startReaper();
    this.notifyDrained();
  }

  /** Hands out what can be handed out and opens connections for waiters nobody else will serve. */
  private pulse(): void {
    if (this.closed) {
      this.notifyDrained();
      return;
    }
    while (this.waiters.length > 0 && this.idle.length > 0) {
      const entry = this.idle[this.idle.length - 1];
      if (entry.connection.broken) {
        this.destroy(entry);
        continue;
      }
      const waiter = this.waiters.shift()!;
      if (this.waiters.length === 0) this.disarmWaitTimer();
      waiter.resolve(this.lend(entry, waiter.takenAt));
    }
    const wanted = Math.min(this.waiters.length - this.opening, this.options.max - this.total());
    for (let i = 0; i < wanted; i++) {
      this.open().then(
        (entry) => this.makeIdle(entry),
        (error) => {
          // The waiter at the head gets the reason its connection could not be opened. Waiters beyond `max` get their own
          // attempt now, one each (not a storm: every failure takes one waiter away), instead of idling to AcquireTimeout.
          const waiter = this.waiters.shift();
          waiter?.reject(error);
          this.notifyDrained();
          this.pulse();
        },
      );
    }
  }

  private async open(): Promise<Entry> {
    this.opening++;
    try {
      // Its socket belongs to the pool, not to the call that happened to need it: its events never run in that call's transaction.
      const started = this.hooks.onCreated ? performance.now() : 0;
      const connection = await inBackground(() => this.hooks.create());
      if (this.hooks.onCreated) this.hooks.onCreated(performance.now() - started);
      return this.register(connection);
    } catch (error) {
      const translated = error instanceof DatabaseError ? error : new DatabaseError(String(error), { cause: error });
      this.hooks.onCreateError?.(translated);
      throw translated;
    } finally {
      this.opening--;
    }
  }

  private register(connection: Connection): Entry {
    const now = Date.now();
    const entry: Entry = { connection, pool: this, state: 'new', createdAt: now, idleSince: now, released: true };
    connection.onError((error) => {
      if (entry.state === 'closed') return; // the echo of our own destroy
      this.hooks.onConnectionError?.(error);
      this.evictIdle(entry);
    });
    connection.onEnd(() => this.evictIdle(entry));
    this.hooks.onOpen?.(connection);
    return entry;
  }

  /** A connection that broke while idle leaves the pool at once (a busy one leaves on release). */
  private evictIdle(entry: Entry): void {
    if (entry.state === 'idle') {
      this.destroy(entry);
      this.fill();
    }
  }

  private expired(entry: Entry): boolean {
    return this.options.maxLifetimeMs > 0 && Date.now() - entry.createdAt > this.options.maxLifetimeMs;
  }

  private destroy(entry: Entry): void {
    if (entry.leakTimer) clearTimeout(entry.leakTimer);
    entry.leakTimer = undefined;
    if (entry.state === 'closed') return;
    this.move(entry, 'closed');
    entry.connection.destroy();
    this.hooks.onClose?.(entry.connection);
    this.notifyDrained();
    if (!this.closed) queueMicrotask(() => this.fill());
  }

  private async closeEntry(entry: Entry): Promise<void> {
    if (entry.leakTimer) clearTimeout(entry.leakTimer);
    if (entry.state === 'closed') return;
    this.move(entry, 'closed');
    await entry.connection.close().catch(() => entry.connection.destroy());
    this.hooks.onClose?.(entry.connection);
  }

  private notifyDrained(): void {
    if (this.total() === this.idle.length && this.drainWaiters.length > 0) {
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
  }

  /** Closes idle connections above `min` after `idleTimeoutMs`, and idle ones past their lifetime. */
  private startReaper(): void {
    if (this.reaper || (this.options.idleTimeoutMs <= 0 && this.options.maxLifetimeMs <= 0)) return;
    const every = Math.max(100, Math.min(this.options.idleTimeoutMs || Infinity, this.options.maxLifetimeMs || Infinity, 1000));
    this.reaper = inBackground(() => setInterval(() => this.reap(), every));
    this.reaper.unref();
  }

  private reap(): void {
    const now = Date.now();
    const idleMs = this.options.idleTimeoutMs;
    for (let i = 0; i < this.idle.length;) {
      const entry = this.idle[i];
      const stale = idleMs > 0 && now - entry.idleSince >= idleMs && this.total() > this.options.min;
      if (stale || this.expired(entry))
        void this.closeEntry(entry); // out of `idle` at once
      else i++;
    }
    if (this.idle.length === 0 && this.reaper) {
      clearInterval(this.reaper);
      this.reaper = undefined;
    }
    this.fill();
  }
}
