/**
 * Multi-host PostgreSQL (`postgres://h1,h2/db?target_session_attrs=…`, as libpq spells it) on a
 * real primary and streaming standby of the suite's own: the host that fits is found on connect;
 * a primary turned read-only is "the wrong host", not a dead database; a switchover under 32
 * writers (old primary stopped, standby promoted) loses no acknowledged write and hangs nobody.
 */
import { jest } from '@jest/globals';
import { ConnectionDead, DatabaseError, DatabaseModule, getDatabaseToken, type Database } from '../../lib/index.js';
import { bootContext } from '../support/app.js';
import { ensurePackages, pgQuery, startPostgresCluster, type PgCluster } from '../support/cluster/index.js';
import { until } from '../support/wait.js';
import { callers, outcomeKind, report, Tally } from './harness.js';

jest.setTimeout(180_000);

const hostOf = (url: string) => new URL(url).host;

/** Both nodes in one libpq URL, in the given order. */
function multiHostUrl(first: string, second: string, attrs: string): string {
  return `postgres://postgres@${hostOf(first)},${hostOf(second)}/test?target_session_attrs=${attrs}`;
}

describe('multi-host PostgreSQL [postgres, primary + standby]', () => {
  let cluster: PgCluster;
  const apps: Array<{ close(): Promise<void> }> = [];

  beforeEach(async () => {
    ensurePackages(['postgres']);
    cluster = await startPostgresCluster({ standbys: 1 });
    await pgQuery(cluster.primaryUrl, 'CREATE TABLE keys (id bigint PRIMARY KEY)');
    await cluster.waitForReplay();
  }, 120_000);

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await cluster?.stop();
  });

  async function open(url: string, extra: Record<string, unknown> = {}) {
    const app = await bootContext([DatabaseModule.forRoot({ url, pool: { max: 8 }, connectTimeoutMs: 2000, ...extra })]);
    apps.push(app);
    const db = app.get<Database>(getDatabaseToken());
    const dead: string[] = [];
    db.events.on('dead', (e) => dead.push(e.error.message));
    return { db, dead };
  }

  const inRecovery = async (db: Database) => (await db.runQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0].r;

  it('finds the host target_session_attrs asks for, whatever the order of the list', async () => {
    const { db: writer } = await open(multiHostUrl(cluster.standbyUrl, cluster.primaryUrl, 'read-write'));
    expect(await inRecovery(writer)).toBe(false);
    await writer.runOperation('INSERT INTO keys VALUES (1)');
    const { db: primary } = await open(multiHostUrl(cluster.standbyUrl, cluster.primaryUrl, 'primary'));
    expect(await inRecovery(primary)).toBe(false);
    const { db: standby } = await open(multiHostUrl(cluster.primaryUrl, cluster.standbyUrl, 'standby'));
    expect(await inRecovery(standby)).toBe(true);
    const { db: prefers } = await open(multiHostUrl(cluster.primaryUrl, cluster.standbyUrl, 'prefer-standby'));
    expect(await inRecovery(prefers)).toBe(true);
    const { db: any } = await open(multiHostUrl(cluster.standbyUrl, cluster.primaryUrl, 'any'));
    expect(await inRecovery(any)).toBe(true);
    // No host fits: a clear error naming each host and why.
    await cluster.stopPrimary({ mode: 'fast' });
    const { db: none } = await open(multiHostUrl(cluster.primaryUrl, cluster.standbyUrl, 'read-write'));
    await expect(none.runQuery('SELECT 1')).rejects.toThrow(/no host fits target_session_attrs=read-write: .*127\.0\.0\.1:\d+ is a standby/);
  });

  it('a primary turned read-only after the standby took over: the write it refuses fails with 25006, the next ones reach the new primary, and the database is never marked dead', async () => {
    const { db, dead } = await open(multiHostUrl(cluster.primaryUrl, cluster.standbyUrl, 'read-write'));
    await db.runOperation('INSERT INTO keys VALUES (1)');
    // Fill the pool with connections to the old primary.
    await Promise.all(Array.from({ length: 4 }, () => db.runQuery('SELECT pg_sleep(0.05)')));
    await cluster.promote(0);
    await pgQuery(cluster.primaryUrl, 'ALTER SYSTEM SET default_transaction_read_only = on');
    await pgQuery(cluster.primaryUrl, 'SELECT pg_reload_conf()');
    await until(
      async () => (await pgQuery<{ ro: string }>(cluster.primaryUrl, "SELECT current_setting('default_transaction_read_only') AS ro"))[0].ro === 'on',
      'the old primary to be read-only',
    );
    const refused = await db.runOperation('INSERT INTO keys VALUES (2)').then(
      () => undefined,
      (e: unknown) => e,
    );
    // The old primary answered on a pooled connection: 25006, the statement had no effect, nothing replayed behind the caller's back.
    expect(refused).toBeInstanceOf(DatabaseError);
    expect((refused as DatabaseError).sqlState).toBe('25006');
    let attempts = 0;
    await until(async () => {
      attempts++;
      try {
        await db.runOperation('INSERT INTO keys VALUES (3)');
        return true;
      } catch (e) {
        if ((e as DatabaseError).sqlState !== '25006') throw e;
        return false;
      }
    }, 'a write to reach the new primary');
    // At most the idle connections that were being discarded at that moment answered 25006 again.
    expect(attempts).toBeLessThanOrEqual(5);
    expect(await inRecovery(db)).toBe(false);
    const onNew = await pgQuery<{ id: string }>(cluster.standbyUrl, 'SELECT id FROM keys ORDER BY id');
    expect(onNew.map((r) => Number(r.id))).toEqual([1, 3]);
    expect(dead).toEqual([]);
  });

  it('a switchover under 32 writers: every acknowledged key is on the new primary, none twice; callers in flight get ConnectionDead or CommitOutcomeUnknown; nothing hangs', async () => {
    const { db } = await open(multiHostUrl(cluster.primaryUrl, cluster.standbyUrl, 'read-write'), {
      waitForRecoveryMs: 10_000,
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    });
    const acked = new Set<number>();
    const unknown = new Set<number>();
    const errors = new Tally();
    let failoverStarted = 0;
    let firstAckAfter = 0;
    let promoted = false;
    const writers = callers(32, async (w, i) => {
      const key = w * 1_000_000 + i;
      try {
        await db.runOperation('INSERT INTO keys VALUES ($1)', [key], { timeoutMs: 15_000 });
        acked.add(key);
        if (failoverStarted && !firstAckAfter && promoted) firstAckAfter = Date.now();
      } catch (e) {
        errors.add(outcomeKind(e));
        // What may have run is neither counted as written nor written again under the same key.
        if (!(e instanceof ConnectionDead) || e.mayHaveRun) unknown.add(key);
      }
    });
    await until(() => acked.size > 500, 'writes to flow', 20_000);
    failoverStarted = Date.now();
    // Patroni's switchover: the old primary shuts down (sending its WAL to the standby first), then the standby is promoted.
    await cluster.stopPrimary({ mode: 'fast' });
    await cluster.promote(0);
    promoted = true;
    const promotedAt = Date.now();
    await until(() => firstAckAfter > 0, 'a write to succeed on the new primary', 30_000);
    const ackedAtRecovery = acked.size;
    await until(() => acked.size > ackedAtRecovery + 500, 'writes to flow on the new primary', 30_000);
    await writers.stop();

    const rows = await pgQuery<{ id: string }>(cluster.standbyUrl, 'SELECT id FROM keys');
    const present = new Set(rows.map((r) => Number(r.id)));
    const missing = [...acked].filter((k) => !present.has(k));
    expect(missing).toEqual([]);
    expect(rows.length).toBe(present.size);
    // Nothing but the two documented outcomes reached a caller.
    for (const kind of errors.counts.keys()) expect(['ConnectionDead', 'CommitOutcomeUnknown']).toContain(kind);
    report('17-1-failover', 'postgres', {
      writers: 32,
      acknowledged: acked.size,
      acknowledgedMissing: missing.length,
      duplicates: rows.length - present.size,
      outcomeUnknown: unknown.size,
      unknownThatCommitted: [...unknown].filter((k) => present.has(k)).length,
      errors: errors.toString(),
      switchoverMs: promotedAt - failoverStarted,
      writesBackAfterPromoteMs: firstAckAfter - promotedAt,
      writesBackAfterStopMs: firstAckAfter - failoverStarted,
    });
  });
});
