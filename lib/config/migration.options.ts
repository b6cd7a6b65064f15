/**
 * The `migrations` option: its shapes and its checking at bootstrap. The migrator itself is in
 * migrations/, above the Database it runs on.
 */
import { ConfigurationError, type Dialect } from '../core/errors.js';
import type { OperationResult, QueryOptions, Row } from '../core/types.js';
import type { SqlQuery } from '../sql/template.js';

/**
 * What a migration written in code is given: the app's `Database`, typed here by the calls a
 * migration makes (annotate the parameter as `Database` for the rest).
 */
export interface MigrationDatabase {
  readonly name: string;
  readonly dialect: Dialect;
  runQuery<T = Row>(query: SqlQuery, options?: QueryOptions): Promise<T[]>;
  runQuery<T = Row>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  runOperation(query: SqlQuery, options?: QueryOptions): Promise<OperationResult>;
  runOperation(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<OperationResult>;
}

/** A migration's work: SQL text (split into statements), or a function given the `Database`. */
export type MigrationStep = string | { step(db: MigrationDatabase): unknown }['step'];

/** A migration given in code (`migrations.list`), for bundled apps that ship no directory. */
export interface Migration {
  /** Its identity in the migrations table, and its place in the order (`001_create_users`). */
  name: string;
  up: MigrationStep;
  down?: MigrationStep;
  /**
   * PostgreSQL: run it in a transaction, with its record (rolled back whole on failure). `false`
   * for statements a transaction refuses (`CREATE INDEX CONCURRENTLY`, `ALTER TYPE … ADD VALUE`
   * before PostgreSQL 12). MySQL never runs migrations in a transaction (DDL commits there);
   * SQLite always does. Default: true.
   */
  transaction?: boolean;
}

export interface MigrationOptions {
  /**
   * A folder of migration files, applied in the order of their names (numbers compared as
   * numbers): `<version>_<name>[.<dialect>][.down].<sql|js|mjs|cjs|ts>`, such as
   * `001_create_users.sql`, `001_create_users.mysql.sql` (wins over the plain file on MySQL),
   * `002_seed.ts` (exports `up(db)` and optionally `down(db)`), `002_seed.down.sql`.
   */
  directory?: string;
  /** Migrations given in code; merged with the directory's, by name. */
  list?: Migration[];
  /** Apply pending migrations at bootstrap, before the app serves (readiness stays down). Default: true. */
  runOnBoot?: boolean;
  /** The table that records applied migrations. Default: `'nestjs_dbpool_migrations'`. */
  table?: string;
  /**
   * How long an instance waits for the migration lock while another instance migrates,
   * before its boot fails. Default: 600 000 (10 minutes).
   */
  lockTimeoutMs?: number;
  /** Deadline of each statement of a migration. Default: 0 (none; `queryTimeoutMs` does not apply). */
  statementTimeoutMs?: number;
  /**
   * Fail when an applied SQL migration's file has changed since (its SHA-256 differs from the
   * one recorded). Default: true.
   */
  validateChecksums?: boolean;
}

/** A row of the migrations table. */
export interface AppliedMigration {
  name: string;
  /** SHA-256 of the SQL that ran, hex; null for a migration written in code. */
  checksum: string | null;
  appliedAt: Date;
  durationMs: number;
}

export const DEFAULT_MIGRATIONS_TABLE = 'nestjs_dbpool_migrations';
export const DEFAULT_LOCK_TIMEOUT_MS = 600_000;
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}(?:\.[A-Za-z_][A-Za-z0-9_]{0,62})?$/;

export interface ResolvedMigrationOptions {
  directory?: string;
  list?: MigrationOptions['list'];
  runOnBoot: boolean;
  table: string;
  lockTimeoutMs: number;
  statementTimeoutMs: number;
  validateChecksums: boolean;
}

/** Checks `migrations` once, at bootstrap. */
export function resolveMigrationOptions(options: MigrationOptions): ResolvedMigrationOptions {
  const fail = (option: string, why: string): never => {
    throw new ConfigurationError(`migrations.${option} ${why}`, { option: `migrations.${option}` });
  };
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigurationError("migrations must be an object such as { directory: 'migrations' }", { option: 'migrations' });
  }
  if (options.directory === undefined && options.list === undefined) fail('directory', 'or migrations.list is needed: where are the migrations?');
  if (options.directory !== undefined && (typeof options.directory !== 'string' || options.directory === '')) fail('directory', 'must be a folder path');
  if (options.list !== undefined && !Array.isArray(options.list)) fail('list', 'must be an array of { name, up, down? }');
  const table = options.table ?? DEFAULT_MIGRATIONS_TABLE;
  if (typeof table !== 'string' || !TABLE_NAME.test(table))
    fail('table', `must be a plain table name, optionally schema-qualified (got ${JSON.stringify(table)})`);
  for (const key of ['runOnBoot', 'validateChecksums'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') fail(key, 'must be true or false');
  }
  const number = (key: 'lockTimeoutMs' | 'statementTimeoutMs', fallback: number): number => {
    const value = options[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) fail(key, `must be a number of milliseconds >= 0 (got ${String(value)})`);
    return value;
  };
  return {
    directory: options.directory,
    list: options.list,
    runOnBoot: options.runOnBoot ?? true,
    table,
    lockTimeoutMs: number('lockTimeoutMs', DEFAULT_LOCK_TIMEOUT_MS),
    statementTimeoutMs: number('statementTimeoutMs', 0),
    validateChecksums: options.validateChecksums ?? true,
  };
}
