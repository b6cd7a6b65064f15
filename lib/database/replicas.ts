/**
 * Read replicas: one pool per replica beside the primary's, each replica's health and lag
 * checked in the background, and read-your-writes by position. After a write commits, the
 * position it reached on the primary is recorded (for the process, and for the read context it
 * ran in); a read may use a replica only once that replica has replayed up to the position its
 * context must see, checked on the very connection that will run the read. A replica that does
 * not catch up within `replicaWaitMs` is skipped for that read: the primary answers it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from '../core/logger.js';
import type { PoolStats } from '../core/types.js';
import { withTimeout } from '../core/timers.js';
import { DatabaseError, ErrorCode } from '../core/errors.js';
import type { ResolvedReplication } from '../config/options.js';
import type { Connection, Driver, ReplicationSupport } from '../drivers/driver.js';
import type { Pool } from '../pool/pool.js';
import type { Intent, PoolRouter } from '../pool/router.js';

/** A replica's state: `up` serves reads; the others leave the rotation until a check finds it `up`. */
export type ReplicaState = 'unknown' | 'up' | 'lagging' | 'down' | 'not-replica';

/** What `Database.replicaStatus()` and the health indicator report of each replica. */
export interface ReplicaStatus {
  /** `host:port`, never credentials. */
  label: string;
  state: ReplicaState;
  /** How far behind the primary in time, at the last check (0: it has replayed all it received). */
  lagMs?: number;
  /** False when it applies nothing (MariaDB's SQL thread stopped). */
  replaying?: boolean;
  /** The position it had replayed at the last check. */
  replayed?: string;
  /** Why it is down, when it is. */
  lastError?: string;
  checkedAt?: string;
}

export interface ReplicaMember {
  readonly label: string;
  readonly driver: Driver;
  readonly pool: Pool;
  state: ReplicaState;
  lagMs?: number;
  replayed?: string;
  lastError?: string;
  checkedAt?: Date;
  /** The monitor's own connection, outside the pool. */
  probe?: Connection;
  checking?: Promise<void>;
}

/** Where a read goes: a replica that has what it must see, or the primary. */
const PRIMARY = Symbol('primary');

export class ReplicaSet implements PoolRouter {
  private turn = 0;
  /** The last position written by this process (outside any read context, and within). */
  private position?: string;
  private readonly contexts = new AsyncLocalStorage<{ position?: string }>();
  /** A write whose position could not be read: reads go to the primary until then. */
  private primaryUntil = 0;
  private monitor?: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly primary: Pool,
    readonly members: readonly ReplicaMember[],
    private readonly replication: ReplicationSupport,
    readonly options: ResolvedReplication,
    private readonly connectTimeoutMs: number,
    private readonly logger: Logger,
    private readonly name: string,
  ) {}

  route(intent: Intent): Pool {
    return intent === 'read' ? (this.pick()?.pool ?? this.primary) : this.primary;
  }

  pools(): readonly Pool[] {
    return [this.primary, ...this.members.map((m) => m.pool)];
  }

  stats(): PoolStats {
    return this.primary.stats();
  }

  /** The next replica in the rotation, if one is up. Starts the monitor on first use (connections stay lazy). */
  pick(): ReplicaMember | undefined {
    this.startMonitor();
    const n = this.members.length;
    for (let i = 0; i < n; i++) {
      const member = this.members[(this.turn + i) % n];
      if (member.state === 'up') {
        this.turn = (this.turn + i + 1) % n;
        return member;
      }
    }
    return undefined;
  }

  /** Whether writes must be followed by their position (read-your-writes is on). */
  get tracksWrites(): boolean {
    return this.options.readYourWrites !== 'off';
  }

  /** Runs `fn` in a read context of its own: its reads wait for its own writes (and only those, in mode `'context'`). */
  readContext<R>(fn: () => R): R {
    return this.contexts.run({}, fn);
  }

  /** The position a read here must see, `undefined` for none, or PRIMARY when only the primary can answer. */
  private required(): string | typeof PRIMARY | undefined {
    const mode = this.options.readYourWrites;
    if (mode === 'off') return undefined;
    if (this.primaryUntil > Date.now()) return PRIMARY;
    const context = mode === 'context' ? this.contexts.getStore() : undefined;
    return context ? context.position : this.position;
  }

  /** After a commit on the primary, on the same connection: records the position it reached. */
  async afterWrite(connection: Connection): Promise<void> {
    if (!this.tracksWrites) return;
    try {
      const position = await this.replication.positionAfterWrite(connection);
      if (position === undefined) return;
      this.position = this.later(this.position, position);
      const context = this.contexts.getStore();
      if (context) context.position = this.later(context.position, position);
    } catch (error) {
      // The write committed; only its position is unknown: reads go to the primary for as long as a replica may lag.
      this.primaryUntil = Date.now() + Math.max(this.options.maxReplicaLagMs, 1000);
      this.logger.warn(`database "${this.name}": the position of a write could not be read (${(error as Error)?.message}); reads go to the primary for now`);
    }
  }

  /**
   * Whether `member`, on `connection`, has replayed what the calling context must see: checked
   * at once, then again until `replicaWaitMs` (or the call's own remaining time) has passed.
   */
  async caughtUp(member: ReplicaMember, connection: Connection, remainingMs: number): Promise<boolean> {
    const need = this.required();
    if (need === undefined) return true;
    if (need === PRIMARY) return false;
    if (member.replayed !== undefined && this.replication.includes(member.replayed, need)) return true;
    if (!(await this.replication.waitFor(connection, need, Math.min(this.options.replicaWaitMs, remainingMs)))) return false;
    member.replayed = this.later(member.replayed, need);
    return true;
  }

  /** A replica's connection failed under a read: check it now (it leaves the rotation if it is down). */
  suspect(member: ReplicaMember, error: DatabaseError): void {
    member.lastError = error.message;
    void this.check(member);
  }

  status(): ReplicaStatus[] {
    return this.members.map((m) => ({
      label: m.label,
      state: m.state,
      ...(m.lagMs !== undefined && Number.isFinite(m.lagMs) ? { lagMs: Math.round(m.lagMs) } : {}),
      ...(m.lagMs === Infinity ? { replaying: false } : {}),
      ...(m.replayed !== undefined ? { replayed: m.replayed } : {}),
      ...(m.state === 'down' && m.lastError ? { lastError: m.lastError } : {}),
      ...(m.checkedAt ? { checkedAt: m.checkedAt.toISOString() } : {}),
    }));
  }

  /** Checks every replica now (the monitor does this every `replicaCheckIntervalMs`). */
  async checkAll(): Promise<void> {
    this.startMonitor();
    await Promise.all(this.members.map((m) => this.check(m)));
  }

  private startMonitor(): void {
    if (this.monitor || this.closed) return;
    this.monitor = setInterval(() => void this.checkAll(), this.options.replicaCheckIntervalMs);
    this.monitor.unref();
    for (const m of this.members) void this.check(m);
  }

  /** One check of one replica on its probe connection, bounded by connectTimeoutMs. */
  check(member: ReplicaMember): Promise<void> {
    member.checking ??= this.checkOnce(member).finally(() => (member.checking = undefined));
    return member.checking;
  }

  private async checkOnce(member: ReplicaMember): Promise<void> {
    if (this.closed) return;
    const before = member.state;
    const timeout = () => new DatabaseError(`replica ${member.label} did not answer within ${this.connectTimeoutMs} ms`, { code: ErrorCode.ConnectTimeout });
    try {
      member.probe ??= await withTimeout(member.driver.connect(), this.connectTimeoutMs, timeout, undefined, true);
      const probe = member.probe;
      const status = await withTimeout(this.replication.replicaStatus(probe), this.connectTimeoutMs, timeout, () => probe.destroy(), true);
      member.lagMs = status.lagMs;
      if (status.position !== undefined) member.replayed = this.later(member.replayed, status.position);
      member.state = !status.replica ? 'not-replica' : member.lagMs > this.options.maxReplicaLagMs ? 'lagging' : 'up';
      member.lastError = undefined;
    } catch (error) {
      member.probe?.destroy();
      member.probe = undefined;
      member.state = 'down';
      member.lastError = (member.driver.translateError(error) as Error).message;
    }
    member.checkedAt = new Date();
    if (this.closed) {
      member.probe?.destroy();
      member.probe = undefined;
    }
    if (before !== member.state && before !== 'unknown') {
      const lag = member.lagMs === undefined ? '' : Number.isFinite(member.lagMs) ? `, ${Math.round(member.lagMs)} ms behind` : ', not replaying';
      const why = member.state === 'down' && member.lastError ? `: ${member.lastError}` : '';
      this.logger.log(`database "${this.name}": replica ${member.label} is ${member.state}${lag}${why}`);
    }
  }

  private later(a: string | undefined, b: string): string {
    return a === undefined ? b : this.replication.merge(a, b);
  }

  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    if (this.monitor) clearInterval(this.monitor);
    await Promise.all(
      this.members.map(async (m) => {
        await m.checking?.catch(() => {});
        m.probe?.destroy();
        m.probe = undefined;
        await m.pool.close(timeoutMs);
        await m.driver.end?.();
      }),
    );
  }
}
