/**
 * `Database`: the facade users inject, one per named database. Every call goes down the same
 * path: the transaction of the current async context or a pool connection, the detector's
 * fail-fast check, the deadline and abort handling, error translation.
 *
 * @example
 * @Injectable()
 * export class UsersService {
 *   constructor(@InjectDatabase() private readonly db: Database) {}
 *   find(login: string) {
 *     return this.db.runQuery<User>(sql`SELECT * FROM users WHERE login = ${login}`);
 *   }
 * }
 */
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import type { Connection, Driver, ExecuteOptions, Notification, ResultSet } from '../drivers/driver.js';
import { RowIterator, type StreamSource } from './row-iterator.js';
import { createDriver } from '../drivers/registry.js';
import {
  AcquireTimeout,
  ConnectionDead,
  DatabaseClosed,
  DatabaseError,
  InvalidParameter,
  NotSupported,
  QueryCanceled,
  QueryTimeout,
  TransactionError,
  type Dialect,
} from '../core/errors.js';
import type { ResolvedOptions } from '../config/options.js';
import { Pool, type Lease, type PoolStats } from '../pool/pool.js';
import { withTransientErrors, defaultDeathChecker } from '../resilience/death-checker.js';
import { DeadConnectionDetector } from '../resilience/detector.js';
import { checkArraysInLists, isSqlQuery, sql, type SqlQuery } from '../sql/template.js';
import { currentSession, currentTransaction, currentWork, enterHolder, heldLeases, runInSession } from '../transactions/transaction.context.js';
import { inBackground } from '../core/background.js';
import { InteractionControl, runTransactional, type TransactionRunnerHost } from '../transactions/transaction.runner.js';
import { Transaction, type TransactionOptions } from '../transactions/transaction.js';
import type { OperationResult, QueryOptions, Row } from '../core/types.js';
import type { Logger } from '../core/logger.js';
import { checkParameters } from '../sql/parameters.js';
import { CallHandle } from './call.js';
import { withCallerStack } from '../core/caller-stack.js';
import { checkSettings, DatabaseSession, type SessionHost, type SessionOptions } from './session.js';
import { wasNotSent } from '../drivers/not-sent.js';
import { Listener, quoteChannel, type ResubscribeInfo, type SubscribeOptions } from '../notify/listener.js';

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

export class Database implements TransactionRunnerHost {
  readonly name: string;
  readonly dialect: Dialect;
  readonly detector: DeadConnectionDetector;
  /** Connection, death, recovery and slow-query events for metrics and logs. Never carries parameter values. */
  readonly events = new EventEmitter<DatabaseEvents>();
  /** @internal */ readonly driver: Driver;
  /** @internal */ readonly logger: Logger;
  private readonly pool: Pool;
  private readonly calls = new WeakMap<Promise<unknown>, { interrupt(error: DatabaseError): void; cancelSent?: Promise<void> }>();
  /** Referenced while calls are pending, so that a script awaiting one never exits before it settled. */
  private readonly keepAlive: NodeJS.Timeout;
  private readonly waitForRecoveryMs: number;
  /** Statement text → whether it may leave state on the session (`sessionReset: 'auto'`). */
  private readonly sessionChanging = new Map<string, boolean>();
  private readonly log: ResolvedOptions['logging'];
  private readonly prepare: boolean;
  private readonly queryTimeoutMs: number;
  private readonly slowQueryMs: number;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private inFlight = 0;
  private idleWaiters: Array<() => void> = [];
  private listenerValue?: Listener;
  private probeConnection?: Connection;
  private probing?: Promise<number>;
  /** @internal Set by the module when shutdown begins, so readiness reports down before the pool drains. */
  shuttingDown = false;

  constructor(
    /** @internal */ readonly options: ResolvedOptions,
    logger: Logger,
  ) {
    this.name = options.name;
    this.dialect = options.dialect;
    this.logger = logger;
    this.driver = createDriver(options.dialect, options.settings, options.driver);
    this.prepare = options.prepare;
    this.queryTimeoutMs = options.queryTimeoutMs;
    // Slow-query logging without a threshold of its own uses one second.
    this.slowQueryMs = options.slowQueryMs || (options.logging.slow ? 1000 : 0);
    this.log = options.logging;
    this.waitForRecoveryMs = options.waitForRecoveryMs;
    this.keepAlive = inBackground(() => setInterval(() => {}, 2 ** 31 - 1));
    this.keepAlive.unref();
    const checker = withTransientErrors(options.deathChecker ?? defaultDeathChecker, options.transientErrors);
    this.detector = new DeadConnectionDetector({
      name: this.name,
      deathChecker: checker,
      reconnect: options.reconnect,
      reconnector: () => this.reconnect(),
      onDeath: (error) => {
        const e = this.driver.translateError(error);
        this.logger.warn(`database "${this.name}" marked dead: ${e.message}; reconnecting in the background`);
        // Fail fast means everyone: the callers already queued for a connection too.
        this.pool.failWaiters(this.detector.deadError());
        inBackground(() => this.events.emit('dead', { database: this.name, error: e }));
      },
      onRecovered: (downtimeMs) => {
        this.logger.log(`database "${this.name}" recovered after ${downtimeMs} ms`);
        this.events.emit('recovered', { database: this.name, downtimeMs });
      },
      onHandlerError: (error) => this.logger.error(`a recovery handler of database "${this.name}" threw: ${(error as Error)?.message}`),
    });
    this.pool = new Pool(options.pool, {
      name: this.name,
      create: () => this.connectDriver(),
      onCreateError: (error) => this.detector.checkForDeadConnection(error),
      // One pooled connection that died proves little (a killed session, an idle timeout): the detector checks the server first.
      onConnectionError: (error) => {
        if (this.state === 'open') this.detector.suspectDeadConnection(error);
      },
      onOpen: (c) => this.events.emit('connectionOpened', { database: this.name, serverId: c.serverId }),
      onClose: (c) => this.events.emit('connectionClosed', { database: this.name, serverId: c.serverId }),
      onLeak: (message, stack) => {
        this.logger.warn(`${message}\n${stack}`);
        this.events.emit('leak', { database: this.name, message, stack });
      },
      reset: async (connection, dirty) => {
        if (dirty) {
          if (!connection.resetSession) throw new NotSupported(`${this.dialect} connections cannot be reset`, { dialect: this.dialect });
          await connection.resetSession();
        } else await connection.execute('ROLLBACK', [], { rowMode: 'array' });
        if (connection.transactionStatus !== 'idle' && connection.transactionStatus !== 'unknown') {
          throw new DatabaseError('the connection is still in a transaction after its reset', { code: 'RESET_FAILED', dialect: this.dialect });
        }
      },
    });
  }

  /**
   * @internal Called by the module at bootstrap: loads the driver's package (a missing one fails
   * the boot with `ConfigurationError`), checks the server when `verifyOnStartup`, and opens
   * `pool.min` connections.
   */
  async start(work?: { needsServer: boolean; run(db: Database): Promise<unknown> }): Promise<void> {
    try {
      await this.driver.load?.();
      // Work at boot (the migrations) needs the server: wait for it as verifyOnStartup does.
      if (this.options.verifyOnStartup || work?.needsServer) await this.verifyReachable();
      await work?.run(this);
    } catch (error) {
      // The provider will never exist, so nobody else would stop what the failure started (a reconnect loop, a worker).
      await this.close().catch(() => {});
      throw error;
    }
    this.pool.fill();
  }

  private bootNeedsServer(): string {
    return this.options.verifyOnStartup ? 'verifyOnStartup' : 'migrations.runOnBoot';
  }

  /**
   * verifyOnStartup: one connection must open and answer. A server that cannot be reached is
   * waited for (the detector reconnects with the `reconnect` backoff) until `startupTimeoutMs`;
   * any other failure (credentials, unknown database, TLS) ends the boot at once, saying which.
   */
  private async verifyReachable(): Promise<void> {
    const { startupTimeoutMs } = this.options;
    const deadline = Date.now() + startupTimeoutMs;
    for (let attempt = 0; attempt < 1_000_000; attempt++) {
      let e: DatabaseError;
      try {
        await this.pool.verify();
        return;
      } catch (error) {
        e = this.driver.translateError(error);
      }
      const where = `database "${this.name}" (${this.driver.describe()})`;
      if (!this.detector.isDeathError(e)) {
        const auth = /^(28P01|28000)$/.test(e.sqlState ?? '') || e.errno === 1045 || e.code === 'ER_ACCESS_DENIED_ERROR';
        const unknown = e.sqlState === '3D000' || e.errno === 1049;
        const why = auth
          ? 'authentication failed: check user and password'
          : unknown
            ? 'the server has no such database: check the database name'
            : 'the server refused the connection';
        throw new DatabaseError(`${where}: ${why} (${e.message}). ${this.bootNeedsServer()} stops the boot; retrying would not help`, {
          code: 'STARTUP_FAILED',
          cause: e,
          dialect: this.dialect,
          database: this.name,
        });
      }
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.detector.waitForRecovery(left))) {
        throw new DatabaseError(
          `${where} could not be reached within startupTimeoutMs (${startupTimeoutMs} ms) at startup (${this.bootNeedsServer()}): ${e.message}. ` +
            (this.options.verifyOnStartup
              ? 'Check the server and the connection options, raise startupTimeoutMs, or set verifyOnStartup: false to start without it and connect lazily'
              : 'Check the server and the connection options, raise startupTimeoutMs, or set migrations.runOnBoot: false and run them with the nestjs-dbpool command'),
          { code: 'STARTUP_FAILED', cause: e, dialect: this.dialect, database: this.name },
        );
      }
    }
  }

  /**
   * Runs a statement and resolves with its rows. A `sql` template carries its values, so its
   * options may come second: `runQuery(sql\`…\`, { timeoutMs: 500 })`.
   */
  runQuery<T = Row>(query: SqlQuery, options?: QueryOptions): Promise<T[]>;
  runQuery<T = Row>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  runQuery<T = Row>(query: string | SqlQuery, paramsOrOptions?: unknown[] | QueryOptions, maybeOptions?: QueryOptions): Promise<T[]> {
    const [params, options] = splitArgs(paramsOrOptions, maybeOptions);
    return this.call(options, (call) => this.execute(call, 'rows', query, params, options)) as Promise<T[]>;
  }

  /** Runs a statement and resolves with what it changed: affected rows, insert id, warnings. Options may come second after a `sql` template. */
  runOperation(query: SqlQuery, options?: QueryOptions): Promise<OperationResult>;
  runOperation(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<OperationResult>;
  runOperation(query: string | SqlQuery, paramsOrOptions?: unknown[] | QueryOptions, maybeOptions?: QueryOptions): Promise<OperationResult> {
    const [params, options] = splitArgs(paramsOrOptions, maybeOptions);
    return this.call(options, (call) => this.execute(call, 'operation', query, params, options)) as Promise<OperationResult>;
  }

  /**
   * Runs `interaction` in a transaction on one connection: COMMIT when its promise resolves,
   * ROLLBACK when it rejects (the caller gets the original error). Inside it, this
   * Database's `runQuery`/`runOperation`/`stream` use the transaction's connection.
   */
  runInteraction<R>(interaction: (tx: Transaction) => Promise<R>, options: TransactionOptions = {}): Promise<R> {
    const control = new InteractionControl();
    const promise = this.track(() => runTransactional(this, options, interaction, control));
    this.calls.set(promise, { interrupt: (error) => control.cancel(error) });
    return promise;
  }

  /** The transaction of the current async context on this database, if any. */
  currentTransaction(): Transaction | undefined {
    return currentTransaction<Transaction>(this);
  }

  /**
   * Rows one at a time, with backpressure: an async iterable, and `.readable()` gives a Node
   * Readable for piping. Breaking out of `for await` closes the cursor and returns the connection.
   */
  stream<T = Row>(query: SqlQuery, options?: QueryOptions): AsyncIterable<T> & { readable(): Readable };
  stream<T = Row>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): AsyncIterable<T> & { readable(): Readable };
  stream<T = Row>(query: string | SqlQuery, paramsOrOptions?: unknown[] | QueryOptions, maybeOptions?: QueryOptions): AsyncIterable<T> & { readable(): Readable } {
    const [params, options] = splitArgs(paramsOrOptions, maybeOptions);
    const work = currentWork<Transaction, DatabaseSession>(this);
    if (work instanceof Transaction) return this.streamInTransaction<T>(work, query, params, options);
    return work ? this.streamInSession<T>(work, query, params, options) : this.streamFromPool<T>(query, params, options);
  }

  /**
   * Calls a stored procedure: `CALL name(...)` on MySQL, returning the first result set, or
   * `SELECT * FROM name(...)` on PostgreSQL (a set-returning function). The name is quoted as an
   * identifier (`schema.name` is split on the dot). A `sql` fragment among the params is spliced
   * as SQL, for MySQL OUT parameters: `callProcedure('p', [21, sql.raw('@out')])`, then
   * `SELECT @out` on the same connection (inside `runInteraction`).
   */
  callProcedure<T = Row>(name: string, params: unknown[] = []): Promise<T[]> {
    if (this.dialect === 'sqlite') {
      return Promise.reject(new NotSupported('SQLite has no stored procedures', { dialect: 'sqlite', database: this.name }));
    }
    let query: SqlQuery;
    try {
      const args = sql.join(params.map((p) => (isSqlQuery(p) ? p : sql`${p}`)));
      const callee = sql.identifier(...String(name).split('.'));
      query = this.dialect === 'mysql' ? sql`CALL ${callee}(${args})` : sql`SELECT * FROM ${callee}(${args})`;
    } catch (error) {
      return Promise.reject(error);
    }
    return this.runQuery<T>(query);
  }

  /**
   * PostgreSQL: subscribes `observer` to NOTIFYs on `channel` (quoted as an identifier, so any
   * name is safe); resolves with an unsubscribe once LISTEN is in place. One dedicated
   * connection serves every channel. An observer gets its channel's notifications in order,
   * the next once its returned promise settled; one that throws is logged. At most once:
   * what is sent while the connection is down is missed (see `onResubscribe`).
   * `{ waitForServer: true }`: when the server cannot be reached, resolve anyway and LISTEN once it can.
   *
   * @example
   * const stop = await db.listen('orders', (n) => this.orders.refresh(n.payload));
   * await stop();
   */
  listen(channel: string, observer: (n: Notification) => unknown, options?: SubscribeOptions): Promise<() => Promise<void>> {
    if (this.dialect !== 'postgres') return Promise.reject(this.notSupported('listen'));
    if (this.state !== 'open') return Promise.reject(this.closedError());
    // The listener's connection and every delivery belong to no caller: never to the transaction this was called in.
    return inBackground(() => {
      this.listenerValue ??= new Listener(this);
      return this.listenerValue.subscribe(channel, observer, options);
    });
  }

  /**
   * PostgreSQL: sends a NOTIFY; the payload (under 8000 bytes) travels as a parameter
   * (`pg_notify`). Inside a transaction it is delivered on COMMIT, and not at all on ROLLBACK.
   */
  notify(channel: string, payload = ''): Promise<void> {
    if (this.dialect !== 'postgres') return Promise.reject(this.notSupported('notify'));
    try {
      quoteChannel(channel);
      if (typeof payload !== 'string') throw new InvalidParameter(`a notification payload must be a string (got ${typeof payload})`, { position: 2 });
    } catch (error) {
      return Promise.reject(error);
    }
    return this.runQuery('SELECT pg_notify($1, $2)', [channel, payload]).then(() => undefined);
  }

  /**
   * PostgreSQL: `hook({ channels, downtimeMs })` runs after the listener connection was lost
   * and every channel is LISTENed again, once the database takes calls: the place to catch up
   * on what was sent meanwhile. Returns an unsubscribe.
   *
   * @example
   * db.onResubscribe(async ({ downtimeMs }) => this.orders.reloadChangedSince(Date.now() - downtimeMs - 1000));
   */
  onResubscribe(hook: (info: ResubscribeInfo) => unknown): () => void {
    if (this.dialect !== 'postgres') throw this.notSupported('onResubscribe');
    this.listenerValue ??= inBackground(() => new Listener(this));
    return this.listenerValue.onResubscribe(hook);
  }

  /** @internal The listener of this database, if one was started. */
  get listener(): Listener | undefined {
    return this.listenerValue;
  }

  /**
   * Cancels the query behind `pending`, a promise this Database returned, with the server's own
   * cancel. `pending` rejects with `QueryCanceled`. A no-op once it settled.
   */
  async cancel(pending: Promise<unknown>): Promise<void> {
    const call = this.calls.get(pending);
    if (!call) return;
    // The rejection this causes is expected by whoever cancels: never an unhandled rejection.
    pending.catch(() => {});
    call.interrupt(new QueryCanceled('query canceled by Database.cancel()', { database: this.name, dialect: this.dialect }));
    await call.cancelSent;
  }

  /**
   * Lends the driver's own client (`pg.Client`, a mysql2 `Connection`) to `fn`, for what only the
   * driver can do: PostgreSQL `COPY` through pg-copy-streams, a library that wants a raw client
   * (job queues). Under the pool's rules: it waits for a connection like a query (fail fast,
   * `acquireTimeoutMs`); `timeoutMs` (default: `queryTimeoutMs`) bounds the whole loan, after
   * which the client is destroyed and the call fails with `QueryTimeout`; the client comes back
   * when `fn` settles, and its session is reset before anyone else gets it (whatever `fn` set on
   * it), or it is destroyed if it broke. Inside a transaction, `fn` gets the transaction's client
   * (keep to its transaction: do not COMMIT it). Do not keep the client after `fn` returns.
   * SQLite has no native client outside its worker thread: `NotSupported`.
   *
   * @example
   * await db.withNativeConnection<pg.Client>(async (client) => {
   *   await pipeline(Readable.from(rows), client.query(copyFrom('COPY items FROM STDIN')));
   * });
   */
  async withNativeConnection<C = unknown, R = unknown>(fn: (client: C) => Promise<R> | R, options: { timeoutMs?: number } = {}): Promise<R> {
    const timeoutMs = options.timeoutMs ?? this.queryTimeoutMs;
    const work = currentWork<Transaction, DatabaseSession>(this);
    if (work instanceof Transaction) {
      work.assertActive();
      work.assertNoStream('borrow the native connection');
      return this.lend(work.connection, fn, timeoutMs, () => (work.lease.discard = true));
    }
    if (work) {
      const lease = await this.sessionLease(work);
      return this.lend(lease.connection, fn, timeoutMs, () => (lease.discard = true));
    }
    return this.track(async () => {
      this.assertUsable();
      const call = new CallHandle(this);
      let lease: Lease;
      try {
        lease = await this.acquire(call);
      } finally {
        call.settle();
      }
      // Whatever fn set on the session is undone before the next caller gets it.
      lease.dirty = true;
      try {
        return await this.lend(lease.connection, fn, timeoutMs, () => (lease.discard = true));
      } catch (error) {
        if (lease.connection.broken || this.detector.isDeathError(error)) lease.discard = true;
        throw error;
      } finally {
        this.pool.release(lease);
      }
    });
  }

  private async lend<C, R>(connection: Connection, fn: (client: C) => Promise<R> | R, timeoutMs: number, onTimeout: () => void): Promise<R> {
    const native = connection.native?.() as C | undefined;
    if (native === undefined) {
      throw new NotSupported(`withNativeConnection() has no native client to lend on ${this.dialect} (database "${this.name}")`, {
        dialect: this.dialect,
        database: this.name,
      });
    }
    if (!(timeoutMs > 0)) return await fn(native);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout();
        connection.destroy();
        reject(new QueryTimeout(`withNativeConnection() on database "${this.name}" ran past its timeout of ${timeoutMs} ms; the client was destroyed`, {
          timeoutMs,
          database: this.name,
          dialect: this.dialect,
        }));
      }, timeoutMs);
    });
    const work = Promise.resolve().then(() => fn(native));
    work.catch(() => {}); // it may lose the race and fail later, on the destroyed client
    try {
      return await Promise.race([work, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A round trip to the server; resolves with its duration in milliseconds. */
  async ping(timeoutMs = 5000): Promise<number> {
    const started = performance.now();
    await this.call({ timeoutMs }, async (call) => {
      this.assertUsable();
      const lease = await this.acquire(call);
      call.connection = lease.connection;
      try {
        await lease.connection.ping();
      } catch (error) {
        lease.discard = true;
        throw this.failed(error);
      } finally {
        call.connection = undefined;
        this.release(lease, call);
      }
    });
    return performance.now() - started;
  }

  /**
   * @internal The health check's ping: on a dedicated connection outside the pool (so that a
   * busy pool cannot make readiness fail), shared by concurrent callers, bounded by `timeoutMs`.
   */
  probe(timeoutMs: number): Promise<number> {
    this.probing ??= inBackground(() => this.runProbe().finally(() => (this.probing = undefined)));
    const probing = this.probing;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A ping that does not answer in time: drop its connection, so the next probe starts afresh.
        this.probeConnection?.destroy();
        this.probeConnection = undefined;
        reject(new QueryTimeout(`ping of database "${this.name}": timeout of ${timeoutMs}ms exceeded`, { timeoutMs, database: this.name }));
      }, timeoutMs);
      probing.then(
        (ms) => {
          clearTimeout(timer);
          resolve(ms);
        },
        (error) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  private async runProbe(): Promise<number> {
    const started = performance.now();
    try {
      if (!this.probeConnection || this.probeConnection.broken) {
        const connection = await this.connectDriver();
        if (this.state !== 'open') {
          connection.destroy();
          throw this.closedError();
        }
        this.probeConnection = connection;
      }
      await this.probeConnection.ping();
    } catch (error) {
      this.probeConnection?.destroy();
      this.probeConnection = undefined;
      throw this.failed(error);
    }
    return performance.now() - started;
  }

  stats(): PoolStats {
    return this.pool.stats();
  }

  /** True once shutdown began. */
  get isClosed(): boolean {
    return this.state !== 'open';
  }

  /**
   * Stops taking work (`DatabaseClosed`), waits for in-flight work up to `shutdownTimeoutMs`,
   * then closes every connection. Called by the module on application shutdown.
   */
  async close(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closing';
    const deadline = Date.now() + this.options.shutdownTimeoutMs;
    // No new notifications start observers (and their queries) while in-flight work drains.
    await this.listenerValue?.close();
    if (this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.shutdownTimeoutMs))),
      ]);
      clearTimeout(timer);
    }
    await this.detector.close();
    this.probeConnection?.destroy();
    this.probeConnection = undefined;
    await this.pool.close(Math.max(0, deadline - Date.now()));
    await this.driver.end?.();
    clearInterval(this.keepAlive);
    this.state = 'closed';
    this.events.removeAllListeners();
  }

  // ---- the call path -------------------------------------------------------------------

  /** Wraps one public call: its handle (for cancel), its deadline and signal, in-flight tracking. */
  private call<T>(options: QueryOptions | undefined, body: (call: CallHandle) => Promise<T>): Promise<T> {
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
          this.callDone();
          resolve(value);
        },
        (error) => {
          call.settle();
          this.callDone();
          reject(error);
        },
      );
    });
    const outer = withCallerStack(promise);
    this.calls.set(outer, call);
    return outer;
  }

  private callDone(): void {
    if (--this.inFlight === 0) {
      this.keepAlive.unref();
      if (this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private track<R>(fn: () => Promise<R>): Promise<R> {
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

  private compile(query: string | SqlQuery, params: unknown[] | undefined): { text: string; values: unknown[] } {
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
      ({ text, values } = query.compile(this.dialect));
    } else {
      throw new InvalidParameter(`query must be a string or a sql\`\` template (got ${typeof query})`);
    }
    checkParameters(values, this.dialect, this.driver.maxParameters, text);
    checkArraysInLists(text, values, this.dialect);
    return { text, values };
  }

  private async execute(
    call: CallHandle,
    mode: 'rows' | 'operation',
    query: string | SqlQuery,
    params: unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<unknown> {
    const { text, values } = this.compile(query, params);
    const exec = this.executeOptions(call, options);
    const work = currentWork<Transaction, DatabaseSession>(this);
    if (work instanceof Transaction) return this.shape(mode, await work.track(this.executeOnTransaction(work, call, text, values, exec)));
    if (work) return this.shape(mode, await this.executeOnSession(work, call, text, values, exec));
    this.assertUsable();
    let replays = 0;
    for (let attempt = 0; ; attempt++) {
      const lease = await this.acquire(call, options?.waitForRecoveryMs);
      let result: ResultSet;
      try {
        result = await this.run(lease.connection, call, text, values, exec);
      } catch (error) {
        if (this.detector.isDeathError(error)) lease.discard = true;
        this.release(lease, call);
        // A statement that provably never left the client (its connection was already closed: an idle
        // socket the server or the network reset) runs on a fresh connection, as if nothing happened.
        if (lease.discard && !call.isSettled && wasNotSent(error) && replays++ < this.options.pool.max) continue;
        // Replay what may have reached the server only when the caller declared it idempotent.
        if (options?.retry && attempt === replays && lease.discard && !call.isSettled) {
          if (!this.detector.isDead || (await this.detector.waitForRecovery(call.remainingMs(this.options.pool.acquireTimeoutMs)))) continue;
        }
        throw error;
      }
      this.markIfSessionChanged(lease, text);
      this.release(lease, call);
      return this.shape(mode, result);
    }
  }

  /** A statement that may leave state on its session (SET, advisory lock, user variable…) gets its connection reset before reuse. */
  private markIfSessionChanged(lease: Lease, text: string): void {
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

  private async executeOnSession(session: DatabaseSession, call: CallHandle, text: string, values: unknown[], exec: ExecuteOptions): Promise<ResultSet> {
    const lease = await this.sessionLease(session);
    if (session.streams.size > 0) {
      throw new TransactionError(
        'cannot run a statement on this session while one of its streams is still being read: they share its one connection. Finish (or break out of) the stream first, or collect its rows',
        { database: this.name, code: 'STREAM_OPEN' },
      );
    }
    try {
      return await this.run(lease.connection, call, text, values, exec);
    } catch (error) {
      if (call.interruption || this.detector.isDeathError(error)) lease.discard = true;
      throw error;
    }
  }

  /** The driver's options for a statement of this call; the server-side limit only when it differs from the session's. */
  private executeOptions(call: CallHandle, options: QueryOptions | undefined): ExecuteOptions {
    const exec: ExecuteOptions = { rowMode: options?.rowMode ?? 'object', prepare: options?.prepare ?? this.prepare };
    const timeoutMs = options?.timeoutMs;
    // The server's limit is the backstop: a little later than the call's deadline, so that the call's own timeout, which
    // cancels on the server and gives up the connection, comes first.
    if (timeoutMs !== undefined && timeoutMs !== this.queryTimeoutMs) exec.statementTimeoutMs = timeoutMs > 0 ? timeoutMs + SERVER_LIMIT_MARGIN_MS : 0;
    return exec;
  }

  private shape(mode: 'rows' | 'operation', result: ResultSet): unknown {
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
  private async run(connection: Connection, call: CallHandle, text: string, values: unknown[], exec: ExecuteOptions): Promise<ResultSet> {
    call.throwIfInterrupted();
    call.connection = connection;
    const started = this.slowQueryMs > 0 ? performance.now() : 0;
    if (this.log.query) this.logger.log(`query: ${text}`);
    try {
      return await connection.execute(text, values, exec);
    } catch (error) {
      // After an interruption the failure is our own doing (the cancel, or the destroy after the grace period), not news about the server.
      if (call.interruption) {
        const e = this.driver.translateError(error);
        call.statementFailed(e);
        throw e;
      }
      const e = this.failed(error);
      call.statementFailed(e);
      if (this.log.error) this.logger.error(`query failed (${e.code}): ${e.message} -- ${text}`);
      throw this.detector.isDeathError(e) && !wasNotSent(e) ? this.lostUnder(e) : e;
    } finally {
      call.connection = undefined;
      if (started > 0) {
        const durationMs = performance.now() - started;
        if (durationMs >= this.slowQueryMs) {
          if (this.log.slow) this.logger.warn(`slow query (${Math.round(durationMs)} ms): ${text}`);
          this.events.emit('slowQuery', { database: this.name, query: text, durationMs });
        }
      }
    }
  }

  /** A connection lost under a call: `ConnectionDead`, keeping what the server or socket said. */
  private lostUnder(e: DatabaseError): ConnectionDead {
    return new ConnectionDead(`the connection to database "${this.name}" was lost while the statement ran (${e.message}); it may or may not have taken effect`, {
      mayHaveRun: true,
      cause: e,
      query: e.query,
      sqlState: e.sqlState,
      errno: e.errno,
      dialect: this.dialect,
      database: this.name,
    });
  }

  /** Translates an error and tells the detector about it: a connection that died makes it check the server. */
  private failed(error: unknown): DatabaseError {
    const e = this.driver.translateError(error);
    if (this.state === 'open') this.detector.suspectDeadConnection(e);
    return e;
  }

  /** Refuses work once shutdown began. The detector's fail-fast is in acquire(), which knows whether the call may wait. */
  private assertUsable(): void {
    if (this.state !== 'open') throw this.closedError();
  }

  private closedError(): DatabaseClosed {
    return new DatabaseClosed(`database "${this.name}" is closed (the application is shutting down)`, {
      database: this.name,
      dialect: this.dialect,
    });
  }

  private notSupported(what: string): NotSupported {
    return new NotSupported(
      `${what}() needs PostgreSQL: LISTEN/NOTIFY notifications are a PostgreSQL feature, and database "${this.name}" is ${this.dialect}`,
      { dialect: this.dialect, database: this.name },
    );
  }

  /**
   * A pool connection for this call. While the detector says dead, and when the connection
   * cannot be opened because the server is gone, the call fails at once with `ConnectionDead`,
   * unless it may wait for the reconnect (`waitForRecoveryMs`, per call or module), within its
   * deadline. A call that would wait for a connection its own code holds fails at once too.
   */
  private async acquire(call: CallHandle, waitForRecoveryMs = this.waitForRecoveryMs): Promise<Lease> {
    const acquireTimeoutMs = this.options.pool.acquireTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (this.detector.isDead) {
        if (waitForRecoveryMs > 0 && attempt < 2 && (await this.detector.waitForRecovery(call.remainingMs(waitForRecoveryMs)))) continue;
        call.throwIfInterrupted();
        throw this.detector.deadError();
      }
      if (this.pool.isExhausted()) this.checkSelfDeadlock();
      let lease: Lease;
      try {
        // Within the call's deadline, if it has one: a caller with queryTimeoutMs never waits longer for a connection,
        // and one whose deadline ran out while waiting gets its QueryTimeout, not the pool's AcquireTimeout.
        const waitMs = call.remainingMs(acquireTimeoutMs);
        lease = await this.pool.acquire(waitMs).catch((error: unknown) => {
          if (error instanceof AcquireTimeout && waitMs < acquireTimeoutMs) call.expire();
          throw error;
        });
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
        this.pool.release(lease);
        call.throwIfInterrupted();
      }
      return lease;
    }
  }

  /**
   * Every connection of the pool is taken: if the calling code holds them all itself (the
   * transactions it runs in, suspended by `requiresNew`/`notSupported`, and the streams it is
   * reading), waiting could never end; it is refused at once.
   */
  private checkSelfDeadlock(): void {
    const max = this.pool.options.max;
    const held = heldLeases(this, (tx) => ((tx as Transaction).holdsConnection ? (tx as Transaction).lease : undefined));
    if (held.size < max) return;
    throw new AcquireTimeout(
      `this call waits for a connection of database "${this.name}", but the calling code itself holds all ${max} of them ` +
        '(a transaction it runs in, suspended by propagation requiresNew or notSupported, or a stream it is still reading), so it could never get one: ' +
        `requiresNew, notSupported and a query made while reading a stream each need a connection more than the caller holds. Finish the stream first (or collect its rows), ` +
        `run the work in the same transaction, or raise pool.max (now ${max})`,
      { code: 'SELF_DEADLOCK', database: this.name, dialect: this.dialect },
    );
  }

  /** Returns a call's connection; after an interruption, only once the cancel went out, and never reused if the cancel may still land. */
  private release(lease: Lease, call?: CallHandle): void {
    if (call?.interruption) {
      // A client-side timeout destroys the connection: whatever made it slow (a lock, a stopped backend) may still hold it.
      if (call.poisoned || call.interruption instanceof QueryTimeout) lease.discard = true;
      void call.cancelSent.then(() => this.pool.release(lease));
      return;
    }
    this.pool.release(lease);
  }

  /** @internal The detector's reconnect: one new connection that answers a ping joins the pool. */
  private async reconnect(): Promise<void> {
    const connection = await this.connectDriver();
    const limitMs = this.options.settings.connectTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded like the connect: a server that accepts and then says nothing must not stall the reconnect loop.
      await Promise.race([
        connection.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new DatabaseError(`ping got no answer within ${limitMs} ms`, { code: 'CONNECT_TIMEOUT', dialect: this.dialect })), limitMs);
        }),
      ]);
    } catch (error) {
      connection.destroy();
      throw error;
    } finally {
      clearTimeout(timer);
    }
    this.pool.adopt(connection);
  }

  // ---- transactions (TransactionRunnerHost) ---------------------------------------------

  /**
   * @internal Takes a connection and runs BEGIN (and the server-side timeout, and the settings)
   * on it. Inside a session whose connection runs no transaction, that connection; else one
   * from the pool, which then gets the session's settings for the length of the transaction.
   */
  async begin(options: TransactionOptions): Promise<Transaction> {
    this.assertUsable();
    const session = currentSession<DatabaseSession>(this);
    const onSession = session !== undefined && session.transaction === undefined;
    let lease: Lease;
    if (onSession) {
      lease = await this.sessionLease(session);
    } else {
      const call = new CallHandle(this);
      // Taking the connection for BEGIN is bounded like a query: by queryTimeoutMs, if set.
      if (this.queryTimeoutMs > 0) call.deadline(this.queryTimeoutMs);
      try {
        lease = await this.acquire(call);
      } finally {
        call.settle();
      }
    }
    const tx = new Transaction(this, lease, options);
    tx.ownsConnection = !onSession;
    tx.session = session;
    if (onSession) session.transaction = tx;
    try {
      const given = typeof options.settings === 'function' ? options.settings() : options.settings;
      const settings = [...(session && !onSession ? checkSettings(session.settings, 'session') : []), ...checkSettings(given, 'TransactionOptions.settings')];
      for (const statement of this.driver.beginStatements(options)) await this.control(tx, statement);
      if (options.timeoutMs && options.timeoutMs > 0) {
        const statement = this.driver.transactionTimeoutStatement?.(options.timeoutMs);
        if (statement) await this.control(tx, statement);
      }
      if (settings.length > 0) {
        const statement = this.settingsStatement(settings, true);
        await this.control(tx, statement.text, statement.values);
        if (!this.driver.localSettings) tx.settingsToClear = settings.map(([name]) => name);
      }
    } catch (error) {
      await this.finish(tx);
      throw error;
    }
    return tx;
  }

  /** @internal */
  async finish(tx: Transaction): Promise<void> {
    if (tx.state === 'active' || tx.state === 'ending') tx.state = 'rolledBack';
    const after = [...(this.driver.finishStatements?.(tx.options) ?? [])];
    const session = tx.ownsConnection ? undefined : (tx.session as DatabaseSession | undefined);
    if (tx.settingsToClear) {
      // Settings the dialect cannot scope to the transaction (MySQL user variables) are undone, and the session's own restored.
      after.push(this.driver.clearSettingsStatement!(tx.settingsToClear));
    }
    if (after.length > 0 && !tx.lease.discard && !tx.connection.broken) {
      try {
        for (const statement of after) await this.control(tx, statement);
        const own = session ? checkSettings(session.settings, 'session') : [];
        if (tx.settingsToClear && own.length > 0) {
          const restore = this.settingsStatement(own, false);
          await this.control(tx, restore.text, restore.values);
        }
      } catch {
        tx.lease.discard = true;
      }
    }
    tx.holdsConnection = false;
    if (tx.ownsConnection) this.pool.release(tx.lease);
    else if (session && session.transaction === tx) session.transaction = undefined;
  }

  // ---- sessions ----------------------------------------------------------------------------

  /**
   * Runs `fn` with one pooled connection pinned to it: every `runQuery`, `runOperation`,
   * `runInteraction`, `stream` of this Database inside `fn` (and inside everything it awaits)
   * uses that connection, so session state (`settings`, advisory locks, temporary tables,
   * `SET search_path`, MySQL user variables) holds across them. When `fn` settles the session
   * ends and the connection is reset before anyone else gets it (`sessionReset`). A session
   * inside a session is the same session, with the new settings added.
   *
   * @example
   * await db.session(() => reports.build(), { settings: { 'app.tenant_id': tenant, search_path: 'tenant_42, public' } });
   */
  session<R>(fn: (session: DatabaseSession) => Promise<R> | R, options: SessionOptions = {}): Promise<R> {
    const current = currentSession<DatabaseSession>(this);
    if (current && !current.isEnded) {
      return (async () => {
        if (options.settings && Object.keys(options.settings).length > 0) await current.set(options.settings);
        return await fn(current);
      })();
    }
    let session: DatabaseSession;
    try {
      session = new DatabaseSession(this.sessionHost, { ...options.settings });
    } catch (error) {
      return Promise.reject(error);
    }
    return this.track(async () => {
      try {
        return await runInSession(this, session, () => fn(session));
      } finally {
        await session.release();
      }
    });
  }

  /** @internal A session not bound to a scope (the request-scoped `@InjectConnection()`): ended with `release()`. */
  openSession(options: SessionOptions = {}): DatabaseSession {
    return new DatabaseSession(this.sessionHost, { ...options.settings });
  }

  private sessionHostValue?: SessionHost;
  private get sessionHost(): SessionHost {
    this.sessionHostValue ??= {
      name: this.name,
      openSession: (session) => this.openSessionLease(session),
      closeSession: (session) => this.closeSessionLease(session),
      inSession: (session, fn) => runInSession(this, session, fn),
      applySettings: async (session, settings) => {
        const lease = await this.sessionLease(session);
        const list = checkSettings(settings, 'session.set()');
        if (list.length === 0) return;
        const statement = this.settingsStatement(list, false);
        await lease.connection.execute(statement.text, statement.values, { rowMode: 'array' });
      },
      runQuery: (query, params, options) => this.runQuery(query, params, options),
      runOperation: (query, params, options) => this.runOperation(query, params, options),
      runInteraction: (fn, options) => this.runInteraction(fn, options),
      stream: (query, params, options) => this.stream(query, params, options),
    };
    return this.sessionHostValue;
  }

  /** The session's connection, refused once it was lost (its state went with it). */
  private async sessionLease(session: DatabaseSession): Promise<Lease> {
    const lease = await session.connect();
    if (lease.discard || lease.connection.broken) {
      throw new ConnectionDead(
        `the connection of this session of database "${this.name}" was lost, and the session's state (settings, locks, temporary tables) with it; end the session and start a new one`,
        { database: this.name, dialect: this.dialect },
      );
    }
    return lease;
  }

  private async openSessionLease(session: DatabaseSession): Promise<Lease> {
    this.assertUsable();
    const call = new CallHandle(this);
    if (this.queryTimeoutMs > 0) call.deadline(this.queryTimeoutMs);
    let lease: Lease;
    try {
      lease = await this.acquire(call);
    } finally {
      call.settle();
    }
    const settings = checkSettings(session.settings, 'session');
    if (settings.length > 0) {
      try {
        const statement = this.settingsStatement(settings, false);
        await lease.connection.execute(statement.text, statement.values, { rowMode: 'array' });
      } catch (error) {
        lease.discard = true;
        this.pool.release(lease);
        throw this.driver.translateError(error);
      }
    }
    return lease;
  }

  /** The end of a session: its connection goes back reset (`sessionReset`), or with just its settings undone (`never`). */
  private async closeSessionLease(session: DatabaseSession): Promise<void> {
    const lease = session.lease;
    if (!lease) return;
    for (const stream of [...session.streams]) await stream.return().catch(() => {});
    if (this.options.sessionReset !== 'never') lease.dirty = true;
    else {
      const names = Object.keys(session.settings);
      if (names.length > 0 && !lease.discard && this.driver.clearSettingsStatement) {
        await lease.connection.execute(this.driver.clearSettingsStatement(names), [], { rowMode: 'array' }).catch(() => (lease.discard = true));
      }
    }
    this.pool.release(lease);
  }

  private settingsStatement(settings: Array<[string, unknown]>, local: boolean): { text: string; values: unknown[] } {
    if (!this.driver.settingsStatement) {
      throw new NotSupported(`session settings need PostgreSQL or MySQL; database "${this.name}" is ${this.dialect}`, { dialect: this.dialect, database: this.name });
    }
    return this.driver.settingsStatement(settings, local && this.driver.localSettings === true);
  }

  /** @internal */
  interrupt(tx: Transaction): void {
    tx.lease.discard = true;
    void tx.connection.cancel().catch(() => {});
  }

  /** @internal */
  isDeathError(error: unknown): boolean {
    return this.detector.isDeathError(error);
  }

  /** @internal */
  async control(tx: Transaction, text: string, values: unknown[] = []): Promise<{ command?: string }> {
    const limitMs = this.queryTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    try {
      const pending = tx.connection.execute(text, values, { rowMode: 'array' });
      if (limitMs > 0) {
        // BEGIN/COMMIT/ROLLBACK/SAVEPOINT get queryTimeoutMs too. No answer: the connection is destroyed, which ends the
        // statement with a connection error, so an unanswered COMMIT becomes CommitOutcomeUnknown, never a hang.
        timer = setTimeout(() => {
          timedOut = true;
          tx.lease.discard = true;
          tx.connection.destroy();
        }, limitMs);
      }
      return await pending;
    } catch (error) {
      let e = this.failed(error);
      if (timedOut) {
        e = new QueryTimeout(`${text} on database "${this.name}" got no answer within ${limitMs} ms (queryTimeoutMs); the connection was destroyed`, {
          timeoutMs: limitMs,
          query: text,
          dialect: this.dialect,
          database: this.name,
          cause: e,
        });
      }
      if (this.detector.isDeathError(e)) tx.lease.discard = true;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** @internal */
  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string {
    return this.driver.savepointStatement(kind, name);
  }

  /** @internal */
  runInTransaction(tx: Transaction, mode: 'rows' | 'operation', query: string | SqlQuery, params: unknown[] | undefined, options: QueryOptions | undefined): Promise<unknown> {
    return this.call(options, async (call) => {
      const { text, values } = this.compile(query, params);
      return this.shape(mode, await tx.track(this.executeOnTransaction(tx, call, text, values, this.executeOptions(call, options))));
    });
  }

  private async executeOnTransaction(tx: Transaction, call: CallHandle, text: string, values: unknown[], exec: ExecuteOptions): Promise<ResultSet> {
    if (tx.timedOut) {
      throw new QueryTimeout(`transaction on database "${this.name}" exceeded its timeoutMs (${tx.options.timeoutMs} ms)`, {
        database: this.name,
        timeoutMs: tx.options.timeoutMs,
        query: text,
      });
    }
    tx.assertActive();
    tx.assertNoStream();
    // The transaction's own deadline governs the server side inside it.
    if (tx.options.timeoutMs) exec.statementTimeoutMs = undefined;
    // Statements of a savepoint level wait while one of its nested scopes is open (see SavepointScope).
    const scope = tx.currentScope();
    const admitted = scope.admit();
    let pending: Promise<ResultSet>;
    try {
      if (admitted) {
        await admitted;
        tx.assertActive();
        tx.assertNoStream();
      }
      // run() hands the statement to the connection before its first await: its place in the connection's queue is fixed here.
      pending = this.run(tx.connection, call, text, values, exec);
    } finally {
      scope.sent();
    }
    let result: ResultSet;
    try {
      result = await pending;
    } catch (error) {
      if (call.interruption || this.detector.isDeathError(error)) tx.lease.discard = true;
      throw error;
    }
    const ended = tx.checkStillOpen(text);
    if (ended) throw ended;
    if (tx.ownsConnection) this.markIfSessionChanged(tx.lease, text);
    return result;
  }

  /** @internal */
  streamInTransaction<T>(tx: Transaction, query: string | SqlQuery, params: unknown[] | undefined, options: QueryOptions | undefined): AsyncIterable<T> & { readable(): Readable } {
    return this.rowStream<T>(options, async (iterator) => {
      tx.assertActive();
      tx.assertNoStream('open a second stream');
      const { text, values } = this.compile(query, params);
      const scope = tx.currentScope();
      const admitted = scope.admit();
      if (admitted) await admitted;
      // Closed by the transaction when its interaction ends, if the consumer abandoned it.
      tx.streams.add(iterator);
      return {
        connection: tx.connection,
        text,
        values,
        opened: () => scope.sent(),
        finish: (error?: unknown) => {
          if (error !== undefined && this.detector.isDeathError(error)) tx.lease.discard = true;
          tx.streams.delete(iterator);
        },
      };
    });
  }

  private streamInSession<T>(session: DatabaseSession, query: string | SqlQuery, params: unknown[] | undefined, options: QueryOptions | undefined): AsyncIterable<T> & { readable(): Readable } {
    return this.rowStream<T>(options, async (iterator) => {
      const { text, values } = this.compile(query, params);
      const lease = await this.sessionLease(session);
      if (session.streams.size > 0) {
        throw new TransactionError('cannot open a second stream on this session while another is still being read: they share its one connection', {
          database: this.name,
          code: 'STREAM_OPEN',
        });
      }
      session.streams.add(iterator);
      return {
        connection: lease.connection,
        text,
        values,
        finish: (error?: unknown) => {
          if (error !== undefined && this.detector.isDeathError(error)) lease.discard = true;
          session.streams.delete(iterator);
        },
      };
    });
  }

  private streamFromPool<T>(query: string | SqlQuery, params: unknown[] | undefined, options: QueryOptions | undefined): AsyncIterable<T> & { readable(): Readable } {
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
          this.pool.release(lease);
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
        enterHolder(this, iterator);
        return iterator;
      },
    };
  }

  /** An iterable whose every iteration opens its own cursor: rows served from batches, one promise per row. */
  private rowStream<T>(options: QueryOptions | undefined, open: (iterator: RowIterator<T>) => Promise<StreamSource>): AsyncIterable<T> & { readable(): Readable } {
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
                    ? new QueryTimeout(`stream on database "${this.name}" exceeded its timeout of ${timeoutMs} ms`, { timeoutMs, database: this.name, dialect: this.dialect })
                    : undefined
            : undefined;
        return new RowIterator<T>(open, cursorOptions, (error) => this.failed(error), interruption);
      },
      readable: () => Readable.from(iterable, { objectMode: true }),
    };
    return iterable;
  }

  /** @internal For the listener and the health indicator: a connection outside the pool. */
  openDedicatedConnection(): Promise<Connection> {
    return this.connectDriver();
  }

  /**
   * A new connection; whatever the driver throws comes out translated, so that nothing it
   * carries (mysql2 puts a malformed URL, password included, in a TypeError's `input`)
   * reaches the pool, the detector, logs or health output unredacted.
   */
  private connectDriver(): Promise<Connection> {
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

  /** @internal */
  get interruptGraceMs(): number {
    return CANCEL_GRACE_MS;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, dialect: this.dialect, target: this.driver.describe(), state: this.detector.state, pool: this.stats() };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Database(${this.name}, ${this.driver.describe()}, ${this.detector.state})`;
  }
}

/** `(query, params?, options?)` or, after a `sql` template, `(query, options?)`. */
function splitArgs(paramsOrOptions: unknown[] | QueryOptions | undefined, options: QueryOptions | undefined): [unknown[] | undefined, QueryOptions | undefined] {
  if (paramsOrOptions !== null && typeof paramsOrOptions === 'object' && !Array.isArray(paramsOrOptions)) return [undefined, paramsOrOptions];
  // Anything else goes on as params, for compile() to refuse what is not an array.
  return [paramsOrOptions as unknown[] | undefined, options];
}
