/**
 * Migrations on every dialect, each test on a database of its own created empty: files and
 * code migrations in order, a dialect's own file, the record with its checksum, a failure
 * halfway (rolled back where DDL is transactional, reported as left applied on MySQL), down,
 * the lock that makes three instances booting at once apply each migration exactly once while
 * the others wait (their boot, so their readiness, held until the work is done), and the
 * `nestjs-dbpool migrate` command.
 */
import 'reflect-metadata';
import type { INestApplicationContext, LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ConfigurationError, Database, DatabaseModule, MigrationFailed, Migrator, sql, type Migration } from '../../lib/index.js';
import { resolveOptions } from '../../lib/config/options.js';
import { allCases, describeEachDialect, freshDatabase, type DialectCase } from '../support/databases.js';
import { until } from '../support/wait.js';

const run = promisify(execFile);
const BIN = resolve('dist/cjs/cli/bin.js');

/** A Nest logger that keeps every line, for what the module says it does (waiting for the lock). */
class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  log(message: unknown): void {
    this.lines.push(String(message));
  }
  warn(message: unknown): void {
    this.lines.push(`WARN ${String(message)}`);
  }
  error(message: unknown): void {
    this.lines.push(`ERROR ${String(message)}`);
  }
  debug(): void {}
  verbose(): void {}
  count(fragment: string): number {
    return this.lines.filter((line) => line.includes(fragment)).length;
  }
}

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'ndbp-mig-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function standalone(url: string, extra: Record<string, unknown> = {}): Database {
  return new Database(resolveOptions({ url, name: 'mig', ...extra }), new CapturingLogger() as never);
}

async function boot(
  url: string,
  migrations: Record<string, unknown>,
  logger: LoggerService,
  extra: Record<string, unknown> = {},
): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule({ imports: [DatabaseModule.forRoot({ url, migrations, ...extra })] })
    .setLogger(logger)
    .compile();
  return moduleRef.init();
}

async function count(db: Database, table: string, where = ''): Promise<number> {
  const [row] = await db.runQuery<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table} ${where}`);
  return Number(row!.n);
}

describeEachDialect(allCases, 'migrations', (c: DialectCase) => {
  let url: string;
  let drop: () => Promise<void>;
  const dirs: string[] = [];
  const open: Array<{ close(): Promise<unknown> }> = [];
  const sqliteOptions = c.dialect === 'sqlite' ? { driverOptions: { busyTimeoutMs: 50 } } : {};

  beforeEach(async () => {
    ({ url, drop } = await freshDatabase(c));
  });

  afterEach(async () => {
    for (const o of open.splice(0)) await o.close().catch(() => {});
    await drop();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  function dir(files: Record<string, string>): string {
    const d = folder(files);
    dirs.push(d);
    return d;
  }

  function database(extra: Record<string, unknown> = {}): Database {
    const db = standalone(url, extra);
    open.push(db);
    return db;
  }

  it('three instances booting at once apply each migration exactly once; the others wait for the lock, then boot', async () => {
    const directory = dir({
      '001_create_log.sql': 'CREATE TABLE mig_log (step VARCHAR(20) NOT NULL);\nCREATE TABLE mig_other (id INTEGER NOT NULL PRIMARY KEY);\n',
      '003_third.sql': "INSERT INTO mig_log (step) VALUES ('003');",
    });
    let entered = 0;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const list: Migration[] = [
      {
        name: '002_gated',
        up: async (db) => {
          entered++;
          await gate;
          await db.runOperation(sql`INSERT INTO mig_log (step) VALUES ('002')`);
        },
      },
    ];
    const logger = new CapturingLogger();
    const booted = [false, false, false];
    const apps = [0, 1, 2].map((i) =>
      boot(url, { directory, list }, logger, sqliteOptions).then((app) => {
        booted[i] = true;
        open.push(app);
        return app;
      }),
    );
    // One instance runs 002 and holds the lock; the two others say they wait for it.
    await until(() => entered === 1 && logger.count('waiting for the migration lock') === 2, 'one migrating instance and two waiting', 20_000);
    expect(booted).toEqual([false, false, false]); // nobody serves before the migrations are done
    openGate();
    const contexts = await Promise.all(apps);
    expect(entered).toBe(1);
    const db = contexts[0]!.get(Database);
    expect(await db.runQuery<{ step: string }>('SELECT step FROM mig_log ORDER BY step')).toEqual([{ step: '002' }, { step: '003' }]);
    const applied = await new Migrator(db, { directory, list }).executed();
    expect(applied.map((m) => m.name)).toEqual(['001_create_log', '002_gated', '003_third']);
    expect(applied[0]!.checksum).toMatch(/^[0-9a-f]{64}$/);
    expect(applied[1]!.checksum).toBeNull(); // code: no checksum
    expect(applied[0]!.appliedAt).toBeInstanceOf(Date);
    for (const context of contexts) expect(await count(context.get(Database), 'mig_other')).toBe(0);
    // The servers' waiters say when they got the lock; SQLite's retry BEGIN IMMEDIATE until it is theirs.
    if (c.dialect !== 'sqlite') expect(logger.count('took the migration lock')).toBe(2);
  }, 60_000);

  it("takes the dialect's own file over the plain one and skips other dialects' files", async () => {
    const other = c.dialect === 'postgres' ? 'mysql' : 'postgres';
    const directory = dir({
      '001_t.sql': 'CREATE TABLE plain_t (id INTEGER NOT NULL);',
      [`001_t.${c.dialect}.sql`]: 'CREATE TABLE own_t (id INTEGER NOT NULL);',
      [`002_only_other.${other}.sql`]: 'THIS IS NOT SQL;',
      'README.md': 'not a migration',
    });
    const db = database();
    const migrator = new Migrator(db, { directory });
    expect(await migrator.pending()).toEqual(['001_t']);
    expect((await migrator.up()).names).toEqual(['001_t']);
    expect(await count(db, 'own_t')).toBe(0);
    await expect(db.runQuery('SELECT * FROM plain_t')).rejects.toThrow();
    expect(await migrator.pending()).toEqual([]);
  });

  if (c.dialect === 'postgres') {
    it('runs a file marked "-- nestjs-dbpool: no-transaction" outside a transaction (CREATE INDEX CONCURRENTLY), and refuses it unmarked', async () => {
      const body = 'CREATE INDEX CONCURRENTLY idx_conc ON conc_t (id);';
      const marked = dir({ '001_t.sql': 'CREATE TABLE conc_t (id INTEGER NOT NULL);', '002_idx.sql': `-- nestjs-dbpool: no-transaction\n${body}` });
      const db = database();
      expect((await new Migrator(db, { directory: marked }).up()).names).toEqual(['001_t', '002_idx']);
      const [idx] = await db.runQuery<{ n: number }>("SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'idx_conc'");
      expect(idx.n).toBe(1);
      const unmarked = dir({ '001_t.sql': 'CREATE TABLE conc_t (id INTEGER NOT NULL);', '002_idx.sql': body, '003_more.sql': 'SELECT 1;' });
      const other = await freshDatabase(c);
      const db2 = standalone(other.url);
      try {
        await expect(new Migrator(db2, { directory: unmarked }).up()).rejects.toThrow(/CREATE INDEX CONCURRENTLY cannot run inside a transaction block/);
      } finally {
        await db2.close();
        await other.drop();
      }
    });
  }

  it('applies files in numeric order, SQL with quotes, comments and several statements, and JS modules given the Database', async () => {
    const directory = dir({
      '10_last.sql': "INSERT INTO ordered (v) VALUES ('ten; with a semicolon');",
      '2_second.mjs': 'export async function up(db) { await db.runOperation("INSERT INTO ordered (v) VALUES (\'two -- not a comment\')"); }\n',
      '1_first.sql':
        "-- the table; with a comment\nCREATE TABLE ordered (v VARCHAR(100) NOT NULL);\n/* a block; comment */\nINSERT INTO ordered (v) VALUES ('one');\n",
    });
    const db = database();
    const done = await new Migrator(db, { directory }).up();
    expect(done.names).toEqual(['1_first', '2_second', '10_last']);
    expect((await db.runQuery<{ v: string }>('SELECT v FROM ordered')).map((r) => r.v).sort()).toEqual([
      'one',
      'ten; with a semicolon',
      'two -- not a comment',
    ]);
  });

  it('a failing statement fails the boot with MigrationFailed naming the migration, the statement and what stayed applied', async () => {
    const directory = dir({
      '001_ok.sql': 'CREATE TABLE before_fail (id INTEGER NOT NULL);',
      '002_breaks.sql': 'CREATE TABLE half_done (id INTEGER NOT NULL);\nINSERT INTO no_such_table_anywhere (x) VALUES (1);\n',
    });
    const failure = await boot(url, { directory }, new CapturingLogger()).then(
      (app) => {
        open.push(app);
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(MigrationFailed);
    const e = failure as MigrationFailed;
    expect(e).toMatchObject({ code: 'MIGRATION_FAILED', migration: '002_breaks', statement: 2 });
    expect(e.message).toContain('line 2');
    const db = database();
    const migrator = new Migrator(db, { directory });
    expect((await migrator.executed()).map((m) => m.name)).toEqual(['001_ok']);
    expect(await migrator.pending()).toEqual(['002_breaks']);
    const halfDone = await db.runQuery('SELECT * FROM half_done').then(
      () => true,
      () => false,
    );
    if (c.dialect === 'mysql') {
      // DDL commits as it goes on MySQL: the first statement stayed, and the error says so.
      expect(halfDone).toBe(true);
      expect(e.message).toMatch(/statement 1 stayed applied .*MySQL commits DDL/);
    } else {
      expect(halfDone).toBe(false);
      expect(e.message).toContain('nothing of it was applied (rolled back)');
    }
  });

  it('refuses to boot when an applied SQL migration was edited (checksum), unless validateChecksums is false', async () => {
    const files = { '001_a.sql': 'CREATE TABLE edited (id INTEGER NOT NULL);' };
    const directory = dir(files);
    const db = database();
    await new Migrator(db, { directory }).up();
    writeFileSync(join(directory, '001_a.sql'), 'CREATE TABLE edited (id INTEGER NOT NULL, extra INTEGER);');
    const failure = await new Migrator(db, { directory }).up().catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(MigrationFailed);
    expect((failure as MigrationFailed).migration).toBe('001_a');
    expect((failure as Error).message).toMatch(/was changed after it was applied.*validateChecksums/);
    await expect(new Migrator(db, { directory, validateChecksums: false }).up()).resolves.toMatchObject({ names: [] });
  });

  it('boots an older version of the app on a database a newer one migrated, with a warning', async () => {
    const db = database();
    await new Migrator(db, {
      list: [
        { name: '001_a', up: 'CREATE TABLE v1 (id INTEGER)' },
        { name: '002_b', up: 'CREATE TABLE v2 (id INTEGER)' },
      ],
    }).up();
    const logger = new CapturingLogger();
    const app = await boot(url, { list: [{ name: '001_a', up: 'CREATE TABLE v1 (id INTEGER)' }] }, logger);
    open.push(app);
    expect(logger.lines.some((l) => l.startsWith('WARN') && l.includes('002_b'))).toBe(true);
  });

  it('reverts with down (SQL down files and down(db)), and applies again', async () => {
    const directory = dir({
      '001_t.sql': 'CREATE TABLE downable (id INTEGER NOT NULL);',
      '001_t.down.sql': 'DROP TABLE downable;',
      '002_row.cjs':
        "exports.up = (db) => db.runOperation('INSERT INTO downable (id) VALUES (7)');\nexports.down = (db) => db.runOperation('DELETE FROM downable WHERE id = 7');\n",
      '003_no_down.sql': 'CREATE TABLE no_down (id INTEGER);',
    });
    const db = database();
    const migrator = new Migrator(db, { directory });
    await migrator.up();
    await expect(migrator.down()).rejects.toThrow(/"003_no_down" cannot be reverted: it has no down step/);
    expect((await migrator.executed()).map((m) => m.name)).toEqual(['001_t', '002_row', '003_no_down']);
    await db.runOperation('DROP TABLE no_down');
    await db.runOperation(sql`DELETE FROM nestjs_dbpool_migrations WHERE name = ${'003_no_down'}`);
    expect((await migrator.down({ step: 2 })).names).toEqual(['002_row', '001_t']);
    await expect(db.runQuery('SELECT * FROM downable')).rejects.toThrow();
    expect(await migrator.pending()).toEqual(['001_t', '002_row', '003_no_down']);
    expect((await migrator.up({ to: '002_row' })).names).toEqual(['001_t', '002_row']);
    expect(await count(db, 'downable')).toBe(1);
  });

  it('a waiting instance gives up after lockTimeoutMs with MIGRATION_LOCK_TIMEOUT', async () => {
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let entered = false;
    const holder = database(sqliteOptions);
    const holding = new Migrator(holder, {
      list: [
        {
          name: '001_slow',
          up: async () => {
            entered = true;
            await gate;
          },
        },
      ],
    }).up();
    await until(() => entered, 'the first instance inside its migration', 10_000);
    const waiter = database(sqliteOptions);
    const failure = await new Migrator(waiter, { list: [{ name: '001_slow', up: async () => {} }], lockTimeoutMs: 300 }).up().catch((e: unknown) => e);
    openGate();
    await holding;
    expect(failure).toBeInstanceOf(MigrationFailed);
    expect(failure).toMatchObject({ code: 'MIGRATION_LOCK_TIMEOUT' });
    expect((failure as Error).message).toContain('lockTimeoutMs (300 ms)');
  }, 30_000);

  it('the nestjs-dbpool command applies, lists and reverts, several at once applying each migration once', async () => {
    const directory = dir({
      '001_cli.sql': 'CREATE TABLE cli_log (step VARCHAR(20) NOT NULL);',
      '001_cli.down.sql': 'DROP TABLE cli_log;',
      '002_cli.sql': "INSERT INTO cli_log (step) VALUES ('002');",
      '002_cli.down.sql': "DELETE FROM cli_log WHERE step = '002';",
    });
    const env = { ...process.env, DATABASE_URL: url };
    const cli = (...args: string[]) => run(process.execPath, [BIN, ...args], { env, timeout: 60_000 });
    expect((await cli('migrate', 'pending', '--dir', directory)).stdout.trim().split('\n')).toEqual(['001_cli', '002_cli']);
    const ups = await Promise.all([0, 1, 2].map(() => cli('migrate', 'up', '--dir', directory, '--quiet')));
    const applied = ups.flatMap((u) => u.stdout.split('\n').filter((l) => l.startsWith('applied')));
    expect(applied.sort()).toEqual(['applied  001_cli', 'applied  002_cli']);
    const db = database();
    expect(await count(db, 'cli_log')).toBe(1);
    const executed = (await cli('migrate', 'executed', '--dir', directory)).stdout.trim().split('\n');
    expect(executed.map((l) => l.split('\t')[0])).toEqual(['001_cli', '002_cli']);
    expect(executed.join('\n')).not.toContain(url);
    expect((await cli('migrate', 'down', '--dir', directory, '--quiet')).stdout).toContain('reverted 002_cli');
    expect(await count(db, 'cli_log')).toBe(0);
    const usage = await cli('migrate', 'sideways').catch((e: { code: number; stderr: string }) => e);
    expect(usage).toMatchObject({ code: 2 });
    expect((usage as { stderr: string }).stderr).toContain('migrate needs up, down, pending or executed');
    const broken = await run(process.execPath, [BIN, 'migrate', 'up', '--dir', join(directory, 'missing')], { env }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(broken).toMatchObject({ code: 1 });
    expect((broken as { stderr: string }).stderr).toContain('migrations.directory');
  }, 90_000);
});

describe('migration options', () => {
  it('refuses bad options at bootstrap, naming them', () => {
    expect(() => resolveOptions({ url: 'sqlite::memory:', migrations: { dir: 'x' } as never })).toThrow(/"migrations.dir"; did you mean migrations.directory/);
    expect(() => resolveOptions({ url: 'sqlite::memory:', migrations: {} })).toThrow(ConfigurationError);
    expect(() => resolveOptions({ url: 'sqlite::memory:', migrations: { directory: 'm', table: 'drop table x' } })).toThrow(
      /migrations.table must be a plain table name/,
    );
    expect(() => resolveOptions({ url: 'sqlite::memory:', migrations: { directory: 'm', lockTimeoutMs: -1 } })).toThrow(/migrations.lockTimeoutMs/);
  });

  it('refuses a file with an unknown dialect suffix, two files for one migration, and a code module without up()', async () => {
    const db = standalone('sqlite::memory:');
    try {
      const d1 = folder({ '001_a.mariadb.sql': 'SELECT 1' });
      await expect(new Migrator(db, { directory: d1 }).pending()).rejects.toThrow(/"mariadb" is not a dialect/);
      const d2 = folder({ '001_a.sql': 'SELECT 1', '001_a.mjs': 'export function up() {}' });
      await expect(new Migrator(db, { directory: d2 }).pending()).rejects.toThrow(/two up files/);
      const d3 = folder({ '001_a.mjs': 'export const nothing = 1;' });
      await expect(new Migrator(db, { directory: d3 }).pending()).rejects.toThrow(/must export a function up\(db\)/);
      for (const d of [d1, d2, d3]) rmSync(d, { recursive: true, force: true });
    } finally {
      await db.close();
    }
  });

  it('a boot without the server waits for it like verifyOnStartup, then fails naming migrations.runOnBoot', async () => {
    const failure = await boot('postgres://postgres@127.0.0.1:1/none', { list: [] }, new CapturingLogger(), { startupTimeoutMs: 300 }).catch((e: unknown) => e);
    expect((failure as Error).message).toMatch(/startupTimeoutMs \(300 ms\) at startup \(migrations.runOnBoot\)/);
  });
});
