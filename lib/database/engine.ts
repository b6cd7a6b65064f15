/**
 * The engine of one `Database`: its driver, pool, detector and the call path every statement
 * takes (deadline and abort, fail fast, acquire within the deadline, run, translate, replay
 * what was provably not sent, release). The facade (`database.ts`), the transaction port and
 * the session port all run their statements through it.
 */
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { inBackground } from '../core/background.js';
import { withCallerStack } from '../core/caller-stack.js';
import {
  AcquireTimeout,
  ConnectionDead,
  DatabaseClosed,
  DatabaseError,
  InvalidParameter,
  NotSupported,
  QueryCanceled,
  QueryTimeout,
  type Dialect,
  ErrorCode,
} from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { OperationResult, QueryOptions } from '../core/types.js';
import type { ResolvedOptions } from '../config/options.js';
import type { Connection, Driver, ExecuteOptions, ResultSet } from '../drivers/driver.js';
import { wasNotSent } from '../drivers/not-sent.js';
import { createDriver, profileOf } from '../drivers/registry.js';
import { DatabaseTracer, type TracingTarget } from '../telemetry/tracing.js';
import { DatabaseMetrics, type MetricSources } from '../telemetry/metrics.js';
import { Pool, type Lease } from '../pool/pool.js';
import { SinglePoolRouter, type Intent, type PoolRouter } from '../pool/router.js';
import { anyDeath, socketDeathChecker, withTransientErrors } from '../resilience/death-checker.js';
import { DeadConnectionDetector } from '../resilience/detector.js';
import { checkParameters } from '../sql/parameters.js';
import { checkArraysInLists, isSqlQuery, type SqlQuery } from '../sql/template.js';
import { enterHolder, heldLeases } from '../transactions/transaction.context.js';
import type { Transaction } from '../transactions/transaction.js';
import { CallHandle, PendingCalls } from './call.js';
import { ReplicaSet, type ReplicaMember } from './replicas.js';
import { RowIterator, type StreamSource } from './row-iterator.js';
import type { DatabaseSession } from './session.js';
import { withTimeout } from '../core/timers.js';

/** How long an interrupted (canceled, timed out) statement may take to stop before its connection is destroyed. */
const CANCEL_GRACE_MS = 1000;
const DEFAULT_BATCH_SIZE = 1000;
/** Distinct statement texts whose effect on the session is remembered (bounds memory when SQL is built dynamically). */
const MAX_CLASSIFIED_STATEMENTS = 10_000;
/** How much later than a call's own deadline the server-side statement limit set for it is. */
const SERVER_LIMIT_MARGIN_MS = 50;

export interface DatabaseEvents {
  connectionOpened: [{ database: string; serverId: number }];
  connectionClosed: [{ database: string; serverId: number }];
  dead: [{ database: string; error: DatabaseError }];
  recovered: [{ database: string; downtimeMs: number }];
  slowQuery: [{ database: string; query: string; durationMs: number }];
  leak: [{ database: string; message: string; stack: string }];
}

/** A stream of rows: iterate it with `for await`, or pipe `.readable()`. */
export type RowStream<T> = AsyncIterable<T> & { readable(): Readable };

/** Where a statement outside a transaction goes: a read to a replica (if one can answer), a read to the primary, or a write. */
export type Routing = 'replica' | 'primary-read' | 'write';

export class Engine {
  /** The calls not settled yet, which `Database.cancel()` searches for the promise it is given. */
  readonly pending = new PendingCalls();
  readonly name: string;
  readonly dialect: Dialect;
  readonly driver: Driver;
  readonly detector: DeadConnectionDetector;
  /** The primary's pool (bootstrap, shutdown, stats). */
  readonly pool: Pool;
  /** Where each call's connection comes from (`pool/router.ts`). */
  readonly router: PoolRouter;
  /** The read replicas, when `replicas` are configured. */
  readonly replicas?: ReplicaSet;
  /** OpenTelemetry spans, unless `tracing: false`. */
  readonly tracer?: DatabaseTracer;
  /** OpenTelemetry metrics, from `startTelemetry` on (unless `metrics: false`). */
  metrics?: DatabaseMetrics;
  /** What names the server in spans and metrics; `system` is corrected by the first connection (MariaDB or MySQL). */
  readonly telemetryTarget: TracingTarget;
  /** Referenced while calls are pending, so that a script awaiting one never exits before it settled. */
  readonly keepAlive: NodeJS.Timeout;
  readonly waitForRecoveryMs: number;
  readonly queryTimeoutMs: number;
  /** Statement text → whether it may leave state on the session (`sessionReset: 'auto'`). */
  private readonly sessionChanging = new Map<string, boolean>();
  private readonly log: ResolvedOptions['logging'];
  private readonly prepare: boolean;
  private readonly defaultExec: ExecuteOptions;
  private readonly slowQueryMs: number;
  readonly interruptGraceMs = CANCEL_GRACE_MS;
  state: 'open' | 'closing' | 'closed' = 'open';
  inFlight = 0;
  idleWaiters: Array<() => void> = [];

  constructor(
    /** The Database this engine works for: the key of its frames in the async context. */
    readonly owner: object,
    readonly options: ResolvedOptions,
    readonly logger: Logger,
    readonly events: EventEmitter<DatabaseEvents>,
  ) {
    this.name = options.name;
    this.dialect = options.dialect;
    this.driver = createDriver(options.dialect, options.settings, options.driver);
    this.driver.onWarning ??= (message) => this.logger.warn(`database "${this.name}": ${message}`);
    const s = options.settings;
    this.telemetryTarget = {
      system: profileOf(options.dialect).otelSystem,
      namespace: s.database ?? s.filename,
      address: s.host,
      port: s.port,
      queryText: options.tracing ? options.tracing.queryText : false,
      mysqlQuoting: options.dialect === 'mysql',
    };
    if (options.tracing) this.tracer = new DatabaseTracer(this.telemetryTarget);
    this.prepare = options.prepare;
    this.defaultExec = { rowMode: 'object', prepare: options.prepare };
    this.queryTimeoutMs = options.queryTimeoutMs;
    // Slow-query logging without a threshold of its own uses one second.
    this.slowQueryMs = options.slowQueryMs || (options.logging.slow ? 1000 : 0);
    this.log = options.logging;
    this.waitForRecoveryMs = options.waitForRecoveryMs;
    this.keepAlive = inBackground(() => setInterval(() => {}, 2 ** 31 - 1));
    this.keepAlive.unref();
    const dialectDeath = (error: unknown) => this.driver.classify(error).lost === true;
    const checker = withTransientErrors(options.deathChecker ?? anyDeath(socketDeathChecker, dialectDeath), options.transientErrors);
    this.detector = new DeadConnectionDetector({
      name: this.name,
      deathChecker: checker,
      reconnect: options.reconnect,
      reconnector: () => this.reconnect(),
      onDeath: (error) => {
        const e = this.driver.translateError(error);
        this.logger.warn(`database "${this.name}" marked dead: ${e.message}; reconnecting in the background`);
        // Fail fast means everyone: the callers already queued for a connection too.
        for (const pool of this.router.pools()) pool.failWaiters(this.detector.deadError());
        inBackground(() => this.events.emit('dead', { database: this.name, error: e }));
      },
      onRecovered: (downtimeMs) => {
        this.logger.log(`database "${this.name}" recovered after ${downtimeMs} ms`);
        this.events.emit('recovered', { database: this.name, downtimeMs });
      },
      onHandlerError: (error) => this.logger.error(`a recovery handler of database "${this.name}" threw: ${(error as Error)?.message}`),
    });
    const reset = async (connection: Connection, dirty: boolean) => {
      if (dirty) {
        if (!connection.resetSession) throw new NotSupported(`${this.dialect} connections cannot be reset`, { dialect: this.dialect });
        await connection.resetSession();
      } else await connection.execute(this.driver.endStatements.rollback, [], { rowMode: 'array' });
      if (connection.transactionStatus !== 'idle' && connection.transactionStatus !== 'unknown') {
        throw new DatabaseError('the connection is still in a transaction after its reset', { code: ErrorCode.ResetFailed, dialect: this.dialect });
      }
    };
    this.pool = new Pool(options.pool, {
      validate: (connection) => connection.ping(),
      name: this.name,
      create: () => this.connectDriver(),
      onCreateError: (error) => this.detector.checkForDeadConnection(error),
      // One pooled connection that died proves little (a killed session, an idle timeout): the detector checks the server first.
      onConnectionError: (error) => {
        if (this.state === 'open') this.detector.suspectDeadConnection(error);
      },
      onOpen: (c) => {
        if (c.otelSystem && c.otelSystem !== this.telemetryTarget.system) {
          this.telemetryTarget.system = c.otelSystem;
          this.metrics?.retarget();
        }
        this.events.emit('connectionOpened', { database: this.name, serverId: c.serverId });
      },
      onCreated: (ms) => this.metrics?.created(this.pool.name, ms / 1000),
      onClose: (c) => this.events.emit('connectionClosed', { database: this.name, serverId: c.serverId }),
      onLeak: (message, stack) => {
        this.logger.warn(`${message}\n${stack}`);
        this.events.emit('leak', { database: this.name, message, stack });
      },
      reset,
    });
    this.replicas = this.replicaSet(reset);
    this.router = this.replicas ?? new SinglePoolRouter(this.pool);
  }

  /** One pool per replica (its own driver, the primary's pool settings), when the dialect has replicas and some are configured. */
  private replicaSet(reset: (connection: Connection, dirty: boolean) => Promise<void>): ReplicaSet | undefined {
    const replication = this.options.replication;
    const support = this.driver.replication;
    if (replication.replicas.length === 0 || !support) return undefined;
    // Every replica session is read-only, so that no write can land on a replica (a superuser may write on a read_only server).
    const readOnly = async (connection: Connection) => {
      if (support.readOnlySession) await connection.execute(support.readOnlySession, [], { rowMode: 'array', prepare: false });
      return connection;
    };
    const members = replication.replicas.map(({ label, settings }): ReplicaMember => {
      const driver = createDriver(this.dialect, settings);
      const member: ReplicaMember = {
        label,
        driver,
        state: 'unknown',
        pool: new Pool(
          { ...this.options.pool, min: 0 },
          {
            name: `${this.name} (replica ${label})`,
            create: () =>
              driver
                .connect()
                .then(async (connection) => {
                  try {
                    return await readOnly(connection);
                  } catch (error) {
                    connection.destroy();
                    throw error;
                  }
                })
                .catch((error: unknown) => {
                  throw driver.translateError(error);
                }),
            validate: (connection) => connection.ping(),
            reset: async (connection, dirty) => {
              await reset(connection, dirty);
              if (dirty) await readOnly(connection);
            },
            onCreated: (ms) => this.metrics?.created(member.pool.name, ms / 1000),
            // A replica's trouble is the replica's: it leaves the rotation; the database is not marked dead.
            onCreateError: (error) => set.suspect(member, error),
            onConnectionError: (error) => set.suspect(member, error),
          },
        ),
      };
      return member;
    });
    const set = new ReplicaSet(this.pool, members, support, replication, this.options.settings.connectTimeoutMs, this.logger, this.name);
    return set;
  }

  /**
   * Starts the metrics (once `@opentelemetry/api` is loaded): the meter provider the app
   * registered by then gets them.
   */
  startTelemetry(sources: Pick<MetricSources, 'notifications'>): void {
    if (!this.options.metrics || this.metrics) return;
    this.metrics = DatabaseMetrics.create(this.telemetryTarget, this.name, {
      pools: () => this.router.pools().map((pool) => ({ poolName: pool.name, stats: () => pool.stats(), min: pool.options.min })),
      detector: () => this.detector,
      replicas: this.replicas ? () => this.replicas!.status() : undefined,
      notifications: sources.notifications,
    });
  }

  /** Wraps one public call: its handle (for cancel), its deadline and signal, in-flight tracking. */
  call<T>(options: QueryOptions | undefined, body: (call: CallHandle) => Promise<T>): Promise<T> {
    const call = new CallHandle(this);
    if (this.inFlight++ === 0) this.keepAlive.ref();
    const promise = new Promise<T>((resolve, reject) => {
      call.reject = reject;
      const signal = options?.signal;
      if (signal) {
        if (signal.aborted) {
          call.settle();
          this.callDone();
          reject(new QueryCanceled('query not sent: its AbortSignal was already aborted', { database: this.name, dialect: this.dialect }));
          return;
        }
        call.watch(signal);
      }
      const timeoutMs = options?.timeoutMs ?? this.queryTimeoutMs;
      if (timeoutMs > 0) call.deadline(timeoutMs);
      body(call).then(
        (value) => {
          call.settle();
          this.pending.remove(call);
          this.callDone();
          resolve(value);
        },
        (error) => {
          call.settle();
          this.pending.remove(call);
          this.callDone();
          reject(error);
        },
      );
    });
    const outer = withCallerStack(promise);
    call.promise = outer;
    if (!call.finished) this.pending.add(call);
    return outer;
  }

  callDone(): void {
    if (--this.inFlight === 0) {
      this.keepAlive.unref();
      if (this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  track<R>(fn: () => Promise<R>): Promise<R> {
    if (this.inFlight++ === 0) this.keepAlive.ref();
    let p: Promise<R>;
    try {
      p = fn();
    } catch (error) {
      p = Promise.reject(error);
    }
    p.then(
      () => this.callDone(),
      () => this.callDone(),
    );
    return p;
  }

  compile(query: string | SqlQuery, params: unknown[] | undefined): { text: string; values: unknown[] } {
    let text: string;
    let values: unknown[];
    if (typeof query === 'string') {
      text = query;
      values = params ?? [];
      if (!Array.isArray(values)) throw new InvalidParameter('params must be an array of values', { query: text });
    } else if (isSqlQuery(query)) {
      if (params !== undefined && params.length > 0) {
        throw new InvalidParameter('a sql`` query carries its own values; pass no params array beside it');
      }
      ({ text, values } = query.compile(this.driver.syntax));
    } else {
      throw new InvalidParameter(`query must be a string or a sql\`\` template (got ${typeof query})`);
    }
    checkParameters(values, this.driver.syntax, text);
    checkArraysInLists(text, values, this.driver.syntax);
    return { text, values };
  }

  /** A statement that may leave state on its session (SET, advisory lock, user variable…) gets its connection reset before reuse. */
  markIfSessionChanged(lease: Lease, text: string): void {
    const mode = this.options.sessionReset;
    if (mode === 'never') return;
    if (mode === 'always') {
      lease.dirty = true;
      return;
    }
    let changes = this.sessionChanging.get(text);
    if (changes === undefined) {
      changes = this.driver.changesSession?.(text) ?? false;
      if (this.sessionChanging.size < MAX_CLASSIFIED_STATEMENTS) this.sessionChanging.set(text, changes);
    }
    if (changes) lease.dirty = true;
  }

  /** The driver's options for a statement of this call; the server-side limit only when it differs from the session's. */
  executeOptions(call: CallHandle, options: QueryOptions | undefined): ExecuteOptions {
    // No options: the same object every time (the drivers only read it).
    if (options === undefined) return this.defaultExec;
    const exec: ExecuteOptions = { rowMode: options?.rowMode ?? 'object', prepare: options?.prepare ?? this.prepare };
    const timeoutMs = options?.timeoutMs;
    // The server's limit is the backstop: a little later than the call's deadline, so that the call's own timeout, which
    // cancels on the server and gives up the connection, comes first.
    if (timeoutMs !== undefined && timeoutMs !== this.queryTimeoutMs) exec.statementTimeoutMs = timeoutMs > 0 ? timeoutMs + SERVER_LIMIT_MARGIN_MS : 0;
    return exec;
  }

  shape(mode: 'rows' | 'operation', result: ResultSet): unknown {
    if (mode === 'rows') return result.rows;
    const out: OperationResult = { affectedRows: result.affectedRows };
    if (result.insertId !== undefined) out.insertId = result.insertId;
    if (result.changedRows !== undefined) out.changedRows = result.changedRows;
    if (result.warningCount !== undefined) out.warningCount = result.warningCount;
    if (result.message !== undefined) out.message = result.message;
    if (result.serverStatus !== undefined) out.serverStatus = result.serverStatus;
    if (result.command !== undefined) out.command = result.command;
    return out;
  }

  /** Runs one statement on a connection, under the call's interruption rules; feeds failures to the detector. */
  async run(connection: Connection, call: CallHandle, text: string, values: unknown[], exec: ExecuteOptions): Promise<ResultSet> {
    call.throwIfInterrupted();
    call.connection = connection;
    const started = this.slowQueryMs > 0 || this.metrics ? performance.now() : 0;
    if (this.log.query) this.logger.log(`query: ${text}`);
    const span = this.tracer?.statement(text, undefined, call);
    try {
      const result = await connection.execute(text, values, exec);
      if (span) this.tracer!.end(span);
      if (this.metrics) this.metrics.operation(text, (performance.now() - started) / 1000);
      return result;
    } catch (error) {
      const translated = this.driver.translateError(error);
      if (span || this.metrics) {
        this.tracer?.end(span, translated);
        this.metrics?.operation(text, (performance.now() - started) / 1000, translated);
      }
      // After an interruption the failure is our own doing (the cancel, or the destroy after the grace period), not news about the server.
      if (call.interruption) {
        call.statementFailed(translated);
        throw translated;
      }
      const e = this.failed(translated);
      call.statementFailed(e);
      // A server that refuses writes (after a failover) and a driver that gave up the connection for it: the idle ones go too.
      if (connection.broken && this.driver.classify(e).wrongHost) {
        this.logger.warn(`database "${this.name}": the server refused a write as read-only (${e.message}); looking for the host that takes writes`);
        this.pool.discardIdle();
      }
      if (this.log.error) this.logger.error(`query failed (${e.code}): ${e.message} -- ${text}`);
      throw this.detector.isDeathError(e) && !wasNotSent(e) ? this.lostUnder(e) : e;
    } finally {
      call.connection = undefined;
      if (this.slowQueryMs > 0) {
        const durationMs = performance.now() - started;
        if (durationMs >= this.slowQueryMs) {
          if (this.log.slow) this.logger.warn(`slow query (${Math.round(durationMs)} ms): ${text}`);
          this.events.emit('slowQuery', { database: this.name, query: text, durationMs });
        }
      }
    }
  }

  /** A connection lost under a call: `ConnectionDead`, keeping what the server or socket said. */
  lostUnder(e: DatabaseError): ConnectionDead {
    return new ConnectionDead(
      `the connection to database "${this.name}" was lost while the statement ran (${e.message}); it may or may not have taken effect`,
      {
        mayHaveRun: true,
        cause: e,
        query: e.query,
        sqlState: e.sqlState,
        errno: e.errno,
        dialect: this.dialect,
        database: this.name,
      },
    );
  }

  /** Translates an error and tells the detector about it: a connection that died makes it check the server. */
  failed(error: unknown): DatabaseError {
    const e = this.driver.translateError(error);
    if (this.state === 'open') this.detector.suspectDeadConnection(e);
    return e;
  }

  /** Refuses work once shutdown began. The detector's fail-fast is in acquire(), which knows whether the call may wait. */
  assertUsable(): void {
    if (this.state !== 'open') throw this.closedError();
  }

  closedError(): DatabaseClosed {
    return new DatabaseClosed(`database "${this.name}" is closed (the application is shutting down)`, {
      database: this.name,
      dialect: this.dialect,
    });
  }

  /**
   * A pool connection for this call. While the detector says dead, and when the connection
   * cannot be opened because the server is gone, the call fails at once with `ConnectionDead`,
   * unless it may wait for the reconnect (`waitForRecoveryMs`, per call or module), within its
   * deadline. A call that would wait for a connection its own code holds fails at once too.
   */
  async acquire(call: CallHandle, waitForRecoveryMs = this.waitForRecoveryMs, intent: Intent = 'write'): Promise<Lease> {
    const acquireTimeoutMs = this.options.pool.acquireTimeoutMs;
    const pool = this.router.route(intent);
    for (let attempt = 0; ; attempt++) {
      if (this.detector.isDead) {
        if (waitForRecoveryMs > 0 && attempt < 2 && (await this.waitForRecovery(call, waitForRecoveryMs))) continue;
        call.throwIfInterrupted();
        throw this.detector.deadError();
      }
      if (pool.isExhausted()) this.checkSelfDeadlock(pool);
      let lease: Lease;
      try {
        // Within the call's deadline, if it has one: a caller with queryTimeoutMs never waits longer for a connection,
        // and one whose deadline ran out while waiting gets its QueryTimeout, not the pool's AcquireTimeout.
        const waitMs = call.remainingMs(acquireTimeoutMs);
        const timed = this.timed();
        const started = timed ? performance.now() : 0;
        lease = await pool.acquire(waitMs).catch((error: unknown) => {
          if (error instanceof AcquireTimeout) {
            this.metrics?.timedOut(pool.name);
            if (waitMs < acquireTimeoutMs) call.expire();
          }
          throw error;
        });
        if (timed) {
          const waited = performance.now() - started;
          call.poolWaitMs = (call.poolWaitMs ?? 0) + waited;
          this.metrics?.waited(pool.name, waited / 1000);
        }
      } catch (error) {
        call.throwIfInterrupted();
        if (this.state === 'open' && (error instanceof ConnectionDead || this.detector.isDeathError(error))) {
          // No connection could be opened: the server is gone, and nothing was sent.
          if (waitForRecoveryMs > 0 && attempt < 2) continue;
          if (error instanceof ConnectionDead) throw error;
          if (this.detector.isDead) throw this.detector.deadError();
          const e = this.driver.translateError(error);
          throw new ConnectionDead(`no connection to database "${this.name}" could be opened (${e.message}); nothing was sent`, {
            cause: e,
            dialect: this.dialect,
            database: this.name,
          });
        }
        throw this.driver.translateError(error);
      }
      if (call.isSettled) {
        lease.pool.release(lease);
        call.throwIfInterrupted();
      }
      return lease;
    }
  }

  /** Metrics are on, or spans are (an SDK is registered): the waits of a call are measured. */
  private timed(): boolean {
    return this.metrics !== undefined || this.tracer?.tracer() !== undefined;
  }

  /** Waits (within the call's deadline) for the detector's reconnect; true if it came. The wait is on the call's span. */
  private async waitForRecovery(call: CallHandle, limitMs: number): Promise<boolean> {
    const timed = this.timed();
    const started = timed ? performance.now() : 0;
    const recovered = await this.detector.waitForRecovery(call.remainingMs(limitMs));
    if (timed) call.recoveryWaitMs = (call.recoveryWaitMs ?? 0) + performance.now() - started;
    return recovered;
  }

  /**
   * Every connection of the pool is taken: if the calling code holds them all itself (the
   * transactions it runs in, suspended by `requiresNew`/`notSupported`, and the streams it is
   * reading), waiting could never end; it is refused at once.
   */
  checkSelfDeadlock(pool: Pool): void {
    const max = pool.options.max;
    const held = heldLeases(this.owner, (tx) => ((tx as Transaction).holdsConnection ? (tx as Transaction).lease : undefined));
    if (held.size < max) return;
    throw new AcquireTimeout(
      `this call waits for a connection of database "${this.name}", but the calling code itself holds all ${max} of them ` +
        '(a transaction it runs in, suspended by propagation requiresNew or notSupported, or a stream it is still reading), so it could never get one: ' +
        `requiresNew, notSupported and a query made while reading a stream each need a connection more than the caller holds. Finish the stream first (or collect its rows), ` +
        `run the work in the same transaction, or raise pool.max (now ${max})`,
      { code: ErrorCode.SelfDeadlock, database: this.name, dialect: this.dialect },
    );
  }

  /** Returns a call's connection; after an interruption, only once the cancel went out, and never reused if the cancel may still land. */
  release(lease: Lease, call?: CallHandle): void {
    if (call?.interruption) {
      // A client-side timeout destroys the connection: whatever made it slow (a lock, a stopped backend) may still hold it.
      if (call.poisoned || call.interruption instanceof QueryTimeout) lease.discard = true;
      void call.cancelSent.then(() => lease.pool.release(lease));
      return;
    }
    lease.pool.release(lease);
  }

  /** @internal The detector's reconnect: one new connection that answers a ping joins the pool. */
  async reconnect(): Promise<void> {
    const connection = await this.connectDriver();
    const limitMs = this.options.settings.connectTimeoutMs;
    try {
      // Bounded like the connect: a server that accepts and then says nothing must not stall the reconnect loop.
      await withTimeout(
        connection.ping(),
        limitMs,
        () => new DatabaseError(`ping got no answer within ${limitMs} ms`, { code: ErrorCode.ConnectTimeout, dialect: this.dialect }),
      );
    } catch (error) {
      connection.destroy();
      throw error;
    }
    this.router.pools()[0].adopt(connection);
  }

  /** The session's connection, refused once it was lost (its state went with it). */
  async sessionLease(session: DatabaseSession): Promise<Lease> {
    const lease = await session.connect();
    if (lease.discard || lease.connection.broken) {
      throw new ConnectionDead(
        `the connection of this session of database "${this.name}" was lost, and the session's state (settings, locks, temporary tables) with it; end the session and start a new one`,
        { database: this.name, dialect: this.dialect },
      );
    }
    return lease;
  }

  settingsStatement(settings: Array<[string, unknown]>, local: boolean): { text: string; values: unknown[] } {
    if (!this.driver.settingsStatement) {
      throw new NotSupported(`database "${this.name}" (${this.dialect}) has no session settings`, { dialect: this.dialect, database: this.name });
    }
    return this.driver.settingsStatement(settings, local && this.driver.localSettings === true);
  }

  /** An iterable whose every iteration opens its own cursor: rows served from batches, one promise per row. */
  /** A stream's span (and operation duration) from its statement's start to its end, its failure included. */
  private traced<T>(open: (iterator: RowIterator<T>) => Promise<StreamSource>): (iterator: RowIterator<T>) => Promise<StreamSource> {
    return async (iterator) => {
      const source = await open(iterator);
      const started = performance.now();
      const span = this.tracer?.statement(source.text);
      return {
        ...source,
        finish: (error?: unknown) => {
          const e = error === undefined ? undefined : this.driver.translateError(error);
          this.tracer?.end(span, e);
          this.metrics?.operation(source.text, (performance.now() - started) / 1000, e);
          source.finish(error);
        },
      };
    };
  }

  rowStream<T>(options: QueryOptions | undefined, open: (iterator: RowIterator<T>) => Promise<StreamSource>): AsyncIterable<T> & { readable(): Readable } {
    const cursorOptions = { rowMode: options?.rowMode ?? 'object', batchSize: options?.batchSize ?? DEFAULT_BATCH_SIZE } as const;
    const signal = options?.signal;
    const timeoutMs = options?.timeoutMs ?? 0;
    const iterable = {
      [Symbol.asyncIterator]: () => {
        const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : 0;
        // Checked between batches: a stream runs for as long as its consumer reads.
        const interruption =
          signal || deadline
            ? () =>
                signal?.aborted
                  ? new QueryCanceled('stream canceled by its AbortSignal', { database: this.name, dialect: this.dialect })
                  : deadline && Date.now() > deadline
                    ? new QueryTimeout(`stream on database "${this.name}" exceeded its timeout of ${timeoutMs} ms`, {
                        timeoutMs,
                        database: this.name,
                        dialect: this.dialect,
                      })
                    : undefined
            : undefined;
        return new RowIterator<T>(this.tracer || this.metrics ? this.traced(open) : open, cursorOptions, (error) => this.failed(error), interruption);
      },
      readable: () => Readable.from(iterable, { objectMode: true }),
    };
    return iterable;
  }

  streamFromPool<T>(query: string | SqlQuery, params: unknown[] | undefined, options: QueryOptions | undefined): AsyncIterable<T> & { readable(): Readable } {
    const iterable = this.rowStream<T>(options, async () => {
      const { text, values } = this.compile(query, params);
      this.assertUsable();
      if (this.inFlight++ === 0) this.keepAlive.ref();
      let lease: Lease;
      try {
        lease = await this.acquire(new CallHandle(this), options?.waitForRecoveryMs);
      } catch (error) {
        this.callDone();
        throw error;
      }
      return {
        connection: lease.connection,
        text,
        values,
        lease,
        finish: (error?: unknown) => {
          if (error !== undefined && this.detector.isDeathError(error)) lease.discard = true;
          lease.pool.release(lease);
          this.callDone();
        },
      };
    });
    return {
      ...iterable,
      // The code reading the stream holds its connection: a query it makes meanwhile that would need one more than the
      // pool has is refused at once (checkSelfDeadlock) instead of waiting for ever.
      [Symbol.asyncIterator]: () => {
        const iterator = iterable[Symbol.asyncIterator]() as RowIterator<T>;
        enterHolder(this.owner, iterator);
        return iterator;
      },
    };
  }

  /**
   * A new connection; whatever the driver throws comes out translated, so that nothing it
   * carries (mysql2 puts a malformed URL, password included, in a TypeError's `input`)
   * reaches the pool, the detector, logs or health output unredacted.
   */
  connectDriver(): Promise<Connection> {
    let pending: Promise<Connection>;
    try {
      pending = this.driver.connect();
    } catch (error) {
      pending = Promise.reject(error);
    }
    return pending.catch((error: unknown) => {
      throw this.driver.translateError(error);
    });
  }

  /** A statement on a pool connection: replayed on a fresh one when it provably was not sent, or when the caller said it is idempotent. */
  async executeOnPool(
    call: CallHandle,
    text: string,
    values: unknown[],
    exec: ExecuteOptions,
    options: QueryOptions | undefined,
    routing: Routing = 'write',
  ): Promise<ResultSet> {
    this.assertUsable();
    if (routing === 'replica' && this.replicas) {
      const answered = await this.readOnReplica(this.replicas, call, text, values, exec);
      if (answered) return answered;
    }
    let replays = 0;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) call.attempt = attempt + 1;
      // A warm idle connection is taken without a promise; anything else (waiting, opening, dead) goes through acquire().
      const lease =
        (!call.isSettled && !this.timed() && !this.detector.isDead && this.pool.takeIdle()) || (await this.acquire(call, options?.waitForRecoveryMs));
      let result: ResultSet;
      try {
        result = await this.run(lease.connection, call, text, values, exec);
      } catch (error) {
        // A connection the driver gave up (dead, or a node that does not take work) is not reused.
        if (this.detector.isDeathError(error) || lease.connection.broken) lease.discard = true;
        this.release(lease, call);
        // A statement that provably never left the client (its connection was already closed: an idle
        // socket the server or the network reset) runs on a fresh connection, as if nothing happened.
        if (lease.discard && !call.isSettled && wasNotSent(error) && replays++ < this.options.pool.max) continue;
        // Replay what may have reached the server only when the caller declared it idempotent.
        if (options?.retry && attempt === replays && lease.discard && !call.isSettled) {
          if (!this.detector.isDead || (await this.waitForRecovery(call, this.options.pool.acquireTimeoutMs))) continue;
        }
        throw error;
      }
      // A write (or what may be one): the position it reached, before its connection goes back.
      if (routing === 'write' && this.replicas) await this.replicas.afterWrite(lease.connection);
      this.markIfSessionChanged(lease, text);
      this.release(lease, call);
      return result;
    }
  }

  /**
   * A read on a replica that has what the calling context must see: undefined when none is up,
   * none caught up in time, or the replica failed under it (a replica runs nothing that could
   * change data, so the primary may always answer instead).
   */
  private async readOnReplica(set: ReplicaSet, call: CallHandle, text: string, values: unknown[], exec: ExecuteOptions): Promise<ResultSet | undefined> {
    const lease = await this.replicaLease(set, call);
    if (!lease) return undefined;
    call.throwIfInterrupted();
    call.connection = lease.connection;
    const [address, port] = lease.member.label.split(':');
    const span = this.tracer?.statement(text, { address, port: Number(port) || undefined });
    const started = this.metrics ? performance.now() : 0;
    try {
      const result = await lease.connection.execute(text, values, exec);
      this.tracer?.end(span);
      this.metrics?.operation(text, (performance.now() - started) / 1000);
      return result;
    } catch (error) {
      const e = this.driver.translateError(error);
      this.tracer?.end(span, e);
      this.metrics?.operation(text, (performance.now() - started) / 1000, e);
      call.statementFailed(e);
      if (call.interruption) throw call.interruption;
      if (this.driver.classify(e).lost) {
        lease.discard = true;
        set.suspect(lease.member, e);
      }
      return undefined;
    } finally {
      call.connection = undefined;
      this.release(lease, call);
    }
  }

  /** A replica connection that has replayed what the caller must see, or undefined (the primary then answers). */
  async replicaLease(set: ReplicaSet, call: CallHandle): Promise<(Lease & { member: ReplicaMember }) | undefined> {
    const member = set.pick();
    if (!member) return undefined;
    let lease: Lease;
    const started = this.metrics ? performance.now() : 0;
    try {
      lease = await member.pool.acquire(call.remainingMs(this.options.pool.acquireTimeoutMs));
    } catch (error) {
      if (error instanceof AcquireTimeout) this.metrics?.timedOut(member.pool.name);
      set.suspect(member, this.driver.translateError(error));
      return undefined;
    }
    this.metrics?.waited(member.pool.name, (performance.now() - started) / 1000);
    try {
      if (await set.caughtUp(member, lease.connection, call.remainingMs(Infinity))) return Object.assign(lease, { member });
    } catch (error) {
      lease.discard = true;
      set.suspect(member, this.driver.translateError(error));
    }
    member.pool.release(lease);
    return undefined;
  }
}
