/**
 * PostgreSQL LISTEN/NOTIFY for one database, after txpostgres's observers: one dedicated
 * connection (outside the pool), opened by the first subscription and closed when the last
 * one goes; LISTEN when a channel gets its first observer, UNLISTEN when it loses its last.
 *
 * Delivery is at most once. Observers run off the socket's read path (a queue drained on
 * `setImmediate`), in arrival order per channel; one that throws or rejects is logged and the
 * others still run. The connection is pinged every `keepaliveMs`; when it dies the
 * detector is told, and on recovery every channel is LISTENed again before recovery is
 * reported, then `onResubscribe` hooks learn which channels and how long they were deaf, so
 * the app can catch up on what it missed.
 */
import type { Connection, Notification } from '../drivers/driver.js';
import { DatabaseError, InvalidParameter } from '../errors.js';
import type { Logger } from '../database/logger.js';
import type { DeadConnectionDetector } from '../resilience/detector.js';

export type NotificationObserver = (n: Notification) => unknown;

export interface ResubscribeInfo {
  channels: string[];
  downtimeMs: number;
}

/** What the listener needs from its Database. */
export interface ListenerHost {
  readonly name: string;
  readonly logger: Logger;
  readonly detector: DeadConnectionDetector;
  openDedicatedConnection(): Promise<Connection>;
}

/** Keepalive interval of the listener connection. */
export const LISTENER_KEEPALIVE_MS = 10_000;

function quoteChannel(channel: string): string {
  if (typeof channel !== 'string' || channel.length === 0) throw new InvalidParameter('a channel name must be a non-empty string');
  if (channel.includes('\0')) throw new InvalidParameter('a channel name cannot contain a NUL character');
  return '"' + channel.replace(/"/g, '""') + '"';
}

export class Listener {
  private readonly observers = new Map<string, Set<NotificationObserver>>();
  private connection?: Connection;
  private connecting?: Promise<Connection>;
  private queue: Notification[] = [];
  private draining = false;
  private keepalive?: NodeJS.Timeout;
  private lostAt?: number;
  private resubscribeHooks: Array<(info: ResubscribeInfo) => unknown> = [];
  private readonly unsubscribeRecovery: () => void;
  /** Serializes LISTEN/UNLISTEN so a quick subscribe/unsubscribe pair cannot reorder. */
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    private readonly host: ListenerHost,
    private readonly keepaliveMs = LISTENER_KEEPALIVE_MS,
  ) {
    this.unsubscribeRecovery = host.detector.onRecovery(() => this.resubscribe());
  }

  /** Channels with at least one observer. */
  channels(): string[] {
    return [...this.observers.keys()];
  }

  /** Called after a reconnect re-LISTENed every channel; returns an unsubscribe. */
  onResubscribe(hook: (info: ResubscribeInfo) => unknown): () => void {
    this.resubscribeHooks.push(hook);
    return () => {
      this.resubscribeHooks = this.resubscribeHooks.filter((h) => h !== hook);
    };
  }

  async subscribe(channel: string, observer: NotificationObserver): Promise<() => Promise<void>> {
    const quoted = quoteChannel(channel);
    if (typeof observer !== 'function') throw new InvalidParameter('listen() needs an observer function');
    let set = this.observers.get(channel);
    const first = !set;
    if (!set) this.observers.set(channel, (set = new Set()));
    set.add(observer);
    if (first) {
      try {
        await this.serialize(async () => (await this.ensureConnection()).execute(`LISTEN ${quoted}`, [], { rowMode: 'array' }));
      } catch (error) {
        set.delete(observer);
        if (set.size === 0) this.observers.delete(channel);
        throw error;
      }
    }
    let active = true;
    return async () => {
      if (!active) return;
      active = false;
      const current = this.observers.get(channel);
      if (!current?.delete(observer) || current.size > 0) return;
      this.observers.delete(channel);
      await this.serialize(async () => {
        if (this.observers.has(channel)) return; // re-subscribed meanwhile
        if (this.connection && !this.connection.broken) await this.connection.execute(`UNLISTEN ${quoted}`, [], { rowMode: 'array' }).catch(() => {});
        if (this.observers.size === 0) this.closeConnection();
      });
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribeRecovery();
    this.observers.clear();
    await this.chain.catch(() => {});
    this.closeConnection();
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
        this.attach(connection);
        return connection;
      })
      .catch((error) => {
        this.host.detector.checkForDeadConnection(error);
        throw error;
      })
      .finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private attach(connection: Connection): void {
    this.connection = connection;
    connection.onNotification?.((n) => {
      this.queue.push(n);
      if (!this.draining) {
        this.draining = true;
        setImmediate(() => this.drain());
      }
    });
    const lost = (error?: DatabaseError) => {
      if (this.connection !== connection) return;
      this.connection = undefined;
      this.stopKeepalive();
      if (this.closed || this.observers.size === 0) return;
      this.lostAt ??= Date.now();
      this.host.logger.warn(`the LISTEN connection of database "${this.host.name}" was lost; it will LISTEN again after reconnecting`);
      this.host.detector.checkForDeadConnection(error ?? new DatabaseError('listener connection lost', { code: 'CONNECTION_LOST' }));
      // If the detector did not consider the database dead (the pool is fine), reconnect now.
      if (!this.host.detector.isDead) void this.resubscribe().catch(() => {});
    };
    connection.onError((error) => lost(error));
    connection.onEnd(() => lost());
    this.keepalive = setInterval(() => {
      connection.ping().catch((error) => {
        connection.destroy();
        lost(error);
      });
    }, this.keepaliveMs);
    this.keepalive.unref();
  }

  private stopKeepalive(): void {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = undefined;
  }

  private closeConnection(): void {
    this.stopKeepalive();
    const connection = this.connection;
    this.connection = undefined;
    if (connection) void connection.close().catch(() => connection.destroy());
  }

  /** After a reconnect: LISTEN every channel on a new connection, then tell the hooks. Runs as a recovery handler. */
  private async resubscribe(): Promise<void> {
    if (this.closed || this.observers.size === 0 || (this.connection && !this.connection.broken && this.lostAt === undefined)) return;
    await this.serialize(async () => {
      const connection = await this.ensureConnection();
      const channels = this.channels();
      for (const channel of channels) await connection.execute(`LISTEN ${quoteChannel(channel)}`, [], { rowMode: 'array' });
      const downtimeMs = this.lostAt === undefined ? 0 : Date.now() - this.lostAt;
      this.lostAt = undefined;
      this.host.logger.log(`database "${this.host.name}": LISTEN again on ${channels.length} channel(s) after ${downtimeMs} ms`);
      for (const hook of this.resubscribeHooks) {
        try {
          await hook({ channels, downtimeMs });
        } catch (error) {
          this.host.logger.error(`an onResubscribe hook threw: ${(error as Error)?.message}`);
        }
      }
    });
  }

  private drain(): void {
    const batch = this.queue;
    this.queue = [];
    this.draining = false;
    for (const n of batch) {
      const set = this.observers.get(n.channel);
      if (!set) continue;
      for (const observer of [...set]) {
        try {
          const result = observer(n);
          if (result && typeof (result as Promise<unknown>).then === 'function') {
            (result as Promise<unknown>).then(undefined, (error) => this.observerFailed(n.channel, error));
          }
        } catch (error) {
          this.observerFailed(n.channel, error);
        }
      }
    }
  }

  private observerFailed(channel: string, error: unknown): void {
    this.host.logger.error(`an observer of channel "${channel}" on database "${this.host.name}" threw: ${(error as Error)?.message ?? error}`);
  }
}
