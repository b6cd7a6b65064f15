/**
 * Transactions used the way careless and hostile code uses them: concurrent nested scopes,
 * statements while a stream is open, DDL inside an interaction, waits for a connection the
 * caller itself holds, cancel of a whole interaction, readOnly on SQLite. Each case either
 * works without losing acknowledged work or fails at once with a clear error; none hangs.
 */
import { AcquireTimeout, QueryCanceled, TransactionError, sql, type Database } from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { barrier } from '../support/barrier.js';
import { allCases, describeEachDialect, uniqueTable, type DialectCase } from '../support/databases.js';
import { statementRunning, until, watchChildCpu } from '../support/wait.js';

/** Settles `promise` or reports that it did not within `ms` (a hang is a failure, never a stuck test). */
async function within<T>(promise: Promise<T>, ms: number): Promise<{ value?: T; error?: unknown; hung?: true }> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<{ hung: true }>((resolve) => (timer = setTimeout(() => resolve({ hung: true }), ms)));
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      hung,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A statement that runs for about `seconds` on each dialect; on the servers its text carries `marker`. */
function slowStatement(c: DialectCase, seconds: number, marker = 'slow'): string {
  if (c.dialect === 'postgres') return `SELECT pg_sleep(${seconds}) AS ${marker}`;
  if (c.dialect === 'mysql') return `SELECT SLEEP(${seconds}) AS ${marker}`;
  return `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${Math.round(seconds * 6_000_000)}) SELECT count(*) AS n FROM c`;
}

describeEachDialect(allCases, 'transactions under hostile use', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  const table = uniqueTable('hostile');
  const tags = async (): Promise<string[]> =>
    (await db.runQuery<{ tag: string }>(sql`SELECT tag FROM ${sql.identifier(table)} ORDER BY tag`)).map((r) => r.tag);
  const insert = (tag: string) => db.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${tag})`);

  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), pool: { max: 3, acquireTimeoutMs: 10_000 } }));
    await db.runOperation(`CREATE TABLE ${table} (tag VARCHAR(40) NOT NULL)`);
  });
  beforeEach(async () => {
    await db.runOperation(`DELETE FROM ${table}`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`).catch(() => {});
    await close();
  });

  describe('concurrent nested scopes in one transaction', () => {
    it("keep b's acknowledged work when a, started first, fails after b resolved (nested propagation)", async () => {
      let bResolved!: () => void;
      const bDone = new Promise<void>((resolve) => (bResolved = resolve));
      const outcome = await within(
        db.runInteraction(async () => {
          const a = db.runInteraction(
            async () => {
              await insert('a');
              // Give b every chance to run inside a's savepoint (which is what lost its row before): b
              // waits for a's scope to end, so normally bDone never comes first and this is a fair
              // 300 ms window for a b that wrongly got in (a negative check, not a wait for b).
              await Promise.race([bDone, new Promise((resolve) => setTimeout(resolve, 300))]);
              throw new Error('a failed');
            },
            { propagation: 'nested' },
          );
          const b = db.runInteraction(() => insert('b'), { propagation: 'nested' }).then(() => bResolved());
          const [ra, rb] = await Promise.allSettled([a, b]);
          expect(ra.status).toBe('rejected');
          expect(rb.status).toBe('fulfilled');
        }),
        10_000,
      );
      expect(outcome.hung).toBeUndefined();
      expect(outcome.error).toBeUndefined();
      expect(await tags()).toEqual(['b']);
    });

    it("keep b's work with tx.savepoint() too, and run nested scopes of a nested scope one at a time", async () => {
      await db.runInteraction(async (tx) => {
        const results = await Promise.allSettled([
          tx.savepoint(async () => {
            await insert('a1');
            await Promise.all([
              tx
                .savepoint(async () => {
                  await insert('a2');
                  throw new Error('a2 failed');
                })
                .catch(() => 'a2 rolled back'),
              tx.savepoint(() => insert('a3')),
            ]);
            // A negative check: 50 ms for b (issued before a's body ran) to wrongly get into a's savepoint.
            await new Promise((resolve) => setTimeout(resolve, 50));
            throw new Error('a failed');
          }),
          tx.savepoint(() => insert('b')),
        ]);
        expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
      });
      expect(await tags()).toEqual(['b']);
    });

    it('keep an outer statement issued while a nested scope is open out of that scope, so its failure cannot undo it', async () => {
      // a's scope stays open until the outer statement was issued (bounded: 10 s).
      const outerIssued = barrier(2, 10_000);
      await db.runInteraction(async () => {
        const [a, outer] = await Promise.allSettled([
          db.runInteraction(
            async () => {
              await insert('a');
              await outerIssued.wait();
              // A negative check: 100 ms for the outer statement to wrongly run inside a's scope.
              await new Promise((resolve) => setTimeout(resolve, 100));
              throw new Error('a failed');
            },
            { propagation: 'nested' },
          ),
          (async () => {
            await new Promise((resolve) => setImmediate(resolve));
            const statement = insert('outer');
            void outerIssued.wait();
            await statement;
          })(),
        ]);
        expect(a.status).toBe('rejected');
        expect(outer.status).toBe('fulfilled');
      });
      expect(await tags()).toEqual(['outer']);
    });
  });

  it('refuses at once a statement issued inside `for await` over a stream of the same transaction', async () => {
    await insert('s1');
    await insert('s2');
    const outcome = await within(
      db.runInteraction(async () => {
        for await (const row of db.stream(sql`SELECT tag FROM ${sql.identifier(table)}`)) {
          void row;
          await db.runQuery('SELECT 1 AS one');
        }
      }),
      5000,
    );
    expect(outcome.hung).toBeUndefined();
    expect(outcome.error).toBeInstanceOf(TransactionError);
    expect(outcome.error).toMatchObject({ code: 'STREAM_OPEN' });
    expect((outcome.error as Error).message).toMatch(/stream/);
    // After the stream, the transaction's connection serves statements again.
    await db.runInteraction(async () => {
      const rows = [];
      for await (const row of db.stream(sql`SELECT tag FROM ${sql.identifier(table)}`)) rows.push(row);
      expect(rows).toHaveLength(2);
      expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    });
  });

  describe('a statement that ends the transaction on the server', () => {
    const ddl = uniqueTable('ddl');
    afterAll(async () => {
      await db.runOperation(`DROP TABLE IF EXISTS ${ddl}`).catch(() => {});
    });

    if (c.dialect === 'mysql') {
      it('DDL: fails at that statement with IMPLICIT_COMMIT, says the work so far is committed, refuses what follows', async () => {
        let caught: unknown;
        let after: unknown;
        const error = await db
          .runInteraction(async () => {
            await insert('before-ddl');
            await db.runOperation(`CREATE TABLE ${ddl} (a INT)`).catch((e) => (caught = e));
            await insert('after-ddl').catch((e) => (after = e));
            throw new Error('the interaction fails afterwards');
          })
          .catch((e) => e);
        expect(caught).toBeInstanceOf(TransactionError);
        expect(caught).toMatchObject({ code: 'IMPLICIT_COMMIT' });
        expect((caught as Error).message).toMatch(/COMMITTED/);
        expect(after).toMatchObject({ code: 'IMPLICIT_COMMIT' });
        // The caller is told the truth: not "rolled back", but that the work was committed.
        expect(error).toBeInstanceOf(TransactionError);
        expect(error).toMatchObject({ code: 'IMPLICIT_COMMIT' });
        expect(await tags()).toEqual(['before-ddl']);
      });

      it('a raw START TRANSACTION outside an interaction does not follow the connection to the next caller', async () => {
        const { db: one, close: closeOne } = await openDatabase({ url: c.url(), name: 'one', pool: { max: 1 } });
        try {
          await one.runQuery('START TRANSACTION');
          const [{ open }] = await one.runQuery<{ open: number }>('SELECT @@in_transaction AS open');
          expect(Number(open)).toBe(0);
        } finally {
          await closeOne();
        }
      });
    }

    it('a COMMIT sent as a statement inside an interaction fails with IMPLICIT_COMMIT instead of being reported as a rollback', async () => {
      const error = await db
        .runInteraction(async () => {
          await insert('committed-by-hand');
          await db.runOperation('COMMIT');
          throw new Error('later failure');
        })
        .catch((e) => e);
      expect(error).toMatchObject({ code: 'IMPLICIT_COMMIT' });
      expect(await tags()).toEqual(['committed-by-hand']);
    });
  });

  describe('waiting for a connection the caller itself holds', () => {
    let one: Database;
    let closeOne: () => Promise<void>;
    beforeAll(async () => {
      ({ db: one, close: closeOne } = await openDatabase({ url: c.dialect === 'sqlite' ? 'sqlite::memory:' : c.url(), name: 'single', pool: { max: 1 } }));
    });
    afterAll(() => closeOne());

    it('requiresNew inside a transaction on a pool of one fails at once, saying why', async () => {
      const started = Date.now();
      const outcome = await within(
        one.runInteraction(() => one.runInteraction(() => one.runQuery('SELECT 1 AS one'), { propagation: 'requiresNew' })),
        5000,
      );
      expect(outcome.hung).toBeUndefined();
      expect(outcome.error).toBeInstanceOf(AcquireTimeout);
      expect(outcome.error).toMatchObject({ code: 'SELF_DEADLOCK' });
      expect(Date.now() - started).toBeLessThan(2000);
      expect((outcome.error as Error).message).toMatch(/holds all 1 of them.*raise pool.max \(now 1\)/);
    });

    it('notSupported inside a transaction on a pool of one fails at once too', async () => {
      const outcome = await within(
        one.runInteraction(() => one.runInteraction(() => one.runQuery('SELECT 1 AS one'), { propagation: 'notSupported' })),
        5000,
      );
      expect(outcome.error).toMatchObject({ code: 'SELF_DEADLOCK' });
    });

    it('a query inside `for await` over a stream holding the only connection fails at once', async () => {
      const outcome = await within(
        (async () => {
          for await (const row of one.stream('SELECT 1 AS one')) {
            void row;
            await one.runQuery('SELECT 2 AS two');
          }
        })(),
        5000,
      );
      expect(outcome.hung).toBeUndefined();
      expect(outcome.error).toMatchObject({ code: 'SELF_DEADLOCK' });
      // The stream gave its connection back: the pool serves again.
      expect(await one.runQuery('SELECT 3 AS three')).toEqual([{ three: 3 }]);
    });

    it('another caller still waits for the connection a stream holds, and gets it when the stream ends', async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let reading!: () => void;
      const started = new Promise<void>((resolve) => (reading = resolve));
      const streaming = (async () => {
        await null; // its own async context from here on, as another request's handler would have
        for await (const row of one.stream('SELECT 1 AS one')) {
          void row;
          reading();
          await gate;
        }
      })();
      await started;
      // A separate caller (its own async context): not a self-deadlock, it simply waits.
      const waiting = new Promise<unknown>((resolve) => setImmediate(() => resolve(one.runQuery('SELECT 2 AS two'))));
      const early = await within(waiting, 200);
      expect(early.hung).toBe(true);
      release();
      await streaming;
      expect(await waiting).toEqual([{ two: 2 }]);
    });
  });

  it('Database.cancel() of a runInteraction promise cancels the running statement, rolls back, and rejects with QueryCanceled', async () => {
    let statementStarted!: () => void;
    const started = new Promise<void>((resolve) => (statementStarted = resolve));
    const marker = `hostile_cancel_${process.pid}_${Date.now()}`;
    // SQLite has no list of running statements: its connection process burning CPU shows it runs.
    let children: ReturnType<typeof watchChildCpu> | undefined;
    const pending = db.runInteraction(async () => {
      await insert('canceled');
      if (c.dialect === 'sqlite') children = watchChildCpu();
      const slow = db.runQuery(slowStatement(c, 5, marker));
      statementStarted();
      await slow;
    });
    await started;
    // Running, not merely asked for (on SQLite: 400 ms of CPU, far more than a starting process uses).
    await until(() => (c.dialect === 'sqlite' ? children!.busy(40) : statementRunning(db, marker)), 'the slow statement to run');
    const began = Date.now();
    await db.cancel(pending);
    const outcome = await within(pending, 4000);
    expect(outcome.hung).toBeUndefined();
    expect(outcome.error).toBeInstanceOf(QueryCanceled);
    expect(Date.now() - began).toBeLessThan(3000);
    expect(await tags()).toEqual([]);
    expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });

  it('Database.cancel() of an interaction that joined an outer transaction is refused with a clear error', async () => {
    await db.runInteraction(async () => {
      const inner = db.runInteraction(() => db.runQuery('SELECT 1 AS one'));
      await expect(db.cancel(inner)).rejects.toMatchObject({ code: 'CANCEL_NOT_SUPPORTED' });
      await inner;
    });
  });

  it('readOnly: true refuses writes (and the connection writes again afterwards)', async () => {
    const error = await db.runInteraction(() => insert('read-only'), { readOnly: true }).catch((e) => e);
    expect(error).toBeDefined();
    expect(error.message).toMatch(/read-only|readonly|READ ONLY/i);
    await Promise.all([insert('w1'), insert('w2'), insert('w3')]);
    expect(await tags()).toEqual(['w1', 'w2', 'w3']);
  });
});
