/**
 * One-shot queries with the raw drivers (`pg`, `mysql2/promise`), for readiness checks and for
 * tests that want to look at a server directly. Each call opens and closes its own connection,
 * with short connect and query timeouts so a wait loop never hangs on one attempt.
 */
import pg from 'pg';
import mysql from 'mysql2/promise';

export interface QueryOptions {
  connectTimeoutMs?: number;
  queryTimeoutMs?: number;
}

/** Runs one statement on PostgreSQL (URL form `postgres://user@host:port/db`) and returns its rows. */
export async function pgQuery<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = [], options: QueryOptions = {}): Promise<T[]> {
  const client = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3_000,
    query_timeout: options.queryTimeoutMs ?? 15_000,
    application_name: 'ndbp-cluster-helper',
  });
  client.on('error', () => {
    // a server going away after the query: nothing to do
  });
  await client.connect();
  try {
    const result = await client.query(sql, params);
    return result.rows as T[];
  } finally {
    await client.end().catch(() => {});
  }
}

/** Runs one statement on MariaDB/MySQL (URL form `mysql://root@host:port/db`) and returns its rows. */
export async function mysqlQuery<T = Record<string, unknown>>(url: string, sql: string, params: unknown[] = [], options: QueryOptions = {}): Promise<T[]> {
  const u = new URL(url);
  const conn = await mysql.createConnection({
    host: u.hostname,
    port: Number(u.port || 3306),
    user: decodeURIComponent(u.username || 'root'),
    password: decodeURIComponent(u.password),
    database: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : undefined,
    connectTimeout: options.connectTimeoutMs ?? 3_000,
    multipleStatements: false,
  });
  conn.on('error', () => {
    // the server went away after the query
  });
  try {
    const [rows] = await conn.query({ sql, timeout: options.queryTimeoutMs ?? 15_000 }, params);
    return (Array.isArray(rows) ? rows : []) as T[];
  } finally {
    await conn.end().catch(() => conn.destroy());
  }
}
