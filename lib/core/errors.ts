/**
 * The error tree of nestjs-dbpool. Every error this package throws or rejects with is a
 * `DatabaseError`, so callers can catch one class and switch on `code`.
 *
 * A server error keeps the driver's `code`, `errno` and `sqlState`, and the query text,
 * never the parameter values.
 *
 * @example
 * try { await db.runOperation('INSERT INTO users (login) VALUES ($1)', [login]); }
 * catch (e) { if (e instanceof DatabaseError && e.sqlState === '23505') throw new ConflictException(); }
 */

export type Dialect = 'postgres' | 'mysql' | 'sqlite';

/**
 * The codes of the errors this package raises itself (a server's or driver's own code, such as
 * `23505` or `ER_DUP_ENTRY`, is kept as it came).
 */
export const ErrorCode = {
  DatabaseError: 'DATABASE_ERROR',
  ConnectionDead: 'CONNECTION_DEAD',
  ConnectionLost: 'CONNECTION_LOST',
  ConnectTimeout: 'CONNECT_TIMEOUT',
  RollbackFailed: 'ROLLBACK_FAILED',
  CommitOutcomeUnknown: 'COMMIT_OUTCOME_UNKNOWN',
  QueryTimeout: 'QUERY_TIMEOUT',
  QueryCanceled: 'QUERY_CANCELED',
  CancelNotSupported: 'CANCEL_NOT_SUPPORTED',
  AcquireTimeout: 'ACQUIRE_TIMEOUT',
  DatabaseClosed: 'DATABASE_CLOSED',
  ConfigurationError: 'CONFIGURATION_ERROR',
  InvalidParameter: 'INVALID_PARAMETER',
  NotSupported: 'NOT_SUPPORTED',
  SslNotSupported: 'SSL_NOT_SUPPORTED',
  StartupFailed: 'STARTUP_FAILED',
  TransactionError: 'TRANSACTION_ERROR',
  TransactionAborted: 'TRANSACTION_ABORTED',
  TransactionEnded: 'TRANSACTION_ENDED',
  TransactionForbidden: 'TRANSACTION_FORBIDDEN',
  TransactionOrphanedQueries: 'TRANSACTION_ORPHANED_QUERIES',
  TransactionRequired: 'TRANSACTION_REQUIRED',
  TransactionRollbackOnly: 'TRANSACTION_ROLLBACK_ONLY',
  ImplicitCommit: 'IMPLICIT_COMMIT',
  SelfDeadlock: 'SELF_DEADLOCK',
  SessionEnded: 'SESSION_ENDED',
  StreamOpen: 'STREAM_OPEN',
  DoubleRelease: 'DOUBLE_RELEASE',
  ResetFailed: 'RESET_FAILED',
  MigrationFailed: 'MIGRATION_FAILED',
  MigrationLockTimeout: 'MIGRATION_LOCK_TIMEOUT',
  MysqlWarning: 'MYSQL_WARNING',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * What an error means for the layers above the driver, as its dialect classifies it
 * (`Driver.classify`): nothing above drivers/ reads a SQLSTATE or an errno.
 */
export interface ErrorClass {
  /** The connection or the server is gone (the detector treats it as death). */
  lost?: boolean;
  /** Re-running the whole transaction may succeed (`TransactionOptions.retry`). */
  retry?: 'serialization' | 'deadlock' | 'lock-timeout' | 'node-unusable';
  /** The server rolled back the whole transaction, not just the statement (MySQL on deadlock). */
  endsTransaction?: boolean;
  /** The server refused a write because it is read-only (a standby, or a former primary): with several hosts, the wrong host. */
  wrongHost?: boolean;
  /** A connection refused for good: retrying would not help. */
  refused?: 'auth' | 'unknown-database';
}

export interface DatabaseErrorFields {
  code?: string;
  errno?: number;
  sqlState?: string;
  query?: string;
  dialect?: Dialect;
  cause?: unknown;
  /** The named database (`DatabaseModuleOptions.name`) this error came from. */
  database?: string;
}

export class DatabaseError extends Error {
  /** A stable, machine-readable code: the driver's (`ER_DUP_ENTRY`, `23505`, `SQLITE_CONSTRAINT`) or ours (`CONNECTION_DEAD`, ...). */
  readonly code: string;
  readonly errno?: number;
  readonly sqlState?: string;
  /** The SQL text of the failing statement, without parameter values. */
  readonly query?: string;
  readonly dialect?: Dialect;
  readonly database?: string;

  constructor(message: string, fields: DatabaseErrorFields = {}) {
    super(message, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.name = new.target.name;
    this.code = fields.code ?? ErrorCode.DatabaseError;
    if (fields.errno !== undefined) this.errno = fields.errno;
    if (fields.sqlState !== undefined) this.sqlState = fields.sqlState;
    if (fields.query !== undefined) this.query = fields.query;
    if (fields.dialect !== undefined) this.dialect = fields.dialect;
    if (fields.database !== undefined) this.database = fields.database;
    // The driver's error is kept as `cause`, but hidden from JSON.stringify: a driver
    // error can carry connection parameters (mysql2 puts the whole URL in some messages).
    if (fields.cause !== undefined) {
      Object.defineProperty(this, 'cause', { value: fields.cause, enumerable: false, writable: true, configurable: true });
    }
  }

  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = { name: this.name, message: this.message, code: this.code };
    for (const key of ['errno', 'sqlState', 'query', 'dialect', 'database'] as const) {
      if (this[key] !== undefined) out[key] = this[key];
    }
    return out;
  }
}

/**
 * The connection is gone: the database is marked dead by the `DeadConnectionDetector` (calls
 * fail fast until it reconnects), or the connection was lost under this call.
 */
export class ConnectionDead extends DatabaseError {
  /** When the detector will next try to reconnect, if known. */
  readonly nextAttemptAt?: Date;
  /**
   * True when the connection was lost after the statement was sent: it may or may not have
   * taken effect. False when nothing was sent (the database was already marked dead, or no
   * connection could be opened): safe to try again.
   */
  readonly mayHaveRun: boolean;
  constructor(message: string, fields: DatabaseErrorFields & { nextAttemptAt?: Date; mayHaveRun?: boolean } = {}) {
    const { nextAttemptAt, mayHaveRun, ...rest } = fields;
    super(message, { code: ErrorCode.ConnectionDead, ...rest });
    if (nextAttemptAt) this.nextAttemptAt = nextAttemptAt;
    this.mayHaveRun = mayHaveRun ?? false;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), mayHaveRun: this.mayHaveRun };
  }
}

/** The rollback of a failed transaction failed too; `originalError` is why it was rolled back. The connection was destroyed. */
export class RollbackFailed extends DatabaseError {
  readonly originalError: unknown;
  constructor(message: string, originalError: unknown, fields: DatabaseErrorFields = {}) {
    super(message, { code: ErrorCode.RollbackFailed, ...fields });
    this.originalError = originalError;
  }
}

/**
 * The connection died after COMMIT was sent: the transaction may or may not have committed.
 * Never retried automatically; check the data before retrying.
 */
export class CommitOutcomeUnknown extends DatabaseError {
  constructor(message: string, fields: DatabaseErrorFields = {}) {
    super(message, { code: ErrorCode.CommitOutcomeUnknown, ...fields });
  }
}

/** A query (or a transaction) ran past its `timeoutMs` / `queryTimeoutMs`. */
export class QueryTimeout extends DatabaseError {
  readonly timeoutMs?: number;
  constructor(message: string, fields: DatabaseErrorFields & { timeoutMs?: number } = {}) {
    super(message, { code: ErrorCode.QueryTimeout, ...fields });
    if (fields.timeoutMs !== undefined) this.timeoutMs = fields.timeoutMs;
  }
}

/** The query was canceled through `Database.cancel(promise)` or an `AbortSignal`. */
export class QueryCanceled extends DatabaseError {
  constructor(message: string, fields: DatabaseErrorFields = {}) {
    super(message, { code: ErrorCode.QueryCanceled, ...fields });
  }
}

/** Every pool connection stayed busy for `pool.acquireTimeoutMs`. Distinct from `ConnectionDead`. */
export class AcquireTimeout extends DatabaseError {
  constructor(message: string, fields: DatabaseErrorFields = {}) {
    super(message, { code: ErrorCode.AcquireTimeout, ...fields });
  }
}

/** The `Database` is shutting down or closed and takes no new work. */
export class DatabaseClosed extends DatabaseError {
  constructor(message: string, fields: DatabaseErrorFields = {}) {
    super(message, { code: ErrorCode.DatabaseClosed, ...fields });
  }
}

/** An invalid module option; the message names the option and the accepted values. */
export class ConfigurationError extends DatabaseError {
  /** The option path, such as `pool.max`. */
  readonly option?: string;
  constructor(message: string, fields: DatabaseErrorFields & { option?: string } = {}) {
    super(message, { code: ErrorCode.ConfigurationError, ...fields });
    if (fields.option !== undefined) this.option = fields.option;
  }
}

/** A parameter value the driver would silently corrupt; refused before anything was sent. */
export class InvalidParameter extends DatabaseError {
  /** 1-based position of the offending parameter, when one is to blame. */
  readonly position?: number;
  constructor(message: string, fields: DatabaseErrorFields & { position?: number } = {}) {
    super(message, { code: ErrorCode.InvalidParameter, ...fields });
    if (fields.position !== undefined) this.position = fields.position;
  }
}

/** A transaction-state misuse: a query on a finished transaction, a propagation rule violated, orphaned queries at commit. */
export class TransactionError extends DatabaseError {
  constructor(message: string, fields: DatabaseErrorFields = {}) {
    super(message, { code: ErrorCode.TransactionError, ...fields });
  }
}

/** A feature this dialect does not have (LISTEN/NOTIFY on MySQL, say). */
export class NotSupported extends DatabaseError {
  constructor(message: string, fields: DatabaseErrorFields = {}) {
    super(message, { code: ErrorCode.NotSupported, ...fields });
  }
}

/** What a constraint violation says about where it happened, as far as the server tells. */
export interface ConstraintFields extends DatabaseErrorFields {
  constraint?: string;
  table?: string;
  column?: string;
}

/**
 * A statement broke an integrity constraint. The subclasses say which kind, the same on every
 * dialect; `code`, `errno` and `sqlState` stay the server's own (`23505`, `ER_DUP_ENTRY`,
 * `SQLITE_CONSTRAINT_UNIQUE`), and `constraint`, `table` and `column` are set where the server
 * names them (PostgreSQL names all three; MySQL and SQLite some).
 *
 * @example
 * try { await users.create(login); }
 * catch (e) { if (e instanceof UniqueViolation) throw new ConflictException(`${login} is taken`); throw e; }
 */
export class ConstraintViolation extends DatabaseError {
  readonly constraint?: string;
  readonly table?: string;
  readonly column?: string;
  constructor(message: string, fields: ConstraintFields = {}) {
    const { constraint, table, column, ...rest } = fields;
    super(message, rest);
    if (constraint !== undefined) this.constraint = constraint;
    if (table !== undefined) this.table = table;
    if (column !== undefined) this.column = column;
  }

  override toJSON(): Record<string, unknown> {
    const out = super.toJSON();
    for (const key of ['constraint', 'table', 'column'] as const) if (this[key] !== undefined) out[key] = this[key];
    return out;
  }
}

/** A unique or primary key constraint: the value is taken. */
export class UniqueViolation extends ConstraintViolation {}
/** A foreign key: the referenced row is missing, or a row still refers to the one deleted. */
export class ForeignKeyViolation extends ConstraintViolation {}
/** A NOT NULL column got NULL (or no value and no default). */
export class NotNullViolation extends ConstraintViolation {}
/** A CHECK constraint said no. */
export class CheckViolation extends ConstraintViolation {}

export type ConstraintKind = 'unique' | 'foreignKey' | 'notNull' | 'check';

/** The class for a kind of violation (drivers classify, this builds). */
export function constraintViolation(kind: ConstraintKind, message: string, fields: ConstraintFields): ConstraintViolation {
  switch (kind) {
    case 'unique':
      return new UniqueViolation(message, fields);
    case 'foreignKey':
      return new ForeignKeyViolation(message, fields);
    case 'notNull':
      return new NotNullViolation(message, fields);
    case 'check':
      return new CheckViolation(message, fields);
  }
}

/**
 * A migration failed, or could not start: its statement failed (the server's error is `cause`),
 * its file changed after it was applied, or another instance held the migration lock past
 * `migrations.lockTimeoutMs`. The message says what was left applied.
 */
export class MigrationFailed extends DatabaseError {
  /** The migration's name (`002_add_email`), when one is to blame. */
  readonly migration?: string;
  /** 1-based number of the failing statement of a SQL migration. */
  readonly statement?: number;
  constructor(message: string, fields: DatabaseErrorFields & { migration?: string; statement?: number } = {}) {
    const { migration, statement, ...rest } = fields;
    super(message, { code: ErrorCode.MigrationFailed, ...rest });
    if (migration !== undefined) this.migration = migration;
    if (statement !== undefined) this.statement = statement;
  }

  override toJSON(): Record<string, unknown> {
    const out = super.toJSON();
    for (const key of ['migration', 'statement'] as const) if (this[key] !== undefined) out[key] = this[key];
    return out;
  }
}
