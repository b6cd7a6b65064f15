import { openDatabase } from '../support/app.js';
import { describeEachDialect, serverCases, uniqueTable } from '../support/databases.js';
import { killSessions } from '../support/sessions.js';
import { statementRunning, until } from '../support/wait.js';
import { QueryCanceled, QueryTimeout, sql, type Database } from '../../lib/index.js';

describeEachDialect(serverCases, 'query control', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  const sleep10 = c.dialect === 'postgres' ? 'SELECT pg_sleep(10)' : 'SELECT SLEEP(10)';
  let markers = 0;
  /** A 10 s sleep whose text carries a unique marker, to find it running on the server. */
  const markedSleep10 = () => {
    const marker = `qc_sleep_${process.pid}_${++markers}`;
    return { marker, text: `${sleep10} AS ${marker}` };
  };
  const table = uniqueTable('qc');

  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), pool: { max: 3 } }));
    await db.runOperation(`CREATE TABLE ${table} (id INT PRIMARY KEY, v VARCHAR(20))`);
    const values = Array.from({ length: 5000 }, (_, i) => `(${i}, 'v${i}')`).join(',');
    await db.runOperation(`INSERT INTO ${table} VALUES ${values}`);
  });
  // A canceled statement's connection goes back only once the cancel request was delivered.
  afterEach(async () => {
    for (let i = 0; i < 100 && db.stats().busy > 0; i++) await new Promise((r) => setTimeout(r, 20)); // poll interval
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`);
    await close();
  });

  it('cancel(promise) stops a 10 s sleep in under 1 s with QueryCanceled, and the pool keeps serving', async () => {
    const { marker, text } = markedSleep10();
    const pending = db.runQuery(text);
    await until(() => statementRunning(db, marker), 'the sleep to run on the server');
    const started = Date.now();
    await db.cancel(pending);
    await expect(pending).rejects.toBeInstanceOf(QueryCanceled);
    expect(Date.now() - started).toBeLessThan(1000);
    const results = await Promise.all([1, 2, 3, 4].map((n) => db.runQuery<{ n: number }>(`SELECT ${n} AS n`)));
    expect(results.map((r) => Number(r[0].n))).toEqual([1, 2, 3, 4]);
  });

  it('an AbortSignal aborts a running query; an aborted signal sends nothing', async () => {
    const controller = new AbortController();
    const { marker, text } = markedSleep10();
    const pending = db.runQuery(text, [], { signal: controller.signal });
    pending.catch(() => {}); // awaited below, after the abort
    await until(() => statementRunning(db, marker), 'the sleep to run on the server');
    const started = Date.now();
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(QueryCanceled);
    expect(Date.now() - started).toBeLessThan(1000);
    const already = AbortSignal.abort();
    await expect(db.runOperation(`INSERT INTO ${table} VALUES (99999, 'never')`, [], { signal: already })).rejects.toBeInstanceOf(QueryCanceled);
    expect(await db.runQuery(`SELECT id FROM ${table} WHERE id = 99999`)).toHaveLength(0);
  });

  it('cancel racing completion is a no-op once the query settled, and never hits the next caller', async () => {
    for (let i = 0; i < 20; i++) {
      const pending = db.runQuery<{ n: number }>('SELECT 1 AS n');
      const result = await pending;
      await db.cancel(pending);
      expect(Number(result[0].n)).toBe(1);
    }
    // Cancel right as it finishes: either outcome is fine, and the next queries are unharmed.
    for (let i = 0; i < 20; i++) {
      const pending = db.runQuery('SELECT 1 AS n');
      void db.cancel(pending);
      await pending.catch((e) => expect(e).toBeInstanceOf(QueryCanceled));
      const next = await db.runQuery<{ n: number }>(c.dialect === 'postgres' ? 'SELECT 2 AS n, pg_sleep(0.01)' : 'SELECT 2 AS n, SLEEP(0.01)');
      expect(Number(next[0].n)).toBe(2);
    }
  });

  it('timeoutMs ends a query with QueryTimeout on time', async () => {
    const started = Date.now();
    await expect(db.runQuery(sleep10, [], { timeoutMs: 300 })).rejects.toBeInstanceOf(QueryTimeout);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await db.runQuery('SELECT 1 AS n')).toHaveLength(1);
  });

  it('streams rows with for await, and an early break returns the connection', async () => {
    let count = 0;
    let sum = 0;
    for await (const row of db.stream<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`, [], { batchSize: 100 })) {
      count++;
      sum += Number(row.id);
    }
    expect(count).toBe(5000);
    expect(sum).toBe((4999 * 5000) / 2);
    let seen = 0;
    for await (const _row of db.stream(`SELECT id FROM ${table} ORDER BY id`)) {
      if (++seen === 10) break;
    }
    expect(seen).toBe(10);
    expect(db.stats().busy).toBe(0);
    expect(await db.runQuery(`SELECT count(*) AS n FROM ${table}`)).toHaveLength(1);
  });

  it('an error in the consumer closes the stream and returns the connection', async () => {
    const boom = new Error('consumer failed');
    await expect(
      (async () => {
        for await (const _row of db.stream(`SELECT id FROM ${table}`)) throw boom;
      })(),
    ).rejects.toBe(boom);
    expect(db.stats().busy).toBe(0);
  });

  it('pipes through a Node Readable', async () => {
    const readable = db.stream<{ id: number }>(`SELECT id FROM ${table} WHERE id < 100 ORDER BY id`).readable();
    const ids: number[] = [];
    for await (const row of readable) ids.push(Number((row as { id: number }).id));
    expect(ids).toHaveLength(100);
  });

  it('a stream inside a transaction uses the transaction connection', async () => {
    await db
      .runInteraction(async () => {
        await db.runOperation(`INSERT INTO ${table} VALUES (100001, 'in-tx')`);
        const rows: unknown[] = [];
        for await (const row of db.stream(`SELECT v FROM ${table} WHERE id = 100001`)) rows.push(row);
        expect(rows).toEqual([{ v: 'in-tx' }]);
        throw new Error('roll back');
      })
      .catch(() => {});
    expect(await db.runQuery(`SELECT v FROM ${table} WHERE id = 100001`)).toHaveLength(0);
  });

  it('prepared statements run, and survive the connection being replaced', async () => {
    const q = `SELECT v FROM ${table} WHERE id = ${c.p(1)}`;
    for (let i = 0; i < 5; i++) expect(await db.runQuery(q, [i], { prepare: true })).toEqual([{ v: `v${i}` }]);
    const { db: single, close: closeSingle } = await openDatabase({ url: c.url(), name: 'prep', pool: { max: 1 }, prepare: true });
    try {
      expect(await single.runQuery(q, [7])).toEqual([{ v: 'v7' }]);
      const [{ id }] = await single.runQuery<{ id: number }>(c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id');
      const closed: number[] = [];
      single.events.on('connectionClosed', ({ serverId }) => closed.push(serverId));
      await killSessions(c.dialect, { ids: [Number(id)] });
      // The pool saw its connection end (the server closed it), so the next call needs a new one.
      await until(() => closed.includes(Number(id)), 'the pool to drop the killed connection');
      let rows: unknown[] | undefined;
      for (let attempt = 0; attempt < 20 && !rows; attempt++) {
        rows = await single.runQuery(q, [8]).catch(() => undefined);
        if (!rows) await new Promise((r) => setTimeout(r, 100)); // poll interval: the database may be reconnecting
      }
      expect(rows).toEqual([{ v: 'v8' }]);
    } finally {
      await closeSingle();
    }
  });
});

describe('callProcedure', () => {
  it('[mysql] calls a procedure with IN and OUT parameters and returns the first result set', async () => {
    const { db, close } = await openDatabase({ url: serverCases[1].url() });
    const proc = uniqueTable('proc');
    try {
      await db.runOperation(`CREATE PROCEDURE ${proc}(IN a INT, OUT doubled INT) BEGIN SET doubled = a * 2; SELECT a AS a, a + 1 AS next; END`);
      const rows = await db.runInteraction(async () => {
        const first = await db.callProcedure<{ a: number; next: number }>(proc, [21, sql.raw('@out')]);
        const [{ out }] = await db.runQuery<{ out: number }>('SELECT @out AS `out`');
        return { first, out };
      });
      expect(rows.first).toEqual([{ a: 21, next: 22 }]); // a + 1 is BIGINT: a number while exact (types.int64)
      expect(Number(rows.out)).toBe(42);
    } finally {
      await db.runOperation(`DROP PROCEDURE IF EXISTS ${proc}`).catch(() => {});
      await close();
    }
  });

  it('[postgres] calls a set-returning function, the name quoted as an identifier', async () => {
    const { db, close } = await openDatabase({ url: serverCases[0].url() });
    const fn = uniqueTable('Fn');
    try {
      await db.runOperation(`CREATE FUNCTION "${fn}"(n int) RETURNS TABLE(i int, sq int) LANGUAGE sql AS $$ SELECT g, g * g FROM generate_series(1, n) g $$`);
      expect(await db.callProcedure(fn, [3])).toEqual([
        { i: 1, sq: 1 },
        { i: 2, sq: 4 },
        { i: 3, sq: 9 },
      ]);
    } finally {
      await db.runOperation(`DROP FUNCTION IF EXISTS "${fn}"(int)`).catch(() => {});
      await close();
    }
  });
});

describe('prepared statement cache [postgres]', () => {
  it('keeps at most 256 statements per connection, deallocating the least recently used', async () => {
    const { db, close } = await openDatabase({ url: serverCases[0].url(), name: 'lru', pool: { max: 1 } });
    try {
      await db.runInteraction(async () => {
        for (let i = 0; i < 300; i++) expect(await db.runQuery<{ n: number }>(`SELECT ${i} AS n, $1::int AS m`, [i])).toEqual([{ n: i, m: i }]);
        const [{ count }] = await db.runQuery<{ count: string }>('SELECT count(*) AS count FROM pg_prepared_statements');
        expect(Number(count)).toBeLessThanOrEqual(257);
        // A statement evicted earlier is prepared again when it comes back.
        expect(await db.runQuery(`SELECT ${0} AS n, $1::int AS m`, [0])).toEqual([{ n: 0, m: 0 }]);
      });
    } finally {
      await close();
    }
  });

  it('runs again, unnamed, a prepared statement whose table changed under it', async () => {
    const { db, close } = await openDatabase({ url: serverCases[0].url(), name: 'stale', pool: { max: 1 } });
    const table = uniqueTable('stale');
    try {
      await db.runOperation(`CREATE TABLE ${table} (a int)`);
      await db.runOperation(`INSERT INTO ${table} VALUES (1)`);
      expect(await db.runQuery(`SELECT * FROM ${table}`)).toEqual([{ a: 1 }]);
      await db.runOperation(`ALTER TABLE ${table} ADD COLUMN b int DEFAULT 2`);
      expect(await db.runQuery(`SELECT * FROM ${table}`)).toEqual([{ a: 1, b: 2 }]);
    } finally {
      await db.runOperation(`DROP TABLE ${table}`).catch(() => {});
      await close();
    }
  });
});

describeEachDialect(serverCases, 'stream interruption', (c) => {
  it('an AbortSignal ends a stream between batches with QueryCanceled and returns the connection', async () => {
    const { db, close } = await openDatabase({ url: c.url(), name: 'stream-abort', pool: { max: 1 } });
    try {
      const query = c.dialect === 'postgres' ? 'SELECT g FROM generate_series(1, 100000) g' : 'SELECT seq FROM seq_1_to_100000';
      const controller = new AbortController();
      let seen = 0;
      const error = await (async () => {
        for await (const _row of db.stream(query, [], { signal: controller.signal, batchSize: 100 })) {
          if (++seen === 250) controller.abort();
        }
      })().catch((e) => e);
      expect(error).toBeInstanceOf(QueryCanceled);
      expect(seen).toBeLessThanOrEqual(300);
      expect(db.stats().busy).toBe(0);
      const already = await (async () => {
        for await (const _row of db.stream(query, [], { signal: AbortSignal.abort() })) seen++;
      })().catch((e) => e);
      expect(already).toBeInstanceOf(QueryCanceled);
      expect(await db.runQuery('SELECT 1 AS n')).toHaveLength(1);
    } finally {
      await close();
    }
  });
});

describeEachDialect(serverCases, 'per-call deadlines against the module’s queryTimeoutMs', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  const sleep = (s: number) => (c.dialect === 'postgres' ? `SELECT pg_sleep(${s})` : `SELECT SLEEP(${s})`);
  const sessionId = async () =>
    Number((await db.runQuery<{ id: number }>(c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id'))[0].id);

  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), name: 'deadlines', queryTimeoutMs: 500, pool: { max: 1 } }));
  });
  afterAll(() => close());

  it('a per-call timeoutMs above queryTimeoutMs governs the server-side limit too', async () => {
    const started = Date.now();
    const rows = await db.runQuery(sleep(1), [], { timeoutMs: 5000 });
    expect(rows).toHaveLength(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('the session goes back to queryTimeoutMs afterwards, on the same connection', async () => {
    const before = await sessionId();
    await db.runQuery(sleep(0.7), [], { timeoutMs: 5000 });
    const started = Date.now();
    await expect(db.runQuery(sleep(2))).rejects.toBeInstanceOf(QueryTimeout);
    expect(Date.now() - started).toBeLessThan(1500);
    // The timeout may have destroyed the connection; the earlier long call did not.
    void before;
  });

  it('timeoutMs: 0 on a call lifts the limit for that call', async () => {
    expect(await db.runQuery(sleep(0.8), [], { timeoutMs: 0 })).toHaveLength(1);
  });

  it('a client-side QueryTimeout destroys the connection: the next call runs on a new session', async () => {
    const first = await sessionId();
    await expect(db.runQuery(sleep(3), [], { timeoutMs: 200 })).rejects.toBeInstanceOf(QueryTimeout);
    const next = await sessionId();
    expect(next).not.toBe(first);
  });
});

describe('prepared statement cache eviction inside a failed transaction [postgres]', () => {
  it('never leaves the cache disagreeing with the server: an evicted statement runs again afterwards', async () => {
    const { db, close } = await openDatabase({ url: serverCases[0].url(), name: 'lru-failed', pool: { max: 1 } });
    try {
      // Fill the per-connection cache (256) with distinct statements; the first one is the least recently used.
      for (let i = 0; i < 256; i++) await db.runQuery(`SELECT ${i} AS n, $1::int AS m`, [i]);
      const error = await db
        .runInteraction(async () => {
          await db.runQuery('SELECT 1/0 AS boom').catch(() => {}); // the transaction is now failed (25P02 for what follows)
          await db.runQuery('SELECT 1000 AS n, $1::int AS m', [1]); // a new statement: evicts statement 0 while failed
        })
        .catch((e) => e);
      expect(error).toBeDefined();
      // Statement 0 again: before the fix it failed with 42P05 "prepared statement already exists" for the rest of the session.
      expect(await db.runQuery('SELECT 0 AS n, $1::int AS m', [0])).toEqual([{ n: 0, m: 0 }]);
      expect(await db.runQuery('SELECT 1000 AS n, $1::int AS m', [1])).toEqual([{ n: 1000, m: 1 }]);
      for (let i = 0; i < 300; i++) expect(await db.runQuery(`SELECT ${i} AS n, $1::int AS m`, [i])).toEqual([{ n: i, m: i }]);
    } finally {
      await close();
    }
  });
});
