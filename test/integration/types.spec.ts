import { openDatabase } from '../support/app.js';
import { MYSQL_URL, PG_URL, uniqueTable } from '../support/databases.js';
import type { Database } from '../../lib/index.js';

/** The JavaScript types values come back as; documented in the README ("Types"). */
describe('type round trips [postgres]', () => {
  let db: Database;
  let close: () => Promise<void>;
  const table = uniqueTable('types');
  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: PG_URL }));
    await db.runOperation(`CREATE TABLE ${table} (ts timestamptz, amount numeric(30,10), big int8, n int4, f float8, j jsonb, b bytea, flag boolean)`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`);
    await close();
  });

  it('timestamptz ↔ Date, numeric ↔ exact string, int8 ↔ number (exact string beyond 2^53), int4/float8 ↔ number, jsonb ↔ object, bytea ↔ Buffer', async () => {
    const ts = new Date('2026-11-23T10:11:12.345Z');
    await db.runOperation(`INSERT INTO ${table} VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, [
      ts,
      '12345678901234567890.0123456789',
      9007199254740993n,
      -42,
      1.5,
      JSON.stringify({ a: [1, 'x'] }),
      Buffer.from([0, 1, 255]),
      true,
    ]);
    const [row] = await db.runQuery<Record<string, unknown>>(`SELECT * FROM ${table}`);
    expect(row.ts).toEqual(ts);
    expect(row.amount).toBe('12345678901234567890.0123456789');
    expect(row.big).toBe('9007199254740993');
    expect(row.n).toBe(-42);
    expect(row.f).toBe(1.5);
    expect(row.j).toEqual({ a: [1, 'x'] });
    expect(row.b).toEqual(Buffer.from([0, 1, 255]));
    expect(row.flag).toBe(true);
  });
});

describe('type round trips [mysql]', () => {
  let db: Database;
  let close: () => Promise<void>;
  const table = uniqueTable('types');
  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: MYSQL_URL }));
    await db.runOperation(
      `CREATE TABLE ${table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, dt DATETIME(3), amount DECIMAL(30,10), big BIGINT, n INT, f DOUBLE, b BLOB)`,
    );
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`);
    await close();
  });

  it('DATETIME ↔ Date in UTC, DECIMAL ↔ exact string, BIGINT ↔ number (exact string beyond 2^53), INT/DOUBLE ↔ number, BLOB ↔ Buffer', async () => {
    const dt = new Date('2026-11-23T10:11:12.345Z');
    const result = await db.runOperation(`INSERT INTO ${table} (dt, amount, big, n, f, b) VALUES (?, ?, ?, ?, ?, ?)`, [
      dt,
      '12345678901234567890.0123456789',
      9007199254740993n,
      -42,
      1.5,
      Buffer.from([0, 1, 255]),
    ]);
    expect(typeof result.insertId).toBe('number');
    const [row] = await db.runQuery<Record<string, unknown>>(`SELECT * FROM ${table}`);
    expect(row.dt).toEqual(dt);
    expect(row.amount).toBe('12345678901234567890.0123456789');
    expect(row.big).toBe('9007199254740993');
    expect(row.id).toBe(result.insertId); // BIGINT: a number while exact (types.int64 'number')
    expect(row.n).toBe(-42);
    expect(row.f).toBe(1.5);
    expect(row.b).toEqual(Buffer.from([0, 1, 255]));
    const [stored] = await db.runQuery<{ s: string }>(`SELECT DATE_FORMAT(dt, '%Y-%m-%d %H:%i:%s.%f') AS s FROM ${table}`);
    expect(stored.s).toBe('2026-11-23 10:11:12.345000');
  });

  it('reports insertId beyond 2^53 as an exact string', async () => {
    await db.runOperation(`ALTER TABLE ${table} AUTO_INCREMENT = 9007199254740995`);
    const result = await db.runOperation(`INSERT INTO ${table} (n) VALUES (1)`);
    expect(result.insertId).toBe('9007199254740995');
  });
});
