/**
 * SQLite through better-sqlite3, run on a `node:worker_threads` worker so that the event loop
 * never waits for SQLite (as Twisted's adbapi ran blocking drivers in threads). One worker per
 * driver, that is per database, serves every connection; each connection is a session in the
 * worker with its own better-sqlite3 handle, so two connections have separate transactions,
 * as they would on a server. The worker runs one statement at a time: connections take turns,
 * they do not run in parallel.
 *
 * File databases use WAL (readers and the one writer do not block each other; see the worker
 * for how writers wait for each other) and get their parent directory created when missing.
 *
 * `:memory:` is one database per handle, so there all connections share a single handle, and
 * with it a single transaction: use a pool of one connection (`recommendedMaxConnections()`
 * returns 1). The in-memory data lives as long as the worker: `end()` and `cancel()` lose it.
 *
 * Types as they come back: INTEGER a number, or a string beyond ±2^53 (never rounded, as the
 * PostgreSQL and MySQL drivers return int8/BIGINT); REAL a number; TEXT a string; BLOB a
 * `Buffer`; NULL `null`. Parameters use `?`; booleans are sent as 1/0, `Date`s as ISO 8601
 * text in UTC, bigints as integers, `Buffer`/`Uint8Array` as blobs, plain objects and arrays
 * as JSON text.
 *
 * @example
 * const driver = new SqliteDriver({ filename: 'data/app.db', connectTimeoutMs: 5000, statementTimeoutMs: 0 });
 * const connection = await driver.connect();
 * const { rows } = await connection.execute('SELECT * FROM users WHERE login = ?', ['ada'], { rowMode: 'object' });
 * await connection.close();
 * await driver.end();
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  ConfigurationError,
  DatabaseClosed,
  DatabaseError,
  InvalidParameter,
  QueryCanceled,
} from '../errors.js';
import type {
  BeginOptions,
  Connection,
  ConnectionSettings,
  Driver,
  ExecuteOptions,
  ResultSet,
  RowCursor,
  StreamOptions,
} from './driver.js';
import { savepointSql } from './savepoint.js';
import { redact } from './redact.js';
import {
  PHASE,
  SLOT_COUNT,
  SQLITE_WORKER_SOURCE,
  type OkReply,
  type RequestBody,
  type WorkerData,
  type WorkerReply,
} from './sqlite.worker.js';

/** How long a statement waits for another writer's lock before failing with SQLITE_BUSY. */
export const DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5000;

/** `ConnectionSettings.driverOptions` understood by the SQLite driver. */
export interface SqliteDriverOptions {
  /** How long a statement waits for another writer's lock before SQLITE_BUSY. Default: 5000. */
  busyTimeoutMs?: number;
  /** Extra PRAGMAs for each new handle, after the defaults (`journal_mode = WAL`, `foreign_keys = ON`). Example: `{ synchronous: 'NORMAL' }`. */
  pragmas?: Record<string, string | number | boolean>;
  /** better-sqlite3: open read-only. Default: false. */
  readonly?: boolean;
  /** better-sqlite3: fail instead of creating a missing file. Default: false. */
  fileMustExist?: boolean;
  /** better-sqlite3: path of the compiled addon, when it is not where the package expects it. */
  nativeBinding?: string;
}

/** How long `end()` waits for the worker thread to stop. */
const END_WAIT_MS = 1000;
const DEFAULT_BATCH_SIZE = 100;

let betterSqlitePath: string | undefined;
function resolveBetterSqlite(): string {
  try {
    return (betterSqlitePath ??= createRequire(import.meta.url).resolve('better-sqlite3'));
  } catch (error) {
    throw new ConfigurationError('the sqlite driver needs the better-sqlite3 package: npm install better-sqlite3', {
      option: 'driver',
      dialect: 'sqlite',
      cause: error,
    });
  }
}

export class SqliteDriver implements Driver {
  readonly dialect = 'sqlite' as const;
  /** SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32. */
  readonly maxParameters = 32766;

  private readonly filename: string;
  /** `:memory:` (or `''`, a private temporary database): every handle would be another database, so all sessions share one. */
  private readonly memory: boolean;
  private host: WorkerHost | undefined;
  private lastSessionId = 0;

  constructor(private readonly settings: ConnectionSettings) {
    const { filename } = settings;
    if (typeof filename !== 'string') {
      throw new ConfigurationError("the sqlite driver needs a filename: a path, or ':memory:'", {
        option: 'filename',
        dialect: 'sqlite',
      });
    }
    this.memory = filename === ':memory:' || filename === '';
    // Resolved now, so that a later process.chdir() cannot move the database.
    this.filename = this.memory ? filename : path.resolve(filename);
    this.workerOptions(); // fail at construction on invalid driverOptions
  }

  /** The pool size this database supports: 1 for `:memory:` (one shared handle, one transaction), undefined (no limit of its own) for a file. */
  recommendedMaxConnections(): number | undefined {
    return this.memory ? 1 : undefined;
  }

  describe(): string {
    return `sqlite:${this.settings.filename}`;
  }

  async connect(): Promise<Connection> {
    if (!this.host || this.host.dead) {
      this.host = new WorkerHost(
        this.workerData(),
        (error, query) => this.translateError(error, query),
        (stopped) => {
          if (this.host === stopped) this.host = undefined; // the next connect() starts a new worker
        },
      );
    }
    const host = this.host;
    const connection = new SqliteConnection(++this.lastSessionId, host);
    host.sessions.set(connection.serverId, connection);
    try {
      await host.request(connection.serverId, { op: 'open' }, { timeoutMs: this.settings.connectTimeoutMs });
    } catch (error) {
      connection.lost();
      throw error;
    }
    return connection;
  }

  translateError(error: unknown, query?: string): DatabaseError {
    if (error instanceof DatabaseError) return error;
    const e = error as { code?: unknown; message?: unknown; name?: unknown } | undefined;
    const message = redact(typeof e?.message === 'string' ? e.message : String(error));
    // better-sqlite3's own argument checks throw RangeError (wrong number of parameters)
    // and TypeError (a value it cannot bind) without a code; SQLite names those two cases so.
    let code = typeof e?.code === 'string' ? e.code : undefined;
    code ??= e?.name === 'RangeError' ? 'SQLITE_RANGE' : e?.name === 'TypeError' ? 'SQLITE_MISUSE' : 'DATABASE_ERROR';
    return new DatabaseError(message, { code, dialect: 'sqlite', query, cause: error, database: this.settings.name });
  }

  /**
   * `BEGIN IMMEDIATE` for a read-write transaction: it takes the write lock at once (waiting
   * for it as any writer does). A deferred `BEGIN` that reads and then writes has to upgrade
   * its lock later, and if another writer committed meanwhile its snapshot is stale and it
   * fails with SQLITE_BUSY_SNAPSHOT at once, with no waiting possible. Read-only
   * transactions use a deferred `BEGIN`.
   * Every isolation level is accepted: SQLite transactions are always serializable. `readOnly`
   * is enforced with `PRAGMA query_only` for the length of the transaction.
   */
  beginStatements(options: BeginOptions): string[] {
    // SQLite has no READ ONLY transaction: query_only makes every write of the session fail (SQLITE_READONLY) until it is turned off.
    return options.readOnly ? ['BEGIN', 'PRAGMA query_only = ON'] : ['BEGIN IMMEDIATE'];
  }

  finishStatements(options: BeginOptions): string[] {
    return options.readOnly ? ['PRAGMA query_only = OFF'] : [];
  }

  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string {
    return savepointSql(kind, name, 'sqlite');
  }

  /** Stops the worker thread; its handles are closed as it stops. A later connect() starts a new one. */
  async end(): Promise<void> {
    const host = this.host;
    this.host = undefined;
    await host?.shutdown();
  }

  private workerData(): Omit<WorkerData, 'phases'> {
    return { modulePath: resolveBetterSqlite(), filename: this.filename, memory: this.memory, ...this.workerOptions() };
  }

  private workerOptions(): Pick<WorkerData, 'busyTimeoutMs' | 'pragmas' | 'databaseOptions'> {
    const { busyTimeoutMs = DEFAULT_SQLITE_BUSY_TIMEOUT_MS, pragmas = {}, ...rest } = (this.settings.driverOptions ??
      {}) as SqliteDriverOptions & Record<string, unknown>;
    if (typeof busyTimeoutMs !== 'number' || !(busyTimeoutMs >= 0)) {
      throw new ConfigurationError('driverOptions.busyTimeoutMs must be a number of milliseconds >= 0', {
        option: 'driverOptions.busyTimeoutMs',
        dialect: 'sqlite',
      });
    }
    const pragmaList: Array<[string, string]> = [];
    for (const [name, value] of Object.entries(pragmas)) {
      if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name) || /[;\n]/.test(String(value))) {
        throw new ConfigurationError(`driverOptions.pragmas.${name} is not a valid PRAGMA`, {
          option: `driverOptions.pragmas.${name}`,
          dialect: 'sqlite',
        });
      }
      pragmaList.push([name, typeof value === 'boolean' ? (value ? 'ON' : 'OFF') : String(value)]);
    }
    // Only what can cross to the worker (better-sqlite3's `verbose` callback cannot).
    const databaseOptions: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(rest)) {
      if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) databaseOptions[key] = value;
    }
    return { busyTimeoutMs, pragmas: pragmaList, databaseOptions };
  }
}

interface Pending {
  id: number;
  /** Index in the shared phase array, or -1: not cancelable without restarting the worker. */
  slot: number;
  session: number;
  cancelable: boolean;
  text?: string;
  settled: boolean;
  timer?: NodeJS.Timeout;
  resolve(reply: OkReply): void;
  reject(error: DatabaseError): void;
}

interface RequestOptions {
  text?: string;
  /** Default true. Closing requests are not: they are never what cancel() means. */
  cancelable?: boolean;
  /** Give up on a request the worker has not started after this long (connect timeout). 0: never. */
  timeoutMs?: number;
}

/**
 * One worker thread and everything in flight on it. Replaced by a new one (by the driver, on
 * the next connect) once it stopped: after end(), a cancel, or a crash.
 */
class WorkerHost {
  readonly sessions = new Map<number, SqliteConnection>();
  dead = false;
  private readonly worker: Worker;
  private readonly phases = new Int32Array(new SharedArrayBuffer(SLOT_COUNT * Int32Array.BYTES_PER_ELEMENT));
  private readonly freeSlots = Array.from({ length: SLOT_COUNT }, (_, i) => SLOT_COUNT - 1 - i);
  private readonly pending = new Map<number, Pending>();
  private lastId = 0;
  private readonly exited: Promise<void>;

  constructor(
    data: Omit<WorkerData, 'phases'>,
    private readonly translateError: (error: unknown, query?: string) => DatabaseError,
    private readonly onStopped: (host: WorkerHost) => void,
  ) {
    const workerData: WorkerData = { ...data, phases: this.phases };
    this.worker = new Worker(SQLITE_WORKER_SOURCE, { eval: true, workerData, name: 'nestjs-dbpool sqlite' });
    // Referenced only while a request is in flight: an idle pool must not keep the process alive.
    this.worker.unref();
    this.worker.on('message', (reply: WorkerReply) => this.onReply(reply));
    this.worker.on('error', (error) => this.kill('crash', undefined, error));
    this.worker.on('messageerror', (error) => this.kill('crash', undefined, error));
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        this.kill('crash', undefined, new Error(`the worker thread exited with code ${code}`));
        for (const p of this.pending.values()) {
          this.settle(p, this.lost('the SQLite worker thread stopped before answering', p.text));
        }
        this.pending.clear();
        resolve();
      }),
    );
  }

  request(session: number, body: RequestBody, options: RequestOptions = {}): Promise<OkReply> {
    if (this.dead) return Promise.reject(this.lost('the SQLite worker thread stopped', options.text));
    const cancelable = options.cancelable ?? true;
    const slot = cancelable ? (this.freeSlots.pop() ?? -1) : -1;
    if (slot >= 0) Atomics.store(this.phases, slot, PHASE.QUEUED);
    const id = ++this.lastId;
    return new Promise<OkReply>((resolve, reject) => {
      const p: Pending = { id, slot, session, cancelable, text: options.text, settled: false, resolve, reject };
      this.pending.set(id, p);
      if (this.pending.size === 1) this.worker.ref();
      if (options.timeoutMs) p.timer = setTimeout(() => this.expire(p, options.timeoutMs!), options.timeoutMs);
      try {
        this.worker.postMessage({ id, slot, session, ...body });
      } catch (error) {
        // Values were checked by toSqliteValues(); this is a bug, so no value goes in the message.
        this.forgetRequest(p);
        this.settle(p, new DatabaseError('could not send the statement to the SQLite worker', { code: 'SQLITE_MISUSE', dialect: 'sqlite', query: options.text, cause: error }));
      }
    });
  }

  /**
   * Cancels the statement `session` has in flight. One the worker has not started is skipped.
   * One it runs cannot be stopped (better-sqlite3 has no sqlite3_interrupt), so the worker is
   * terminated and the next connect() starts a new one: every connection of this database is
   * lost, and on `:memory:` the data with them. The terminated thread still finishes the
   * SQLite call it is inside (then stops, closing its handles): a read goes on using a CPU
   * for that long; a write outside a transaction was wrapped in one that is never committed
   * (see the worker), so a QueryCanceled statement had no effect, except a several-statement
   * script, which may have run in part.
   */
  cancel(session: number): void {
    if (this.dead) return;
    let target: Pending | undefined;
    for (const p of this.pending.values()) if (p.session === session && p.cancelable && !p.settled) target = p;
    if (!target) return;
    if (target.slot < 0) {
      this.kill('cancel', target);
      return;
    }
    for (;;) {
      const phase = Atomics.load(this.phases, target.slot);
      if (phase !== PHASE.QUEUED && phase !== PHASE.RUNNING) return; // done: its result is on the way
      if (Atomics.compareExchange(this.phases, target.slot, phase, PHASE.CANCELED) !== phase) continue;
      if (phase === PHASE.QUEUED) this.settle(target, this.canceled(target, 'the statement was canceled before it started'));
      else this.kill('cancel', target);
      return;
    }
  }

  /** destroy(): skip what the session has queued and stop waiting for what it runs. */
  abandon(session: number): void {
    for (const p of this.pending.values()) {
      if (p.session !== session || p.settled) continue;
      if (p.slot >= 0) Atomics.compareExchange(this.phases, p.slot, PHASE.QUEUED, PHASE.CANCELED);
      this.settle(p, this.lost('the connection was destroyed', p.text));
    }
  }

  async shutdown(): Promise<void> {
    this.kill('end');
    // Referenced until it has stopped, or nothing would keep the process alive to see it stop.
    this.worker.ref();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise<void>((resolve) => (timer = setTimeout(resolve, END_WAIT_MS)))]);
    clearTimeout(timer);
  }

  private onReply(reply: WorkerReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.forgetRequest(p);
    if ('skipped' in reply) {
      this.settle(p, this.canceled(p, 'the statement was canceled before it started'));
      return;
    }
    const connection = this.sessions.get(p.session);
    if (connection && !this.dead) connection.transactionStatus = reply.inTransaction ? 'transaction' : 'idle';
    if (reply.ok) {
      if (reply.blobs && reply.rows) restoreBuffers(reply.rows);
      this.settle(p, reply);
    } else {
      this.settle(p, this.translateError(Object.assign(new Error(reply.error.message), reply.error), p.text));
    }
  }

  private forgetRequest(p: Pending): void {
    this.pending.delete(p.id);
    if (p.slot >= 0) {
      Atomics.store(this.phases, p.slot, PHASE.FREE);
      this.freeSlots.push(p.slot);
    }
    if (this.pending.size === 0) this.worker.unref();
  }

  private expire(p: Pending, timeoutMs: number): void {
    if (p.settled || p.slot < 0) return;
    if (Atomics.compareExchange(this.phases, p.slot, PHASE.QUEUED, PHASE.CANCELED) !== PHASE.QUEUED) return;
    this.settle(p, new DatabaseError(`connect timeout: the SQLite worker did not get to it within ${timeoutMs} ms`, { code: 'CONNECT_TIMEOUT', dialect: 'sqlite' }));
  }

  private settle(p: Pending, outcome: OkReply | DatabaseError): void {
    if (p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    if (outcome instanceof DatabaseError) p.reject(outcome);
    else p.resolve(outcome);
  }

  /** Stops the worker and fails what was in flight; every session of it is lost. */
  private kill(reason: 'cancel' | 'end' | 'crash', canceled?: Pending, cause?: unknown): void {
    if (this.dead) return;
    this.dead = true;
    this.onStopped(this);
    // terminate() stops the thread's JavaScript at once, but not a call into SQLite in
    // progress: the thread finishes it, then stops and closes its handles.
    void this.worker.terminate().catch(() => {});
    this.worker.unref();
    const busy = new Set<number>();
    for (const p of this.pending.values()) {
      if (p.settled) continue;
      busy.add(p.session);
      if (p === canceled) {
        this.settle(p, this.canceled(p, 'SQLite cannot interrupt a running statement, so its worker thread was stopped and every connection to this database closed'));
        continue;
      }
      const phase = p.slot >= 0 ? Atomics.load(this.phases, p.slot) : undefined;
      // Its reply was posted before the thread stopped; it is still delivered.
      if (phase === PHASE.DONE) continue;
      this.settle(p, this.lostInFlight(reason, phase, p.text, cause));
    }
    const idleError = reason === 'crash' ? this.lost(`the SQLite worker thread failed: ${describeCause(cause)}`, undefined, cause) : undefined;
    for (const connection of [...this.sessions.values()]) connection.lost(busy.has(connection.serverId) ? undefined : idleError);
    this.sessions.clear();
  }

  private lostInFlight(reason: 'cancel' | 'end' | 'crash', phase: number | undefined, query?: string, cause?: unknown): DatabaseError {
    const notStarted = phase === PHASE.QUEUED;
    if (reason === 'end') {
      return new DatabaseClosed(`the SQLite driver was ended${notStarted ? ' before this statement started' : ''}`, { dialect: 'sqlite', query });
    }
    if (reason === 'cancel') {
      return this.lost(
        `the SQLite worker thread was restarted to cancel a statement on another connection; this statement ${notStarted ? 'had not started' : 'may have run'}`,
        query,
      );
    }
    return this.lost(`the SQLite worker thread failed: ${describeCause(cause)}`, query, cause);
  }

  private lost(message: string, query?: string, cause?: unknown): DatabaseError {
    return new DatabaseError(message, { code: 'CONNECTION_LOST', dialect: 'sqlite', query, cause });
  }

  private canceled(p: Pending, why: string): QueryCanceled {
    return new QueryCanceled(`canceling statement: ${why}`, { dialect: 'sqlite', query: p.text });
  }
}

function describeCause(cause: unknown): string {
  return redact(cause instanceof Error ? cause.message : String(cause));
}

class SqliteConnection implements Connection {
  transactionStatus: Connection['transactionStatus'] = 'idle';
  private state: 'open' | 'closed' = 'open';
  private errorHandler: (error: DatabaseError) => void = () => {};
  private endHandlers: Array<() => void> = [];

  constructor(
    /** The session id in the worker: a counter, unique for the driver's life. */
    readonly serverId: number,
    private readonly host: WorkerHost,
  ) {}

  get broken(): boolean {
    return this.state === 'closed' || this.host.dead;
  }

  /** `prepare` is accepted and has no effect: every statement is prepared and cached per connection in the worker anyway. */
  async execute(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet> {
    const reply = await this.request(
      { op: 'execute', text, values: toSqliteValues(values, text), array: options.rowMode === 'array' },
      text,
    );
    const result: ResultSet = { rows: reply.rows ?? [], affectedRows: reply.affectedRows ?? 0 };
    if (reply.insertId !== undefined) result.insertId = reply.insertId;
    return result;
  }

  /**
   * The worker steps the statement and sends `batchSize` rows at a time, the next batch only
   * when this side asks for it. Closing early closes the statement in the worker and leaves
   * the connection usable. A statement that writes (`... RETURNING`) runs whole first.
   */
  cursor(text: string, values: readonly unknown[], options: StreamOptions): RowCursor {
    const batchSize = Math.max(1, Math.floor(options.batchSize) || DEFAULT_BATCH_SIZE);
    let cursor: number | undefined;
    let done = false;
    return {
      read: async () => {
        if (done) return [];
        const reply =
          cursor === undefined
            ? await this.request({ op: 'streamOpen', text, values: toSqliteValues(values, text), array: options.rowMode === 'array', batchSize }, text)
            : await this.request({ op: 'streamNext', cursor }, text);
        cursor = reply.cursor ?? cursor ?? 0;
        done = reply.done === true;
        const rows = reply.rows ?? [];
        if (rows.length === 0 && !done) return this.cursorRead(cursor, text);
        return rows;
      },
      close: async () => {
        if (done || cursor === undefined || this.broken) return;
        done = true;
        await this.request({ op: 'streamClose', cursor }, text, false).catch(() => {});
      },
    };
  }

  private async cursorRead(cursor: number, text: string): Promise<unknown[]> {
    const reply = await this.request({ op: 'streamNext', cursor }, text);
    return reply.rows ?? [];
  }

  /** See WorkerHost.cancel: a running statement is stopped by restarting the worker, which closes every connection of this database. */
  async cancel(): Promise<void> {
    this.host.cancel(this.serverId);
  }

  async ping(): Promise<void> {
    await this.request({ op: 'ping' }, 'SELECT 1');
  }

  async close(): Promise<void> {
    if (this.broken) {
      this.lost();
      return;
    }
    try {
      await this.host.request(this.serverId, { op: 'close' }, { cancelable: false });
    } catch {
      // the worker is gone: so is the session
    } finally {
      this.lost();
    }
  }

  destroy(): void {
    if (this.state === 'closed') return;
    this.host.abandon(this.serverId);
    // Queued behind a statement this session may still be running; closing its handle ends it.
    if (!this.host.dead) void this.host.request(this.serverId, { op: 'close' }, { cancelable: false }).catch(() => {});
    this.lost();
  }

  onError(handler: (error: DatabaseError) => void): void {
    this.errorHandler = handler;
  }

  onEnd(handler: () => void): void {
    this.endHandlers.push(handler);
  }

  /** The session is gone (closed, destroyed, or its worker stopped): runs the end handlers once. */
  lost(error?: DatabaseError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.host.sessions.delete(this.serverId);
    if (error) this.errorHandler(error);
    const handlers = this.endHandlers;
    this.endHandlers = [];
    for (const handler of handlers) handler();
  }

  private request(body: RequestBody, text: string, cancelable = true): Promise<OkReply> {
    if (this.broken) {
      return Promise.reject(new DatabaseError('this SQLite connection is closed', { code: 'CONNECTION_LOST', dialect: 'sqlite', query: text }));
    }
    return this.host.request(this.serverId, body, { text, cancelable });
  }
}

/** Turns parameters into what better-sqlite3 binds; refuses what it would reject or corrupt, naming the position, never the value. */
function toSqliteValues(values: readonly unknown[], query: string): unknown[] {
  return values.map((value, i) => {
    switch (typeof value) {
      case 'number':
      case 'string':
      case 'bigint':
        return value;
      case 'boolean':
        return value ? 1 : 0;
      case 'object':
        if (value === null || ArrayBuffer.isView(value)) return value;
        if (value instanceof Date) {
          if (Number.isNaN(value.getTime())) {
            throw new InvalidParameter(`parameter ${i + 1} is an invalid Date`, { position: i + 1, dialect: 'sqlite', query });
          }
          return value.toISOString();
        }
        return JSON.stringify(value);
      default:
        throw new InvalidParameter(`parameter ${i + 1} is ${typeof value}, which SQLite cannot store`, {
          position: i + 1,
          dialect: 'sqlite',
          query,
        });
    }
  });
}

/** Blobs cross the thread boundary as Uint8Array; callers get Buffers, as from the other drivers. */
function restoreBuffers(rows: unknown[]): void {
  const toBuffer = (v: unknown) => (v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v);
  for (const row of rows) {
    if (Array.isArray(row)) {
      for (let i = 0; i < row.length; i++) row[i] = toBuffer(row[i]);
    } else if (row !== null && typeof row === 'object') {
      const record = row as Record<string, unknown>;
      for (const key in record) record[key] = toBuffer(record[key]);
    }
  }
}
