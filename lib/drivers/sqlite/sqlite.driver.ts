/**
 * SQLite through better-sqlite3, one child process per connection (`sqlite.child.cjs`). The
 * statements run in that process, never on the application's event loop (as Twisted's adbapi
 * ran blocking drivers in threads); each connection has its own handle and its own transaction,
 * as on a server.
 *
 * Why processes and not threads (measured, README "SQLite"): better-sqlite3 cannot interrupt a
 * running statement, and a worker thread cannot be stopped in the middle of one, so with threads
 * a canceled statement went on using a CPU and holding its locks for as long as it had left, and
 * the process could not exit before it ended. A process is stopped at once: a cancel or timeout
 * kills that connection's process only; the kernel releases its locks, its uncommitted writes are
 * discarded, and no other connection, transaction or data is touched. The price is the IPC: more
 * CPU per statement than a thread, and about 100 ms to start a connection's process (16 ms when
 * the spare one kept ready is taken).
 *
 * File databases use WAL (readers never block the writer nor each other; writers wait for each
 * other up to `busyTimeoutMs`) and get their parent directory created when missing. `:memory:`
 * is one private database shared by the pool's connections: a WAL file on a RAM disk (`/dev/shm`
 * where there is one, else the temporary folder), deleted when the database closes.
 *
 * Types as they come back: INTEGER a number, or an exact string beyond ±2^53 (never rounded, as
 * the PostgreSQL and MySQL drivers return int8/BIGINT); REAL a number; TEXT a string; BLOB a
 * `Buffer`; NULL `null`. Parameters use `?`; booleans are sent as 1/0, `Date`s as ISO 8601 text
 * in UTC, bigints as integers, `Buffer`/`Uint8Array` as blobs, plain objects and arrays as JSON.
 *
 * @example
 * const driver = new SqliteDriver({ filename: 'data/app.db', connectTimeoutMs: 5000, statementTimeoutMs: 0 });
 * const connection = await driver.connect();
 * const { rows } = await connection.execute('SELECT * FROM users WHERE login = ?', ['ada'], { rowMode: 'object' });
 * await connection.close();
 * await driver.end();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigurationError,
  constraintViolation,
  DatabaseClosed,
  DatabaseError,
  InvalidParameter,
  QueryCanceled,
  type ConstraintKind,
  type ErrorClass,
  ErrorCode,
} from '../../core/errors.js';
import type { BeginOptions, Connection, ConnectionSettings, Driver, ExecuteOptions, ResultSet, RowCursor, StreamOptions } from '../driver.js';
import { loadPackage } from '../load-package.js';
import { markNotSent } from '../not-sent.js';
import { redact } from '../redact.js';
import { classifyStandard, savepointSql, STANDARD_END } from '../standard.js';
import { SQLITE_SCRIPT_SYNTAX, SQLITE_SYNTAX } from './sqlite.syntax.js';
import { SQLITE_MIGRATIONS } from './sqlite.features.js';
import { withTimeout } from '../../core/timers.js';

/** How long a statement waits for another writer's lock before failing with SQLITE_BUSY. */
export const DEFAULT_SQLITE_BUSY_TIMEOUT_MS = 5000;

/** `ConnectionSettings.driverOptions` understood by the SQLite driver. */
export interface SqliteDriverOptions {
  /** How long a statement waits for another writer's lock before SQLITE_BUSY. Default: 5000. */
  busyTimeoutMs?: number;
  /** Extra PRAGMAs for each new connection, after the defaults (`journal_mode = WAL`, `foreign_keys = ON`). Example: `{ synchronous: 'NORMAL' }`. */
  pragmas?: Record<string, string | number | boolean>;
  /** better-sqlite3: open read-only. Default: false. */
  readonly?: boolean;
  /** better-sqlite3: fail instead of creating a missing file. Default: false. */
  fileMustExist?: boolean;
  /** better-sqlite3: path of the compiled addon, when it is not where the package expects it. */
  nativeBinding?: string;
}

// @ts-ignore TS1343 in the CommonJS build (tsconfig.build.json), where .ci/finish-package.mjs replaces it with the module's file URL
const CHILD_SCRIPT = fileURLToPath(new URL('./sqlite.child.cjs', import.meta.url));
const SQLITE_CONSTRAINTS: Record<string, ConstraintKind> = {
  SQLITE_CONSTRAINT_UNIQUE: 'unique',
  SQLITE_CONSTRAINT_PRIMARYKEY: 'unique',
  SQLITE_CONSTRAINT_FOREIGNKEY: 'foreignKey',
  SQLITE_CONSTRAINT_NOTNULL: 'notNull',
  SQLITE_CONSTRAINT_CHECK: 'check',
};

/** How long close() waits for a connection's process to exit before killing it. */
const CLOSE_WAIT_MS = 1000;
/** A COMMIT, END or RELEASE cannot be undone once sent: a cancel lets it finish. */
const FINAL_STATEMENT = /^(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*(?:COMMIT|END|RELEASE)\b/i;
const DEFAULT_BATCH_SIZE = 100;
/** Files of `:memory:` databases: a RAM disk where there is one. */
const MEMORY_DIR = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const MEMORY_PREFIX = 'nestjs-dbpool-memory-';
/** Linux: the kernel kills a connection's process when this one dies, even while a statement runs. */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));

let betterSqlitePath: string | undefined;
function resolveBetterSqlite(): string {
  try {
    // @ts-ignore TS1343 in the CommonJS build (tsconfig.build.json), where .ci/finish-package.mjs replaces it with the module's file URL
    return (betterSqlitePath ??= createRequire(import.meta.url).resolve('better-sqlite3'));
  } catch (error) {
    throw new ConfigurationError('the sqlite driver needs the "better-sqlite3" package, which is not installed: npm install better-sqlite3', {
      option: 'driver',
      dialect: 'sqlite',
      cause: error,
    });
  }
}

interface ChildReply {
  id?: number;
  ok?: boolean;
  ready?: boolean;
  gate?: boolean;
  fatal?: string;
  inTransaction?: boolean;
  rows?: unknown[];
  affectedRows?: number;
  insertId?: number | string;
  done?: boolean;
  tagged?: boolean;
  error?: { message: string; code?: string; name?: string };
}

/** A started process with better-sqlite3 loaded, not yet attached to a database. */
interface Spare {
  child: ChildProcess;
  ready: Promise<void>;
  stderr: { tail: string };
}

/** Every running connection process of this Node process, killed if it exits without closing them. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function startProcess(modulePath: string): Spare {
  const env: NodeJS.ProcessEnv = { ...process.env, NDBP_SQLITE_MODULE: modulePath };
  // The application's NODE_OPTIONS (--require hooks, --inspect ports) are not the child's business.
  delete env.NODE_OPTIONS;
  const [command, args] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', process.execPath, CHILD_SCRIPT]] : [process.execPath, [CHILD_SCRIPT]];
  const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json', windowsHide: true });
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of liveChildren) c.kill('SIGKILL');
    });
  }
  const stderr = { tail: '' };
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => (stderr.tail = (stderr.tail + chunk).slice(-2000)));
  child.on('error', () => {}); // a send() to a process that died; its exit is what reports the loss
  child.once('exit', () => liveChildren.delete(child));
  const ready = new Promise<void>((resolve, reject) => {
    const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
      reject(
        new DatabaseError(
          `the SQLite connection process exited while starting (code ${code}, signal ${signal}): ${redact(stderr.tail.trim()) || 'no output'}`,
          {
            code: ErrorCode.ConnectionLost,
            dialect: 'sqlite',
          },
        ),
      );
    child.once('exit', onExit);
    child.once('message', (m: ChildReply) => {
      child.off('exit', onExit);
      if (m?.ready) resolve();
      else
        reject(
          new DatabaseError(`the SQLite connection process failed to start: ${m?.fatal ?? JSON.stringify(m)}`, {
            code: ErrorCode.ConnectionLost,
            dialect: 'sqlite',
          }),
        );
    });
  });
  ready.catch(() => {});
  idle(child);
  return { child, ready, stderr };
}

/** An idle connection process does not keep the application alive; one with a request in flight does. */
function idle(child: ChildProcess): void {
  child.unref();
  (child.channel as unknown as { unref?(): void } | undefined)?.unref?.();
  (child.stderr as unknown as { unref?(): void } | null)?.unref?.();
}

function busy(child: ChildProcess): void {
  child.ref();
  (child.channel as unknown as { ref?(): void } | undefined)?.ref?.();
}

export class SqliteDriver implements Driver {
  readonly dialect = 'sqlite' as const;
  /** SQLITE_MAX_VARIABLE_NUMBER since SQLite 3.32. */
  readonly syntax = SQLITE_SYNTAX;
  readonly scriptSyntax = SQLITE_SCRIPT_SYNTAX;
  readonly endStatements = STANDARD_END;
  readonly migrations = SQLITE_MIGRATIONS;

  classify(error: unknown): ErrorClass {
    return classifyStandard(error);
  }

  private readonly filename: string;
  /** `:memory:` (or `''`): a private database shared by this driver's connections, kept in a file of its own. */
  private readonly memory: boolean;
  private readonly connections = new Set<SqliteConnection>();
  private spare?: Spare;
  private lastSessionId = 0;
  private ended = false;

  constructor(private readonly settings: ConnectionSettings) {
    const { filename } = settings;
    if (typeof filename !== 'string') {
      throw new ConfigurationError("the sqlite driver needs a filename: a path, or ':memory:'", { option: 'filename', dialect: 'sqlite' });
    }
    this.memory = filename === ':memory:' || filename === '';
    // Resolved now, so that a later process.chdir() cannot move the database.
    this.filename = this.memory ? path.join(MEMORY_DIR, `${MEMORY_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}.db`) : path.resolve(filename);
    this.options(); // fail at construction on invalid driverOptions
  }

  describe(): string {
    return `sqlite:${this.settings.filename}`;
  }

  /** Loads better-sqlite3 here once, so that a missing package or a native binding built for another Node fails the boot, not the first query. */
  async load(): Promise<void> {
    const modulePath = resolveBetterSqlite();
    await loadPackage('better-sqlite3', 'sqlite', async () => {
      // @ts-ignore TS1343 in the CommonJS build (tsconfig.build.json), where .ci/finish-package.mjs replaces it with the module's file URL
      const BetterSqlite = createRequire(import.meta.url)(modulePath) as new (file: string) => { close(): void };
      new BetterSqlite(':memory:').close();
    });
    // A process started now serves the first query without the ~100 ms of starting one (it keeps nothing alive).
    this.spare ??= startProcess(modulePath);
  }

  async connect(): Promise<Connection> {
    if (this.ended) throw new DatabaseClosed('the SQLite driver was ended', { dialect: 'sqlite', database: this.settings.name });
    if (this.memory) sweepStaleMemoryFiles();
    else fs.mkdirSync(path.dirname(this.filename), { recursive: true });
    const modulePath = resolveBetterSqlite();
    // The spare process kept ready is taken, and the next one started at once.
    const started = this.spare ?? startProcess(modulePath);
    this.spare = startProcess(modulePath);
    const connection = new SqliteConnection(++this.lastSessionId, started, this, this.settings.name);
    this.connections.add(connection);
    connection.onEnd(() => this.connections.delete(connection));
    const { busyTimeoutMs, pragmas, databaseOptions } = this.options();
    try {
      await connectBounded(started.ready, this.settings.connectTimeoutMs, 'starting its process');
      await connection.request(
        { op: 'open', filename: this.filename, pragmas, busyTimeoutMs, databaseOptions, types: this.settings.types },
        { cancelable: false, timeoutMs: this.settings.connectTimeoutMs },
      );
    } catch (error) {
      connection.destroy();
      throw this.translateError(error);
    }
    return connection;
  }

  translateError(error: unknown, query?: string): DatabaseError {
    if (error instanceof DatabaseError) return error;
    const e = error as { code?: unknown; message?: unknown; name?: unknown } | undefined;
    const message = redact(typeof e?.message === 'string' ? e.message : String(error));
    // better-sqlite3's own argument checks throw RangeError (wrong number of parameters) and
    // TypeError (a value it cannot bind) without a code; SQLite names those two cases so.
    let code = typeof e?.code === 'string' ? e.code : undefined;
    code ??= e?.name === 'RangeError' ? 'SQLITE_RANGE' : e?.name === 'TypeError' ? 'SQLITE_MISUSE' : ErrorCode.DatabaseError;
    const fields = { code, dialect: 'sqlite' as const, query, cause: error, database: this.settings.name };
    const kind = SQLITE_CONSTRAINTS[code];
    if (kind) {
      // "UNIQUE constraint failed: users.login, users.team", "NOT NULL constraint failed: users.name", "CHECK constraint failed: positive".
      const named = /constraint failed: ([^,\s]+)/.exec(message)?.[1];
      const dot = named?.indexOf('.') ?? -1;
      const where = kind === 'check' ? { constraint: named } : dot > 0 ? { table: named!.slice(0, dot), column: named!.slice(dot + 1) } : {};
      return constraintViolation(kind, message, { ...fields, ...where });
    }
    return new DatabaseError(message, fields);
  }

  /**
   * `BEGIN IMMEDIATE` for a read-write transaction: it takes the write lock at once (waiting for
   * it as any writer does). A deferred `BEGIN` that reads and then writes has to upgrade its
   * lock later, and if another writer committed meanwhile its snapshot is stale and it fails with
   * SQLITE_BUSY_SNAPSHOT at once, with no waiting possible. Every isolation level is accepted:
   * SQLite transactions are always serializable. `readOnly` is enforced with `PRAGMA query_only`
   * for the length of the transaction.
   */
  beginStatements(options: BeginOptions): string[] {
    return options.readOnly ? ['BEGIN', 'PRAGMA query_only = ON'] : ['BEGIN IMMEDIATE'];
  }

  finishStatements(options: BeginOptions): string[] {
    return options.readOnly ? ['PRAGMA query_only = OFF'] : [];
  }

  /** PRAGMA, ATTACH and temporary tables stay with the connection; SQLite cannot reset one, so it is replaced. */
  changesSession(text: string): boolean {
    return /^\s*(?:PRAGMA|ATTACH|DETACH|CREATE\s+TEMP(?:ORARY)?\b)/i.test(text);
  }

  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string {
    return savepointSql(kind, name, SQLITE_SYNTAX);
  }

  /** Stops every connection's process and the spare; deletes a `:memory:` database's file. */
  async end(): Promise<void> {
    this.ended = true;
    const spare = this.spare;
    this.spare = undefined;
    spare?.child.kill('SIGKILL');
    await Promise.all([...this.connections].map((c) => c.close()));
    if (this.memory) for (const suffix of ['', '-wal', '-shm', '-journal']) fs.rmSync(this.filename + suffix, { force: true });
  }

  private options(): { busyTimeoutMs: number; pragmas: string[]; databaseOptions: Record<string, unknown> } {
    const {
      busyTimeoutMs = DEFAULT_SQLITE_BUSY_TIMEOUT_MS,
      pragmas = {},
      ...rest
    } = (this.settings.driverOptions ?? {}) as SqliteDriverOptions & Record<string, unknown>;
    if (typeof busyTimeoutMs !== 'number' || !(busyTimeoutMs >= 0)) {
      throw new ConfigurationError('driverOptions.busyTimeoutMs must be a number of milliseconds >= 0', {
        option: 'driverOptions.busyTimeoutMs',
        dialect: 'sqlite',
      });
    }
    const list = [this.memory ? 'journal_mode = WAL' : rest.readonly ? '' : 'journal_mode = WAL', 'foreign_keys = ON'].filter(Boolean);
    // A :memory: stand-in is private and thrown away: durability against power loss buys nothing.
    if (this.memory) list.push('synchronous = OFF');
    for (const [name, value] of Object.entries(pragmas)) {
      if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name) || /[;\n]/.test(String(value))) {
        throw new ConfigurationError(`driverOptions.pragmas.${name} is not a valid PRAGMA`, { option: `driverOptions.pragmas.${name}`, dialect: 'sqlite' });
      }
      list.push(`${name} = ${typeof value === 'boolean' ? (value ? 'ON' : 'OFF') : String(value)}`);
    }
    // Only what crosses to the process as JSON (better-sqlite3's `verbose` callback cannot).
    const databaseOptions: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(rest)) {
      if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) databaseOptions[key] = value;
    }
    return { busyTimeoutMs, pragmas: list, databaseOptions };
  }
}

/** Deletes `:memory:` files left by processes that died without closing (their pid is gone). */
let swept = false;
function sweepStaleMemoryFiles(): void {
  if (swept) return;
  swept = true;
  let names: string[] = [];
  try {
    names = fs.readdirSync(MEMORY_DIR).filter((n) => n.startsWith(MEMORY_PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/^nestjs-dbpool-memory-(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') fs.rmSync(path.join(MEMORY_DIR, name), { force: true });
    }
  }
}

function connectBounded<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return withTimeout(
    promise,
    ms,
    () =>
      new DatabaseError(`connect timeout: the SQLite connection did not finish ${what} within ${ms} ms`, { code: ErrorCode.ConnectTimeout, dialect: 'sqlite' }),
  );
}

interface Pending {
  id: number;
  body: Record<string, unknown>;
  text?: string;
  cancelable: boolean;
  /** Sent to the process (not only queued here). */
  sent: boolean;
  /** Its effect is final (a COMMIT granted or sent): a cancel lets it finish. */
  final: boolean;
  timer?: NodeJS.Timeout;
  resolve(reply: ChildReply): void;
  reject(error: DatabaseError): void;
}

interface RequestOptions {
  text?: string;
  /** Default true. Closing requests are not. */
  cancelable?: boolean;
  /** Give up (and stop the process) after this long. 0: never. */
  timeoutMs?: number;
}

class SqliteConnection implements Connection {
  transactionStatus: Connection['transactionStatus'] = 'idle';
  private state: 'open' | 'closed' = 'open';
  private readonly child: ChildProcess;
  private readonly stderr: { tail: string };
  private readonly queue: Pending[] = [];
  private current?: Pending;
  private lastId = 0;
  /** This side stopped the process (cancel, destroy, close, timeout): its exit is no news about the database. */
  private stopping = false;
  private errorHandler: (error: DatabaseError) => void = () => {};
  private endHandlers: Array<() => void> = [];
  private readonly exited: Promise<void>;

  constructor(
    /** A counter, unique for the driver's life. */
    readonly serverId: number,
    started: Spare,
    private readonly driver: SqliteDriver,
    private readonly database: string | undefined,
  ) {
    this.child = started.child;
    this.stderr = started.stderr;
    this.child.on('message', (reply: ChildReply) => this.onReply(reply));
    this.exited = new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.once('exit', (code, signal) => {
        const why = this.stopping ? 'its process was stopped' : `its process exited unexpectedly (code ${code}, signal ${signal})`;
        const error = new DatabaseError(`the SQLite connection is gone: ${why}${this.stderr.tail ? `: ${redact(this.stderr.tail.trim())}` : ''}`, {
          code: ErrorCode.ConnectionLost,
          dialect: 'sqlite',
          database: this.database,
        });
        const unexpected = !this.stopping && this.state === 'open';
        this.lost(error);
        if (unexpected) this.errorHandler(error);
        resolve();
      });
    });
  }

  get broken(): boolean {
    return this.state === 'closed';
  }

  /** The operating system's id of this connection's process. */
  get processId(): number | undefined {
    return this.child.pid;
  }

  /** `prepare` has no effect: every statement is prepared and cached per connection anyway. Server-side time limits do not exist in SQLite. */
  async execute(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet> {
    const { values: encoded, tagged } = toSqliteValues(values, text, this.database);
    const reply = await this.request({ op: 'execute', text, values: encoded, tagged, array: options.rowMode === 'array' }, { text });
    const result: ResultSet = { rows: reply.rows ?? [], affectedRows: reply.affectedRows ?? 0 };
    if (reply.insertId !== undefined) result.insertId = reply.insertId;
    return result;
  }

  /**
   * The process steps the statement and sends `batchSize` rows at a time, the next batch only
   * when asked. Closing early closes the statement there and leaves the connection usable. A
   * statement that writes (`... RETURNING`) runs whole first.
   */
  cursor(text: string, values: readonly unknown[], options: StreamOptions): RowCursor {
    const batchSize = Math.max(1, Math.floor(options.batchSize) || DEFAULT_BATCH_SIZE);
    let opened = false;
    let done = false;
    return {
      read: async () => {
        if (done) return [];
        let reply: ChildReply;
        if (!opened) {
          opened = true;
          const { values: encoded, tagged } = toSqliteValues(values, text, this.database);
          reply = await this.request({ op: 'streamOpen', text, values: encoded, tagged, array: options.rowMode === 'array', batchSize }, { text });
        } else reply = await this.request({ op: 'streamNext' }, { text });
        done = reply.done === true;
        return reply.rows ?? [];
      },
      close: async () => {
        if (done || !opened || this.broken) return;
        done = true;
        await this.request({ op: 'streamClose' }, { text, cancelable: false }).catch(() => {});
      },
    };
  }

  /**
   * Stops the statement this connection runs now, at once, by stopping its process: its locks
   * are released and its uncommitted writes discarded; the connection is then gone (the pool
   * opens another). A statement not yet handed to the process is dropped instead, and a COMMIT
   * already under way is let finish.
   */
  async cancel(): Promise<void> {
    const target = this.current;
    if (target && target.cancelable && !target.final) {
      this.settle(
        target,
        new QueryCanceled('canceling statement: its connection process was stopped, so it had no effect', {
          dialect: 'sqlite',
          query: target.text,
          database: this.database,
        }),
      );
      this.current = undefined;
      this.stop();
      return;
    }
    for (const p of [...this.queue].reverse()) {
      if (!p.cancelable) continue;
      this.queue.splice(this.queue.indexOf(p), 1);
      this.settle(
        p,
        new QueryCanceled('canceling statement: it was canceled before it started', { dialect: 'sqlite', query: p.text, database: this.database }),
      );
      return;
    }
  }

  async ping(): Promise<void> {
    await this.request({ op: 'ping' }, { text: 'SELECT 1' });
  }

  /** Closes the handle and ends the process; one still running a statement (abandoned at shutdown) is stopped at once. */
  async close(): Promise<void> {
    if (this.broken) return;
    this.stopping = true;
    if (this.current) {
      this.stop();
      await this.exited;
      return;
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), CLOSE_WAIT_MS);
    busy(this.child); // until it has exited, or nothing would keep the process alive to see it go
    try {
      await this.request({ op: 'close' }, { cancelable: false }).catch(() => {});
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  destroy(): void {
    if (this.state === 'closed') return;
    this.stop();
  }

  onError(handler: (error: DatabaseError) => void): void {
    this.errorHandler = handler;
  }

  onEnd(handler: () => void): void {
    this.endHandlers.push(handler);
  }

  request(body: Record<string, unknown>, options: RequestOptions = {}): Promise<ChildReply> {
    if (this.broken) {
      return Promise.reject(
        markNotSent(
          new DatabaseError('this SQLite connection is closed; the statement was not sent', {
            code: ErrorCode.ConnectionLost,
            dialect: 'sqlite',
            query: options.text,
            database: this.database,
          }),
        ),
      );
    }
    return new Promise<ChildReply>((resolve, reject) => {
      const p: Pending = { id: ++this.lastId, body, text: options.text, cancelable: options.cancelable ?? true, sent: false, final: false, resolve, reject };
      p.final = typeof body.text === 'string' && FINAL_STATEMENT.test(body.text);
      if (options.timeoutMs) {
        p.timer = setTimeout(() => {
          this.settle(
            p,
            new DatabaseError(`connect timeout: the SQLite connection did not answer within ${options.timeoutMs} ms`, {
              code: ErrorCode.ConnectTimeout,
              dialect: 'sqlite',
            }),
          );
          this.stop();
        }, options.timeoutMs);
      }
      this.queue.push(p);
      this.pump();
    });
  }

  /** Kills the process: the statement in it stops at once, its locks go, its uncommitted writes are discarded. */
  private stop(): void {
    this.stopping = true;
    this.child.kill('SIGKILL');
    // Gone from now on, not from when the exit is reported: nothing more is sent to it.
    this.lost(
      new DatabaseError('the SQLite connection is gone: its process was stopped', {
        code: ErrorCode.ConnectionLost,
        dialect: 'sqlite',
        database: this.database,
      }),
    );
  }

  private pump(): void {
    if (this.current || this.broken) return;
    const next = this.queue.shift();
    if (!next) {
      idle(this.child);
      return;
    }
    this.current = next;
    next.sent = true;
    busy(this.child);
    this.child.send({ id: next.id, ...next.body });
  }

  private onReply(reply: ChildReply): void {
    const p = this.current;
    if (!p || reply.id !== p.id) return;
    if (reply.gate) {
      // The write is done and waits to commit: from here its effect is final, and a cancel lets it finish.
      p.final = true;
      this.child.send({ id: p.id, op: 'grant' });
      return;
    }
    this.current = undefined;
    if (reply.inTransaction !== undefined) this.transactionStatus = reply.inTransaction ? 'transaction' : 'idle';
    if (reply.ok) {
      if (reply.tagged && reply.rows) untagRows(reply.rows);
      this.settle(p, reply);
    } else {
      this.settle(p, this.driver.translateError(Object.assign(new Error(reply.error?.message ?? 'SQLite error'), reply.error), p.text));
    }
    this.pump();
  }

  private settle(p: Pending, outcome: ChildReply | DatabaseError): void {
    clearTimeout(p.timer);
    if (outcome instanceof DatabaseError) p.reject(outcome);
    else p.resolve(outcome);
  }

  /** The process is gone: every request fails, and the end handlers run once. */
  private lost(error: DatabaseError): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const pending = [...(this.current ? [this.current] : []), ...this.queue.splice(0)];
    this.current = undefined;
    for (const p of pending)
      this.settle(
        p,
        p.sent
          ? error
          : markNotSent(
              new DatabaseError(`${error.message}; the statement was not sent`, {
                code: ErrorCode.ConnectionLost,
                dialect: 'sqlite',
                query: p.text,
                database: this.database,
              }),
            ),
      );
    const handlers = this.endHandlers;
    this.endHandlers = [];
    for (const handler of handlers) handler();
  }
}

/** Values as the process binds them (JSON, with bigint and blobs tagged); refuses what better-sqlite3 would reject or corrupt, naming the position, never the value. */
function toSqliteValues(values: readonly unknown[], query: string, database?: string): { values: unknown[]; tagged: boolean } {
  let tagged = false;
  const out = values.map((value, i) => {
    switch (typeof value) {
      case 'number':
        if (!Number.isFinite(value) || Object.is(value, -0)) {
          tagged = true;
          return { $t: 'num', v: Object.is(value, -0) ? '-0' : String(value) };
        }
        return value;
      case 'string':
        return value;
      case 'bigint':
        tagged = true;
        return { $t: 'big', v: String(value) };
      case 'boolean':
        return value ? 1 : 0;
      case 'object':
        if (value === null) return null;
        if (ArrayBuffer.isView(value)) {
          tagged = true;
          return { $t: 'bin', v: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64') };
        }
        if (value instanceof Date) {
          if (Number.isNaN(value.getTime()))
            throw new InvalidParameter(`parameter ${i + 1} is an invalid Date`, { position: i + 1, dialect: 'sqlite', query, database });
          return sqliteInstant(value);
        }
        return JSON.stringify(value);
      default:
        throw new InvalidParameter(`parameter ${i + 1} is ${typeof value}, which SQLite cannot store`, { position: i + 1, dialect: 'sqlite', query, database });
    }
  });
  return { values: out, tagged };
}

/**
 * A Date as SQLite writes instants itself (`CURRENT_TIMESTAMP`, `datetime()`): 'YYYY-MM-DD
 * HH:MM:SS' in UTC, with '.SSS' when there are milliseconds. Stored this way, instants written
 * by the app and by SQLite sort and compare together, and SQLite's date functions read them.
 */
export function sqliteInstant(date: Date): string {
  const iso = date.toISOString(); // 2026-03-04T05:06:07.891Z
  const ms = iso.slice(20, 23);
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${ms === '000' ? '' : `.${ms}`}`;
}

function untag(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || !('$t' in v)) return v;
  const t = v as { $t: string; v: string };
  switch (t.$t) {
    case 'bin':
      return Buffer.from(t.v, 'base64');
    case 'date':
      return new Date(Number(t.v));
    case 'big':
      return BigInt(t.v);
    case 'json':
      try {
        return JSON.parse(t.v);
      } catch {
        return t.v;
      }
    default:
      return Number(t.v);
  }
}

function untagRows(rows: unknown[]): void {
  for (const row of rows) {
    if (Array.isArray(row)) {
      for (let i = 0; i < row.length; i++) row[i] = untag(row[i]);
    } else if (row !== null && typeof row === 'object') {
      const record = row as Record<string, unknown>;
      for (const key in record) record[key] = untag(record[key]);
    }
  }
}
