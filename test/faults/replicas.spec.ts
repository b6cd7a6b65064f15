/**
 * Read replicas on a real streaming standby (a throwaway primary + standby from initdb and
 * pg_basebackup, on ports of their own): routing, read-your-writes by WAL position with replay
 * paused, a replica that lags or stops leaving the rotation and coming back, the health report.
 */
import { DatabaseModule, getDatabaseToken, type Database } from '../../lib/index.js';
import { DatabaseHealthIndicator } from '../../lib/health/index.js';
import { bootContext } from '../support/app.js';
import { ensurePackages, pgQuery, startPostgresCluster, type PgCluster } from '../support/cluster/index.js';
import { useTestMeter } from '../support/otel.js';
import { until } from '../support/wait.js';
import { callers, report } from './harness.js';

import { jest } from '@jest/globals';

jest.setTimeout(120_000);

const meter = useTestMeter();

describe('read replicas [postgres, streaming standby]', () => {
  let cluster: PgCluster;
  const apps: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    ensurePackages(['postgres']);
    cluster = await startPostgresCluster({ standbys: 1 });
    await pgQuery(cluster.primaryUrl, 'CREATE TABLE ryw (id int PRIMARY KEY, v text)');
    await pgQuery(cluster.primaryUrl, 'CREATE SEQUENCE ryw_seq');
    await cluster.waitForReplay();
  }, 120_000);

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    // Put the standby back as the tests found it: running and replaying.
    if (cluster) {
      if (!(await standbyAnswers())) await cluster.startStandby(0);
      await cluster.resumeReplay(0).catch(() => {});
    }
  });

  afterAll(() => cluster?.stop());

  async function standbyAnswers(): Promise<boolean> {
    try {
      await pgQuery(cluster.standbyUrl, 'SELECT 1', [], { connectTimeoutMs: 2000, queryTimeoutMs: 2000 });
      return true;
    } catch {
      return false;
    }
  }

  async function open(extra: Record<string, unknown> = {}) {
    const app = await bootContext([
      DatabaseModule.forRoot({ url: cluster.primaryUrl, replicas: [cluster.standbyUrl], pool: { max: 4 }, replicaCheckIntervalMs: 100, ...extra }),
    ]);
    apps.push(app);
    const db = app.get<Database>(getDatabaseToken());
    // The first use starts the replica monitor; reads go to the primary until the replica is seen up.
    await until(async () => (await db.checkReplicas())[0].state === 'up', 'the replica to be up');
    return { app, db };
  }

  const onReplica = async (db: Database, options?: { target: 'primary' | 'replica' }) =>
    (await db.runQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r', [], options))[0].r;

  it('reads outside a transaction and readOnly transactions go to the replica; writes, other transactions and target: primary to the primary', async () => {
    const { db } = await open();
    expect(await onReplica(db)).toBe(true);
    expect(await onReplica(db, { target: 'primary' })).toBe(false);
    // A write sent with runQuery (RETURNING) is recognised as one.
    const [row] = await db.runQuery<{ id: number }>('INSERT INTO ryw (id, v) VALUES ($1, $2) RETURNING id', [1, 'a']);
    expect(row.id).toBe(1);
    // A SELECT that writes (nextval) looks like a read: the replica refuses it and the primary answers.
    const [{ n }] = await db.runQuery<{ n: number }>("SELECT nextval('ryw_seq')::int AS n");
    expect(n).toBe(1);
    expect(await db.runInteraction((tx) => tx.runQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'), { readOnly: true })).toEqual([{ r: true }]);
    expect(await db.runInteraction((tx) => tx.runQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))).toEqual([{ r: false }]);
    await expect(db.runQuery('SELECT 1', [], { target: 'elsewhere' as never })).rejects.toThrow(/target must be 'primary' or 'replica'/);
    await db.runOperation('DELETE FROM ryw');
  });

  async function writeThenRead(db: Database, pairs: number, base: number) {
    let stale = 0;
    let replicaReads = 0;
    for (let i = 0; i < pairs; i++) {
      const id = base + i;
      await db.runOperation('INSERT INTO ryw (id, v) VALUES ($1, $2)', [id, `v${id}`]);
      const rows = await db.runQuery<{ v: string; r: boolean }>('SELECT v, pg_is_in_recovery() AS r FROM ryw WHERE id = $1', [id]);
      if (rows.length === 0) stale++;
      else if (rows[0].r) replicaReads++;
    }
    return { stale, replicaReads };
  }

  it('read-your-writes by WAL position: with replay paused, 1,000 write-then-read pairs see every write; with it off, the stale reads are counted', async () => {
    const pairs = 1000;
    const { db } = await open({ replicaWaitMs: 0 });
    await cluster.pauseReplay(0);
    const on = await writeThenRead(db, pairs, 10_000);
    expect(on.stale).toBe(0);
    // Every read had to go to the primary: the replica had not replayed the write.
    expect(on.replicaReads).toBe(0);

    // However long the paused replay has been behind by now (a busy machine), this database keeps the replica in rotation.
    const off = (await open({ readYourWrites: 'off', maxReplicaLagMs: 600_000 })).db;
    const stale = await writeThenRead(off, pairs, 20_000);
    // Replay is paused: a read the replica serves misses its write (none found it there).
    expect(stale.replicaReads).toBe(0);
    expect(stale.stale).toBeGreaterThan(pairs / 2);
    await cluster.resumeReplay(0);

    // With replay running, reads still see their writes, and the replica serves those it has caught up on.
    const { db: live } = await open({ replicaWaitMs: 200 });
    const running = await writeThenRead(live, 200, 30_000);
    expect(running.stale).toBe(0);
    report('17-3-read-your-writes', 'postgres', {
      pairs,
      staleWithReadYourWrites: on.stale,
      staleWithoutReadYourWrites: stale.stale,
      replayRunningPairs: 200,
      replayRunningStale: running.stale,
      replayRunningServedByReplica: running.replicaReads,
    });
    await db.runOperation('DELETE FROM ryw');
  });

  it('in a read context, reads wait only for that context’s writes', async () => {
    const { db } = await open({ replicaWaitMs: 0, maxReplicaLagMs: 600_000 });
    await cluster.waitForReplay();
    await cluster.pauseReplay(0);
    // A write in one context does not send another context's reads to the primary.
    await db.readContext(() => db.runOperation('INSERT INTO ryw (id, v) VALUES (40000, $1)', ['x']));
    expect(await db.readContext(() => onReplica(db))).toBe(true);
    // The writing context itself reads from the primary.
    const seen = await db.readContext(async () => {
      await db.runOperation('INSERT INTO ryw (id, v) VALUES (40001, $1)', ['y']);
      return db.runQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r FROM ryw WHERE id = 40001');
    });
    expect(seen).toEqual([{ r: false }]);
    // Outside any context a read waits for every write of the process: the primary answers.
    expect(await onReplica(db)).toBe(false);
    await cluster.resumeReplay(0);
    await db.runOperation('DELETE FROM ryw');
  });

  it('a lagging replica leaves the rotation and comes back when it catches up', async () => {
    const { db } = await open({ maxReplicaLagMs: 300, readYourWrites: 'off' });
    await cluster.pauseReplay(0);
    await pgQuery(cluster.primaryUrl, "INSERT INTO ryw (id, v) VALUES (50000, 'lag')");
    const paused = Date.now();
    await until(async () => (await db.checkReplicas())[0].state === 'lagging', 'the replica to be reported lagging', 10_000);
    const outAfterMs = Date.now() - paused;
    // The metric is the replica's lag at its last check: over the limit now.
    const label = db.replicaStatus()[0].label;
    expect(await meter.value('nestjs_dbpool.replica.lag', { 'server.address': label })).toBeGreaterThan(0.3);
    expect(await onReplica(db)).toBe(false);
    await cluster.resumeReplay(0);
    const resumed = Date.now();
    await until(async () => (await db.checkReplicas())[0].state === 'up', 'the replica to be back', 10_000);
    expect(await onReplica(db)).toBe(true);
    expect(await meter.value('nestjs_dbpool.replica.lag', { 'server.address': label })).toBeLessThanOrEqual(0.3);
    report('17-lag', 'postgres', { maxReplicaLagMs: 300, outOfRotationAfterMs: outAfterMs, backAfterMs: Date.now() - resumed });
    await db.runOperation('DELETE FROM ryw');
  });

  it('a replica stopped under a read load: no read fails, it leaves the rotation, and it is back after a restart; the health indicator reports it', async () => {
    const { app, db } = await open();
    const health = app.get(DatabaseHealthIndicator);
    const up = await health.pingCheck('db');
    expect(up.db).toMatchObject({ status: 'up', role: 'primary', replicas: [{ label: expect.stringMatching(/^127\.0\.0\.1:\d+$/), state: 'up' }] });

    let failed = 0;
    let reads = 0;
    const readers = callers(8, async () => {
      try {
        await db.runQuery('SELECT 1 AS one');
        reads++;
      } catch {
        failed++;
      }
    });
    await until(() => reads > 100, 'reads to flow');
    const stopped = Date.now();
    await cluster.stopStandby(0, { mode: 'immediate' });
    await until(() => db.replicaStatus()[0].state === 'down', 'the replica to be out of rotation', 10_000);
    const outAfterMs = Date.now() - stopped;
    const down = await health.pingCheck('db');
    expect(down.db).toMatchObject({ status: 'up', replicas: [{ state: 'down', lastError: expect.any(String) }] });
    const readsWhileDown = reads;
    await until(() => reads > readsWhileDown + 100, 'reads to go on on the primary');
    const restarted = Date.now();
    await cluster.startStandby(0);
    await until(() => db.replicaStatus()[0].state === 'up', 'the replica to be back in rotation', 20_000);
    const backAfterMs = Date.now() - restarted;
    await readers.stop();
    expect(failed).toBe(0);
    expect(await onReplica(db)).toBe(true);
    report('17-2-replica-stopped', 'postgres', {
      readers: 8,
      reads,
      failedReads: failed,
      outOfRotationAfterMs: outAfterMs,
      backInRotationAfterRestartMs: backAfterMs,
    });
  });
});
