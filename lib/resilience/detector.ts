/**
 * The dead-connection detector of one database, after txpostgres's `DeadConnectionDetector`.
 *
 * States: `alive` → (a death error) → `dead` → (background loop reconnects with backoff) →
 * `alive` again once the reconnect succeeded and every recovery handler ran. While dead,
 * `assertAlive()` throws `ConnectionDead` at once, so calls fail fast instead of queueing
 * behind a server that is gone. `closed` is final (application shutdown).
 *
 * Two ways in: `checkForDeadConnection(error)` marks the database dead on the spot (a
 * connection could not be opened: that is the server's answer). `suspectDeadConnection(error)`
 * is for one pooled connection that died (a killed session, a server-side idle timeout, a
 * packet-size error that closed it): one session gone does not mean the server is, so a single
 * reconnect attempt checks first, and only if that fails is the database marked dead. Calls go
 * on meanwhile; one check runs at a time however many connections die together.
 *
 * Pure logic: it knows no driver. The `Database` gives it a `reconnect` function (open one
 * connection and ping it) and feeds it errors.
 *
 * @example
 * db.detector.onRecovery(() => logger.log('database is back'));
 * if (db.detector.isDead) return 'degraded';
 */
import { inBackground } from '../core/background.js';
import { ConnectionDead } from '../core/errors.js';
import { backoff, type BackoffOptions } from './backoff.js';
import { sleep, systemClock, type Clock } from './clock.js';
import { socketDeathChecker, type DeathChecker } from './death-checker.js';

export type DetectorState = 'alive' | 'dead' | 'closed';

export type RecoveryHandler = () => unknown;

export interface DetectorOptions {
  /** Which errors mean the connection is gone. Default: the socket errors every dialect shares (a `Database` gives its detector its dialect's too). */
  deathChecker?: DeathChecker;
  /** The reconnection delays. */
  reconnect?: BackoffOptions;
  /** Opens a connection and proves it works; throws if it cannot. */
  reconnector?: () => Promise<void>;
  /** Called when the database is marked dead. */
  onDeath?: (error: unknown) => void;
  /** Called after a successful reconnect, once the recovery handlers ran. */
  onRecovered?: (downtimeMs: number) => void;
  /** A recovery handler threw; it is reported here and the others still run. */
  onHandlerError?: (error: unknown) => void;
  /** The named database, for messages. */
  name?: string;
  clock?: Clock;
}

export class DeadConnectionDetector {
  private stateValue: DetectorState = 'alive';
  private handlers: RecoveryHandler[] = [];
  private deadSinceValue?: Date;
  private lastErrorValue?: unknown;
  private nextAttemptValue?: Date;
  private attemptsValue = 0;
  /** Every reconnection attempt since the detector was made (metrics). */
  totalAttempts = 0;
  /** Time spent dead in the outages that ended (metrics; the current one is `now - deadSince`). */
  totalDowntimeMs = 0;
  private loop?: Promise<void>;
  /** True while a reconnect loop runs. */
  private reconnecting = false;
  private verifying?: Promise<void>;
  private waiters: Array<() => void> = [];
  private readonly clock: Clock;
  private readonly deathChecker: DeathChecker;
  private abort?: AbortController;

  constructor(private readonly options: DetectorOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.deathChecker = options.deathChecker ?? socketDeathChecker;
  }

  get state(): DetectorState {
    return this.stateValue;
  }

  get isDead(): boolean {
    return this.stateValue === 'dead';
  }

  /** When the database was marked dead (undefined while alive). */
  get deadSince(): Date | undefined {
    return this.deadSinceValue;
  }

  /** The error that marked it dead, or the last failed reconnect's. */
  get lastError(): unknown {
    return this.lastErrorValue;
  }

  /** When the next reconnection attempt is due (undefined while alive). */
  get nextAttemptAt(): Date | undefined {
    return this.nextAttemptValue;
  }

  /** Reconnection attempts since the database was marked dead. */
  get attempts(): number {
    return this.attemptsValue;
  }

  /** True if the checker says this error means the connection is gone. */
  isDeathError(error: unknown): boolean {
    return this.deathChecker(error);
  }

  /**
   * Feeds an error to the detector: if it means the connection is gone, the database is
   * marked dead and the reconnect loop starts. Returns whether it was a death error.
   */
  checkForDeadConnection(error: unknown): boolean {
    if (this.stateValue === 'closed' || !this.deathChecker(error)) return false;
    this.lastErrorValue = error;
    if (this.stateValue === 'alive') {
      this.stateValue = 'dead';
      this.deadSinceValue = new Date(this.clock.now());
      this.attemptsValue = 0;
      this.options.onDeath?.(error);
      // The loop, and the recovery handlers it runs, belong to nobody: never to the transaction of the call that found the death.
      this.loop = inBackground(() => this.reconnectLoop());
    } else if (this.stateValue === 'dead' && !this.reconnecting) {
      // reconnect.maxRetries ran out earlier: a new death error starts a new round of attempts.
      this.attemptsValue = 0;
      this.loop = inBackground(() => this.reconnectLoop());
    }
    return true;
  }

  /**
   * One connection died with `error`: if it is a death error, checks the server with a single
   * reconnect attempt (in the background) and marks the database dead only if that fails too.
   * Without a reconnector it is `checkForDeadConnection`. Returns whether it was a death error.
   */
  suspectDeadConnection(error: unknown): boolean {
    if (this.stateValue === 'closed' || !this.deathChecker(error)) return false;
    const reconnector = this.options.reconnector;
    if (this.stateValue === 'dead' || !reconnector) return this.checkForDeadConnection(error);
    this.verifying ??= inBackground(reconnector).then(
      () => {
        this.verifying = undefined;
      },
      (reconnectError: unknown) => {
        this.verifying = undefined;
        // A reconnect refused for another reason (a rotated password) is not an outage: calls will say why.
        if (this.stateValue === 'alive' && this.deathChecker(reconnectError)) this.checkForDeadConnection(reconnectError);
      },
    );
    return true;
  }

  /** Throws `ConnectionDead` while the database is dead. */
  assertAlive(): void {
    if (this.stateValue === 'dead') throw this.deadError();
  }

  deadError(): ConnectionDead {
    const last = this.lastErrorValue as { message?: string } | undefined;
    const next = this.nextAttemptValue;
    const name = this.options.name ?? 'default';
    return new ConnectionDead(
      `database "${name}" is unreachable since ${this.deadSinceValue?.toISOString()} ` +
        `(${last?.message ?? 'connection lost'}); next reconnection attempt ${next ? 'at ' + next.toISOString() : 'now'}`,
      { cause: this.lastErrorValue, nextAttemptAt: next, database: name },
    );
  }

  /** Resolves when the database is alive again (at once if it is), or after `timeoutMs` with false. */
  waitForRecovery(timeoutMs: number): Promise<boolean> {
    if (this.stateValue !== 'dead') return Promise.resolve(this.stateValue === 'alive');
    return new Promise((resolve) => {
      const waiter = () => {
        this.clock.clearTimeout(timer);
        resolve(this.stateValue === 'alive');
      };
      const timer = this.clock.setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Registers a handler run after each recovery; returns an unsubscribe. */
  onRecovery(handler: RecoveryHandler): () => void {
    this.handlers.push(handler);
    return () => {
      this.handlers = this.handlers.filter((h) => h !== handler);
    };
  }

  recoveryHandlers(): readonly RecoveryHandler[] {
    return [...this.handlers];
  }

  /** Stops the reconnect loop for good (application shutdown). */
  async close(): Promise<void> {
    this.stateValue = 'closed';
    this.abort?.abort();
    this.wake();
    await Promise.all([this.loop?.catch(() => {}), this.verifying?.catch(() => {})]);
  }

  private async reconnectLoop(): Promise<void> {
    this.reconnecting = true;
    try {
      await this.reconnectRounds();
    } finally {
      this.reconnecting = false;
    }
  }

  private async reconnectRounds(): Promise<void> {
    const abort = (this.abort = new AbortController());
    const reconnector = this.options.reconnector;
    for (const delay of backoff(this.options.reconnect)) {
      if (this.stateValue !== 'dead') return;
      this.nextAttemptValue = new Date(this.clock.now() + delay);
      try {
        if (delay > 0) await sleep(this.clock, delay, abort.signal);
      } catch {
        return; // closed
      }
      if (this.stateValue !== 'dead') return;
      this.attemptsValue++;
      this.totalAttempts++;
      try {
        if (reconnector) await reconnector();
      } catch (error) {
        this.lastErrorValue = error;
        continue;
      }
      if (this.stateValue !== 'dead') return;
      await this.recovered();
      return;
    }
    // maxRetries reached: stay dead until the next death error starts another round.
  }

  private async recovered(): Promise<void> {
    const downtimeMs = this.clock.now() - (this.deadSinceValue?.getTime() ?? this.clock.now());
    // Handlers run before calls are let through: a listener re-LISTENs before anyone relies on it.
    for (const handler of [...this.handlers]) {
      try {
        await handler();
      } catch (error) {
        this.options.onHandlerError?.(error);
      }
    }
    if (this.stateValue !== 'dead') return;
    this.stateValue = 'alive';
    this.totalDowntimeMs += this.clock.now() - (this.deadSinceValue?.getTime() ?? this.clock.now());
    this.deadSinceValue = undefined;
    this.nextAttemptValue = undefined;
    this.options.onRecovered?.(downtimeMs);
    this.wake();
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}
