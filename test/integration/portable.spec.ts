/**
 * One repository, three dialects: the same statement gives the same errors, the same list
 * semantics, the same types and the same write counts on PostgreSQL, MariaDB and SQLite. Each
 * row of the README's Types table is a test here.
 */
import {
  CheckViolation,
  DatabaseError,
  ForeignKeyViolation,
  InvalidParameter,
  NotNullViolation,
  UniqueViolation,
  sql,
  type Database,
} from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { allCases, describeEachDialect, uniqueTable, type DialectCase } from '../support/databases.js';
import { syntaxOf } from '../../lib/drivers/registry.js';

const id = (c: DialectCase) =>
  c.dialect === 'mysql' ? 'INT AUTO_INCREMENT PRIMARY KEY' : c.dialect === 'postgres' ? 'SERIAL PRIMARY KEY' : 'INTEGER PRIMARY KEY AUTOINCREMENT';

describeEachDialect(allCases, 'portable errors', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  const parent = uniqueTable('parent');
  const child = uniqueTable('child');
  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), name: 'errors' }));
    await db.runOperation(`CREATE TABLE ${parent} (id INT PRIMARY KEY)`);
    await db.runOperation(
      `CREATE TABLE ${child} (id INT PRIMARY KEY, parent_id INT, name VARCHAR(20) NOT NULL, qty INT, code VARCHAR(20),` +
        ` CONSTRAINT ${child}_code UNIQUE (code), CONSTRAINT ${child}_qty CHECK (qty > 0),` +
        ` CONSTRAINT ${child}_parent FOREIGN KEY (parent_id) REFERENCES ${parent} (id))`,
    );
    await db.runOperation(`INSERT INTO ${parent} (id) VALUES (1)`);
    await db.runOperation(`INSERT INTO ${child} (id, parent_id, name, qty, code) VALUES (1, 1, 'a', 1, 'taken')`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${child}`).catch(() => {});
    await db.runOperation(`DROP TABLE ${parent}`).catch(() => {});
    await close();
  });
  const insert = (values: Record<string, unknown>) =>
    db.runOperation(
      sql`INSERT INTO ${sql.identifier(child)} (id, parent_id, name, qty, code) VALUES (${values.id}, ${values.parent_id ?? null}, ${values.name === undefined ? 'n' : values.name}, ${values.qty ?? 1}, ${values.code ?? null})`,
    );

  it('a taken unique value is a UniqueViolation, keeping the native code, naming the constraint where the server does', async () => {
    const error = await insert({ id: 2, code: 'taken' }).catch((e) => e);
    expect(error).toBeInstanceOf(UniqueViolation);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error.code).toBe({ postgres: '23505', mysql: 'ER_DUP_ENTRY', sqlite: 'SQLITE_CONSTRAINT_UNIQUE' }[c.dialect]);
    if (c.dialect === 'sqlite') expect(error).toMatchObject({ table: child, column: 'code' });
    else expect(error.constraint).toBe(`${child}_code`);
    if (c.dialect === 'postgres') expect(error.table).toBe(child);
    expect(JSON.stringify(error)).toContain('"constraint"' in error ? (error.constraint ?? '') : '');
  });

  it('a duplicate primary key is a UniqueViolation too', async () => {
    expect(await insert({ id: 1 }).catch((e) => e)).toBeInstanceOf(UniqueViolation);
  });

  it('a missing parent row is a ForeignKeyViolation', async () => {
    const error = await insert({ id: 3, parent_id: 99 }).catch((e) => e);
    expect(error).toBeInstanceOf(ForeignKeyViolation);
    if (c.dialect !== 'sqlite') expect(error).toMatchObject({ constraint: `${child}_parent`, table: child });
    const deleting = await db.runOperation(`DELETE FROM ${parent} WHERE id = 1`).catch((e) => e);
    expect(deleting).toBeInstanceOf(ForeignKeyViolation);
  });

  it('NULL into a NOT NULL column is a NotNullViolation naming the column', async () => {
    const error = await insert({ id: 4, name: null }).catch((e) => e);
    expect(error).toBeInstanceOf(NotNullViolation);
    expect(error.column).toBe('name');
  });

  it('a CHECK that says no is a CheckViolation naming the constraint', async () => {
    const error = await insert({ id: 5, qty: -1 }).catch((e) => e);
    expect(error).toBeInstanceOf(CheckViolation);
    expect(error.constraint).toBe(`${child}_qty`);
  });
});

describeEachDialect(allCases, 'lists: sql.in()', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  const t = uniqueTable('list');
  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), name: 'lists' }));
    await db.runOperation(`CREATE TABLE ${t} (id INT PRIMARY KEY, name VARCHAR(10))`);
    await db.runOperation(`INSERT INTO ${t} (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, NULL)`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${t}`).catch(() => {});
    await close();
  });
  const ids = async (where: ReturnType<typeof sql>) =>
    (await db.runQuery<{ id: number }>(sql`SELECT id FROM ${sql.identifier(t)} WHERE ${where} ORDER BY id`)).map((r) => Number(r.id));

  it('one placeholder per element, written with or without the parentheses', async () => {
    expect(await ids(sql`id IN ${sql.in([1, 3])}`)).toEqual([1, 3]);
    expect(await ids(sql`id IN (${sql.in([2, 3])})`)).toEqual([2, 3]);
    expect(await ids(sql`name NOT IN ${sql.in(['a'])}`)).toEqual([2, 3]);
    expect(sql`x IN ${sql.in([1, 2, 3])}`.compile(syntaxOf(c.dialect)).values).toEqual([1, 2, 3]);
  });

  it('an empty list matches nothing after IN, and everything after NOT IN (NULLs included)', async () => {
    expect(await ids(sql`id IN ${sql.in([])}`)).toEqual([]);
    expect(await ids(sql`name IN (${sql.in([])})`)).toEqual([]);
    expect(await ids(sql`id NOT IN ${sql.in([])}`)).toEqual([1, 2, 3, 4]);
    expect(await ids(sql`name NOT IN (${sql.in([])})`)).toEqual([1, 2, 3, 4]);
  });

  it('a plain array after IN ( is refused, pointing to sql.in', async () => {
    await expect(db.runQuery(sql`SELECT id FROM ${sql.identifier(t)} WHERE id IN (${[1, 2]})`)).rejects.toThrow(/sql\.in/);
    await expect(db.runQuery(sql`SELECT id FROM ${sql.identifier(t)} WHERE id IN (${[1, 2]})`)).rejects.toBeInstanceOf(InvalidParameter);
    const placeholder = c.dialect === 'postgres' ? '$1' : '?';
    await expect(db.runQuery(`SELECT id FROM ${t} WHERE id IN (${placeholder})`, [[1, 2]])).rejects.toBeInstanceOf(InvalidParameter);
  });

  it('sql.in() anywhere but after IN is refused', () => {
    expect(() => sql`SELECT ${sql.in([1])}`.compile(syntaxOf(c.dialect))).toThrow(/after IN or NOT IN/);
  });

  if (c.dialect === 'postgres') {
    it('an array stays an array where PostgreSQL means one: = ANY(${array})', async () => {
      expect(await ids(sql`id = ANY(${[2, 4]})`)).toEqual([2, 4]);
    });
  }

  it('options may come second after a template: runQuery(sql`…`, { rowMode })', async () => {
    expect(await db.runQuery(sql`SELECT id FROM ${sql.identifier(t)} WHERE id = ${1}`, { rowMode: 'array' })).toEqual([[1]]);
    expect(await db.runOperation(sql`UPDATE ${sql.identifier(t)} SET name = ${'a'} WHERE id = ${1}`, { timeoutMs: 5000 })).toMatchObject({ affectedRows: 1 });
  });
});

describeEachDialect(allCases, 'the same value, the same type', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  let url: string;
  const t = uniqueTable('types');
  const ts = c.dialect === 'postgres' ? 'TIMESTAMPTZ' : c.dialect === 'mysql' ? 'DATETIME(3)' : 'DATETIME';
  const json = c.dialect === 'postgres' ? 'JSONB' : 'JSON';
  const big = 2n ** 53n + 1n;
  const instant = new Date('2026-03-04T05:06:07.891Z');
  beforeAll(async () => {
    url = c.url();
    ({ db, close } = await openDatabase({ url, name: 'types' }));
    await db.runOperation(
      `CREATE TABLE ${t} (id INT PRIMARY KEY, small BIGINT, huge BIGINT, price DECIMAL(10,2), flag BOOLEAN, day DATE, at ${ts}, doc ${json}, label VARCHAR(40))`,
    );
    await db.runOperation(
      sql`INSERT INTO ${sql.identifier(t)} (id, small, huge, price, flag, day, at, doc, label) VALUES (1, ${42}, ${big}, ${'12.50'}, ${true}, ${'2026-03-04'}, ${instant}, ${JSON.stringify({ a: [1, 'two'] })}, ${'Estebán Garcia Marquez'})`,
    );
    await db.runOperation(sql`INSERT INTO ${sql.identifier(t)} (id, flag) VALUES (2, ${false})`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${t}`).catch(() => {});
    await close();
  });
  const one = async <T>(expression: string) => (await db.runQuery<{ v: T }>(`SELECT ${expression} AS v FROM ${t} WHERE id = 1`))[0].v;

  it('64-bit integers: a number while exact, an exact string beyond ±2^53 (types.int64: number)', async () => {
    expect(await one('small')).toBe(42);
    expect(await one('huge')).toBe('9007199254740993');
  });

  it('COUNT(*) is a number', async () => {
    expect((await db.runQuery<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ${t}`))[0].n).toBe(2);
  });

  it('DECIMAL is its exact text, with its scale', async () => {
    expect(await one('price')).toBe('12.50');
  });

  it('a DATE is its text YYYY-MM-DD, not an instant', async () => {
    expect(await one('day')).toBe('2026-03-04');
  });

  it('a timestamp column is a Date, the same instant that was written', async () => {
    const at = await one<Date>('at');
    expect(at).toBeInstanceOf(Date);
    expect(at.toISOString()).toBe(instant.toISOString());
  });

  it('a JSON column is parsed', async () => {
    expect(await one('doc')).toEqual({ a: [1, 'two'] });
  });

  it('INTEGER and floating point are numbers, a binary column a Buffer', async () => {
    const blob = c.dialect === 'postgres' ? 'BYTEA' : 'BLOB';
    const float = c.dialect === 'postgres' ? 'DOUBLE PRECISION' : c.dialect === 'mysql' ? 'DOUBLE' : 'REAL';
    const other = uniqueTable('scalars');
    await db.runOperation(`CREATE TABLE ${other} (i INTEGER, f ${float}, b ${blob})`);
    try {
      await db.runOperation(sql`INSERT INTO ${sql.identifier(other)} (i, f, b) VALUES (${-7}, ${1.25}, ${Buffer.from([0, 255, 1])})`);
      const [row] = await db.runQuery<{ i: unknown; f: unknown; b: unknown }>(`SELECT i, f, b FROM ${other}`);
      expect(row).toEqual({ i: -7, f: 1.25, b: Buffer.from([0, 255, 1]) });
    } finally {
      await db.runOperation(`DROP TABLE ${other}`);
    }
  });

  it('text round-trips exactly (accents, any script)', async () => {
    expect(await one('label')).toBe('Estebán Garcia Marquez');
  });

  it('a BOOLEAN column: true/false (MySQL: 1/0, or true/false with types.tinyint1AsBoolean)', async () => {
    const flags = (await db.runQuery<{ flag: unknown }>(`SELECT flag FROM ${t} ORDER BY id`)).map((r) => r.flag);
    expect(flags).toEqual(c.dialect === 'mysql' ? [1, 0] : [true, false]);
    if (c.dialect === 'mysql') {
      const { db: booleans, close: closeBooleans } = await openDatabase({ url, name: 'booleans', types: { tinyint1AsBoolean: true } });
      try {
        expect((await booleans.runQuery<{ flag: unknown }>(`SELECT flag FROM ${t} ORDER BY id`)).map((r) => r.flag)).toEqual([true, false]);
        expect((await booleans.runQuery<{ flag: unknown }>(`SELECT flag FROM ${t} ORDER BY id`, [], { prepare: false })).map((r) => r.flag)).toEqual([
          true,
          false,
        ]);
      } finally {
        await closeBooleans();
      }
    }
  });

  it('a boolean expression (EXISTS, a comparison) is true on PostgreSQL and 1 on MySQL and SQLite: compare in SQL or with Boolean()', async () => {
    const [{ e }] = await db.runQuery<{ e: unknown }>(`SELECT EXISTS (SELECT 1 FROM ${t}) AS e`);
    expect(e).toBe(c.dialect === 'postgres' ? true : 1);
    expect(Boolean(e)).toBe(true);
  });

  it("types.int64: 'string' and 'bigint' apply to every 64-bit integer, COUNT(*) included", async () => {
    for (const mode of ['string', 'bigint'] as const) {
      const { db: other, close: closeOther } = await openDatabase({ url, name: `int64-${mode}`, types: { int64: mode } });
      try {
        const [row] = await other.runQuery<{ small: unknown; huge: unknown }>(`SELECT small, huge FROM ${t} WHERE id = 1`);
        const [{ n }] = await other.runQuery<{ n: unknown }>(`SELECT COUNT(*) AS n FROM ${t}`);
        if (mode === 'string') expect([row.small, row.huge, n]).toEqual(['42', '9007199254740993', '2']);
        else expect([row.small, row.huge, n]).toEqual([42n, big, 2n]);
      } finally {
        await closeOther();
      }
    }
  });

  if (c.dialect === 'sqlite') {
    it('SQLite: instants written by the app and by CURRENT_TIMESTAMP sort and compare together', async () => {
      const times = uniqueTable('times');
      await db.runOperation(`CREATE TABLE ${times} (k TEXT, at DATETIME DEFAULT CURRENT_TIMESTAMP)`);
      try {
        await db.runOperation(sql`INSERT INTO ${sql.identifier(times)} (k, at) VALUES ('hour-ago', ${new Date(Date.now() - 3_600_000)})`);
        await db.runOperation(`INSERT INTO ${times} (k) VALUES ('now')`);
        await db.runOperation(sql`INSERT INTO ${sql.identifier(times)} (k, at) VALUES ('in-an-hour', ${new Date(Date.now() + 3_600_000)})`);
        const ordered = await db.runQuery<{ k: string; at: Date }>(`SELECT k, at FROM ${times} ORDER BY at`);
        expect(ordered.map((r) => r.k)).toEqual(['hour-ago', 'now', 'in-an-hour']);
        for (const r of ordered) expect(r.at).toBeInstanceOf(Date);
        const past = await db.runQuery<{ k: string }>(`SELECT k FROM ${times} WHERE at < datetime('now', '-1 minute')`);
        expect(past.map((r) => r.k)).toEqual(['hour-ago']);
      } finally {
        await db.runOperation(`DROP TABLE ${times}`);
      }
    });
  }
});

describeEachDialect(allCases, 'writes mean the same', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  const t = uniqueTable('writes');
  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), name: 'writes' }));
    await db.runOperation(`CREATE TABLE ${t} (id ${id(c)}, login VARCHAR(20) UNIQUE, name VARCHAR(20))`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${t}`).catch(() => {});
    await close();
  });

  it("insertId is the first row's generated id (MySQL and SQLite), absent on PostgreSQL", async () => {
    const one = await db.runOperation(sql`INSERT INTO ${sql.identifier(t)} (login, name) VALUES (${'w1'}, ${'x'})`);
    const many = await db.runOperation(sql`INSERT INTO ${sql.identifier(t)} (login, name) VALUES (${'w2'}, ${'x'}), (${'w3'}, ${'x'}), (${'w4'}, ${'x'})`);
    expect(many.affectedRows).toBe(3);
    const rows = await db.runQuery<{ id: number; login: string }>(`SELECT id, login FROM ${t} ORDER BY id`);
    if (c.dialect === 'postgres') {
      expect(one.insertId).toBeUndefined();
      expect(many.insertId).toBeUndefined();
    } else {
      expect(one.insertId).toBe(rows.find((r) => r.login === 'w1')!.id);
      expect(many.insertId).toBe(rows.find((r) => r.login === 'w2')!.id);
    }
  });

  it('INSERT … RETURNING gives the rows and counts them in affectedRows, on PostgreSQL, SQLite and MariaDB', async () => {
    const returning = sql`INSERT INTO ${sql.identifier(t)} (login, name) VALUES (${'r1'}, ${'x'}), (${'r2'}, ${'x'}) RETURNING id, login`;
    const result = await db.runOperation(returning);
    expect(result.affectedRows).toBe(2);
    const rows = await db.runQuery<{ login: string }>(sql`INSERT INTO ${sql.identifier(t)} (login, name) VALUES (${'r3'}, ${'x'}) RETURNING login`);
    expect(rows).toEqual([{ login: 'r3' }]);
  });

  it('UPDATE counts the rows it matched, changed or not', async () => {
    await db.runOperation(sql`UPDATE ${sql.identifier(t)} SET name = ${'same'}`);
    const again = await db.runOperation(sql`UPDATE ${sql.identifier(t)} SET name = ${'same'} WHERE login LIKE ${'w%'}`);
    expect(again.affectedRows).toBe(4);
    if (c.dialect === 'mysql') expect(again.changedRows).toBe(0);
  });

  it('an insert that finds its key taken can be told from one that inserted (ON CONFLICT DO NOTHING / ON DUPLICATE KEY UPDATE)', async () => {
    if (c.dialect === 'mysql') {
      const upsert = (name: string) =>
        db.runOperation(sql`INSERT INTO ${sql.identifier(t)} (login, name) VALUES (${'u1'}, ${name}) ON DUPLICATE KEY UPDATE name = VALUES(name)`);
      expect((await upsert('a')).affectedRows).toBe(1); // inserted
      expect((await upsert('a')).affectedRows).toBe(0); // there already, nothing changed
      expect((await upsert('b')).affectedRows).toBe(2); // there already, updated
    } else {
      const insert = () => db.runOperation(sql`INSERT INTO ${sql.identifier(t)} (login, name) VALUES (${'u1'}, ${'a'}) ON CONFLICT (login) DO NOTHING`);
      expect((await insert()).affectedRows).toBe(1);
      expect((await insert()).affectedRows).toBe(0);
    }
  });

  if (c.dialect === 'mysql') {
    it('warningsAsErrors: a value cut to fit (INSERT IGNORE) fails and leaves nothing; without it, it succeeds with a warning', async () => {
      const ignore = sql`INSERT IGNORE INTO ${sql.identifier(t)} (login, name) VALUES (${'trunc1'}, ${'x'.repeat(30)})`;
      const quiet = await db.runOperation(ignore);
      expect(quiet.warningCount).toBe(1);
      const { db: strict, close: closeStrict } = await openDatabase({ url: c.url(), name: 'strict', warningsAsErrors: true });
      try {
        const error = await strict
          .runOperation(sql`INSERT IGNORE INTO ${sql.identifier(t)} (login, name) VALUES (${'trunc2'}, ${'x'.repeat(30)})`)
          .catch((e) => e);
        expect(error).toBeInstanceOf(DatabaseError);
        expect(error.code).toBe('MYSQL_WARNING');
        expect(error.message).toMatch(/Data truncated|too long/i);
        expect(await strict.runQuery(sql`SELECT login FROM ${sql.identifier(t)} WHERE login = ${'trunc2'}`)).toEqual([]);
        expect(await strict.runOperation(sql`INSERT INTO ${sql.identifier(t)} (login, name) VALUES (${'fine'}, ${'ok'})`)).toMatchObject({ affectedRows: 1 });
      } finally {
        await closeStrict();
      }
    });
  } else {
    it('warningsAsErrors is refused outside MySQL/MariaDB', async () => {
      await expect(openDatabase({ url: c.url(), name: 'strict', warningsAsErrors: true })).rejects.toThrow(/warningsAsErrors/);
    });
  }
});
