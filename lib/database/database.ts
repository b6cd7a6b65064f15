/**
 * `Database`: the facade users inject, one per named database. Each public method is a few
 * lines: it finds where the calling code runs (its transaction, its session, or the pool) and
 * hands the work to the engine (the call path, engine.ts), the transaction port
 * (transaction.port.ts) or the session port (session.port.ts).
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
import type { Readable } from 'node:stream';
import { inBackground } from '../core/background.js';
import { InvalidParameter, NotSupported, QueryCanceled, type Dialect } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { OperationResult, PoolStats, QueryOptions, Row } from '../core/types.js';
import type { ResolvedOptions } from '../config/options.js';
import type { Connection, Driver, Notification } from '../drivers/driver.js';
import { createDriver, dialectsWith } from '../drivers/registry.js';
import { Listener, type ResubscribeInfo, type SubscribeOptions } from '../notify/listener.js';
import type { Lease } from '../pool/pool.js';
import type { DeadConnectionDetector } from '../resilience/detector.js';
import { isSqlQuery, sql, type SqlQuery } from '../sql/template.js';
import { currentSession, currentTransaction, currentWork, runInSession } from '../transactions/transaction.context.js';
import { InteractionControl, runTransactional } from '../transactions/transaction.runner.js';
import { Transaction, type TransactionOptions } from '../transactions/transaction.js';
import { CallHandle, type Cancelable } from './call.js';
import { Engine, type DatabaseEvents, type Routing } from './engine.js';
import type { ReplicaStatus } from './replicas.js';
import { isReadStatement } from '../sql/statement-kind.js';
import { lendNative } from './native.js';
import { Probe } from './probe.js';
import { DatabaseSession, type SessionOptions } from './session.js';
import { SessionPort } from './session.port.js';
import { verifyReachable } from './startup.js';
import { TransactionPort } from './transaction.port.js';
import { settlesWithin } from '../core/timers.js';
import { loadTelemetry } from '../telemetry/otel.js';

export type { DatabaseEvents };

/** Each Database's transaction port, for the package's own test helper (`withRollback`); never exported to users. */
const transactionPorts = new WeakMap<Database, TransactionPort>();

/** @internal */
export function transactionPortOf(db: Database): TransactionPort {
  const port = transactionPorts.get(db);
  if (!port) throw new InvalidParameter('withRollback() needs a Database of this package');
  return port;
}

export class Database {
  readonly name: string;
  readonly dialect: Dialect;
  /** Connection, death, recovery and slow-query events for metrics and logs. Never carries parameter values. */
  readonly events = new EventEmitter<DatabaseEvents>();
  readonly detector: DeadConnectionDetector;
  /** @internal Shutdown began: readiness reports down before the pool drains (set by the module). */
  shuttingDown = false;
  private readonly engine: Engine;
  private readonly transactions: TransactionPort;
  private readonly sessions: SessionPort;
  private readonly prober: Probe;
  private listenerValue?: Listener;
  private listenDriver?: Driver;

  constructor(options: ResolvedOptions, logger: Logger) {
    this.engine = new Engine(this, options, logger, this.events);
    this.name = this.engine.name;
    this.dialect = this.engine.dialect;
    this.detector = this.engine.detector;
    this.transactions = new TransactionPort(this.engine);
    transactionPorts.set(this, this.transactions);
    this.sessions = new SessionPort(this.engine, {
      runQuery: (query, params, options) => this.runQuery(query, params, options),
      runOperation: (query, params, options) => this.runOperation(query, params, options),
      runInteraction: (fn, options) => this.runInteraction(fn, options),
      stream: (query, params, options) => this.stream(query, params, options),
    });
    this.prober = new Probe(this.engine);
  }

  /** @internal The resolved options. */
  get options(): ResolvedOptions {
    return this.engine.options;
  }

  /** @internal The dialect's driver. */
  get driver(): Driver {
    return this.engine.driver;
  }

  /** @internal */
  get logger(): Logger {
    return this.engine.logger;
  }

  /**
   * @internal Called by the module at bootstrap: loads the driver's package (a missing one fails
   * the boot with `ConfigurationError`), checks the server when `verifyOnStartup`, and opens
   * `pool.min` connections.
   */
  async start(work?: { needsServer: boolean; run(db: Database): Promise<unknown> }): Promise<void> {
    try {
      await loadTelemetry();
      this.engine.startTelemetry({ notifications: () => this.listenerValue?.counts });
      await this.engine.driver.load?.();
      // Work at boot (the migrations) needs the server: wait for it as verifyOnStartup does.
      if (this.engine.options.verifyOnStartup || work?.needsServer) await verifyReachable(this.engine);
      await work?.run(this);
    } catch (error) {
      // The provider will never exist, so nobody else would stop what the failure started (a reconnect loop, a worker).
      await this.close().catch(() => {});
      throw error;
    }
    this.engine.pool.fill();
  }

  /**
   * Runs a statement and resolves with its rows. A `sql` template carries its values, so its
   * options may come second: `runQuery(sql\`…\`, { timeoutMs: 500 })`.
   */
  runQuery<T = Row>(query: SqlQuery, options?: QueryOptions): Promise<T[]>;
  runQuery<T = Row>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  runQuery<T = Row>(query: string | SqlQuery, paramsOrOptions?: unknown[] | QueryOptions, maybeOptions?: QueryOptions): Promise<T[]> {
    const [params, options] = splitArgs(paramsOrOptions, maybeOptions);
    return this.engine.call(options, (call) => this.execute(call, 'rows', query, params, options)) as Promise<T[]>;
  }

  /** Runs a statement and resolves with what it changed: affected rows, insert id, warnings. Options may come second after a `sql` template. */
  runOperation(query: SqlQuery, options?: QueryOptions): Promise<OperationResult>;
  runOperation(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<OperationResult>;
  runOperation(query: string | SqlQuery, paramsOrOptions?: unknown[] | QueryOptions, maybeOptions?: QueryOptions): Promise<OperationResult> {
    const [params, options] = splitArgs(paramsOrOptions, maybeOptions);
    return this.engine.call(options, (call) => this.execute(call, 'operation', query, params, options)) as Promise<OperationResult>;
  }

  /**
   * Runs `interaction` in a transaction on one connection: COMMIT when its promise resolves,
   * ROLLBACK when it rejects (the caller gets the original error). Inside it, this
   * Database's `runQuery`/`runOperation`/`stream` use the transaction's connection.
   */
  runInteraction<R>(interaction: (tx: Transaction) => Promise<R>, options: TransactionOptions = {}): Promise<R> {
    const control = new InteractionControl();
    const promise = this.engine.track(() => runTransactional(this.transactions, options, interaction, control));
    const node: Cancelable = { promise, interrupt: (error) => control.cancel(error) };
    this.engine.pending.add(node);
    const unlink = () => this.engine.pending.remove(node);
    promise.then(unlink, unlink);
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
  stream<T = Row>(
    query: string | SqlQuery,
    paramsOrOptions?: unknown[] | QueryOptions,
    maybeOptions?: QueryOptions,
  ): AsyncIterable<T> & { readable(): Readable } {
    const [params, options] = splitArgs(paramsOrOptions, maybeOptions);
    const work = currentWork<Transaction, DatabaseSession>(this);
    if (work instanceof Transaction) return this.transactions.streamInTransaction<T>(work, query, params, options);
    return work ? this.sessions.streamInSession<T>(work, query, params, options) : this.engine.streamFromPool<T>(query, params, options);
  }

  /**
   * Calls a stored procedure: `CALL name(...)` on MySQL, returning the first result set, or
   * `SELECT * FROM name(...)` on PostgreSQL (a set-returning function). The name is quoted as an
   * identifier (`schema.name` is split on the dot). A `sql` fragment among the params is spliced
   * as SQL, for MySQL OUT parameters: `callProcedure('p', [21, sql.raw('@out')])`, then
   * `SELECT @out` on the same connection (inside `runInteraction`).
   */
  callProcedure<T = Row>(name: string, params: unknown[] = []): Promise<T[]> {
    const driver = this.engine.driver;
    if (!driver.procedureCall) {
      return Promise.reject(
        new NotSupported(`${this.dialect} has no stored procedures (database "${this.name}"; ${dialectsWith('stored procedures').join(' and ')} have them)`, {
          dialect: this.dialect,
          database: this.name,
        }),
      );
    }
    let query: SqlQuery;
    try {
      const args = sql.join(params.map((p) => (isSqlQuery(p) ? p : sql`${p}`)));
      query = driver.procedureCall(sql`${sql.identifier(...String(name).split('.'))}`, args);
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
    if (!this.engine.driver.notifications) return Promise.reject(this.notSupported('listen'));
    if (this.engine.state !== 'open') return Promise.reject(this.engine.closedError());
    const refusal = this.behindTransactionPooler('listen', 'listenUrl (a direct URL to the server) for the listener');
    if (refusal) return Promise.reject(refusal);
    // The listener's connection and every delivery belong to no caller: never to the transaction this was called in.
    return inBackground(() => {
      this.listenerValue ??= this.newListener();
      return this.listenerValue.subscribe(channel, observer, options);
    });
  }

  /**
   * PostgreSQL: sends a NOTIFY; the payload (under 8000 bytes) travels as a parameter
   * (`pg_notify`). Inside a transaction it is delivered on COMMIT, and not at all on ROLLBACK.
   */
  notify(channel: string, payload = ''): Promise<void> {
    const notifications = this.engine.driver.notifications;
    if (!notifications) return Promise.reject(this.notSupported('notify'));
    try {
      notifications.quoteChannel(channel);
      if (typeof payload !== 'string') throw new InvalidParameter(`a notification payload must be a string (got ${typeof payload})`, { position: 2 });
    } catch (error) {
      return Promise.reject(error);
    }
    return this.runQuery(notifications.notify(channel, payload)).then(() => undefined);
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
    if (!this.engine.driver.notifications) throw this.notSupported('onResubscribe');
    const refusal = this.behindTransactionPooler('onResubscribe', 'listenUrl (a direct URL to the server) for the listener');
    if (refusal) throw refusal;
    this.listenerValue ??= inBackground(() => this.newListener());
    return this.listenerValue.onResubscribe(hook);
  }

  /**
   * What needs one server connection for longer than a transaction cannot work through PgBouncer
   * in transaction mode: refused, naming what to use instead (undefined when it can work).
   */
  private behindTransactionPooler(what: string, instead: string): NotSupported | undefined {
    if (this.engine.options.pgbouncer !== 'transaction') return undefined;
    if (what.startsWith('listen') || what === 'onResubscribe') {
      if (this.engine.options.listenSettings) return undefined;
    }
    return new NotSupported(
      `${what}() needs one server connection for longer than a transaction, and database "${this.name}" is behind PgBouncer in transaction mode ` +
        `(pgbouncer: 'transaction'), which hands each transaction to any server connection: use ${instead}`,
      { dialect: this.dialect, database: this.name },
    );
  }

  /** The listener of this database, with the dialect's statements (checked present by the caller). */
  private newListener(): Listener {
    return new Listener({
      name: this.name,
      logger: this.logger,
      detector: this.engine.detector,
      statements: this.engine.driver.notifications!,
      openDedicatedConnection: () => this.listenConnection(),
    });
  }

  /** The listener's connection: to `listenUrl` when given (past a transaction-mode PgBouncer), else like any dedicated one. */
  private listenConnection(): Promise<Connection> {
    const direct = this.engine.options.listenSettings;
    if (!direct) return this.openDedicatedConnection();
    this.listenDriver ??= createDriver(this.dialect, direct);
    const driver = this.listenDriver;
    return driver.connect().catch((error: unknown) => {
      throw driver.translateError(error);
    });
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
    const call = this.engine.pending.find(pending);
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
    const timeoutMs = options.timeoutMs ?? this.engine.queryTimeoutMs;
    const work = currentWork<Transaction, DatabaseSession>(this);
    if (work instanceof Transaction) {
      work.assertActive();
      work.assertNoStream('borrow the native connection');
      return lendNative(this.engine, work.connection, fn, timeoutMs, () => (work.lease.discard = true));
    }
    if (work) {
      const lease = await this.engine.sessionLease(work);
      return lendNative(this.engine, lease.connection, fn, timeoutMs, () => (lease.discard = true));
    }
    return this.engine.track(async () => {
      this.engine.assertUsable();
      const call = new CallHandle(this.engine);
      let lease: Lease;
      try {
        lease = await this.engine.acquire(call);
      } finally {
        call.settle();
      }
      // Whatever fn set on the session is undone before the next caller gets it.
      lease.dirty = true;
      try {
        return await lendNative(this.engine, lease.connection, fn, timeoutMs, () => (lease.discard = true));
      } catch (error) {
        if (lease.connection.broken || this.engine.detector.isDeathError(error)) lease.discard = true;
        throw error;
      } finally {
        lease.pool.release(lease);
      }
    });
  }

  /** A round trip to the server; resolves with its duration in milliseconds. */
  async ping(timeoutMs = 5000): Promise<number> {
    const started = performance.now();
    await this.engine.call({ timeoutMs }, async (call) => {
      this.engine.assertUsable();
      const lease = await this.engine.acquire(call);
      call.connection = lease.connection;
      const span = this.engine.tracer?.operation('PING', undefined, undefined, call);
      const sent = performance.now();
      try {
        await lease.connection.ping();
        this.engine.tracer?.end(span);
        this.engine.metrics?.operation('PING', (performance.now() - sent) / 1000);
      } catch (error) {
        lease.discard = true;
        const e = this.engine.failed(error);
        this.engine.tracer?.end(span, e);
        this.engine.metrics?.operation('PING', (performance.now() - sent) / 1000, e);
        throw e;
      } finally {
        call.connection = undefined;
        this.engine.release(lease, call);
      }
    });
    return performance.now() - started;
  }

  /**
   * @internal The health check's ping: on a dedicated connection outside the pool (so that a
   * busy pool cannot make readiness fail), shared by concurrent callers, bounded by `timeoutMs`.
   */
  probe(timeoutMs: number): Promise<number> {
    return this.prober.probe(timeoutMs);
  }

  stats(): PoolStats {
    return this.engine.router.stats();
  }

  /** True once shutdown began. */
  get isClosed(): boolean {
    return this.engine.state !== 'open';
  }

  /**
   * Stops taking work (`DatabaseClosed`), waits for in-flight work up to `shutdownTimeoutMs`,
   * then closes every connection. Called by the module on application shutdown.
   */
  async close(): Promise<void> {
    if (this.engine.state !== 'open') return;
    this.engine.state = 'closing';
    const deadline = Date.now() + this.engine.options.shutdownTimeoutMs;
    // No new notifications start observers (and their queries) while in-flight work drains.
    await this.listenerValue?.close();
    if (this.engine.inFlight > 0) {
      await settlesWithin(new Promise<void>((resolve) => this.engine.idleWaiters.push(resolve)), this.engine.options.shutdownTimeoutMs);
    }
    await this.engine.detector.close();
    this.prober.close();
    await Promise.all([this.engine.pool.close(Math.max(0, deadline - Date.now())), this.engine.replicas?.close(Math.max(0, deadline - Date.now()))]);
    await this.engine.driver.end?.();
    await this.listenDriver?.end?.();
    clearInterval(this.engine.keepAlive);
    this.engine.metrics?.close();
    this.engine.state = 'closed';
    this.events.removeAllListeners();
  }

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
    const refusal = this.behindTransactionPooler(
      'session',
      'a transaction (runInteraction, @Transactional) with its settings, which PgBouncer keeps on one server connection',
    );
    if (refusal) return Promise.reject(refusal);
    const current = currentSession<DatabaseSession>(this);
    if (current && !current.isEnded) {
      return (async () => {
        if (options.settings && Object.keys(options.settings).length > 0) await current.set(options.settings);
        return await fn(current);
      })();
    }
    let session: DatabaseSession;
    try {
      session = new DatabaseSession(this.sessions, { ...options.settings });
    } catch (error) {
      return Promise.reject(error);
    }
    return this.engine.track(async () => {
      try {
        return await runInSession(this, session, () => fn(session));
      } finally {
        await session.release();
      }
    });
  }

  /** @internal A session not bound to a scope (the request-scoped `@InjectConnection()`): ended with `release()`. */
  openSession(options: SessionOptions = {}): DatabaseSession {
    const refusal = this.behindTransactionPooler('@InjectConnection() session', 'a transaction (runInteraction, @Transactional) with its settings');
    if (refusal) throw refusal;
    return new DatabaseSession(this.sessions, { ...options.settings });
  }

  /** @internal For the listener and the health indicator: a connection outside the pool. */
  openDedicatedConnection(): Promise<Connection> {
    return this.engine.connectDriver();
  }

  /**
   * Runs `fn` in a read context of its own (with `replicas` and `readYourWrites: 'context'`): its
   * reads on a replica wait for the writes made inside it, not for the rest of the process's.
   * Outside any context a read waits for every write of this process, the safe default.
   *
   * @example
   * app.use((req, res, next) => db.readContext(next)); // one context per request
   */
  readContext<R>(fn: () => R): R {
    return this.engine.replicas ? this.engine.replicas.readContext(fn) : fn();
  }

  /** Each read replica's state (`up`, `lagging`, `down`, `not-replica`, or `unknown` before its first check), lag and last error. */
  replicaStatus(): ReplicaStatus[] {
    return this.engine.replicas?.status() ?? [];
  }

  /** Checks every replica now, instead of at the next `replicaCheckIntervalMs`. */
  async checkReplicas(): Promise<ReplicaStatus[]> {
    await this.engine.replicas?.checkAll();
    return this.replicaStatus();
  }

  /** One statement of a call: in the transaction or session of the calling code, else on a pool connection. */
  private async execute(
    call: CallHandle,
    mode: 'rows' | 'operation',
    query: string | SqlQuery,
    params: unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<unknown> {
    const { text, values } = this.engine.compile(query, params);
    const exec = this.engine.executeOptions(call, options);
    const work = currentWork<Transaction, DatabaseSession>(this);
    if (work instanceof Transaction) return this.engine.shape(mode, await work.track(this.transactions.executeOnTransaction(work, call, text, values, exec)));
    if (work) return this.engine.shape(mode, await this.sessions.executeOnSession(work, call, text, values, exec));
    return this.engine.shape(mode, await this.engine.executeOnPool(call, text, values, exec, options, this.routing(text, options)));
  }

  /** Where a statement outside a transaction goes, with read replicas. */
  private routing(text: string, options: QueryOptions | undefined): Routing {
    const target = options?.target;
    if (target !== undefined && target !== 'primary' && target !== 'replica') {
      throw new InvalidParameter(`QueryOptions.target must be 'primary' or 'replica' (got ${JSON.stringify(target)})`, { query: text });
    }
    if (!this.engine.replicas) return 'write';
    if (target === 'replica') return 'replica';
    if (!isReadStatement(text)) return 'write';
    return target === 'primary' ? 'primary-read' : 'replica';
  }

  private notSupported(what: string): NotSupported {
    return new NotSupported(
      `${what}() needs LISTEN/NOTIFY notifications, which database "${this.name}" (${this.dialect}) does not have (${dialectsWith('notifications').join(', ')} has them)`,
      {
        dialect: this.dialect,
        database: this.name,
      },
    );
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, dialect: this.dialect, target: this.engine.driver.describe(), state: this.engine.detector.state, pool: this.stats() };
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Database(${this.name}, ${this.engine.driver.describe()}, ${this.engine.detector.state})`;
  }
}

/** `(query, params?, options?)` or, after a `sql` template, `(query, options?)`. */
function splitArgs(
  paramsOrOptions: unknown[] | QueryOptions | undefined,
  options: QueryOptions | undefined,
): [unknown[] | undefined, QueryOptions | undefined] {
  if (paramsOrOptions !== null && typeof paramsOrOptions === 'object' && !Array.isArray(paramsOrOptions)) return [undefined, paramsOrOptions];
  // Anything else goes on as params, for compile() to refuse what is not an array.
  return [paramsOrOptions, options];
}
