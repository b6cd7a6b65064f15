/** The shapes of migrations: the module option, a migration given in code, what a run reports. */
import type { Database } from '../database/database.js';

/** A migration's work: SQL text (split into statements), or a function given the `Database`. */
export type MigrationStep = string | ((db: Database) => unknown);

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
