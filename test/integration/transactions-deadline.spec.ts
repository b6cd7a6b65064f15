import { openDatabase } from '../support/app.js';
import { allCases, describeEachDialect, uniqueTable } from '../support/databases.js';
import { InvalidParameter, QueryTimeout, type Database } from '../../lib/index.js';

describeEachDialect(allCases, 'transaction deadline and abandoned streams', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  const table = uniqueTable('dl');
  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), pool: { max: 2 } }));
    await db.runOperation(`CREATE TABLE ${table} (id INT PRIMARY KEY)`);
    await db.runOperation(`INSERT INTO ${table} VALUES (1), (2), (3)`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`);
    await close();
  });

  it('timeoutMs ends an interaction stuck outside the database, rolls back and frees the connection', async () => {
    const started = Date.now();
    const error = await db
      .runInteraction(
        async (tx) => {
          await tx.runOperation(`INSERT INTO ${table} VALUES (10)`);
          await new Promise(() => {}); // an HTTP call that never answers
        },
        { timeoutMs: 300 },
      )
      .catch((e) => e);
    expect(error).toBeInstanceOf(QueryTimeout);
    expect(Date.now() - started).toBeLessThan(1500);
    expect(db.stats().busy).toBe(0);
    expect(await db.runQuery(`SELECT id FROM ${table} WHERE id = 10`)).toHaveLength(0);
  });

  it('a stream abandoned inside an interaction is closed when it ends, and the commit goes through', async () => {
    const result = await db.runInteraction(async () => {
      await db.runOperation(`INSERT INTO ${table} VALUES (20)`);
      const iterator = db.stream<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`)[Symbol.asyncIterator]();
      const first = await iterator.next();
      return first.value;
    });
    expect(Number(result?.id)).toBe(1);
    expect(db.stats().busy).toBe(0);
    expect(await db.runQuery(`SELECT id FROM ${table} WHERE id = 20`)).toHaveLength(1);
  });

  it('refuses params that are not an array with InvalidParameter', async () => {
    await expect(db.runQuery('SELECT 1', 'x' as unknown as unknown[])).rejects.toBeInstanceOf(InvalidParameter);
  });
});
