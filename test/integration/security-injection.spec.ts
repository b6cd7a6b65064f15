/**
 * Injection and hostile input, on every dialect against the real servers: property tests
 * (fast-check) that any string round-trips unchanged through a parameter and through
 * `sql.identifier` and never alters the statement, then the catalogue of hostile inputs, each
 * with the error class it must get. After every test the pool still serves and no row of a
 * sentinel table was lost or changed.
 */
import { jest } from '@jest/globals';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { ConfigurationError, DatabaseError, InvalidParameter, sql, type Database, type DatabaseModuleOptions, type Dialect } from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { allCases, describeEachDialect, uniqueTable, type DialectCase } from '../support/databases.js';
import { ridingOutRestarts, waitForServer } from '../support/security.js';
import { syntaxOf } from '../../lib/drivers/registry.js';

jest.setTimeout(180_000);

/** Modest by default, to stay fast; NDBP_FC_RUNS=5000 for a deeper search. */
const NUM_RUNS = Number(process.env.NDBP_FC_RUNS ?? 100);

/** Lone surrogates, by a rule written independently of the one in lib/. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Pieces of strings that have broken quoting somewhere, mixed with any code point, ASCII controls and lone surrogates. */
const hostileUnit = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "'",
      '"',
      '`',
      '\\',
      ';',
      '--',
      '#',
      '/*',
      '*/',
      '$1',
      '$$',
      '$tag$',
      '?',
      ':name',
      '%',
      '_',
      '\n',
      '\r',
      '\t',
      ' ',
      '\u001a',
      '\u00a0',
      '\u2028',
      '\ufeff',
      '\u0000',
      "' OR '1'='1",
      '"; DROP TABLE victims; --',
      '`; DROP TABLE victims; --',
      "\\'; DROP TABLE victims; --",
      'ä',
      '€',
      '😀',
    ),
  },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)) },
);
const anyString = fc.string({ unit: hostileUnit, maxLength: 24 });
const anyName = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: hostileUnit, minLength: 1, maxLength: 12 }) },
  // Long enough to cross PostgreSQL's 63 bytes and MySQL's 64 characters.
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom('a', 'ä', '€', '"', '`'), minLength: 20, maxLength: 70 }) },
);

/** Whether a value may be sent as a text parameter (the rest must be InvalidParameter). */
const textSendable = (v: string) => !v.includes('\0') && !LONE_SURROGATE.test(v);

/** Whether a name is a usable identifier for the dialect (the rest must be InvalidParameter). */
function identifierAccepted(dialect: Dialect, name: string): boolean {
  if (name.length === 0 || name.includes('\0') || LONE_SURROGATE.test(name)) return false;
  if (dialect === 'postgres') return Buffer.byteLength(name) <= 63;
  if (dialect === 'mysql') {
    const chars = [...name];
    // Measured on MariaDB 10.11: an alias loses leading U+0001–U+0020 and U+007F; a table name cannot end with a space.
    const first = name.codePointAt(0)!;
    const strippedLead = first <= 0x20 || first === 0x7f;
    return chars.length <= 64 && chars.every((c) => c.codePointAt(0)! <= 0xffff) && !strippedLead && !/[ \t\n\r\v\f]$/.test(name);
  }
  return true;
}

async function rejection(promise: Promise<unknown> | (() => unknown)): Promise<unknown> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    return error;
  }
  return undefined;
}

const text = (dialect: Dialect) => (dialect === 'mysql' ? 'LONGTEXT' : 'TEXT');
const binary = (dialect: Dialect) => (dialect === 'postgres' ? 'BYTEA' : dialect === 'mysql' ? 'LONGBLOB' : 'BLOB');

describeEachDialect(allCases, 'injection and hostile input', (c: DialectCase) => {
  let db: Database;
  let close: () => Promise<void>;
  let url: string;
  const victims = uniqueTable('victims');
  const store = uniqueTable('store');
  /** A schema (PostgreSQL) or database (MySQL) of our own, for tables named by fast-check. */
  const schema = uniqueTable('ndbp_inj');
  const victimRows = [
    { id: 1, secret: "alice's secret" },
    { id: 2, secret: 'bob "the" builder' },
    { id: 3, secret: 'carol`s \\ backslash' },
  ];

  beforeAll(async () => {
    url = c.url();
    if (c.dialect !== 'sqlite') await waitForServer({ url });
    ({ db, close } = await openDatabase({ url, pool: { max: 4 } }));
    await db.runOperation(`CREATE TABLE ${victims} (id INT PRIMARY KEY, secret ${text(c.dialect)} NOT NULL)`);
    for (const row of victimRows) await db.runOperation(sql`INSERT INTO ${sql.identifier(victims)} (id, secret) VALUES (${row.id}, ${row.secret})`);
    await db.runOperation(`CREATE TABLE ${store} (id ${c.serial}, v ${text(c.dialect)}, b ${binary(c.dialect)}, n BIGINT)`);
    if (c.dialect === 'postgres') await db.runOperation(sql`CREATE SCHEMA ${sql.identifier(schema)}`);
    if (c.dialect === 'mysql') await db.runOperation(sql`CREATE DATABASE ${sql.identifier(schema)} CHARACTER SET utf8mb4`);
  });

  afterAll(async () => {
    if (!db) return;
    await db.runOperation(`DROP TABLE IF EXISTS ${victims}`).catch(() => {});
    await db.runOperation(`DROP TABLE IF EXISTS ${store}`).catch(() => {});
    if (c.dialect === 'postgres') await db.runOperation(sql`DROP SCHEMA IF EXISTS ${sql.identifier(schema)} CASCADE`).catch(() => {});
    if (c.dialect === 'mysql') await db.runOperation(sql`DROP DATABASE IF EXISTS ${sql.identifier(schema)}`).catch(() => {});
    await close();
  });

  /** Runs `fn`, riding out a restart of a shared server by another suite's fault test. */
  const steady = <T>(fn: () => Promise<T>): Promise<T> => (c.dialect === 'sqlite' ? fn() : ridingOutRestarts({ url }, fn));

  afterEach(async () => {
    // The pool still serves, and the sentinel rows are all there, unchanged.
    const rows = await steady(() => db.runQuery<{ id: number; secret: string }>(`SELECT id, secret FROM ${victims} ORDER BY id`));
    expect(rows.map((r) => ({ id: Number(r.id), secret: r.secret }))).toEqual(victimRows);
    expect(db.detector.isDead).toBe(false);
  });

  const selectValue = (v: unknown) => (c.dialect === 'postgres' ? sql`SELECT ${v}::text AS v` : sql`SELECT ${v} AS v`);

  describe('properties (fast-check)', () => {
    it('compiles any value to a placeholder: the statement text never depends on it', () => {
      fc.assert(
        fc.property(anyString, (v) => {
          const compiled = selectValue(v).compile(syntaxOf(c.dialect));
          expect(compiled.text).toBe(c.dialect === 'postgres' ? 'SELECT $1::text AS v' : 'SELECT ? AS v');
          expect(compiled.values).toEqual([v]);
        }),
        { numRuns: 500 },
      );
    });

    it('round-trips any string through a parameter unchanged, or refuses it with InvalidParameter before sending', async () => {
      await fc.assert(
        fc.asyncProperty(anyString, fc.boolean(), async (v, prepare) => {
          if (textSendable(v)) {
            expect(await steady(() => db.runQuery<{ v: unknown }>(selectValue(v), undefined, { prepare }))).toEqual([{ v }]);
          } else {
            const error = await rejection(db.runQuery(selectValue(v), undefined, { prepare }));
            expect(error).toBeInstanceOf(InvalidParameter);
            expect((error as InvalidParameter).position).toBe(1);
          }
        }),
        { numRuns: NUM_RUNS },
      );
    });

    it('quotes any name through sql.identifier as a column alias that comes back unchanged, or refuses it with InvalidParameter', async () => {
      await fc.assert(
        fc.asyncProperty(anyName, async (name) => {
          let query;
          try {
            query = sql`SELECT 1 AS ${sql.identifier(name)}`;
            query.compile(syntaxOf(c.dialect));
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidParameter);
            expect(identifierAccepted(c.dialect, name)).toBe(false);
            return;
          }
          expect(identifierAccepted(c.dialect, name)).toBe(true);
          if (name === '__proto__' && c.dialect !== 'postgres') return; // object rows: see the catalogue
          const rows = await steady(() => db.runQuery<Record<string, unknown>>(query));
          expect(rows).toHaveLength(1);
          expect(Object.keys(rows[0])).toEqual([name]);
          expect(Number(rows[0][name])).toBe(1);
        }),
        { numRuns: NUM_RUNS },
      );
    });

    it('creates a table (and column) under any accepted name, finds it in the catalog under that name, and reads it back', async () => {
      const qualified = (name: string) => (c.dialect === 'sqlite' ? sql.identifier(name) : sql.identifier(schema, name));
      const catalog = (name: string) =>
        c.dialect === 'postgres'
          ? sql`SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ${schema} AND c.relkind = 'r'`
          : c.dialect === 'mysql'
            ? sql`SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ${schema}`
            : sql`SELECT name FROM sqlite_master WHERE type = 'table' AND name = ${name}`;
      await fc.assert(
        fc.asyncProperty(anyName, async (name) => {
          if (!identifierAccepted(c.dialect, name)) {
            expect(await rejection(() => db.runOperation(sql`CREATE TABLE ${qualified(name)} (v INT)`))).toBeInstanceOf(InvalidParameter);
            return;
          }
          if (name === '__proto__' && c.dialect !== 'postgres') return; // object rows: see the catalogue
          const table = qualified(name);
          const column = sql.identifier(name);
          const created = await rejection(() => steady(() => db.runOperation(sql`CREATE TABLE ${table} (${column} ${sql.raw(text(c.dialect))})`)));
          if (c.dialect === 'sqlite' && /^sqlite_/i.test(name)) {
            // SQLite reserves these names: a server error, nothing altered.
            expect(created).toBeInstanceOf(DatabaseError);
            return;
          }
          expect(created).toBeUndefined();
          try {
            await db.runOperation(sql`INSERT INTO ${table} (${column}) VALUES (${textSendable(name) ? name : 'x'})`);
            const rows = await db.runQuery<Record<string, unknown>>(sql`SELECT ${column} FROM ${table}`);
            expect(rows).toEqual([{ [name]: name }]);
            const names = await db.runQuery<{ name: string }>(catalog(name));
            expect(names.map((r) => r.name)).toEqual([name]);
          } finally {
            await steady(() => db.runOperation(sql`DROP TABLE ${table}`));
          }
        }),
        { numRuns: Math.ceil(NUM_RUNS * (c.dialect === 'mysql' ? 0.4 : 0.6)) },
      );
    });
  });

  describe('catalogue of hostile inputs', () => {
    const payloads = [
      "'; DROP TABLE victims; --",
      "' OR '1'='1",
      '" OR "1"="1',
      "\\'; DELETE FROM victims; --",
      "\\\\'; DELETE FROM victims; --",
      '`; DROP TABLE victims; --',
      "1; UPDATE victims SET secret = 'pwned'",
      '$1; DELETE FROM victims',
      '$$; DELETE FROM victims; $$',
      "x' UNION SELECT secret FROM victims --",
      '/* unterminated',
      '\u001a\u0027 OR 1=1 --',
      "' OR 1=1 -- \u00bf'",
    ];

    it('stores SQL injection strings given as values verbatim (both MySQL protocols)', async () => {
      for (const prepare of c.dialect === 'mysql' ? [true, false] : [true]) {
        for (const payload of payloads) {
          await db.runOperation(sql`DELETE FROM ${sql.identifier(store)} WHERE v = ${payload}`, undefined, { prepare });
          const result = await db.runOperation(sql`INSERT INTO ${sql.identifier(store)} (v) VALUES (${payload})`, undefined, { prepare });
          expect(result.affectedRows).toBe(1);
          const rows = await db.runQuery<{ v: string }>(sql`SELECT v FROM ${sql.identifier(store)} WHERE v = ${payload}`, undefined, { prepare });
          expect(rows.map((r) => r.v)).toEqual([payload]);
          const victimsRows = await db.runQuery(sql`SELECT id FROM ${sql.identifier(victims)} WHERE secret = ${payload}`, undefined, { prepare });
          expect(victimsRows).toEqual([]);
        }
      }
    });

    it('quotes SQL injection strings given as identifiers: a name, not a statement', async () => {
      const names = [...payloads, `x"; DROP TABLE ${victims}; --`, `x\`; DROP TABLE ${victims}; --`, `x]; DROP TABLE ${victims}; --`];
      for (const payload of names.filter((p) => identifierAccepted(c.dialect, p))) {
        const rows = await db.runQuery<Record<string, unknown>>(sql`SELECT 1 AS ${sql.identifier(payload)}`);
        expect(Object.keys(rows[0])).toEqual([payload]);
        // As a table name, it names a table that does not exist: an ordinary server error.
        const error = await rejection(db.runQuery(sql`SELECT * FROM ${sql.identifier(payload)}`));
        expect(error).toBeInstanceOf(DatabaseError);
        expect(error).not.toBeInstanceOf(InvalidParameter);
      }
    });

    it('a column named __proto__ in object rows: kept (PostgreSQL) or a DatabaseError (mysql2 refuses it), never a prototype', async () => {
      if (c.dialect === 'sqlite') return; // below, as a known gap
      const error = await rejection(async () => {
        const rows = await db.runQuery<Record<string, unknown>>(sql`SELECT 1 AS ${sql.identifier('__proto__')}, 2 AS b`);
        expect(Object.keys(rows[0])).toEqual(['__proto__', 'b']);
        expect(Object.getPrototypeOf(rows[0])).not.toBe(1);
      });
      if (c.dialect === 'mysql') expect(error).toBeInstanceOf(DatabaseError);
      else expect(error).toBeUndefined();
      // In array rows it is an ordinary value (mysql2 refuses the field name whatever the row mode).
      const arrays = db.runQuery(sql`SELECT 1 AS ${sql.identifier('__proto__')}`, undefined, { rowMode: 'array' });
      if (c.dialect === 'mysql') expect(await rejection(arrays)).toBeInstanceOf(DatabaseError);
      else expect(await arrays).toEqual([[1]]);
    });

    // Known gap, in the SQLite driver (not the sql template): better-sqlite3 builds the row with
    // an assignment, so a column named __proto__ is dropped from object rows without an error.
    (c.dialect === 'sqlite' ? it.failing : it.skip)('SQLite: a column named __proto__ is kept in object rows', async () => {
      const rows = await db.runQuery<Record<string, unknown>>(sql`SELECT 1 AS ${sql.identifier('__proto__')}, 2 AS b`);
      expect(Object.keys(rows[0])).toEqual(['__proto__', 'b']);
    });

    it('quotes procedure names: a hostile one is an unknown procedure, not a statement', async () => {
      if (c.dialect === 'sqlite') return;
      const error = await rejection(db.callProcedure(`nope"(); DROP TABLE ${victims}; --`, [1]));
      expect(error).toBeInstanceOf(DatabaseError);
      const error2 = await rejection(db.callProcedure(`nope\`(); DROP TABLE ${victims}; --`, [1]));
      expect(error2).toBeInstanceOf(DatabaseError);
    });

    it('quotes notification channels: a hostile channel name is just a channel (PostgreSQL)', async () => {
      if (c.dialect !== 'postgres') return;
      const channel = `x"; DROP TABLE ${victims}; --`;
      const received: string[] = [];
      const stop = await db.listen(channel, (n) => {
        received.push(n.payload);
      });
      try {
        await db.notify(channel, "'; DROP TABLE victims; --");
        const deadline = Date.now() + 5000;
        while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        expect(received).toEqual(["'; DROP TABLE victims; --"]);
      } finally {
        await stop();
      }
    });

    it('refuses NUL characters in values, identifiers and statement text with InvalidParameter; a Buffer carries them', async () => {
      const inValue = await rejection(db.runQuery(selectValue('a\0b')));
      expect(inValue).toBeInstanceOf(InvalidParameter);
      expect((inValue as InvalidParameter).position).toBe(1);
      expect(() => sql.identifier('a\0b')).toThrow(InvalidParameter);
      // SQLite would run the statement only up to the NUL: SELECT 1 instead of an error.
      expect(await rejection(db.runQuery(`SELECT 1\0; DELETE FROM ${victims}`))).toBeInstanceOf(InvalidParameter);
      const bytes = Buffer.from('a\0b\0', 'latin1');
      await db.runOperation(sql`INSERT INTO ${sql.identifier(store)} (b) VALUES (${bytes})`);
      const rows = await db.runQuery<{ b: Buffer }>(sql`SELECT b FROM ${sql.identifier(store)} WHERE b IS NOT NULL`);
      expect(rows.map((r) => Buffer.from(r.b))).toContainEqual(bytes);
    });

    it('round-trips invalid UTF-8 byte sequences through a binary column, byte for byte', async () => {
      const invalid = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc, 0xed, 0xa0, 0x80, 0x00]);
      const { insertId } = await db.runOperation(sql`INSERT INTO ${sql.identifier(store)} (b, v) VALUES (${invalid}, ${'invalid-utf8'})`);
      const rows = await db.runQuery<{ b: Buffer }>(sql`SELECT b FROM ${sql.identifier(store)} WHERE v = ${'invalid-utf8'}`);
      expect(rows).toHaveLength(1);
      expect(Buffer.compare(Buffer.from(rows[0].b), invalid)).toBe(0);
      if (c.dialect === 'mysql') {
        // Into a utf8mb4 text column, MySQL (strict mode) refuses the bytes rather than mangling them.
        const error = await rejection(db.runOperation(sql`UPDATE ${sql.identifier(store)} SET v = ${invalid} WHERE id = ${insertId}`));
        expect(error).toBeInstanceOf(DatabaseError);
        expect((error as DatabaseError).errno).toBe(1366);
      }
    });

    it('refuses lone UTF-16 surrogates, which every driver would turn into U+FFFD', async () => {
      const error = await rejection(db.runQuery(selectValue('ok\ud800')));
      expect(error).toBeInstanceOf(InvalidParameter);
      expect((error as Error).message).toMatch(/surrogate/);
      expect(() => sql.identifier('\udc00x')).toThrow(InvalidParameter);
    });

    it('stores and reads back a 10 MB parameter', async () => {
      const big = 'x'.repeat(5 * 1024 * 1024) + 'ä€😀'.repeat(400_000);
      const hash = (s: string) => createHash('sha256').update(s).digest('hex');
      await db.runOperation(sql`INSERT INTO ${sql.identifier(store)} (v) VALUES (${big})`);
      const rows = await db.runQuery<{ h: number; v: string }>(
        sql`SELECT v FROM ${sql.identifier(store)} WHERE id = (SELECT MAX(id) FROM ${sql.identifier(store)})`,
      );
      expect(rows[0].v.length).toBe(big.length);
      expect(hash(rows[0].v)).toBe(hash(big));
      await db.runOperation(sql`DELETE FROM ${sql.identifier(store)} WHERE v = ${big}`);
    });

    it('MySQL: a parameter beyond max_allowed_packet fails with a DatabaseError, and the pool still serves', async () => {
      if (c.dialect !== 'mysql') return;
      const [{ m }] = await db.runQuery<{ m: string | number }>('SELECT @@max_allowed_packet AS m');
      const limit = Number(m);
      if (limit > 64 * 1024 * 1024) return;
      const error = await rejection(db.runOperation(sql`INSERT INTO ${sql.identifier(store)} (v) VALUES (${'y'.repeat(limit + 1024)})`));
      expect(error).toBeInstanceOf(DatabaseError);
      expect(db.detector.isDead).toBe(false);
      expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    });

    it(`refuses more parameters than the dialect allows, before sending`, async () => {
      const limit = c.dialect === 'sqlite' ? 32766 : 65535;
      const values = Array.from({ length: limit + 1 }, (_, i) => i);
      const placeholders = values.map((_, i) => c.p(i + 1)).join(',');
      const error = await rejection(db.runQuery(`SELECT * FROM ${victims} WHERE id IN (${placeholders})`, values));
      expect(error).toBeInstanceOf(InvalidParameter);
      expect((error as Error).message).toContain(`exceed the ${limit}`);
      // Exactly the limit is fine (PostgreSQL and MySQL: 65,535).
      const ok = await db.runQuery(`SELECT id FROM ${victims} WHERE id IN (${placeholders.split(',').slice(0, limit).join(',')})`, values.slice(0, limit));
      expect(ok).toHaveLength(3);
    });

    it('refuses a bigint beyond int8 and round-trips the int8 bounds exactly', async () => {
      for (const v of [2n ** 63n, -(2n ** 63n) - 1n, 2n ** 64n]) {
        const error = await rejection(db.runOperation(sql`INSERT INTO ${sql.identifier(store)} (n) VALUES (${v})`));
        expect(error).toBeInstanceOf(InvalidParameter);
        expect((error as Error).message).toMatch(/64-bit/);
      }
      for (const v of [2n ** 63n - 1n, -(2n ** 63n)]) {
        await db.runOperation(sql`INSERT INTO ${sql.identifier(store)} (n) VALUES (${v})`);
        const rows = await db.runQuery<{ n: string }>(sql`SELECT n FROM ${sql.identifier(store)} WHERE n = ${v}`);
        expect(rows.map((r) => String(r.n))).toEqual([v.toString()]);
      }
    });

    it.each([
      ['NaN', NaN, /NaN/],
      ['Infinity', Infinity, /Infinity/],
      ['-Infinity', -Infinity, /Infinity/],
      ['2^53 + 1', 2 ** 53 + 2, /bigint or a string/],
      ['an invalid Date', new Date('not a date'), /invalid Date/],
      ['undefined', undefined, /undefined; pass null/],
      ['a function', () => 1, /function/],
      ['a symbol', Symbol('s'), /symbol/],
    ])('refuses %s with InvalidParameter naming the position', async (_name, value, message) => {
      const error = await rejection(db.runQuery(c.dialect === 'postgres' ? 'SELECT $1::text AS a, $2::text AS b' : 'SELECT ? AS a, ? AS b', ['fine', value]));
      expect(error).toBeInstanceOf(InvalidParameter);
      expect((error as InvalidParameter).position).toBe(2);
      expect((error as Error).message).toMatch(/parameter 2/);
      expect((error as Error).message).toMatch(message);
    });

    it('MySQL: refuses arrays and objects, which mysql2 would expand into SQL text or send as [object Object]', async () => {
      if (c.dialect !== 'mysql') return;
      for (const value of [[1, 2], { secret: 1 }, { toSqlString: () => `1; DELETE FROM ${victims}` }]) {
        for (const prepare of [true, false]) {
          const error = await rejection(db.runQuery(`SELECT id FROM ${victims} WHERE secret = ?`, [value], { prepare }));
          expect(error).toBeInstanceOf(InvalidParameter);
          expect((error as Error).message).toMatch(/JSON\.stringify/);
        }
      }
      expect(await db.runQuery(`SELECT ? AS j`, [JSON.stringify({ a: [1, 'x'] })])).toEqual([{ j: '{"a":[1,"x"]}' }]);
    });

    it('refuses a malformed URL, an unknown dialect and bad pool sizes and timeouts at bootstrap, with a ConfigurationError naming the option', async () => {
      const cases: Array<[DatabaseModuleOptions, string]> = [
        [{ url: 'postgres://u:p@[bad/test' }, 'url'],
        [{ url: 'mysql://u:p@host:notaport/test' }, 'url'],
        [{ url: 'postgres://u:%E0%A4%A@h/test' }, 'url'],
        [{ url: 'oracle://u:p@h/test' }, 'url'],
        [{ url: 'postgres://h/test?sslmode=sometimes' }, 'url'],
        [{ driver: 'oracle' as never, host: 'h' }, 'driver'],
        [{ url: c.url(), pool: { max: -1 } }, 'pool.max'],
        [{ url: c.url(), pool: { max: 0 } }, 'pool.max'],
        [{ url: c.url(), pool: { max: '10' as never } }, 'pool.max'],
        [{ url: c.url(), pool: { min: NaN } }, 'pool.min'],
        [{ url: c.url(), pool: { min: 5, max: 2 } }, 'pool.min'],
        [{ url: c.url(), pool: { acquireTimeoutMs: -5 } }, 'pool.acquireTimeoutMs'],
        [{ url: c.url(), pool: { idleTimeoutMs: 1.5 } }, 'pool.idleTimeoutMs'],
        [{ url: c.url(), connectTimeoutMs: 0 }, 'connectTimeoutMs'],
        [{ url: c.url(), queryTimeoutMs: -1 }, 'queryTimeoutMs'],
        [{ url: c.url(), queryTimeoutMs: Infinity }, 'queryTimeoutMs'],
        [{ url: c.url(), shutdownTimeoutMs: 'soon' as never }, 'shutdownTimeoutMs'],
        [{ url: c.url(), reconnect: { maxDelayMs: -1 } }, 'reconnect.maxDelayMs'],
        [{ url: c.url(), port: 70000 }, 'port'],
      ];
      for (const [options, option] of cases) {
        const error = await rejection(openDatabase(options));
        expect(error).toBeInstanceOf(ConfigurationError);
        expect((error as ConfigurationError).option).toBe(option);
        expect((error as Error).message).toContain(option.split('.').pop());
      }
    });
  });
});
