/**
 * The clients `npm run bench` and `bench/profile.ts` compare: this module, the raw drivers, and
 * the wrappers users would pick instead, each written as a user would; and the tables they read.
 */
import 'reflect-metadata';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import pg from 'pg';
import QueryStream from 'pg-query-stream';
import mysql from 'mysql2';
import knexFactory, { type Knex } from 'knex';
import postgresJs from 'postgres';
import { DataSource } from 'typeorm';
import { Database, DatabaseModule, getDatabaseToken, InjectDatabase, Transactional, type DatabaseModuleOptions } from '../lib/index.js';

export const ITEMS = 10_000;
export const POOL = 10;
export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export type Dialect = 'postgres' | 'mysql' | 'sqlite';
export interface Item {
  id: number | string;
  name: string;
}

/** A row of `bench_wide`: 12 columns of mixed types. */
export interface WideRow {
  id: number;
  grp: number;
  [column: string]: unknown;
}
export const WIDE_GROUPS = 100;
export const WIDE_PER_GROUP = 100;
const wideColumns = 'id, grp, qty, amount, price, name, email, note, active, created, day, big';

/** One way of talking to a database, as a user would write it. */
export interface Client {
  name: string;
  dialect: Dialect;
  /** The raw-driver client this one is compared to (ratios); undefined for a raw one. */
  open(): Promise<void>;
  pointSelect(id: number): Promise<Item>;
  /** 100 rows × 12 columns of mixed types (`bench_wide`, one group). */
  wideRows?(group: number): Promise<WideRow[]>;
  select1(): Promise<unknown>;
  transaction?(id: number): Promise<number>;
  stream?(): Promise<number>;
  close(): Promise<void>;
}

export const pgText = {
  point: 'SELECT id, name FROM bench_items WHERE id = $1',
  update: 'UPDATE bench_accounts SET balance = balance + 1 WHERE id = $1',
  balance: 'SELECT balance FROM bench_accounts WHERE id = $1',
};
export const myText = {
  point: 'SELECT id, name FROM bench_items WHERE id = ?',
  update: 'UPDATE bench_accounts SET balance = balance + 1 WHERE id = ?',
  balance: 'SELECT balance FROM bench_accounts WHERE id = ?',
};
export const streamText = 'SELECT id, payload FROM bench_stream';
export const wideText = { postgres: `SELECT ${wideColumns} FROM bench_wide WHERE grp = $1`, mysql: `SELECT ${wideColumns} FROM bench_wide WHERE grp = ?` };

// ---- this module -------------------------------------------------------------------------

@Injectable()
class TxService {
  constructor(@InjectDatabase() private readonly db: Database) {}

  @Transactional()
  async bump(id: number, text: typeof pgText): Promise<number> {
    await this.db.runOperation(text.update, [id]);
    const rows = await this.db.runQuery<{ balance: number }>(text.balance, [id]);
    return Number(rows[0].balance);
  }
}

export function moduleClient(name: string, dialect: Dialect, url: string, options: Partial<DatabaseModuleOptions> = {}): Client {
  let app: INestApplicationContext;
  let db: Database;
  let tx: TxService;
  const text = dialect === 'postgres' ? pgText : myText;
  return {
    name,
    dialect,
    async open() {
      @Module({ imports: [DatabaseModule.forRoot({ url, pool: { max: POOL }, ...options })], providers: [TxService] })
      class BenchModule {}
      app = await NestFactory.createApplicationContext(BenchModule, { logger: false });
      db = app.get(getDatabaseToken());
      tx = app.get(TxService);
    },
    async pointSelect(id) {
      return (await db.runQuery<Item>(text.point, [id]))[0];
    },
    select1: () => db.runQuery('SELECT 1'),
    wideRows: (group) => db.runQuery<WideRow>(dialect === 'postgres' ? wideText.postgres : wideText.mysql, [group]),
    transaction: (id) => tx.bump(id, text),
    async stream() {
      let n = 0;
      for await (const _row of db.stream(streamText)) n++;
      return n;
    },
    close: () => app.close(),
  };
}

// ---- raw drivers ---------------------------------------------------------------------------

export function pgPoolClient(name: string, named: boolean): Client {
  let pool: pg.Pool;
  const q = (text: string, key: string, values: unknown[]) => (named ? { name: key, text, values } : { text, values });
  return {
    name,
    dialect: 'postgres',
    async open() {
      pool = new pg.Pool({ connectionString: PG_URL, max: POOL });
    },
    async pointSelect(id) {
      return (await pool.query<Item>(q(pgText.point, 'point', [id]))).rows[0];
    },
    select1: () => pool.query(named ? { name: 'one', text: 'SELECT 1' } : 'SELECT 1'),
    async wideRows(group) {
      return (await pool.query<WideRow>(q(wideText.postgres, 'wide', [group]))).rows;
    },
    async transaction(id) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(q(pgText.update, 'update', [id]));
        const { rows } = await client.query(q(pgText.balance, 'balance', [id]));
        await client.query('COMMIT');
        return Number(rows[0].balance);
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    async stream() {
      const client = await pool.connect();
      try {
        let n = 0;
        for await (const _row of client.query(new QueryStream(streamText, [], { batchSize: 1000 }))) n++;
        return n;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}

export function mysqlPoolClient(name: string, execute: boolean): Client {
  let pool: mysql.Pool;
  let promisePool: ReturnType<mysql.Pool['promise']>;
  const run = <T>(text: string, values: unknown[] = []) =>
    (execute ? promisePool.execute(text, values as never) : promisePool.query(text, values)).then(([rows]) => rows as unknown as T);
  return {
    name,
    dialect: 'mysql',
    async open() {
      pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: POOL, supportBigNumbers: true, bigNumberStrings: true, timezone: 'Z' });
      promisePool = pool.promise();
    },
    async pointSelect(id) {
      return (await run<Item[]>(myText.point, [id]))[0];
    },
    select1: () => run('SELECT 1'),
    wideRows: (group) => run<WideRow[]>(wideText.mysql, [group]),
    async transaction(id) {
      const conn = await promisePool.getConnection();
      try {
        await conn.query('START TRANSACTION');
        if (execute) await conn.execute(myText.update, [id]);
        else await conn.query(myText.update, [id]);
        const [rows] = execute ? await conn.execute(myText.balance, [id]) : await conn.query(myText.balance, [id]);
        await conn.query('COMMIT');
        return Number((rows as Array<{ balance: number }>)[0].balance);
      } catch (error) {
        await conn.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        conn.release();
      }
    },
    async stream() {
      return new Promise<number>((resolve, reject) => {
        pool.getConnection((err, conn) => {
          if (err) return reject(err);
          let n = 0;
          (async () => {
            for await (const _row of conn.query(streamText).stream({ highWaterMark: 1000 })) n++;
          })().then(
            () => {
              conn.release();
              resolve(n);
            },
            (e) => {
              conn.release();
              reject(e);
            },
          );
        });
      });
    },
    close: () => new Promise<void>((resolve) => pool.end(() => resolve())),
  };
}

// ---- the wrappers users would pick instead ------------------------------------------------

export function knexClient(name: string, dialect: 'postgres' | 'mysql'): Client {
  let knex: Knex;
  const text = dialect === 'postgres' ? { ...myText } : myText; // knex uses ? for both
  return {
    name,
    dialect,
    async open() {
      knex = knexFactory({
        client: dialect === 'postgres' ? 'pg' : 'mysql2',
        connection: dialect === 'postgres' ? PG_URL : ({ uri: MYSQL_URL, supportBigNumbers: true, bigNumberStrings: true } as never),
        pool: { min: 0, max: POOL },
      });
    },
    async pointSelect(id) {
      const r = await knex.raw(text.point, [id]);
      return (dialect === 'postgres' ? r.rows : r[0])[0];
    },
    select1: () => knex.raw('SELECT 1'),
    transaction: (id) =>
      knex.transaction(async (trx) => {
        await trx.raw(text.update, [id]);
        const r = await trx.raw(text.balance, [id]);
        return Number((dialect === 'postgres' ? r.rows : r[0])[0].balance);
      }),
    close: () => knex.destroy(),
  };
}

export function typeormClient(name: string, dialect: 'postgres' | 'mysql'): Client {
  let ds: DataSource;
  const text = dialect === 'postgres' ? pgText : myText;
  return {
    name,
    dialect,
    async open() {
      ds = new DataSource(
        dialect === 'postgres'
          ? { type: 'postgres', url: PG_URL, poolSize: POOL }
          : { type: 'mysql', url: MYSQL_URL, poolSize: POOL, supportBigNumbers: true, bigNumberStrings: true },
      );
      await ds.initialize();
    },
    async pointSelect(id) {
      return (await ds.query(text.point, [id]))[0];
    },
    select1: () => ds.query('SELECT 1'),
    transaction: (id) =>
      ds.transaction(async (manager) => {
        await manager.query(text.update, [id]);
        return Number((await manager.query(text.balance, [id]))[0].balance);
      }),
    close: () => ds.destroy(),
  };
}

export function postgresJsClient(name: string): Client {
  let sqlJs: ReturnType<typeof postgresJs>;
  return {
    name,
    dialect: 'postgres',
    async open() {
      sqlJs = postgresJs(PG_URL, { max: POOL });
    },
    async pointSelect(id) {
      return (await sqlJs.unsafe(pgText.point, [id], { prepare: true }))[0] as unknown as Item;
    },
    select1: () => sqlJs.unsafe('SELECT 1'),
    transaction: (id) =>
      sqlJs.begin(async (tx) => {
        await tx.unsafe(pgText.update, [id], { prepare: true });
        return Number((await tx.unsafe(pgText.balance, [id], { prepare: true }))[0].balance);
      }) as Promise<number>,
    close: () => sqlJs.end(),
  };
}

// ---- setup -------------------------------------------------------------------------------

export async function setupPostgres(STREAM_ROWS?: number): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query('CREATE TABLE IF NOT EXISTS bench_items (id int PRIMARY KEY, name text NOT NULL)');
    await client.query('CREATE TABLE IF NOT EXISTS bench_accounts (id int PRIMARY KEY, balance bigint NOT NULL)');
    await client.query('CREATE TABLE IF NOT EXISTS bench_stream (id int PRIMARY KEY, payload text NOT NULL)');
    if (Number((await client.query('SELECT count(*) AS n FROM bench_items')).rows[0].n) !== ITEMS) {
      await client.query('TRUNCATE bench_items, bench_accounts');
      await client.query(`INSERT INTO bench_items SELECT g, 'item' || g FROM generate_series(1, ${ITEMS}) g`);
      await client.query(`INSERT INTO bench_accounts SELECT g, 0 FROM generate_series(1, ${ITEMS}) g`);
    }
    await client.query(
      'CREATE TABLE IF NOT EXISTS bench_wide (id int PRIMARY KEY, grp int NOT NULL, qty int NOT NULL, amount numeric(12,2) NOT NULL, price double precision NOT NULL, ' +
        'name varchar(64) NOT NULL, email varchar(128) NOT NULL, note text, active boolean NOT NULL, created timestamptz NOT NULL, day date NOT NULL, big bigint NOT NULL)',
    );
    await client.query('CREATE INDEX IF NOT EXISTS bench_wide_grp ON bench_wide (grp)');
    if (Number((await client.query('SELECT count(*) AS n FROM bench_wide')).rows[0].n) !== WIDE_GROUPS * WIDE_PER_GROUP) {
      await client.query('TRUNCATE bench_wide');
      await client.query(
        `INSERT INTO bench_wide SELECT g, (g - 1) / ${WIDE_PER_GROUP} + 1, g % 17, g * 1.25, g / 3.0, 'name ' || g, 'user' || g || '@example.com', ` +
          `CASE WHEN g % 5 = 0 THEN NULL ELSE repeat('note ', 8) END, g % 2 = 0, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute', ` +
          `date '2026-01-01' + (g % 365), g::bigint * 1000003 FROM generate_series(1, ${WIDE_GROUPS * WIDE_PER_GROUP}) g`,
      );
    }
    if (STREAM_ROWS !== undefined && Number((await client.query('SELECT count(*) AS n FROM bench_stream')).rows[0].n) !== STREAM_ROWS) {
      await client.query('TRUNCATE bench_stream');
      await client.query(`INSERT INTO bench_stream SELECT g, repeat('x', 100) FROM generate_series(1, ${STREAM_ROWS}) g`);
    }
  } finally {
    await client.end();
  }
}

export async function setupMysql(STREAM_ROWS?: number): Promise<void> {
  const conn = mysql.createConnection({ uri: MYSQL_URL, multipleStatements: true }).promise();
  try {
    await conn.query('CREATE TABLE IF NOT EXISTS bench_items (id INT PRIMARY KEY, name VARCHAR(32) NOT NULL)');
    await conn.query('CREATE TABLE IF NOT EXISTS bench_accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)');
    await conn.query('CREATE TABLE IF NOT EXISTS bench_stream (id INT PRIMARY KEY, payload VARCHAR(128) NOT NULL)');
    const count = async (t: string) => Number(((await conn.query(`SELECT count(*) AS n FROM ${t}`))[0] as Array<{ n: number }>)[0].n);
    const fill = async (t: string, rows: number, row: (i: number) => string) => {
      await conn.query(`TRUNCATE ${t}`);
      for (let start = 1; start <= rows; start += 5000) {
        const values = Array.from({ length: Math.min(5000, rows - start + 1) }, (_, k) => row(start + k)).join(',');
        await conn.query(`INSERT INTO ${t} VALUES ${values}`);
      }
    };
    if ((await count('bench_items')) !== ITEMS) {
      await fill('bench_items', ITEMS, (i) => `(${i}, 'item${i}')`);
      await fill('bench_accounts', ITEMS, (i) => `(${i}, 0)`);
    }
    await conn.query(
      'CREATE TABLE IF NOT EXISTS bench_wide (id INT PRIMARY KEY, grp INT NOT NULL, qty INT NOT NULL, amount DECIMAL(12,2) NOT NULL, price DOUBLE NOT NULL, ' +
        'name VARCHAR(64) NOT NULL, email VARCHAR(128) NOT NULL, note TEXT, active BOOLEAN NOT NULL, created DATETIME(3) NOT NULL, day DATE NOT NULL, big BIGINT NOT NULL, KEY (grp))',
    );
    if ((await count('bench_wide')) !== WIDE_GROUPS * WIDE_PER_GROUP) {
      await fill('bench_wide', WIDE_GROUPS * WIDE_PER_GROUP, (g) => {
        const created = new Date(Date.UTC(2026, 0, 1) + g * 60_000).toISOString().slice(0, 23).replace('T', ' ');
        const day = new Date(Date.UTC(2026, 0, 1) + (g % 365) * 86_400_000).toISOString().slice(0, 10);
        const note = g % 5 === 0 ? 'NULL' : `'${'note '.repeat(8)}'`;
        return `(${g}, ${Math.floor((g - 1) / WIDE_PER_GROUP) + 1}, ${g % 17}, ${g * 1.25}, ${g / 3}, 'name ${g}', 'user${g}@example.com', ${note}, ${g % 2 === 0}, '${created}', '${day}', ${g * 1000003})`;
      });
    }
    if (STREAM_ROWS !== undefined && (await count('bench_stream')) !== STREAM_ROWS) await fill('bench_stream', STREAM_ROWS, (i) => `(${i}, REPEAT('x', 100))`);
  } finally {
    await conn.end();
  }
}
