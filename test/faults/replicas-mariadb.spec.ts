/**
 * Read replicas on a real MariaDB GTID replica (a throwaway primary + replica of the suite's own,
 * on ports of their own): routing, read-your-writes by GTID (@@last_gtid, MASTER_GTID_WAIT) while
 * the replica's applier is held back, a replica whose applier stops or whose server stops leaving
 * the rotation and coming back, the health report.
 */
import { jest } from '@jest/globals';
import mysql from 'mysql2/promise';
import { DatabaseModule, getDatabaseToken, type Database } from '../../lib/index.js';
import { DatabaseHealthIndicator } from '../../lib/health/index.js';
import { bootContext } from '../support/app.js';
import { ensurePackages, mysqlQuery, startMariadbReplication, type MariadbReplication } from '../support/cluster/index.js';
import { until } from '../support/wait.js';
import { callers, report } from './harness.js';

jest.setTimeout(180_000);

describe('read replicas [mysql, MariaDB GTID replica]', () => {
  let cluster: MariadbReplication;
  const apps: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    ensurePackages(['mariadb']);
    cluster = await startMariadbReplication();
    await mysqlQuery(cluster.primaryUrl, 'CREATE TABLE ryw (id int PRIMARY KEY, v varchar(20))');
    await mysqlQuery(cluster.primaryUrl, 'CREATE SEQUENCE ryw_seq');
    await cluster.waitForReplica();
  }, 180_000);

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    if (cluster) {
      const status = await cluster.replicaStatus().catch(() => undefined);
      if (!status) await cluster.startReplica();
      else if (status.sqlRunning !== 'Yes') await cluster.startSqlThread();
      await mysqlQuery(cluster.primaryUrl, 'DELETE FROM ryw');
      await cluster.waitForReplica();
    }
  });

  afterAll(() => cluster?.stop());

  async function open(extra: Record<string, unknown> = {}, waitUntilUp = true) {
    const app = await bootContext([
      DatabaseModule.forRoot({ url: cluster.primaryUrl, replicas: [cluster.replicaUrl], pool: { max: 4 }, replicaCheckIntervalMs: 100, ...extra }),
    ]);
    apps.push(app);
    const db = app.get<Database>(getDatabaseToken());
    if (waitUntilUp) await until(async () => (await db.checkReplicas())[0].state === 'up', 'the replica to be up');
    return { app, db };
  }

  /** Server 2 is the replica. */
  const onReplica = async (db: Database, options?: { target: 'primary' | 'replica' }) =>
    Number((await db.runQuery<{ s: number }>('SELECT @@server_id AS s', [], options))[0].s) === 2;

  it('reads and readOnly transactions go to the replica, whose sessions are read-only; writes, other transactions and target: primary to the primary', async () => {
    const { db } = await open();
    expect(await onReplica(db)).toBe(true);
    expect(await onReplica(db, { target: 'primary' })).toBe(false);
    await db.runOperation('INSERT INTO ryw (id, v) VALUES (?, ?)', [1, 'a']);
    // A SELECT that writes (a sequence) looks like a read: the replica's read-only session refuses it and the primary answers.
    const [{ n }] = await db.runQuery<{ n: number }>('SELECT NEXTVAL(ryw_seq) AS n');
    expect(Number(n)).toBe(1);
    expect(await db.runInteraction(async (tx) => (await tx.runQuery<{ s: number }>('SELECT @@server_id AS s'))[0].s, { readOnly: true })).toBe(2);
    expect(Number(await db.runInteraction(async (tx) => (await tx.runQuery<{ s: number }>('SELECT @@server_id AS s'))[0].s))).toBe(1);
    // Replication still runs: nothing was written on the replica.
    await cluster.waitForReplica();
    expect((await cluster.replicaStatus()).sqlRunning).toBe('Yes');
  });

  async function writeThenRead(db: Database, pairs: number, base: number) {
    let stale = 0;
    let replicaReads = 0;
    for (let i = 0; i < pairs; i++) {
      const id = base + i;
      await db.runOperation('INSERT INTO ryw (id, v) VALUES (?, ?)', [id, `v${id}`]);
      const rows = await db.runQuery<{ v: string; s: number }>('SELECT v, @@server_id AS s FROM ryw WHERE id = ?', [id]);
      if (rows.length === 0) stale++;
      else if (Number(rows[0].s) === 2) replicaReads++;
    }
    return { stale, replicaReads };
  }

  it('read-your-writes by GTID: with the applier held back, 1,000 write-then-read pairs see every write; with it off, the stale reads are counted', async () => {
    const pairs = 1000;
    // The replica's applier waits behind a global read lock: it receives, applies nothing, and still answers reads.
    const lock = await mysql.createConnection(cluster.replicaUrl);
    await lock.query('FLUSH TABLES WITH READ LOCK');
    try {
      const { db } = await open({ replicaWaitMs: 0 });
      const on = await writeThenRead(db, pairs, 10_000);
      expect(on.stale).toBe(0);
      expect(on.replicaReads).toBe(0);
      const { db: off } = await open({ readYourWrites: 'off', maxReplicaLagMs: 600_000 });
      const stale = await writeThenRead(off, pairs, 20_000);
      expect(stale.replicaReads).toBe(0);
      expect(stale.stale).toBeGreaterThan(pairs / 2);
      report('18-read-your-writes', 'mysql', { pairs, staleWithReadYourWrites: on.stale, staleWithoutReadYourWrites: stale.stale });
    } finally {
      await lock.query('UNLOCK TABLES');
      await lock.end();
    }
    await cluster.waitForReplica();
    const { db: live } = await open({ replicaWaitMs: 200 });
    const running = await writeThenRead(live, 200, 30_000);
    expect(running.stale).toBe(0);
    report('18-read-your-writes-live', 'mysql', { pairs: 200, stale: running.stale, servedByReplica: running.replicaReads });
  });

  it('a replica whose applier stops leaves the rotation, and comes back when it runs again', async () => {
    const { db } = await open({ readYourWrites: 'off' });
    const stopped = Date.now();
    await cluster.stopSqlThread();
    await until(async () => (await db.checkReplicas())[0].state === 'lagging', 'the replica to be reported lagging', 10_000);
    const outAfterMs = Date.now() - stopped;
    expect(db.replicaStatus()[0]).toMatchObject({ replaying: false });
    expect(await onReplica(db)).toBe(false);
    // 1,000 write-then-read pairs while the SQL thread is stopped, read-your-writes on: none stale.
    const { db: ryw } = await open({}, false);
    await until(async () => (await ryw.checkReplicas())[0].state === 'lagging', 'the second database to see the replica lagging');
    const pairs = await writeThenRead(ryw, 1000, 60_000);
    expect(pairs.stale).toBe(0);
    report('18-4-sql-thread-stopped', 'mysql', { pairs: 1000, stale: pairs.stale, servedByReplica: pairs.replicaReads });
    const started = Date.now();
    await cluster.startSqlThread();
    await until(async () => (await db.checkReplicas())[0].state === 'up', 'the replica to be back', 10_000);
    expect(await onReplica(db)).toBe(true);
    report('18-applier-stopped', 'mysql', { outOfRotationAfterMs: outAfterMs, backAfterMs: Date.now() - started });
  });

  it('a replica stopped under a read load: no read fails, it leaves the rotation, and it is back after a restart; the health indicator reports it', async () => {
    const { app, db } = await open();
    const health = app.get(DatabaseHealthIndicator);
    expect((await health.pingCheck('db')).db).toMatchObject({ status: 'up', role: 'primary', replicas: [{ state: 'up' }] });
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
    const stoppedAt = Date.now();
    await cluster.stopReplica({ kill: true });
    await until(() => db.replicaStatus()[0].state === 'down', 'the replica to be out of rotation', 10_000);
    const outAfterMs = Date.now() - stoppedAt;
    expect((await health.pingCheck('db')).db).toMatchObject({ status: 'up', replicas: [{ state: 'down', lastError: expect.any(String) }] });
    const readsWhileDown = reads;
    await until(() => reads > readsWhileDown + 100, 'reads to go on on the primary');
    const restarted = Date.now();
    await cluster.startReplica();
    await until(() => db.replicaStatus()[0].state === 'up', 'the replica to be back in rotation', 30_000);
    const backAfterMs = Date.now() - restarted;
    await readers.stop();
    expect(failed).toBe(0);
    expect(await onReplica(db)).toBe(true);
    report('18-replica-stopped', 'mysql', {
      readers: 8,
      reads,
      failedReads: failed,
      outOfRotationAfterMs: outAfterMs,
      backInRotationAfterRestartMs: backAfterMs,
    });
  });
});
