/**
 * PostgreSQL LISTEN/NOTIFY for one database, after txpostgres's observers: one dedicated
 * connection (outside the pool), opened by the first subscription and closed when the last
 * one goes; LISTEN when a channel gets its first observer, UNLISTEN when it loses its last.
 *
 * Delivery is at most once. Notifications are taken off the socket into an inbox drained on
 * `setImmediate`, so observers never run on the read path. Each subscription has its own
 * mailbox: it gets its channel's notifications in arrival order, one at a time (an observer
 * that returns a promise gets the next notification once it settled), so a slow observer
 * delays only itself. One that throws or rejects is logged and the others still run.
 *
 * The connection is pinged every `keepaliveMs`; a ping still unanswered at the next tick
 * means the socket is a black hole. When the connection is lost the listener opens a new one
 * at once (a failure that means "server gone" goes to the detector, whose recovery calls it
 * back), LISTENs every channel again, and only then tells the `onResubscribe` hooks which
 * channels were deaf and for how long, so the app can catch up on what it missed.
 */
import type { Connection, Notification, NotificationStatements } from '../drivers/driver.js';
import { DatabaseClosed, DatabaseError, InvalidParameter, ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DeadConnectionDetector } from '../resilience/detector.js';

/** Called with each notification of its channel; may return a promise (the next one waits for it). */
export type NotificationObserver = (n: Notification) => unknown;

/** What `onResubscribe` hooks learn after a reconnect. */
export interface ResubscribeInfo {
  /** The channels LISTENed again. */
  channels: string[];
  /** From the moment the connection was found lost to the moment every channel was LISTENed again. */
  downtimeMs: number;
}

export type ResubscribeHook = (info: ResubscribeInfo) => unknown;

export interface SubscribeOptions {
  /**
   * When the server cannot be reached, keep the subscription and LISTEN once it can (then
   * `onResubscribe` hooks run), instead of rejecting. `@OnNotify` uses it, so that an app
   * boots while its database is down. Default: false.
   */
  waitForServer?: boolean;
}

/** What the listener needs from its Database. */
export interface ListenerHost {
  readonly name: string;
  readonly logger: Logger;
  readonly detector: DeadConnectionDetector;
  /** The dialect's LISTEN/UNLISTEN statements and channel quoting. */
  readonly statements: NotificationStatements;
  openDedicatedConnection(): Promise<Connection>;
}

/** Keepalive interval of the listener connection. A ping unanswered for a whole interval drops the connection. */
export const LISTENER_KEEPALIVE_MS = 10_000;

/** The drain hands the event loop back after this long, so a burst of notifications cannot starve I/O. */
const DRAIN_BUDGET_MS = 10;

/** A subscription's backlog is reported each time it reaches a further power of ten from here. */
const BACKLOG_WARNING = 1000;

/** Retry delays of a failed re-LISTEN while the detector still thinks the server is reachable. */
const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 10_000;

/** How long a graceful close of the listener connection may take before its socket is destroyed. */
const CLOSE_GRACE_MS = 1000;

/** How long onResubscribe hooks wait for the detector to report recovery before they run anyway. */
const HOOK_RECOVERY_WAIT_MS = 60_000;

interface Subscription {
  readonly channel: string;
  readonly observer: NotificationObserver;
  active: boolean;
  /** An observer's promise is pending: later notifications wait in `backlog`. */
  busy: boolean;
  backlog: Notification[];
  warnAt: number;
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as PromiseLike<unknown>).then === 'function';

export class Listener {
  private readonly subscriptions = new Map<string, Set<Subscription>>();
  /** LISTEN statements on their way, by channel. */
  private readonly listening = new Map<string, Promise<void>>();
  private connection?: Connection;
  private connecting?: Promise<Connection>;
  private inbox: Notification[] = [];
  private draining = false;
  private keepalive?: NodeJS.Timeout;
  /** When the connection was found lost; undefined while listening. */
  private lostAt?: number;
  private failures = 0;
  private retryTimer?: NodeJS.Timeout;
  private hooks: ResubscribeHook[] = [];
  private readonly unsubscribeRecovery: () => void;
  /** Serializes connect, LISTEN and UNLISTEN, so that a quick subscribe/unsubscribe pair cannot reorder. */
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Counts for the metrics: notifications handed to observers, and the times (and total time) it was not listening after a loss. */
  readonly counts = { delivered: 0, deafPeriods: 0, deafMs: 0 };

  constructor(
    private readonly host: ListenerHost,
    private readonly keepaliveMs = LISTENER_KEEPALIVE_MS,
  ) {
    this.unsubscribeRecovery = host.detector.onRecovery(() => this.resubscribe());
  }

  /** Channels with at least one observer. */
  channels(): string[] {
    return [...this.subscriptions.keys()];
  }

  /** The server id (backend pid) of the listener connection, while one is open. */
  get connectionId(): number | undefined {
    return this.connection && !this.connection.broken ? this.connection.serverId : undefined;
  }

  /** Called after a reconnect LISTENed every channel again; returns an unsubscribe. */
  onResubscribe(hook: ResubscribeHook): () => void {
    if (typeof hook !== 'function') throw new InvalidParameter('onResubscribe() needs a function');
    this.hooks.push(hook);
    return () => {
      this.hooks = this.hooks.filter((h) => h !== hook);
    };
  }

  async subscribe(channel: string, observer: NotificationObserver, options: SubscribeOptions = {}): Promise<() => Promise<void>> {
    const quoted = this.host.statements.quoteChannel(channel);
    if (typeof observer !== 'function') throw new InvalidParameter('listen() needs an observer function');
    const sub: Subscription = { channel, observer, active: true, busy: false, backlog: [], warnAt: BACKLOG_WARNING };
    let set = this.subscriptions.get(channel);
    let listening: Promise<void> | undefined;
    if (set) {
      set.add(sub);
      // The channel's LISTEN may still be on its way: this subscription shares its outcome.
      listening = this.listening.get(channel);
    } else {
      const created = (set = new Set([sub]));
      this.subscriptions.set(channel, created);
      const pending = this.serialize(async () => {
        if (this.subscriptions.get(channel) !== created) return; // unsubscribed before LISTEN went out
        const connection = await this.ensureConnection();
        // A new connection after a loss: every channel needs LISTEN again, not just this one.
        if (this.lostAt !== undefined) await this.listenAll(connection);
        else await connection.execute(this.host.statements.listen(quoted), [], { rowMode: 'array' });
      });
      listening = pending;
      this.listening.set(channel, pending);
      pending.then(
        () => this.listening.get(channel) === pending && this.listening.delete(channel),
        () => this.listening.get(channel) === pending && this.listening.delete(channel),
      );
    }
    if (listening) {
      try {
        await listening;
      } catch (error) {
        if (options.waitForServer && sub.active && !this.closed && this.host.detector.isDeathError(error)) {
          this.deferListen(channel, error);
        } else {
          this.remove(sub);
          if (this.subscriptions.size === 0) await this.serialize(async () => void this.closeIfUnused());
          throw error;
        }
      }
    }
    return async () => {
      if (!sub.active) return;
      if (!this.remove(sub)) return;
      await this.serialize(async () => {
        if (this.subscriptions.has(channel)) return; // subscribed again meanwhile
        if (this.closeIfUnused()) return; // closing the session drops its LISTENs
        const connection = this.connection;
        if (connection && !connection.broken) await connection.execute(this.host.statements.unlisten(quoted), [], { rowMode: 'array' }).catch(() => {});
      });
    };
  }

  /** The server could not be reached for `channel`'s LISTEN: keep the subscription and LISTEN once it can. */
  private deferListen(channel: string, error: unknown): void {
    this.lostAt ??= Date.now();
    this.host.logger.warn(
      `database "${this.host.name}" cannot be reached (${(error as Error)?.message ?? error}): channel "${channel}" will be LISTENed once it can`,
    );
    if (!this.host.detector.isDead) {
      this.failures++;
      this.scheduleResubscribe();
    }
  }

  /** Stops delivery and closes the connection (application shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribeRecovery();
    for (const set of this.subscriptions.values()) for (const sub of set) this.deactivate(sub);
    this.subscriptions.clear();
    this.inbox = [];
    this.hooks = [];
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    // Close first: a LISTEN stuck on a dead socket then fails, instead of holding up shutdown.
    this.closeConnection();
    await this.chain.catch(() => {});
    this.closeConnection();
  }

  /** Takes `sub` out; returns true when it was its channel's last observer. */
  private remove(sub: Subscription): boolean {
    this.deactivate(sub);
    const set = this.subscriptions.get(sub.channel);
    if (!set?.delete(sub) || set.size > 0) return false;
    this.subscriptions.delete(sub.channel);
    return true;
  }

  private deactivate(sub: Subscription): void {
    sub.active = false;
    sub.backlog = [];
  }

  /** Closes the connection when no channel is left; returns whether it did. */
  private closeIfUnused(): boolean {
    if (this.subscriptions.size > 0) return false;
    this.lostAt = undefined;
    this.failures = 0;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.closeConnection();
    return true;
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => {});
    return next;
  }

  private ensureConnection(): Promise<Connection> {
    if (this.connection && !this.connection.broken) return Promise.resolve(this.connection);
    this.connecting ??= this.host
      .openDedicatedConnection()
      .then((connection) => {
        if (this.closed) {
          connection.destroy();
          throw new DatabaseClosed(`the listener of database "${this.host.name}" is closed`, { database: this.host.name });
        }
        this.attach(connection);
        return connection;
      })
      .catch((error) => {
        // The server is unreachable: the detector reconnects, and its recovery calls resubscribe().
        this.host.detector.checkForDeadConnection(error);
        throw error;
      })
      .finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private attach(connection: Connection): void {
    this.connection = connection;
    connection.onNotification?.((n) => {
      // A connection that was replaced may still deliver a last message: it must not arrive twice.
      if (this.connection !== connection || this.closed) return;
      this.inbox.push(n);
      if (!this.draining) {
        this.draining = true;
        setImmediate(() => this.drain());
      }
    });
    const lost = (error?: DatabaseError) => {
      if (this.connection !== connection) return;
      this.connection = undefined;
      this.stopKeepalive();
      connection.destroy();
      if (this.closed || this.subscriptions.size === 0) return;
      this.lostAt ??= Date.now();
      this.host.logger.warn(
        `the LISTEN connection of database "${this.host.name}" was lost (${error?.message ?? 'connection ended'}); it will LISTEN again after reconnecting`,
      );
      this.scheduleResubscribe();
    };
    connection.onError((error) => lost(error));
    connection.onEnd(() => lost());
    let pinging = false;
    this.keepalive = setInterval(() => {
      if (pinging) {
        // No answer for a whole interval: a black hole, which TCP alone may take minutes to notice.
        lost(new DatabaseError(`keepalive ping got no answer within ${this.keepaliveMs} ms`, { code: ErrorCode.ConnectionLost, database: this.host.name }));
        return;
      }
      pinging = true;
      connection.ping().then(
        () => (pinging = false),
        (error) =>
          lost(
            error instanceof DatabaseError
              ? error
              : new DatabaseError(String((error as Error)?.message ?? error), { code: ErrorCode.ConnectionLost, cause: error }),
          ),
      );
    }, this.keepaliveMs);
    this.keepalive.unref();
  }

  private stopKeepalive(): void {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = undefined;
  }

  /** Graceful close (Terminate), bounded: a socket that does not answer is destroyed after CLOSE_GRACE_MS. */
  private closeConnection(): void {
    this.stopKeepalive();
    const connection = this.connection;
    this.connection = undefined;
    if (!connection) return;
    const timer = setTimeout(() => connection.destroy(), CLOSE_GRACE_MS);
    timer.unref();
    void connection
      .close()
      .catch(() => connection.destroy())
      .finally(() => clearTimeout(timer));
  }

  /** Re-LISTEN soon: at once after a first loss, with capped exponential delays after failed attempts. */
  private scheduleResubscribe(): void {
    if (this.closed || this.subscriptions.size === 0 || this.retryTimer) return;
    const delay = this.failures === 0 ? 0 : Math.min(RETRY_BASE_MS * 2 ** (this.failures - 1), RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.resubscribe().catch(() => {});
    }, delay);
    this.retryTimer.unref();
  }

  /**
   * After a loss: a new connection, LISTEN every channel, then the hooks. Called at once when the
   * connection is lost, and as a detector recovery handler (so it is done before recovery is reported).
   */
  private async resubscribe(): Promise<void> {
    if (this.closed || this.subscriptions.size === 0) return;
    await this.serialize(async () => {
      if (this.closed || this.subscriptions.size === 0) return;
      if (this.lostAt === undefined && this.connection && !this.connection.broken) return;
      try {
        await this.listenAll(await this.ensureConnection());
      } catch (error) {
        this.failures++;
        this.host.logger.warn(`database "${this.host.name}": LISTEN again failed (${(error as Error)?.message ?? error}); retrying`);
        // While the detector says the server is gone, its recovery calls us; otherwise retry on our own.
        if (!this.host.detector.isDead) this.scheduleResubscribe();
        throw error;
      }
    });
  }

  /** LISTENs every channel on `connection`; after a loss, reports the downtime to the hooks. */
  private async listenAll(connection: Connection): Promise<void> {
    const channels = this.channels();
    for (const channel of channels) await connection.execute(this.host.statements.listen(this.host.statements.quoteChannel(channel)), [], { rowMode: 'array' });
    this.failures = 0;
    if (this.lostAt === undefined) return;
    const downtimeMs = Date.now() - this.lostAt;
    this.lostAt = undefined;
    this.counts.deafPeriods++;
    this.counts.deafMs += downtimeMs;
    this.host.logger.log(`database "${this.host.name}": LISTEN again on ${channels.length} channel(s) after ${downtimeMs} ms`);
    void this.runHooks({ channels, downtimeMs });
  }

  /**
   * Hooks typically query what was missed, so they run once the database takes calls again:
   * not awaited by the recovery handler, which runs while the detector still rejects calls.
   */
  private async runHooks(info: ResubscribeInfo): Promise<void> {
    if (this.hooks.length === 0) return;
    if (this.host.detector.isDead) await this.host.detector.waitForRecovery(HOOK_RECOVERY_WAIT_MS);
    for (const hook of [...this.hooks]) {
      if (this.closed) return;
      try {
        await hook({ channels: [...info.channels], downtimeMs: info.downtimeMs });
      } catch (error) {
        this.host.logger.error(`an onResubscribe hook of database "${this.host.name}" threw: ${(error as Error)?.message ?? error}`, (error as Error)?.stack);
      }
    }
  }

  private drain(): void {
    const started = performance.now();
    let i = 0;
    for (; i < this.inbox.length; i++) {
      const n = this.inbox[i];
      const set = this.subscriptions.get(n.channel);
      if (set) for (const sub of [...set]) this.deliver(sub, n);
      if (performance.now() - started > DRAIN_BUDGET_MS) {
        i++;
        break;
      }
    }
    this.inbox = i >= this.inbox.length ? [] : this.inbox.slice(i);
    if (this.inbox.length > 0 && !this.closed) setImmediate(() => this.drain());
    else this.draining = false;
  }

  private deliver(sub: Subscription, n: Notification): void {
    if (!sub.active) return;
    if (sub.busy) {
      sub.backlog.push(n);
      if (sub.backlog.length >= sub.warnAt) {
        this.host.logger.warn(
          `an observer of channel "${sub.channel}" on database "${this.host.name}" is ${sub.backlog.length} notifications behind (it returns a promise that settles slowly)`,
        );
        sub.warnAt *= 10;
      }
      return;
    }
    this.run(sub, n);
  }

  /** Runs `sub`'s observer on `n`, then on its backlog, one at a time. */
  private run(sub: Subscription, first: Notification): void {
    for (let n: Notification | undefined = first; n && sub.active; n = sub.backlog.shift()) {
      let result: unknown;
      this.counts.delivered++;
      try {
        result = sub.observer(n);
      } catch (error) {
        this.observerFailed(sub.channel, error);
        continue;
      }
      if (isThenable(result)) {
        sub.busy = true;
        Promise.resolve(result)
          .catch((error) => this.observerFailed(sub.channel, error))
          .finally(() => {
            sub.busy = false;
            const next = sub.backlog.shift();
            if (next) this.run(sub, next);
          });
        return;
      }
    }
    if (sub.backlog.length < BACKLOG_WARNING) sub.warnAt = BACKLOG_WARNING;
  }

  private observerFailed(channel: string, error: unknown): void {
    this.host.logger.error(
      `an observer of channel "${channel}" on database "${this.host.name}" threw: ${(error as Error)?.message ?? error}`,
      (error as Error)?.stack,
    );
  }
}
