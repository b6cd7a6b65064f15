/** The shapes every layer shares: what `Database` takes and returns, rows, notifications, pool counts. */
import type { Dialect } from './errors.js';

export type Row = Record<string, unknown>;

/** `'array'`: each row an array of column values. */
export type RowMode = 'object' | 'array';

/** A PostgreSQL NOTIFY as delivered to observers. */
export interface Notification {
  channel: string;
  payload: string;
  /** The backend process id of the session that sent it. */
  processId: number;
}

/** The pool's counts, from `Database.stats()`. */
export interface PoolStats {
  total: number;
  idle: number;
  busy: number;
  waiting: number;
  max: number;
}

export interface QueryOptions {
  /** Abort the query when this signal aborts (`QueryCanceled`); an aborted signal sends nothing. */
  signal?: AbortSignal;
  /** Deadline of this call, acquire included. Default: the module's `queryTimeoutMs`. */
  timeoutMs?: number;
  /** `'array'`: each row an array of column values. Default: `'object'`. */
  rowMode?: RowMode;
  /** Server-side prepared statement (`true`, or a name). Default: the module's `prepare`. */
  prepare?: boolean | string;
  /** Streaming: rows per round trip. Default: 1000. */
  batchSize?: number;
  /**
   * Replay this call once after a reconnect even if it may have reached the server. Only for
   * idempotent statements. Default: false.
   */
  retry?: boolean;
  /**
   * While the database is marked dead, wait up to this long for the reconnect instead of failing
   * at once with `ConnectionDead`. Default: the module's `waitForRecoveryMs` (0: fail fast).
   */
  waitForRecoveryMs?: number;
  /**
   * With `replicas`: `'primary'` sends a read to the primary; `'replica'` sends a statement that
   * does not look like a read (a function call in a SELECT is one) to a replica, which refuses any
   * write. Default: reads to a replica, the rest to the primary.
   */
  target?: 'primary' | 'replica';
}

export interface OperationResult {
  /**
   * Rows inserted, updated (matched by the WHERE clause, changed or not) or deleted, the same on
   * every dialect; with RETURNING, the rows returned. MySQL's INSERT … ON DUPLICATE KEY UPDATE:
   * 1 inserted, 2 updated, 0 when the existing row already had those values.
   */
  affectedRows: number;
  /** MySQL: the rows an UPDATE changed, of those it matched. */
  changedRows?: number;
  /**
   * The auto-increment id generated for the first row the statement inserted (MySQL, MariaDB,
   * SQLite; a multi-row INSERT's rows get consecutive ids). Absent when none was generated, and
   * on PostgreSQL: use `RETURNING id` there (and on SQLite and MariaDB too, for every row's id).
   */
  insertId?: number | bigint | string;
  /** MySQL. */
  warningCount?: number;
  /** MySQL's info message (`Rows matched: 1  Changed: 1  Warnings: 0`). */
  message?: string;
  /** MySQL server status flags. */
  serverStatus?: number;
  /** PostgreSQL command tag: `INSERT`, `UPDATE`, ... */
  command?: string;
}

export type { Dialect };
