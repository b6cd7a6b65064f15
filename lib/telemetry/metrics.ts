/**
 * OpenTelemetry metrics by the database semantic conventions, when `@opentelemetry/api` is
 * installed and the app registered a meter provider (the Node SDK) before the database opened:
 *
 * - `db.client.operation.duration` (histogram, s), per statement;
 * - `db.client.connection.count` by `db.client.connection.state` (idle, used), `.max`,
 *   `.idle.max`, `.idle.min`, `.pending_requests`: read from the pools at each collection;
 * - `db.client.connection.wait_time`, `.create_time` (histograms, s), `.timeouts` (counter);
 *
 * and what only this module knows, under `nestjs_dbpool.*`: the detector's state and total dead
 * time, reconnect attempts, each replica's lag, notifications delivered and the time the
 * listener was deaf (PostgreSQL keeps no notification for a session that is not listening, so
 * what was sent meanwhile cannot be counted: only the window is known).
 */
import {
  errorAttributes,
  operationOf,
  otel,
  type Attributes,
  type BatchResult,
  type Counter,
  type Histogram,
  type Meter,
  type Observable,
  type TelemetryTarget,
} from './otel.js';

/** How long a closed database's metrics wait for a last collection before they stop observing. */
const CLOSE_GRACE_MS = 60_000;

/** The conventions' advice for `db.client.operation.duration`, in seconds. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];
/** Pool waits are short when the pool is healthy: finer buckets at the low end. */
const WAIT_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/** A pool as the metrics read it (structural: this layer is below the pool's). */
export interface MeteredPool {
  /** `db.client.connection.pool.name`. */
  readonly poolName: string;
  stats(): { idle: number; busy: number; waiting: number; max: number };
  readonly min: number;
}

/** What the collection reads, at each export. */
export interface MetricSources {
  pools(): readonly MeteredPool[];
  detector(): { isDead: boolean; deadSince?: Date; totalDowntimeMs: number; totalAttempts: number };
  replicas?(): ReadonlyArray<{ label: string; lagMs?: number; state: string }>;
  notifications?(): { delivered: number; deafPeriods: number; deafMs: number } | undefined;
}

export class DatabaseMetrics {
  private readonly duration: Histogram;
  private readonly waitTime: Histogram;
  private readonly createTime: Histogram;
  private readonly timeouts: Counter;
  /** Attributes of a successful statement, by operation: built once, not per call. */
  private readonly byOperation = new Map<string, Attributes>();
  private readonly byPool = new Map<string, Attributes>();
  private readonly observables: Observable[];
  private readonly collect: (result: BatchResult) => void;
  private readonly unregister: () => void;
  private closed = false;

  /** Undefined when the API is not installed, or no meter provider is registered (the API's meter would be a no-op: nothing is measured). */
  static create(target: TelemetryTarget, databaseName: string, sources: MetricSources): DatabaseMetrics | undefined {
    const api = otel();
    if (!api) return undefined;
    const meter = api.metrics.getMeter('nestjs-dbpool');
    if (meter instanceof (api.createNoopMeter().constructor as new () => Meter)) return undefined;
    return new DatabaseMetrics(meter, target, databaseName, sources);
  }

  private constructor(
    meter: Meter,
    private readonly target: TelemetryTarget,
    private readonly databaseName: string,
    sources: MetricSources,
  ) {
    this.duration = meter.createHistogram('db.client.operation.duration', {
      description: 'Duration of database client operations.',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
    this.waitTime = meter.createHistogram('db.client.connection.wait_time', {
      description: 'The time it took to obtain an open connection from the pool.',
      unit: 's',
      advice: { explicitBucketBoundaries: WAIT_BUCKETS },
    });
    this.createTime = meter.createHistogram('db.client.connection.create_time', {
      description: 'The time it took to create a new connection.',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
    this.timeouts = meter.createCounter('db.client.connection.timeouts', {
      description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
      unit: '{timeout}',
    });
    const count = meter.createObservableUpDownCounter('db.client.connection.count', {
      description: 'The number of connections that are currently in the state described by the state attribute.',
      unit: '{connection}',
    });
    const max = meter.createObservableUpDownCounter('db.client.connection.max', {
      description: 'The maximum number of open connections allowed.',
      unit: '{connection}',
    });
    const idleMax = meter.createObservableUpDownCounter('db.client.connection.idle.max', {
      description: 'The maximum number of idle open connections allowed.',
      unit: '{connection}',
    });
    const idleMin = meter.createObservableUpDownCounter('db.client.connection.idle.min', {
      description: 'The minimum number of idle open connections allowed.',
      unit: '{connection}',
    });
    const pending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', {
      description: 'The number of current pending requests for an open connection.',
      unit: '{request}',
    });
    const dead = meter.createObservableGauge('nestjs_dbpool.connection.dead', {
      description: '1 while the dead-connection detector says the database is unreachable, else 0.',
      unit: '1',
    });
    const deadTime = meter.createObservableCounter('nestjs_dbpool.connection.dead_time', {
      description: 'Total time the database was marked dead, the current outage included.',
      unit: 's',
    });
    const attempts = meter.createObservableCounter('nestjs_dbpool.reconnect.attempts', {
      description: 'Reconnection attempts of the dead-connection detector.',
      unit: '{attempt}',
    });
    const lag = meter.createObservableGauge('nestjs_dbpool.replica.lag', { description: "A read replica's replication lag at its last check.", unit: 's' });
    const delivered = meter.createObservableCounter('nestjs_dbpool.notification.delivered', {
      description: 'Notifications handed to observers.',
      unit: '{notification}',
    });
    const deafPeriods = meter.createObservableCounter('nestjs_dbpool.notification.deaf_periods', {
      description: 'Times the listener lost its connection and LISTENed again: notifications sent meanwhile are lost.',
      unit: '{period}',
    });
    const deafTime = meter.createObservableCounter('nestjs_dbpool.notification.deaf_time', {
      description: 'Total time the listener was not listening after a loss.',
      unit: 's',
    });
    this.observables = [count, max, idleMax, idleMin, pending, dead, deadTime, attempts, lag, delivered, deafPeriods, deafTime];

    this.collect = (result) => {
      for (const pool of sources.pools()) {
        const s = pool.stats();
        const attrs = { 'db.client.connection.pool.name': pool.poolName };
        result.observe(count, s.idle, { ...attrs, 'db.client.connection.state': 'idle' });
        result.observe(count, s.busy, { ...attrs, 'db.client.connection.state': 'used' });
        result.observe(max, s.max, attrs);
        result.observe(idleMax, s.max, attrs);
        result.observe(idleMin, pool.min, attrs);
        result.observe(pending, s.waiting, attrs);
      }
      const detector = sources.detector();
      const attrs = { 'nestjs_dbpool.database': this.databaseName, 'db.system.name': this.target.system };
      result.observe(dead, detector.isDead ? 1 : 0, attrs);
      const ongoing = detector.isDead && detector.deadSince ? Date.now() - detector.deadSince.getTime() : 0;
      result.observe(deadTime, (detector.totalDowntimeMs + ongoing) / 1000, attrs);
      result.observe(attempts, detector.totalAttempts, attrs);
      for (const replica of sources.replicas?.() ?? []) {
        if (replica.lagMs !== undefined) result.observe(lag, replica.lagMs / 1000, { ...attrs, 'server.address': replica.label });
      }
      const notifications = sources.notifications?.();
      if (notifications) {
        result.observe(delivered, notifications.delivered, attrs);
        result.observe(deafPeriods, notifications.deafPeriods, attrs);
        result.observe(deafTime, notifications.deafMs / 1000, attrs);
      }
      // Closed: this collection reported the pools empty; the next ones leave them out.
      if (this.closed) setImmediate(this.unregister);
    };
    meter.addBatchObservableCallback(this.collect, this.observables);
    this.unregister = () => meter.removeBatchObservableCallback(this.collect, this.observables);
  }

  private baseAttributes(): Attributes {
    const t = this.target;
    const attributes: Attributes = { 'db.system.name': t.system };
    if (t.namespace) attributes['db.namespace'] = t.namespace;
    if (t.address) attributes['server.address'] = t.address;
    if (t.port) attributes['server.port'] = t.port;
    return attributes;
  }

  /** One statement's duration. */
  operation(text: string, seconds: number, error?: unknown): void {
    const operation = operationOf(text);
    if (error === undefined) {
      let attributes = this.byOperation.get(operation);
      if (!attributes) {
        // Bounded: operation names are the statements' first keywords.
        if (this.byOperation.size > 64) this.byOperation.clear();
        attributes = { ...this.baseAttributes(), 'db.operation.name': operation };
        this.byOperation.set(operation, attributes);
      }
      this.duration.record(seconds, attributes);
      return;
    }
    this.duration.record(seconds, errorAttributes(error, { ...this.baseAttributes(), 'db.operation.name': operation }));
  }

  /** The time a call waited for a pool connection. */
  waited(poolName: string, seconds: number): void {
    this.waitTime.record(seconds, this.poolAttributes(poolName));
  }

  /** The time a new connection took to open. */
  created(poolName: string, seconds: number): void {
    this.createTime.record(seconds, this.poolAttributes(poolName));
  }

  /** A call gave up waiting for a pool connection (`AcquireTimeout`). */
  timedOut(poolName: string): void {
    this.timeouts.add(1, this.poolAttributes(poolName));
  }

  private poolAttributes(poolName: string): Attributes {
    let attributes = this.byPool.get(poolName);
    if (!attributes) this.byPool.set(poolName, (attributes = { 'db.client.connection.pool.name': poolName }));
    return attributes;
  }

  /** The server was found to be another product of the dialect (MariaDB for mysql): attributes follow. */
  retarget(): void {
    this.byOperation.clear();
  }

  /**
   * Stops reporting (the database closed) after one more collection, which shows its pools
   * empty; at the latest after a minute, so that a reader that never collects does not keep the
   * database in memory.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    setTimeout(this.unregister, CLOSE_GRACE_MS).unref();
  }
}
