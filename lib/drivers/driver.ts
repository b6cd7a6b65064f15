/**
 * The dialect seam: everything dialect-specific (wire protocol, placeholders and quoting, error
 * meanings, transaction statements, capabilities, migration locks) lives behind `Driver`, in
 * one folder per dialect (drivers/<dialect>/) registered in drivers/registry.ts. A `Database`
 * holds a `Driver`; the pool holds the `Connection`s it opened. Nothing above drivers/ names a
 * dialect.
 *
 * Drivers know nothing of NestJS, pools or the dead-connection detector.
 */
import type { DatabaseError, Dialect, ErrorClass } from '../core/errors.js';
import type { Notification, RowMode } from '../core/types.js';
import type { ScriptSyntax, SqlSyntax } from '../sql/syntax.js';
import type { SqlQuery } from '../sql/template.js';

export type { Notification, RowMode };

/** What a statement returned, in one shape for every dialect. */
export interface ResultSet {
  rows: unknown[];
  affectedRows: number;
  /** MySQL: the rows an UPDATE changed (affectedRows counts those it matched). */
  changedRows?: number;
  insertId?: number | bigint | string;
  warningCount?: number;
  message?: string;
  serverStatus?: number;
  command?: string;
}

export interface ExecuteOptions {
  rowMode: RowMode;
  /** `true`: a server-side prepared statement, cached per connection; a string names it. */
  prepare?: boolean | string;
  /**
   * The server-side time limit of this statement, when it differs from the session's
   * (`ConnectionSettings.statementTimeoutMs`): set before it and restored after. 0: none.
   */
  statementTimeoutMs?: number;
}

export interface StreamOptions {
  rowMode: RowMode;
  /** Rows fetched per round trip (PostgreSQL cursor) or buffered (MySQL, SQLite). */
  batchSize: number;
}

/** The isolation levels of the SQL standard. */
export type IsolationLevel = 'read uncommitted' | 'read committed' | 'repeatable read' | 'serializable';

/** Their SQL spelling, the same in PostgreSQL and MySQL. */
export const ISOLATION_SQL: Record<IsolationLevel, string> = {
  'read uncommitted': 'READ UNCOMMITTED',
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

export interface BeginOptions {
  isolation?: IsolationLevel;
  readOnly?: boolean;
  /** PostgreSQL only: `DEFERRABLE` (meaningful with serializable read only). */
  deferrable?: boolean;
}

/** A result read in batches: `read()` resolves with the next rows, an empty array at the end; `close()` stops early. */
export interface RowCursor {
  read(): Promise<unknown[]>;
  close(): Promise<void>;
}

/** One open session with the server. Not safe for concurrent queries: the pool hands it to one caller at a time. */
export interface Connection {
  /** Server-side session id: PostgreSQL backend pid, MySQL thread id, a counter for SQLite. */
  readonly serverId: number;
  /** `db.system.name` of the server this connection reached, when the dialect covers several products (MariaDB and MySQL). */
  readonly otelSystem?: string;
  /**
   * Transaction state reported by the server after the last statement: `'idle'`, `'transaction'`,
   * `'failed'` (PostgreSQL: an error inside a transaction), or `'unknown'` when the driver cannot tell.
   */
  readonly transactionStatus: 'idle' | 'transaction' | 'failed' | 'unknown';
  /** True once the socket closed or a protocol error made the session unusable. */
  readonly broken: boolean;

  execute(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet>;
  /**
   * Opens a result for reading in batches, with backpressure: nothing more is fetched until
   * the next `read()`. One batch per call keeps the per-row cost to the consumer's own loop.
   */
  cursor(text: string, values: readonly unknown[], options: StreamOptions): RowCursor;
  /** Asks the server to cancel whatever statement this session runs now (PostgreSQL cancel request, MySQL KILL QUERY). */
  cancel(): Promise<void>;
  /** A cheap round trip. */
  ping(): Promise<void>;
  /** Graceful close (sends the protocol's terminate). */
  close(): Promise<void>;
  /** Immediate close of the socket, without waiting for anything. */
  destroy(): void;
  /** Errors that arrive while no statement runs (an idle socket reset). Never thrown: handed here. */
  onError(handler: (error: DatabaseError) => void): void;
  /** Called when the session ends, for any reason. */
  onEnd(handler: () => void): void;
  /** PostgreSQL: NOTIFY messages that arrive on this session. */
  onNotification?(handler: (n: Notification) => void): void;
  /** The driver's own client object (`pg.Client`, a mysql2 `Connection`), for `Database.withNativeConnection`. */
  native?(): unknown;
  /**
   * Returns the session to the state it had when it was opened (settings, variables, temporary
   * tables, advisory locks, LISTENs), outside any transaction; the driver's own session settings
   * (statement timeout) are applied again. Absent: the connection cannot be reset, only replaced.
   */
  resetSession?(): Promise<void>;
}

/** Connection settings after parsing; the password is never enumerable. */
export interface ConnectionSettings {
  /** The module's name of this database (`'default'`, `'analytics'`), put in every error as `DatabaseError.database`. */
  name?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string | (() => string | Promise<string>);
  database?: string;
  /** SQLite: the file name, or `:memory:`. */
  filename?: string;
  ssl?: unknown;
  connectTimeoutMs: number;
  /** Server-side statement timeout to set on each new session, when the dialect has one. 0: none. */
  statementTimeoutMs: number;
  /** Extra settings passed to the underlying client as they are. */
  driverOptions?: Record<string, unknown>;
  /** MySQL: a write with warnings fails (`DatabaseModuleOptions.warningsAsErrors`). */
  warningsAsErrors?: boolean;
  /** How values come back (`DatabaseModuleOptions.types`); absent: the defaults. */
  types?: { int64: 'number' | 'string' | 'bigint'; tinyint1AsBoolean: boolean };
  /** Several hosts (`postgres://h1:5432,h2:5433/db`): tried in turn for the one `targetSessionAttrs` asks for. */
  hosts?: Array<{ host: string; port?: number }>;
  /** Which server a connection must reach, as libpq's `target_session_attrs`. Default: `any`. */
  targetSessionAttrs?: TargetSessionAttrs;
}

/** libpq's `target_session_attrs`: what a connection must reach. */
export type TargetSessionAttrs = 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';
export const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'];

/** How a dialect is configured: what the options layer asks before any driver exists. */
export interface DialectProfile {
  /** How messages name it (`PostgreSQL`, `MySQL`). */
  readonly title: string;
  /** OpenTelemetry's `db.system.name` for it. */
  readonly otelSystem: string;
  /** URL schemes that name it (`postgres`, `postgresql`). */
  readonly schemes: readonly string[];
  /** An example URL, for messages. */
  readonly exampleUrl: string;
  /** The server's port when none is given; absent for an embedded database. */
  readonly defaultPort?: number;
  /** A file, not a server: no host and no TLS; a `filename` (or `url: '<scheme>:<file>'`) is required. */
  readonly embedded: boolean;
  /** `pool.max` when none is given. */
  readonly defaultPoolMax: number;
  /** Module options only this dialect takes (`warningsAsErrors`). */
  readonly ownOptions: readonly string[];
  /**
   * Completes TLS options for its client, given the URL's `sslmode` if any (mysql2's
   * `verifyIdentity`); returns why they cannot be honoured, to refuse them with.
   */
  completeTls?(tls: Record<string, unknown>, host: string | undefined, sslmode: string | undefined): string | undefined;
}

/**
 * Read replicas of a dialect that has them: where the primary's writes are (the position a
 * commit reached) and how far a replica has replayed them, in the dialect's own terms.
 */
export interface ReplicationSupport {
  /** On the primary, right after a commit on this connection: the position it reached (undefined: nothing to wait for). */
  positionAfterWrite(connection: Connection): Promise<string | undefined>;
  /** On a replica: what it has replayed, whether it still replicates (false once promoted or never set up), and how far behind in time. */
  replicaStatus(connection: Connection): Promise<{ position?: string; replica: boolean; lagMs: number }>;
  /** On a replica: waits up to `waitMs` until it has replayed `position`; true if it has. */
  waitFor(connection: Connection, position: string, waitMs: number): Promise<boolean>;
  /** Whether position `a` includes everything `b` does. */
  includes(a: string, b: string): boolean;
  /** The smallest position that includes both. */
  merge(a: string, b: string): string;
  /** Run on each new replica connection (and after its reset), so that no write can land on a replica. */
  readonly readOnlySession?: string;
}

/** PostgreSQL-style notifications: the statements of a dialect that has them. */
export interface NotificationStatements {
  /** Checks a channel name (InvalidParameter) and returns it quoted, so that no channel can inject SQL. */
  quoteChannel(channel: string): string;
  listen(quotedChannel: string): string;
  unlisten(quotedChannel: string): string;
  /** Sends a notification; the payload travels as a parameter. */
  notify(channel: string, payload: string): SqlQuery;
}

/** What the migrator needs of a dialect. */
export interface MigrationSupport {
  /** The migrations table, if missing (`table` already quoted). */
  tableStatement(table: string): string;
  /** Migrations run in a transaction with their record (DDL is transactional); else none, and a failure leaves what ran. */
  readonly transactionalDdl: boolean;
  /**
   * The lock that makes one instance migrate at a time. `session`: statements on one pinned
   * connection, each answering a truthy `got` once the lock is held (`wait` waits up to
   * `seconds`; a timeout answers a falsy `got`, or runs out the call's own deadline); `release`
   * gives it back. `write-transaction`: the whole run is one transaction, which takes the
   * database's write lock at BEGIN; `busy` says an error means another holds it.
   */
  readonly lock:
    | { kind: 'session'; attempt(name: string): SqlQuery; wait(name: string, seconds: number): SqlQuery; release(name: string): SqlQuery; holder: string }
    | { kind: 'write-transaction'; busy(error: unknown): boolean };
  /** The error says the table does not exist. */
  isMissingTable(error: unknown): boolean;
  /** The lock holds on one server only (MySQL's GET_LOCK, which Galera nodes do not share): no migrations through a node list. */
  readonly lockPerServer?: boolean;
}

export interface Driver {
  readonly dialect: Dialect;
  /** Loads the client package, failing with a `ConfigurationError` that names it and the install command. Called at bootstrap. */
  load?(): Promise<void>;
  /** Placeholders, identifier quoting, empty lists, the parameter rules of its client. */
  readonly syntax: SqlSyntax;
  /** How its scripts (migration files) are written. */
  readonly scriptSyntax: ScriptSyntax;
  /** What an error means: connection lost, worth retrying the transaction, refused for good. */
  classify(error: unknown): ErrorClass;
  /** The statements that end a transaction. */
  readonly endStatements: { readonly commit: string; readonly rollback: string };
  /** True when the server answered COMMIT by rolling back, without an error (PostgreSQL, after a failed statement). */
  commitRolledBack?(result: ResultSet): boolean;
  /** The call of a stored procedure with these arguments (`CALL p(…)`, `SELECT * FROM f(…)`). Absent: the dialect has none. */
  procedureCall?(callee: SqlQuery, args: SqlQuery): SqlQuery;
  /** LISTEN/NOTIFY. Absent: the dialect has none. */
  readonly notifications?: NotificationStatements;
  /** Absent: migrations are not supported on it. */
  readonly migrations?: MigrationSupport;
  /** Where the driver reports what the user should know but is not an error (set by the database, to its logger). */
  onWarning?: (message: string) => void;
  /** Absent: no read replicas (`DatabaseModuleOptions.replicas`). */
  readonly replication?: ReplicationSupport;
  /** `host:port/database` for messages: never a password. */
  describe(): string;
  connect(): Promise<Connection>;
  /** Turns anything a client threw into our error tree; keeps `query` text, never the values. */
  translateError(error: unknown, query?: string): DatabaseError;
  /** The statements that begin a transaction with these options. */
  beginStatements(options: BeginOptions): string[];
  /** `SAVEPOINT`/`RELEASE`/`ROLLBACK TO` syntax. */
  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string;
  /** Statement that bounds the running time of statements in the current transaction, or undefined when the dialect has none. */
  transactionTimeoutStatement?(timeoutMs: number): string | undefined;
  /** Statements run after the COMMIT or ROLLBACK of a transaction begun with these options (undoing what `beginStatements` set on the session). */
  finishStatements?(options: BeginOptions): string[];
  /**
   * The statement that applies settings (names already checked), values as parameters: for the
   * session, or for the current transaction only (`local`). Absent: the dialect has none.
   * `local` is true only when `localSettings` says the dialect scopes settings to a transaction.
   */
  settingsStatement?(settings: Array<[string, unknown]>, local: boolean): { text: string; values: unknown[] };
  /** True when `settingsStatement(…, true)` settings end with their transaction by themselves. */
  readonly localSettings?: boolean;
  /** The statement that undoes settings applied with `settingsStatement(…, false)`, without a full session reset. */
  clearSettingsStatement?(names: string[]): string;
  /**
   * True when a statement may leave state on the session that outlives it (SET, advisory locks,
   * temporary tables, user variables, LISTEN): its connection is then reset before reuse.
   */
  changesSession?(text: string): boolean;
  /** Releases driver-wide resources (a worker thread). */
  end?(): Promise<void>;
}
