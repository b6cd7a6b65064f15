/**
 * Scenario 9: poisoned release. 1,000 interactions throw at random points (before any
 * statement, after an insert, inside nested savepoints, after a server error that fails the
 * transaction, with a query left running, in the middle of a stream), and a few callers open
 * a transaction by hand on a pool connection (`BEGIN` through `runOperation`) and walk away.
 * After every one of them a pool call checks, on the server, that the connection it was
 * handed is outside any transaction.
 */
import { describeEachDialect, serverCases, uniqueTable } from '../support/databases.js';
import { useFaultsLock, openAdmin, openFaultDb, recordProcessErrors, report, waitFor, type Admin, type FaultDb } from './harness.js';
import type { Database, Transaction } from '../../lib/index.js';

const INTERACTIONS = 1000;
const WORKERS = 8;
const SEED = Number(process.env.FAULTS_SEED ?? 20240905);

/** A small seeded PRNG (mulberry32): the same throw points on every run unless FAULTS_SEED says otherwise. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Poison extends Error {}

useFaultsLock();

describeEachDialect(serverCases, 'faults: poisoned release', (c) => {
  let processErrors: ReturnType<typeof recordProcessErrors>;
  let admin: Admin;
  let f: FaultDb | undefined;
  const table = uniqueTable('f9');
  // Outside a transaction, a statement's transaction began with it (simple protocol: one message); inside a leaked one, earlier.
  const checkSql = c.dialect === 'postgres' ? 'SELECT now() = statement_timestamp() AS outside' : 'SELECT @@in_transaction = 0 AS outside';
  const begin = c.dialect === 'postgres' ? 'BEGIN' : 'START TRANSACTION';

  beforeAll(async () => {
    processErrors = recordProcessErrors();
    admin = await openAdmin(c);
    await admin.query(`CREATE TABLE ${table} (k VARCHAR(60) PRIMARY KEY, v INT NOT NULL)`);
  });
  afterAll(async () => {
    await f?.close();
    await admin.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await admin.close();
    processErrors.dispose();
    expect(processErrors.list).toEqual([]);
  });

  it('9. after 1,000 interactions that throw at random points, no session is idle in transaction and every connection handed out is outside one', async () => {
    f = await openFaultDb(c, 'poison', { pool: { max: 4 }, queryTimeoutMs: 10_000 });
    const { db } = f;
    const random = prng(SEED + (c.dialect === 'postgres' ? 0 : 1));
    const insert = `INSERT INTO ${table} (k, v) VALUES (${c.p(1)}, ${c.p(2)})`;
    const rows = c.dialect === 'postgres' ? 'SELECT generate_series(1, 50) AS n' : 'SELECT seq AS n FROM seq_1_to_50';
    const sleepSql = c.dialect === 'postgres' ? 'SELECT pg_sleep(0.005)' : 'SELECT SLEEP(0.005)';
    let keyCount = 0;
    const stats = { committed: 0, failed: 0, handBegun: 0, checks: 0, inside: 0, unexpected: [] as unknown[] };
    const actions = new Map<string, number>();
    const count = (a: string) => actions.set(a, (actions.get(a) ?? 0) + 1);

    const act = async (tx: Transaction, depth: number): Promise<void> => {
      const steps = 1 + Math.floor(random() * 4);
      for (let s = 0; s < steps; s++) {
        const r = random();
        const key = `k${++keyCount}`;
        if (r < 0.25) {
          count('insert');
          await tx.runOperation(insert, [key, depth]);
        } else if (r < 0.35) {
          count('throw');
          throw new Poison(`poison at depth ${depth}`);
        } else if (r < 0.5 && depth < 3) {
          count('savepoint');
          const inner = tx.savepoint(async (sp) => {
            await sp.runOperation(insert, [key, depth]);
            await act(sp, depth + 1);
          });
          if (random() < 0.5) await inner.catch(() => {});
          else await inner;
        } else if (r < 0.6 && depth < 3) {
          count('nested');
          // Through the async context: db.* joins the transaction, 'nested' makes a savepoint.
          const inner = db.runInteraction(
            async () => {
              await db.runOperation(insert, [key, depth]);
              if (random() < 0.5) throw new Poison('poison in nested');
            },
            { propagation: 'nested' },
          );
          if (random() < 0.5) await inner.catch(() => {});
          else await inner;
        } else if (r < 0.7) {
          count('serverError');
          // A duplicate key: on PostgreSQL the transaction is now failed (25P02 for what follows).
          await tx.runOperation(insert, ['k1', 0]).catch((e) => {
            if (random() < 0.5) throw e;
          });
        } else if (r < 0.78) {
          count('orphan');
          void tx.runQuery(sleepSql).catch(() => {});
          throw new Poison('poison with a query still running');
        } else if (r < 0.86) {
          count('stream');
          let n = 0;
          for await (const row of tx.stream(rows)) {
            void row;
            if (++n === 3) {
              if (random() < 0.5) throw new Poison('poison inside a stream');
              break;
            }
          }
        } else {
          count('query');
          await db.runQuery(`SELECT ${depth} AS d`);
        }
      }
    };

    const check = async (database: Database) => {
      const [row] = await database.runQuery<{ outside: unknown }>(checkSql, [], { prepare: false });
      stats.checks++;
      if (!(row.outside === true || Number(row.outside) === 1)) stats.inside++;
    };

    await db.runOperation(insert, ['k1', 0]); // the key the server-error step collides with
    let next = 0;
    const worker = async () => {
      for (let guard = 0; guard < INTERACTIONS && next < INTERACTIONS; guard++) {
        next++;
        if (random() < 0.05) {
          // By hand, outside runInteraction: BEGIN on a pool connection, then walk away.
          stats.handBegun++;
          await db.runOperation(begin, [], { prepare: false });
          await db.runOperation(insert, [`h${++keyCount}`, -1]).catch(() => {});
        }
        try {
          await db.runInteraction((tx) => act(tx, 0));
          stats.committed++;
        } catch (error) {
          stats.failed++;
          const e = error as { code?: string; sqlState?: string };
          const expected =
            error instanceof Poison ||
            e.sqlState === '23505' ||
            e.sqlState === '25P02' ||
            e.code === 'ER_DUP_ENTRY' ||
            e.code === 'TRANSACTION_ABORTED' ||
            e.code === 'TRANSACTION_ROLLBACK_ONLY' ||
            e.code === 'TRANSACTION_ORPHANED_QUERIES';
          if (!expected) stats.unexpected.push(error);
        }
        await check(db);
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: WORKERS }, worker));
    const ms = Date.now() - started;
    expect(await waitFor(() => db.stats().busy === 0, 5000)).toBe(true);

    // Every pool connection, held at once so each is checked.
    const max = db.stats().max;
    const holdSql =
      c.dialect === 'postgres' ? 'SELECT now() = statement_timestamp() AS outside, pg_sleep(0.2)' : 'SELECT @@in_transaction = 0 AS outside, SLEEP(0.2)';
    const all = await Promise.all(Array.from({ length: max }, () => db.runQuery<{ outside: unknown }>(holdSql, [], { prepare: false })));
    const finalInside = all.filter(([r]) => !(r.outside === true || Number(r.outside) === 1)).length;

    // And on the server: none of our sessions idles inside a transaction.
    let idleInTx: number;
    if (c.dialect === 'postgres') {
      const [r] = await admin.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        [f.appName],
      );
      idleInTx = r.n;
    } else {
      const ids = [...f.serverIds];
      const [r] = await admin.query<{ n: number }>(
        `SELECT count(*) AS n FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id IN (${ids.map(Number).join(',') || 0})`,
      );
      idleInTx = Number(r.n);
    }

    expect(stats.unexpected).toEqual([]);
    expect(stats.committed + stats.failed).toBe(INTERACTIONS);
    expect(stats.inside).toBe(0);
    expect(finalInside).toBe(0);
    expect(idleInTx).toBe(0);
    expect(stats.failed).toBeGreaterThan(100);
    expect(stats.committed).toBeGreaterThan(100);
    report('9-poisoned-release', c.dialect, {
      interactions: INTERACTIONS,
      seed: SEED,
      committed: stats.committed,
      thrown: stats.failed,
      beginByHand: stats.handBegun,
      checks: stats.checks + max,
      handedOutInsideTx: stats.inside + finalInside,
      idleInTransaction: idleInTx,
      actions: [...actions].map(([k, n]) => `${k}:${n}`).join(','),
      durationMs: ms,
    });
  }, 60_000);
});
