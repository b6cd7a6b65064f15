/**
 * Where the suite finds its servers (PG_URL, MYSQL_URL; the local servers by default), and
 * `describeEachDialect`, which runs one test body per dialect.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Dialect } from '../../lib/index.js';

export const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';

export interface DialectCase {
  dialect: Dialect;
  /** A fresh database URL for this test file (a new SQLite file per call). */
  url(): string;
  /** `$1` or `?` for the n-th (1-based) parameter. */
  p(n: number): string;
  /** Auto-increment primary key column type. */
  serial: string;
  /** An expression that keeps the server busy `seconds` (`pg_sleep(…)`, `SLEEP(…)`); SQLite has none and throws. */
  sleep(seconds: number): string;
  /** Server-side sessions open right now (connections of any client), excluding the probe itself. */
  sessions?(): Promise<number>;
}

let sqliteDir: string | undefined;
let sqliteCount = 0;
export function tempSqliteUrl(): string {
  sqliteDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-test-'));
  return `sqlite:${path.join(sqliteDir, `db${process.pid}-${++sqliteCount}.sqlite`)}`;
}

export const postgresCase: DialectCase = {
  dialect: 'postgres',
  url: () => PG_URL,
  p: (n) => `$${n}`,
  serial: 'SERIAL PRIMARY KEY',
  sleep: (seconds) => `pg_sleep(${seconds})`,
};

export const mysqlCase: DialectCase = {
  dialect: 'mysql',
  url: () => MYSQL_URL,
  p: () => '?',
  serial: 'INT AUTO_INCREMENT PRIMARY KEY',
  sleep: (seconds) => `SLEEP(${seconds})`,
};

export const sqliteCase: DialectCase = {
  dialect: 'sqlite',
  url: tempSqliteUrl,
  p: () => '?',
  serial: 'INTEGER PRIMARY KEY AUTOINCREMENT',
  sleep: () => {
    throw new Error('SQLite has no function that sleeps');
  },
};

export const serverCases = [postgresCase, mysqlCase];
export const allCases = [postgresCase, mysqlCase, sqliteCase];

/** Runs `body` once per dialect, in a `describe` named after it. */
export function describeEachDialect(cases: DialectCase[], name: string, body: (c: DialectCase) => void): void {
  for (const c of cases) describe(`${name} [${c.dialect}]`, () => body(c));
}

/** A table name unique to this process and call, so test files never collide. */
let tableCount = 0;
export function uniqueTable(prefix = 't'): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${++tableCount}`;
}

let freshCount = 0;
/**
 * A new, empty database for `c` (PostgreSQL and MariaDB: `CREATE DATABASE` on the suite's
 * server; SQLite: a new file), and how to drop it. For what must start from nothing: migrations.
 */
export async function freshDatabase(c: DialectCase): Promise<{ url: string; drop(): Promise<void> }> {
  if (c.dialect === 'sqlite') return { url: c.url(), drop: async () => {} };
  const name = `ndbp_fresh_${process.pid}_${++freshCount}`;
  const base = new URL(c.dialect === 'postgres' ? PG_URL : MYSQL_URL);
  const admin = async (statement: string) => {
    if (c.dialect === 'postgres') {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      try {
        await client.query(statement);
      } finally {
        await client.end();
      }
    } else {
      const { default: mysql } = await import('mysql2/promise');
      const conn = await mysql.createConnection(MYSQL_URL);
      try {
        await conn.query(statement);
      } finally {
        await conn.end();
      }
    }
  };
  await admin(c.dialect === 'postgres' ? `CREATE DATABASE ${name}` : `CREATE DATABASE ${name} CHARACTER SET utf8mb4`);
  base.pathname = `/${name}`;
  return {
    url: base.toString(),
    drop: () => admin(c.dialect === 'postgres' ? `DROP DATABASE IF EXISTS ${name} WITH (FORCE)` : `DROP DATABASE IF EXISTS ${name}`),
  };
}
