/**
 * A three-node MariaDB Galera cluster of the suite's own (galera-4, on ports of its own), through
 * one node list (`mysql://n1,n2,n3/db`): connections spread over the Synced nodes; a node that
 * rejects work (1047) is "use another node", not a dead database; certification conflicts arrive
 * as deadlocks at COMMIT, retried with `retry` and reported without; a node killed under 16 writers
 * loses no acknowledged insert.
 */
import { jest } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseModule, getDatabaseToken, type Database, type DatabaseError } from '../../lib/index.js';
import { bootContext } from '../support/app.js';
import { ensurePackages, mysqlQuery, startGaleraCluster, type GaleraCluster } from '../support/cluster/index.js';
import { until } from '../support/wait.js';
import { callers, outcomeKind, report, Tally } from './harness.js';

jest.setTimeout(240_000);

describe('Galera [mysql, three nodes]', () => {
  let cluster: GaleraCluster;
  let nodesUrl: string;
  const apps: Array<{ close(): Promise<void> }> = [];

  beforeAll(async () => {
    ensurePackages(['galera']);
    cluster = await startGaleraCluster({ nodes: 3 });
    nodesUrl = `mysql://root@${cluster.urls.map((u) => new URL(u).host).join(',')}/test`;
    await mysqlQuery(cluster.urls[0], 'CREATE TABLE keys_g (id bigint PRIMARY KEY)');
    await mysqlQuery(cluster.urls[0], 'CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)');
    await mysqlQuery(cluster.urls[0], 'INSERT INTO counters VALUES (1, 0), (2, 0), (3, 0)');
    await cluster.waitForSync();
  }, 240_000);

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
  });

  afterAll(() => cluster?.stop());

  async function open(url: string, extra: Record<string, unknown> = {}) {
    const app = await bootContext([DatabaseModule.forRoot({ url, pool: { max: 6 }, connectTimeoutMs: 3000, ...extra })]);
    apps.push(app);
    const db = app.get<Database>(getDatabaseToken());
    const dead: string[] = [];
    db.events.on('dead', (e) => dead.push(e.error.message));
    return { db, dead };
  }

  const portOf = async (db: Database) => Number((await db.runQuery<{ p: number }>('SELECT @@port AS p, SLEEP(0.05) AS s FROM counters LIMIT 1'))[0].p);

  it('refuses migrations through the node list (GET_LOCK is per node), naming what to do', async () => {
    const { Migrator } = await import('../../lib/migrations/migrator.js');
    const dir = mkdtempSync(join(tmpdir(), 'ndbp-galera-mig-'));
    writeFileSync(join(dir, '001_t.sql'), 'CREATE TABLE mig_g (id int PRIMARY KEY);');
    try {
      const { db } = await open(nodesUrl);
      await expect(new Migrator(db, { directory: dir }).up()).rejects.toThrow(/lists 3 nodes .*run them against one node/);
      // One node: the lock is that server's, and it works.
      const { db: one } = await open(cluster.urls[0]);
      expect((await new Migrator(one, { directory: dir }).up()).names).toEqual(['001_t']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('spreads connections over the Synced nodes', async () => {
    const { db } = await open(nodesUrl);
    const ports = await Promise.all(Array.from({ length: 6 }, () => portOf(db)));
    expect(new Set(ports).size).toBe(3);
  });

  it('a node that rejects work (1047) is "use another node": callers see no error and the database is never marked dead', async () => {
    const { db, dead } = await open(nodesUrl);
    // Connections to every node in the pool.
    await Promise.all(Array.from({ length: 6 }, () => portOf(db)));
    const rejecting = new URL(cluster.urls[0]).port;
    await mysqlQuery(cluster.urls[0], 'SET GLOBAL wsrep_reject_queries = ALL');
    try {
      const ports = await Promise.all(Array.from({ length: 30 }, () => portOf(db)));
      expect(ports).not.toContain(Number(rejecting));
      expect(dead).toEqual([]);
    } finally {
      await mysqlQuery(cluster.urls[1], 'SELECT 1'); // the cluster still answers elsewhere
      await mysqlQuery(cluster.urls[0], 'SET GLOBAL wsrep_reject_queries = NONE').catch(async () => {
        // The rejecting node refuses even this on an ordinary session: undo it as it was set.
        await mysqlQuery(cluster.urls[0], 'SET GLOBAL wsrep_reject_queries = NONE');
      });
    }
  });

  /** Transactions updating the same hot rows through two nodes at once: what certification refuses at COMMIT. */
  async function contend(retry: number | undefined, perWriter: number) {
    const a = await open(cluster.urls[0]);
    const b = await open(cluster.urls[1]);
    let attempts = 0;
    let acked = 0;
    const failures = new Map<string, number>();
    await Promise.all(
      [a.db, b.db].flatMap((db) =>
        Array.from({ length: 4 }, async () => {
          for (let i = 0; i < perWriter; i++) {
            try {
              await db.runInteraction(
                async (tx) => {
                  attempts++;
                  // Two rows per transaction: a half-applied one would leave the sum odd.
                  await tx.runOperation('UPDATE counters SET n = n + 1 WHERE id = ?', [1 + (i % 3)]);
                  await tx.runOperation('UPDATE counters SET n = n + 1 WHERE id = ?', [1 + ((i + 1) % 3)]);
                },
                retry === undefined ? {} : { retry },
              );
              acked++;
            } catch (e) {
              const key = `${(e as DatabaseError).code}`;
              failures.set(key, (failures.get(key) ?? 0) + 1);
            }
          }
        }),
      ),
    );
    return { attempts, acked, failures };
  }

  const total = async () => Number((await mysqlQuery<{ s: number }>(cluster.urls[2], 'SELECT SUM(n) AS s FROM counters'))[0].s);

  it('certification conflicts between two nodes: with retry every transaction commits; without, the caller gets the deadlock, never half a transaction', async () => {
    await cluster.waitForSync();
    const before = await total();
    const retried = await contend(50, 40);
    await cluster.waitForSync();
    const afterRetried = await total();
    expect(retried.failures.size).toBe(0);
    expect(retried.acked).toBe(8 * 40);
    expect(afterRetried - before).toBe(2 * retried.acked);

    const plain = await contend(undefined, 40);
    await cluster.waitForSync();
    const afterPlain = await total();
    // Every failure is the deadlock certification reports; every acknowledged transaction is there, whole.
    for (const code of plain.failures.keys()) expect(code).toBe('ER_LOCK_DEADLOCK');
    expect(afterPlain - afterRetried).toBe(2 * plain.acked);
    report('18-2-galera-conflicts', 'mysql', {
      writersPerNode: 4,
      transactions: 8 * 40,
      retriedConflicts: retried.attempts - retried.acked,
      withRetryAcked: retried.acked,
      withoutRetryAcked: plain.acked,
      withoutRetryDeadlocks: plain.failures.get('ER_LOCK_DEADLOCK') ?? 0,
      sumMatchesAcked: afterPlain - before === 2 * (retried.acked + plain.acked),
    });
  });

  it('a node killed under 16 writers: every acknowledged key is on the surviving nodes, none twice; writers succeed again; nothing hangs', async () => {
    const { db, dead } = await open(nodesUrl, { pool: { max: 12 }, waitForRecoveryMs: 10_000 });
    const acked = new Set<number>();
    const errors = new Tally();
    const lastOk = new Array<number>(16).fill(0);
    const writers = callers(16, async (w, i) => {
      const key = w * 1_000_000 + i;
      try {
        await db.runOperation('INSERT INTO keys_g VALUES (?)', [key], { timeoutMs: 15_000 });
        acked.add(key);
        lastOk[w] = Date.now();
      } catch (e) {
        errors.add(outcomeKind(e));
      }
    });
    await until(() => acked.size > 500, 'writes to flow', 20_000);
    const killedAt = Date.now();
    await cluster.killNode(2);
    await until(() => lastOk.every((t) => t > killedAt), 'every writer to succeed again', 60_000);
    const allBackMs = Math.max(...lastOk) - killedAt;
    const ackedThen = acked.size;
    await until(() => acked.size > ackedThen + 300, 'writes to flow on two nodes', 30_000);
    await writers.stop();
    const rows = await mysqlQuery<{ id: string }>(cluster.urls[0], 'SELECT id FROM keys_g');
    const present = new Set(rows.map((r) => Number(r.id)));
    const missing = [...acked].filter((k) => !present.has(k));
    expect(missing).toEqual([]);
    expect(rows.length).toBe(present.size);
    for (const kind of errors.counts.keys()) expect(['ConnectionDead', 'CommitOutcomeUnknown']).toContain(kind);
    report('18-1-galera-node-killed', 'mysql', {
      writers: 16,
      acknowledged: acked.size,
      acknowledgedMissing: missing.length,
      duplicates: rows.length - present.size,
      errors: errors.toString(),
      everyWriterBackAfterMs: allBackMs,
      deadEvents: dead.length,
    });
    await cluster.startNode(2);
  });
});
