/**
 * Background work never runs in the transaction of the call that happened to start it: the
 * listener (started by the first `listen()`), the reconnect loop and its recovery handlers and
 * `recovered` listeners (started by a statement that found the database gone), pool
 * housekeeping such as the leak timer (started when a connection is lent), and the health probe.
 * Each entry point is started from inside a transaction here; the transaction then ends, and
 * the background work must still be able to query.
 */
import { DatabaseHealthIndicator } from '../../lib/health/index.js';
import type { Database } from '../../lib/index.js';
import { bootContext, openDatabase } from '../support/app.js';
import { barrier } from '../support/barrier.js';
import { PG_URL, allCases, describeEachDialect, serverCases } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { DatabaseModule, getDatabaseToken } from '../../lib/index.js';

/** Resolves with the first value `probe` returns that is not undefined, polling every `everyMs`; bounded. */
async function eventually<T>(probe: () => T | undefined, timeoutMs: number, everyMs = 10): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000; i++) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`nothing within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs)); // poll interval
  }
  throw new Error('unreachable');
}

describe('background work started inside a transaction [postgres]', () => {
  it('the listener: notifications reach observers outside any transaction, and their queries work', async () => {
    const { db, close } = await openDatabase({ url: PG_URL, name: 'bg-listen' });
    try {
      const results: unknown[] = [];
      let unlisten!: () => Promise<void>;
      await db.runInteraction(async () => {
        unlisten = await db.listen('bg_channel', async (n) => {
          results.push(db.currentTransaction() === undefined ? 'no transaction' : 'in a transaction');
          results.push(await db.runQuery<{ p: string }>('SELECT $1::text AS p', [n.payload]).catch((e: Error) => e.message));
        });
      });
      await db.notify('bg_channel', 'first');
      await db.notify('bg_channel', 'second');
      await eventually(() => (results.length >= 4 ? true : undefined), 5000);
      expect(results).toEqual(['no transaction', [{ p: 'first' }], 'no transaction', [{ p: 'second' }]]);
      await unlisten();
    } finally {
      await close();
    }
  });
});

describeEachDialect(serverCases, 'background work started inside a transaction', (c) => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await FaultProxy.start(c.dialect === 'postgres' ? 5432 : 3306);
  });
  afterAll(async () => {
    await proxy.close();
  });

  it('the reconnect loop: recovery handlers and `recovered` listeners run outside the transaction, and can query', async () => {
    const { db, close } = await openDatabase({
      url: proxy.url(c.url()),
      name: 'bg-reconnect',
      pool: { max: 2 },
      connectTimeoutMs: 2000,
      reconnect: { maxDelayMs: 200 },
    });
    try {
      await db.runQuery('SELECT 1 AS one');
      const seen: unknown[] = [];
      db.detector.onRecovery(() => {
        seen.push(db.currentTransaction() === undefined ? 'handler: no transaction' : 'handler: in a transaction');
      });
      let recoveredQuery: Promise<unknown> | undefined;
      db.events.on('recovered', () => {
        recoveredQuery = db.runQuery('SELECT 2 AS two').catch((e: Error) => e.message);
      });
      await db
        .runInteraction(async () => {
          await db.runQuery('SELECT 1 AS one');
          await proxy.setMode('refuse');
          proxy.resetAll();
          await db.runQuery('SELECT 1 AS one').catch(() => {});
        })
        .catch(() => {});
      await eventually(() => (db.detector.isDead ? true : undefined), 5000);
      await proxy.setMode('pass');
      await eventually(() => recoveredQuery, 10_000);
      expect(await recoveredQuery).toEqual([{ two: 2 }]);
      expect(seen).toEqual(['handler: no transaction']);
    } finally {
      await proxy.setMode('pass');
      await close();
    }
  });
});

describeEachDialect(allCases, 'pool housekeeping started inside a transaction', (c) => {
  it('the leak timer of a connection lent inside a transaction fires outside it: its listener can query after that transaction ended', async () => {
    const { db, close } = await openDatabase({ url: c.url(), name: 'bg-leak', pool: { max: 3, leakDetectionMs: 100 } });
    try {
      let fromLeakListener: Promise<unknown> | undefined;
      // The inner transaction holds its connection until the leak timer fired (bounded: 10 s).
      const leaked = barrier(2, 10_000);
      db.events.on('leak', () => {
        void leaked.wait();
        fromLeakListener ??= db.runQuery('SELECT 3 AS three').catch((e: Error) => e.message);
      });
      let innerDone!: Promise<unknown>;
      await db.runInteraction(async () => {
        // Not awaited: the outer transaction ends while the inner one, on its own connection, still holds it.
        innerDone = db.runInteraction(() => leaked.wait(), { propagation: 'requiresNew' });
      });
      await eventually(() => fromLeakListener, 5000);
      expect(await fromLeakListener).toEqual([{ three: 3 }]);
      await innerDone;
    } finally {
      await close();
    }
  });

  it('a health probe started inside a transaction does not tie its connection to it', async () => {
    const app = await bootContext([DatabaseModule.forRoot({ url: c.url(), name: 'bg-probe' })]);
    const db = app.get<Database>(getDatabaseToken('bg-probe'));
    const health = app.get(DatabaseHealthIndicator);
    try {
      const inside = await db.runInteraction(() => health.pingCheck('db', { connection: 'bg-probe' }));
      expect(inside.db.status).toBe('up');
      const after = await health.pingCheck('db', { connection: 'bg-probe' });
      expect(after.db.status).toBe('up');
      expect(await db.runQuery('SELECT 4 AS four')).toEqual([{ four: 4 }]);
    } finally {
      await app.close();
    }
  });
});
