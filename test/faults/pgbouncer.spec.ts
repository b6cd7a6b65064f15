/**
 * PostgreSQL through a real PgBouncer (Debian's, 1.18) of the suite's own, in front of the shared
 * server: transaction mode (named prepared statements off, sessions and LISTEN refused or sent to
 * a direct listenUrl), session mode (everything as on a direct connection), health through the
 * bouncer, and a PgBouncer restart under 16 writers.
 */
import { jest } from '@jest/globals';
import { ConfigurationError, DatabaseModule, getDatabaseToken, NotSupported, type Database, type DatabaseModuleOptions } from '../../lib/index.js';
import { DatabaseHealthIndicator } from '../../lib/health/index.js';
import { PG_URL } from '../support/databases.js';
import { ensurePackages, startPgBouncer, type PgBouncer } from '../support/cluster/index.js';
import { bootWithLogger, CapturingLogger } from '../support/security.js';
import { until } from '../support/wait.js';
import { callers, outcomeKind, report, Tally } from './harness.js';
import pg from 'pg';

jest.setTimeout(120_000);

const PG_PORT = Number(new URL(PG_URL).port || 5432);

describe('PgBouncer [postgres]', () => {
  let bouncer: PgBouncer;
  const apps: Array<{ close(): Promise<void> }> = [];
  const table = `bouncer_${process.pid}`;

  beforeAll(async () => {
    ensurePackages(['pgbouncer']);
    bouncer = await startPgBouncer({ port: PG_PORT, poolMode: 'transaction', defaultPoolSize: 4 });
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`CREATE TABLE IF NOT EXISTS ${table} (id bigint PRIMARY KEY)`);
    await admin.end();
  }, 60_000);

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  afterAll(async () => {
    await bouncer?.dispose();
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`DROP TABLE IF EXISTS ${table}`);
    await admin.end();
  });

  async function open(options: Partial<DatabaseModuleOptions> = {}) {
    const logger = new CapturingLogger();
    const app = await bootWithLogger([DatabaseModule.forRoot({ url: bouncer.url, pool: { max: 8 }, ...options })], logger);
    apps.push(app);
    return { app, db: app.get<Database>(getDatabaseToken()), logger };
  }

  /** Many statements at once, the same texts over and over: what named prepared statements break in transaction mode. */
  const burst = (db: Database) =>
    Promise.all(Array.from({ length: 200 }, (_, i) => db.runQuery<{ n: number; pid: number }>('SELECT $1::int AS n, pg_backend_pid() AS pid', [i % 7])));

  it('transaction mode, not told: the first lost prepared statement turns named statements off with a warning, and no call fails', async () => {
    await bouncer.restart({ poolMode: 'transaction' });
    const { db, logger } = await open();
    const rows = await burst(db);
    expect(rows.map((r) => r[0].n)).toEqual(Array.from({ length: 200 }, (_, i) => i % 7));
    // Several server connections answered (the bouncer's pool of 4): the case named statements cannot survive.
    expect(new Set(rows.map((r) => r[0].pid)).size).toBeGreaterThan(1);
    expect(logger.lines.filter((l) => /named prepared statements are off/.test(l))).toHaveLength(1);
    expect(logger.lines.join('\n')).toMatch(/set pgbouncer: 'transaction'/);
  });

  it("pgbouncer: 'transaction': statements and transactions with settings work, sessions and LISTEN are refused naming what to use, listenUrl receives notifications, health is up through the bouncer", async () => {
    await bouncer.restart({ poolMode: 'transaction' });
    const { app, db, logger } = await open({ pgbouncer: 'transaction' });
    await burst(db);
    expect(logger.lines.filter((l) => /named prepared statements are off/.test(l))).toEqual([]);
    const setting = await db.runInteraction((tx) => tx.runQuery<{ v: string }>("SELECT current_setting('app.tenant') AS v"), {
      settings: { 'app.tenant': 't1' },
    });
    expect(setting).toEqual([{ v: 't1' }]);
    await expect(db.session(async () => 1)).rejects.toThrow(NotSupported);
    await expect(db.session(async () => 1)).rejects.toThrow(/PgBouncer in transaction mode .*use a transaction/);
    await expect(db.listen('orders', () => {})).rejects.toThrow(/listen\(\) needs one server connection .*use listenUrl/);
    const health = await app.get(DatabaseHealthIndicator).pingCheck('db');
    expect(health.db.status).toBe('up');

    const direct = await open({ pgbouncer: 'transaction', listenUrl: PG_URL });
    const got: string[] = [];
    await direct.db.listen('bouncer_orders', (n) => void got.push(n.payload));
    // NOTIFY itself is a statement: it goes through the bouncer.
    await direct.db.notify('bouncer_orders', 'through-the-bouncer');
    await until(() => got.length === 1, 'the notification on the direct listener');
    expect(got).toEqual(['through-the-bouncer']);
  });

  it("refuses prepare: true with pgbouncer: 'transaction', and pgbouncer on MySQL", async () => {
    const { resolveOptions } = await import('../../lib/config/options.js');
    expect(() => resolveOptions({ url: bouncer.url, pgbouncer: 'transaction', prepare: true })).toThrow(ConfigurationError);
    expect(() => resolveOptions({ url: 'mysql://root@127.0.0.1/test', pgbouncer: 'transaction' })).toThrow(
      /option "pgbouncer" is an option of PostgreSQL; this database is MySQL/,
    );
    expect(() => resolveOptions({ url: bouncer.url, pgbouncer: 'statement' as never })).toThrow(/must be 'session' or 'transaction'/);
  });

  it('session mode: prepared statements, sessions and LISTEN work as on a direct connection', async () => {
    await bouncer.restart({ poolMode: 'session' });
    // Session mode gives each client connection a server connection of its own: 3 in the pool and the listener fill the bouncer's 4.
    const { db, logger } = await open({ pgbouncer: 'session', pool: { max: 3 } });
    await burst(db);
    expect(logger.lines.filter((l) => /named prepared statements are off/.test(l))).toEqual([]);
    const pids = await db.session(async () => [await db.runQuery('SELECT pg_backend_pid() AS p'), await db.runQuery('SELECT pg_backend_pid() AS p')]);
    expect(pids[0]).toEqual(pids[1]);
    const got: string[] = [];
    await db.listen('bouncer_session', (n) => void got.push(n.payload));
    await db.notify('bouncer_session', 'x');
    await until(() => got.length === 1, 'the notification');
  });

  it('a PgBouncer restart under 16 writers: every acknowledged key is in the table, none twice; callers get ConnectionDead or CommitOutcomeUnknown; writes come back', async () => {
    await bouncer.restart({ poolMode: 'transaction' });
    const { db } = await open({ pgbouncer: 'transaction', waitForRecoveryMs: 10_000, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
    const acked = new Set<number>();
    const errors = new Tally();
    let restartedAt = 0;
    let firstAckAfter = 0;
    const writers = callers(16, async (w, i) => {
      const key = w * 1_000_000 + i;
      try {
        await db.runOperation(`INSERT INTO ${table} VALUES ($1)`, [key], { timeoutMs: 15_000 });
        acked.add(key);
        if (restartedAt && !firstAckAfter) firstAckAfter = Date.now();
      } catch (e) {
        errors.add(outcomeKind(e));
      }
    });
    await until(() => acked.size > 300, 'writes to flow', 20_000);
    const stoppedAt = Date.now();
    await bouncer.restart({ poolMode: 'transaction', mode: 'immediate' });
    restartedAt = Date.now();
    await until(() => firstAckAfter > 0, 'a write after the restart', 30_000);
    const ackedThen = acked.size;
    await until(() => acked.size > ackedThen + 300, 'writes to flow again', 30_000);
    await writers.stop();
    const admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    const { rows } = await admin.query<{ id: string }>(`SELECT id FROM ${table}`);
    await admin.end();
    const present = new Set(rows.map((r) => Number(r.id)));
    const missing = [...acked].filter((k) => !present.has(k));
    expect(missing).toEqual([]);
    expect(rows.length).toBe(present.size);
    for (const kind of errors.counts.keys()) expect(['ConnectionDead', 'CommitOutcomeUnknown']).toContain(kind);
    report('17-4-pgbouncer-restart', 'postgres', {
      writers: 16,
      acknowledged: acked.size,
      acknowledgedMissing: missing.length,
      duplicates: rows.length - present.size,
      errors: errors.toString(),
      restartMs: restartedAt - stoppedAt,
      writesBackAfterRestartReturnedMs: firstAckAfter - restartedAt,
    });
  });
});
