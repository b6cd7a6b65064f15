import { until } from '../support/wait.js';
import { allCases, describeEachDialect, mysqlCase, uniqueTable } from '../support/databases.js';
import { openDatabase } from '../support/app.js';
import { AcquireTimeout, DatabaseError, sql, type Database } from '../../lib/index.js';

describeEachDialect(allCases, 'runQuery / runOperation / runInteraction', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  let other: Database;
  let closeOther: () => Promise<void>;
  const table = uniqueTable('users');
  const p = c.p;

  beforeAll(async () => {
    const url = c.url();
    ({ db, close } = await openDatabase({ url, pool: { max: 4 } }));
    ({ db: other, close: closeOther } = await openDatabase({ url, name: 'other' }));
    await db.runOperation(`CREATE TABLE ${table} (id ${c.serial}, login VARCHAR(64) NOT NULL UNIQUE, name VARCHAR(64))`);
  });

  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`).catch(() => {});
    await close();
    await closeOther();
  });

  it('returns rows as objects, or as arrays with rowMode array', async () => {
    await db.runOperation(`INSERT INTO ${table} (login, name) VALUES (${p(1)}, ${p(2)})`, ['alice', 'Alice']);
    const rows = await db.runQuery<{ login: string; name: string }>(`SELECT login, name FROM ${table} WHERE login = ${p(1)}`, ['alice']);
    expect(rows).toEqual([{ login: 'alice', name: 'Alice' }]);
    const arrays = await db.runQuery(`SELECT login, name FROM ${table} WHERE login = ${p(1)}`, ['alice'], { rowMode: 'array' });
    expect(arrays).toEqual([['alice', 'Alice']]);
  });

  it('reports insertId and affectedRows exactly', async () => {
    const first = await db.runOperation(`INSERT INTO ${table} (login, name) VALUES (${p(1)}, ${p(2)})`, ['op1', 'x']);
    expect(first.affectedRows).toBe(1);
    if (c.dialect !== 'postgres') {
      const [{ id }] = await db.runQuery<{ id: number }>(`SELECT id FROM ${table} WHERE login = ${p(1)}`, ['op1']);
      expect(first.insertId).toBe(Number(id));
      const second = await db.runOperation(`INSERT INTO ${table} (login, name) VALUES (${p(1)}, ${p(2)})`, ['op2', 'x']);
      expect(second.insertId).toBe(Number(id) + 1);
    } else {
      expect(first.command).toBe('INSERT');
    }
    const updated = await db.runOperation(`UPDATE ${table} SET name = ${p(1)} WHERE login LIKE ${p(2)}`, ['y', 'op%']);
    expect(updated.affectedRows).toBe(c.dialect === 'postgres' ? 1 : 2);
    const none = await db.runOperation(`DELETE FROM ${table} WHERE login = ${p(1)}`, ['nobody']);
    expect(none.affectedRows).toBe(0);
    if (c.dialect === 'mysql') {
      expect(updated.message).toMatch(/Rows matched: 2/);
      expect(typeof updated.warningCount).toBe('number');
      expect(typeof updated.serverStatus).toBe('number');
    }
  });

  it('compiles the sql template to the dialect placeholders, with identifiers and join', async () => {
    const logins = ['alice', 'op1'];
    const rows = await db.runQuery<{ login: string }>(
      sql`SELECT ${sql.identifier('login')} FROM ${sql.identifier(table)} WHERE login IN (${sql.join(logins.map((l) => sql`${l}`))}) ORDER BY login ${sql.raw('ASC')}`,
    );
    expect(rows.map((r) => r.login)).toEqual(['alice', 'op1']);
  });

  it('commits an interaction that resolves', async () => {
    const result = await db.runInteraction(async (tx) => {
      await tx.runOperation(`INSERT INTO ${table} (login, name) VALUES (${p(1)}, ${p(2)})`, ['tx-commit', 'x']);
      return 42;
    });
    expect(result).toBe(42);
    expect(await other.runQuery(`SELECT login FROM ${table} WHERE login = ${p(1)}`, ['tx-commit'])).toHaveLength(1);
  });

  it('rolls back an interaction that rejects, with the original error, leaving no row visible to another connection', async () => {
    const boom = new Error('boom');
    await expect(
      db.runInteraction(async (tx) => {
        await tx.runOperation(`INSERT INTO ${table} (login, name) VALUES (${p(1)}, ${p(2)})`, ['tx-rollback', 'x']);
        // Through the Database, not tx: the context routes it to the same transaction.
        const inside = await db.runQuery(`SELECT login FROM ${table} WHERE login = ${p(1)}`, ['tx-rollback']);
        expect(inside).toHaveLength(1);
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(await other.runQuery(`SELECT login FROM ${table} WHERE login = ${p(1)}`, ['tx-rollback'])).toHaveLength(0);
    expect(await db.runQuery(`SELECT login FROM ${table} WHERE login = ${p(1)}`, ['tx-rollback'])).toHaveLength(0);
  });

  it('gives a DatabaseError with the query text and the server codes for a syntax error, without the parameter values', async () => {
    const secret = 'parameter-value-7731';
    const error = await db.runQuery(`SELEC name FROM ${table} WHERE login = ${p(1)}`, [secret]).catch((e) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error.query).toBe(`SELEC name FROM ${table} WHERE login = ${p(1)}`);
    expect(error.dialect).toBe(c.dialect);
    if (c.dialect === 'postgres') expect(error.sqlState).toBe('42601');
    if (c.dialect === 'mysql') expect(error.errno).toBe(1064);
    if (c.dialect === 'sqlite') expect(error.code).toMatch(/^SQLITE_ERROR/);
    expect(JSON.stringify(error)).not.toContain(secret);
    expect(error.message).not.toContain(secret);
    expect(String(error.stack)).not.toContain(secret);
  });

  it('keeps the unique-violation codes of the server', async () => {
    const error = await db.runOperation(`INSERT INTO ${table} (login, name) VALUES (${p(1)}, ${p(2)})`, ['alice', 'dup']).catch((e) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    if (c.dialect === 'postgres') expect(error.sqlState).toBe('23505');
    if (c.dialect === 'mysql') expect(error.code).toBe('ER_DUP_ENTRY');
    if (c.dialect === 'sqlite') expect(error.code).toBe('SQLITE_CONSTRAINT_UNIQUE');
  });

  it('serves 200 concurrent queries on a pool of max 4', async () => {
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => db.runQuery<{ n: number }>(`SELECT ${p(1)} AS n`, [i], { rowMode: 'object' })));
    expect(results.map((r) => Number(r[0].n))).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const stats = db.stats();
    expect(stats.max).toBe(c.dialect === 'sqlite' ? stats.max : 4);
    expect(stats.total).toBeLessThanOrEqual(4);
    expect(stats.busy).toBe(0);
    expect(stats.waiting).toBe(0);
  });

  it('pings and reports stats', async () => {
    const ms = await db.ping();
    expect(ms).toBeGreaterThanOrEqual(0);
    expect(Object.keys(db.stats()).sort()).toEqual(['busy', 'idle', 'max', 'total', 'waiting']);
  });

  it('rejects with AcquireTimeout naming the database and pool size when every connection is held', async () => {
    const { db: small, close: closeSmall } = await openDatabase({ url: c.url(), name: 'small', pool: { max: 1, min: 1, acquireTimeoutMs: 400 } });
    try {
      // Opened before the clock matters: on a busy machine, starting an SQLite process alone can take longer than 400 ms.
      await until(() => small.stats().idle === 1, 'the one connection open and idle', 20_000);
      let release!: () => void;
      let holding!: () => void;
      const started = new Promise<void>((resolve) => (holding = resolve));
      const held = small.runInteraction(
        () =>
          new Promise<void>((resolve) => {
            release = resolve;
            holding();
          }),
      );
      await Promise.race([started, held]); // the interaction holds the only connection from here on
      const askedAt = Date.now();
      const error = await small.runQuery('SELECT 1').catch((e) => e);
      expect(error).toBeInstanceOf(AcquireTimeout);
      expect(error.message).toContain('"small"');
      expect(error.message).toContain('pool.max = 1');
      expect(Date.now() - askedAt).toBeGreaterThanOrEqual(390);
      release();
      await held;
      expect(await small.runQuery('SELECT 1 AS one')).toHaveLength(1);
    } finally {
      await closeSmall();
    }
  });
});

describeEachDialect([mysqlCase], 'driverOptions cannot change the shape of rows', (c) => {
  it('rowsAsArray in driverOptions leaves rows as objects, for queries and streams alike', async () => {
    const { db, close } = await openDatabase({ url: c.url(), driverOptions: { rowsAsArray: true } });
    try {
      expect(await db.runQuery('SELECT 1 AS n')).toEqual([{ n: 1 }]);
      const streamed: unknown[] = [];
      for await (const row of db.stream('SELECT 2 AS n')) streamed.push(row);
      expect(streamed).toEqual([{ n: 2 }]);
      expect(await db.runQuery('SELECT 3 AS n', [], { rowMode: 'array' })).toEqual([[3]]);
    } finally {
      await close();
    }
  });
});
