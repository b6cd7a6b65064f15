/**
 * Applies and reverts migrations, safely when several instances of an app boot at once.
 *
 * The bookkeeping (order, pending, executed, `up --to`, `down --step`) is umzug's, with a
 * storage of our own: the migrations table, written inside the migration's own transaction.
 * Around it, one lock per database:
 * - PostgreSQL: a session advisory lock (`pg_advisory_lock`) on one pinned connection; each
 *   migration and its record in one transaction (DDL is transactional there).
 * - MySQL/MariaDB: `GET_LOCK` on one pinned connection; no transaction, since DDL commits
 *   implicitly: a migration that fails halfway leaves its earlier statements applied and is
 *   not recorded, and the error says so.
 * - SQLite: the whole run in one `BEGIN IMMEDIATE` transaction (the database's one write lock),
 *   each migration in a savepoint; a failure rolls back that migration only.
 * An instance that finds the lock taken logs that it waits, waits up to `lockTimeoutMs`, then
 * reads the table again and finds the work done.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Database } from '../database/database.js';
import { loadPackage } from '../drivers/load-package.js';
import { ConfigurationError, DatabaseError, MigrationFailed, NotSupported, QueryTimeout, ErrorCode } from '../core/errors.js';
import type { MigrationSupport } from '../drivers/driver.js';
import { DIALECT_NAMES, profileOf } from '../drivers/registry.js';
import { sql } from '../sql/template.js';
import { compareNames, loadMigrations, type MigrationSource } from './migration-files.js';
import { resolveMigrationOptions, type ResolvedMigrationOptions } from '../config/migration.options.js';
import type { AppliedMigration, MigrationOptions, MigrationStep } from '../config/migration.options.js';
import { splitStatements } from '../sql/script.js';

type UmzugModule = typeof import('umzug');

/** The wait for the lock is the server's; the call's own deadline is this much later, in case the server's never ends. */
const LOCK_DEADLINE_MARGIN_MS = 5000;

export { DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_MIGRATIONS_TABLE, resolveMigrationOptions } from '../config/migration.options.js';
export type { ResolvedMigrationOptions };

/** What a run did. */
export interface MigrationRun {
  /** The migrations this run applied (or reverted), in order. */
  names: string[];
  /** How long the run waited for another instance's lock. */
  waitedMs: number;
}

export class Migrator {
  private readonly options: ResolvedMigrationOptions;
  private sources?: Promise<MigrationSource[]>;

  /**
   * @example
   * const migrator = new Migrator(db, { directory: 'migrations' });
   * await migrator.up();
   */
  constructor(
    private readonly db: Database,
    options: MigrationOptions | ResolvedMigrationOptions,
  ) {
    this.options = resolveMigrationOptions(options);
  }

  /** Applies pending migrations (all, up to and including `to`, or `step` of them) and resolves with their names. */
  async up(options: { to?: string; step?: number } = {}): Promise<MigrationRun> {
    return this.run('up', options);
  }

  /** Reverts the last applied migration (or `step` of them, or down to and including `to`; `to: 0` for all). */
  async down(options: { to?: string | 0; step?: number } = {}): Promise<MigrationRun> {
    return this.run('down', options);
  }

  /** The names of the migrations not applied yet, in order. Takes no lock. */
  async pending(): Promise<string[]> {
    const [sources, applied] = await Promise.all([this.load(), this.readApplied()]);
    const done = new Set(applied.map((a) => a.name));
    return sources.filter((s) => !done.has(s.name)).map((s) => s.name);
  }

  /** The rows of the migrations table, in the order of the names. Takes no lock. */
  async executed(): Promise<AppliedMigration[]> {
    return this.readApplied();
  }

  /** What the dialect gives migrations: its table, its lock, whether its DDL is transactional. */
  private get support(): MigrationSupport {
    const support = this.db.driver.migrations;
    if (!support) {
      throw new NotSupported(`database "${this.db.name}" (${this.db.dialect}): its driver does not support migrations`, {
        dialect: this.db.dialect,
        database: this.db.name,
      });
    }
    return support;
  }

  private load(): Promise<MigrationSource[]> {
    this.sources ??= Promise.resolve()
      .then(() => loadMigrations(this.db.dialect, DIALECT_NAMES, this.options.directory, this.options.list))
      .then((sources) => {
        const outside = sources.find((s) => !s.transaction);
        if (outside && this.support.lock.kind === 'write-transaction') {
          throw new ConfigurationError(
            `migration "${outside.name}" asks to run outside a transaction, which migrations on ${this.db.dialect} cannot: the run holds the database's write lock in one transaction. ` +
              'Run such a statement (VACUUM, say) from the app after boot instead',
            { option: 'migrations', dialect: this.db.dialect, database: this.db.name },
          );
        }
        return sources;
      });
    return this.sources;
  }

  /** The name the lock is taken under: one lock per migrations table. */
  private get lockName(): string {
    return `nestjs-dbpool:migrations:${this.options.table}`;
  }

  /** A migration runs in a transaction with its record: where DDL is transactional, unless it asked not to. */
  private transactional(source: MigrationSource): boolean {
    return this.support.transactionalDdl && source.transaction;
  }

  private get table(): ReturnType<typeof sql.identifier> {
    return sql.identifier(...this.options.table.split('.'));
  }

  private async run(direction: 'up' | 'down', options: { to?: string | 0; step?: number }): Promise<MigrationRun> {
    const sources = await this.load();
    const { Umzug } = await loadPackage<UmzugModule>('umzug', this.db.dialect, () => import('umzug'), 'migrations');
    const started = Date.now();
    return this.locked(async (waitedMs) => {
      await this.createTable();
      const applied = await this.readApplied();
      this.checkApplied(sources, applied);
      const executedNames = new Set(applied.map((a) => a.name));
      const umzug = new Umzug({
        migrations: sources.map((source) => ({
          name: source.name,
          up: () => this.apply(source, executedNames),
          down: () => this.revert(source, executedNames),
        })),
        storage: {
          // Recorded by apply()/revert() inside the migration's own transaction.
          executed: async () => [...executedNames],
          logMigration: async () => {},
          unlogMigration: async () => {},
        },
        logger: undefined,
      });
      let done: Array<{ name: string }>;
      try {
        done = direction === 'up' ? await umzug.up(options as { to?: string }) : await umzug.down(options as { to?: string | 0 });
      } catch (error) {
        throw unwrap(error, this.db);
      }
      if (done.length > 0) {
        this.db.logger.log(
          `${direction === 'up' ? 'applied' : 'reverted'} ${done.length} migration(s) in ${Date.now() - started} ms: ${done.map((m) => m.name).join(', ')}`,
        );
      }
      return { names: done.map((m) => m.name), waitedMs };
    });
  }

  /** Applied migrations whose SQL changed since are refused; applied ones this app does not know are logged. */
  private checkApplied(sources: MigrationSource[], applied: AppliedMigration[]): void {
    const known = new Map(sources.map((s) => [s.name, s]));
    const unknown = applied.filter((a) => !known.has(a.name)).map((a) => a.name);
    if (unknown.length > 0) {
      this.db.logger.warn(
        `database "${this.db.name}" has migrations this app does not know: ${unknown.join(', ')} (applied by a newer version of the app, or removed files); ignoring them`,
      );
    }
    if (!this.options.validateChecksums) return;
    for (const row of applied) {
      const source = known.get(row.name);
      if (source?.checksum && row.checksum && source.checksum !== row.checksum) {
        throw new MigrationFailed(
          `migration "${row.name}" was changed after it was applied (recorded SHA-256 ${row.checksum.slice(0, 12)}…, ${source.origin} now ${source.checksum.slice(0, 12)}…). ` +
            'Put back the applied version and add a new migration for the change, or set migrations.validateChecksums: false if the edit changes nothing',
          { migration: row.name, database: this.db.name, dialect: this.db.dialect },
        );
      }
    }
  }

  private async apply(source: MigrationSource, executed: Set<string>): Promise<void> {
    const started = Date.now();
    const work = async () => {
      await this.runStep(source, 'up', source.up);
      await this.db.runOperation(
        sql`INSERT INTO ${this.table} (name, checksum, duration_ms) VALUES (${source.name}, ${source.checksum}, ${Date.now() - started})`,
        { timeoutMs: 0 },
      );
    };
    await this.inTransaction(source, work);
    executed.add(source.name);
    this.db.logger.log(`migration ${source.name} applied in ${Date.now() - started} ms`);
  }

  private async revert(source: MigrationSource, executed: Set<string>): Promise<void> {
    if (source.down === undefined) {
      throw new MigrationFailed(
        `migration "${source.name}" cannot be reverted: it has no down step (a ${source.name}.down.sql file, or down(db) in its module)`,
        {
          migration: source.name,
          database: this.db.name,
          dialect: this.db.dialect,
        },
      );
    }
    const down = source.down;
    await this.inTransaction(source, async () => {
      await this.runStep(source, 'down', down);
      await this.db.runOperation(sql`DELETE FROM ${this.table} WHERE name = ${source.name}`, { timeoutMs: 0 });
    });
    executed.delete(source.name);
    this.db.logger.log(`migration ${source.name} reverted`);
  }

  /** Its own transaction (a savepoint of the run's, under a write-transaction lock); none where DDL is not transactional or it asked for none. */
  private async inTransaction(source: MigrationSource, work: () => Promise<void>): Promise<void> {
    if (!this.transactional(source)) return work();
    await this.db.runInteraction(work, { propagation: this.support.lock.kind === 'write-transaction' ? 'nested' : 'required' });
  }

  private async runStep(source: MigrationSource, direction: 'up' | 'down', step: MigrationStep): Promise<void> {
    const fields = { migration: source.name, database: this.db.name, dialect: this.db.dialect };
    const transactional = this.transactional(source);
    if (typeof step === 'function') {
      try {
        await step(this.db);
      } catch (error) {
        const left = transactional ? 'nothing of it was applied (rolled back)' : 'what it did before the error stays applied';
        throw new MigrationFailed(`migration "${source.name}" (${direction}) failed: ${(error as Error)?.message ?? error}; ${left}`, {
          ...fields,
          cause: error,
        });
      }
      return;
    }
    const statements = splitStatements(step, this.db.driver.scriptSyntax);
    for (const [index, statement] of statements.entries()) {
      try {
        await this.db.runOperation(statement.text, undefined, { prepare: false, timeoutMs: this.options.statementTimeoutMs });
      } catch (error) {
        const left = transactional
          ? 'nothing of it was applied (rolled back)'
          : index === 0
            ? 'nothing of it was applied'
            : `statement${index > 1 ? `s 1–${index}` : ' 1'} stayed applied (${source.transaction ? `${profileOf(this.db.dialect).title} commits DDL as it goes` : 'it runs outside a transaction'}) and the migration is not recorded: ` +
              'undo them by hand or make the migration idempotent (IF NOT EXISTS), then run it again';
        throw new MigrationFailed(
          `migration "${source.name}" (${direction}) failed at statement ${index + 1} of ${statements.length} (line ${statement.line}): ${(error as Error)?.message ?? error}; ${left}`,
          { ...fields, statement: index + 1, cause: error },
        );
      }
    }
  }

  private async createTable(): Promise<void> {
    const quoted = this.options.table
      .split('.')
      .map((part) => this.db.driver.syntax.quoteIdentifier(part))
      .join('.');
    await this.db.runOperation(this.support.tableStatement(quoted), undefined, { prepare: false, timeoutMs: 0 });
  }

  private async readApplied(): Promise<AppliedMigration[]> {
    let rows: Array<{ name: string; checksum: string | null; applied_at: Date; duration_ms: number }>;
    try {
      rows = await this.db.runQuery(sql`SELECT name, checksum, applied_at, duration_ms FROM ${this.table}`, { prepare: false });
    } catch (error) {
      if (this.support.isMissingTable(error)) return [];
      throw error;
    }
    return rows
      .map((r) => ({
        name: r.name,
        checksum: r.checksum === null ? null : String(r.checksum).trim(),
        appliedAt: r.applied_at,
        durationMs: Number(r.duration_ms),
      }))
      .sort((a, b) => compareNames(a.name, b.name));
  }

  /** Runs `work` holding this database's migration lock, waiting for another instance that holds it. */
  private async locked<R>(work: (waitedMs: number) => Promise<R>): Promise<R> {
    const lock = this.support.lock;
    const nodes = this.db.options.settings.hosts?.length ?? 1;
    if (this.support.lockPerServer && nodes > 1) {
      throw new ConfigurationError(
        `migrations on database "${this.db.name}" take a lock that holds on one server only (GET_LOCK), and its url lists ${nodes} nodes ` +
          '(a Galera cluster does not share that lock between nodes, so two instances could migrate at once): run them against one node, ' +
          'with the nestjs-dbpool migrate command and a one-node url, and set migrations.runOnBoot: false',
        { option: 'migrations' },
      );
    }
    if (lock.kind === 'write-transaction') return this.inWriteTransaction((error) => lock.busy(error), work);
    return this.db.session(async () => {
      const waitedMs = await this.acquire(lock);
      try {
        return await work(waitedMs);
      } finally {
        // The session's reset releases it too, should this fail (the connection is not reused before).
        await this.db.runQuery(lock.release(this.lockName), { prepare: false }).catch(() => {});
      }
    });
  }

  /** Takes the session lock on the session's connection; resolves with how long it waited. */
  private async acquire(lock: Extract<MigrationSupport['lock'], { kind: 'session' }>): Promise<number> {
    const { lockTimeoutMs } = this.options;
    const started = Date.now();
    const [first] = await this.db.runQuery<{ got: unknown }>(lock.attempt(this.lockName), { timeoutMs: 0, prepare: false });
    if (isTrue(first?.got)) return 0;
    this.db.logger.log(
      `waiting for the migration lock of database "${this.db.name}": another instance is migrating (up to migrations.lockTimeoutMs, ${lockTimeoutMs} ms)`,
    );
    const timedOut = (cause?: unknown) =>
      new MigrationFailed(
        `another instance held the migration lock of database "${this.db.name}" for more than migrations.lockTimeoutMs (${lockTimeoutMs} ms): ` +
          `a long migration, or one that hangs (${lock.holder}). Raise lockTimeoutMs, or see what that instance is doing`,
        { code: ErrorCode.MigrationLockTimeout, database: this.db.name, dialect: this.db.dialect, cause },
      );
    const seconds = Math.max(1, Math.ceil(lockTimeoutMs / 1000));
    let row: { got: unknown } | undefined;
    try {
      // Bounded twice: by the server's own wait (where the statement has one), and by this call's deadline.
      [row] = await this.db.runQuery<{ got: unknown }>(lock.wait(this.lockName, seconds), {
        timeoutMs: lockTimeoutMs + LOCK_DEADLINE_MARGIN_MS,
        prepare: false,
      });
    } catch (error) {
      if (error instanceof QueryTimeout) throw timedOut(error);
      throw error;
    }
    if (!isTrue(row?.got)) throw timedOut();
    const waited = Date.now() - started;
    this.db.logger.log(`took the migration lock of database "${this.db.name}" after ${waited} ms`);
    return waited;
  }

  /**
   * The run as one transaction that takes the database's write lock at BEGIN (SQLite's BEGIN
   * IMMEDIATE); while another holds it, BEGIN fails as busy after the busy timeout and is tried
   * again until `lockTimeoutMs`. A migration that fails rolls back its savepoint; those before it
   * commit.
   */
  private async inWriteTransaction<R>(busy: (error: unknown) => boolean, work: (waitedMs: number) => Promise<R>): Promise<R> {
    const { lockTimeoutMs } = this.options;
    const started = Date.now();
    let logged = false;
    for (let attempt = 0; ; attempt++) {
      let failure: { error: unknown } | undefined;
      try {
        const result = await this.db.runInteraction(async () => {
          try {
            return await work(Date.now() - started);
          } catch (error) {
            failure = { error };
            return undefined;
          }
        });
        if (failure) throw failure.error;
        return result as R;
      } catch (error) {
        if (failure || !busy(error)) throw error;
        if (Date.now() - started >= lockTimeoutMs) {
          throw new MigrationFailed(
            `another process held the write lock of database "${this.db.name}" for more than migrations.lockTimeoutMs (${lockTimeoutMs} ms); raise it, or see what holds it`,
            { code: ErrorCode.MigrationLockTimeout, database: this.db.name, dialect: this.db.dialect, cause: error },
          );
        }
        if (!logged) {
          logged = true;
          this.db.logger.log(
            `waiting for the migration lock of database "${this.db.name}": another process holds its write lock (up to migrations.lockTimeoutMs, ${lockTimeoutMs} ms)`,
          );
        }
        await delay(Math.min(200, 10 * 2 ** Math.min(attempt, 5)));
      }
    }
  }
}

function isTrue(value: unknown): boolean {
  return value === true || value === 1 || value === '1' || value === 't';
}

/** umzug wraps a migration's error in its own; the caller gets ours (or the server's). */
function unwrap(error: unknown, db: Database): unknown {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof DatabaseError) return e;
  }
  return new MigrationFailed(`migrations of database "${db.name}": ${(error as Error)?.message ?? error}`, {
    database: db.name,
    dialect: db.dialect,
    cause: error,
  });
}
