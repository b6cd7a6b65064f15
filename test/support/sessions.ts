/** Counts sessions on the real servers with the raw drivers, to prove what the pool opened. */
import pg from 'pg';
import mysql from 'mysql2/promise';
import type { Dialect } from '../../lib/index.js';
import { MYSQL_URL, PG_URL } from './databases.js';

/**
 * Server-side sessions other than the counting one: on PostgreSQL those with `application_name`
 * `scope` (when given), on MySQL those on database `scope` (default `test`, which other test
 * files running at the same time use too: give a database of the test's own to count exactly).
 */
export async function serverSessions(dialect: Dialect, scope?: string): Promise<number> {
  if (dialect === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      const { rows } = scope
        ? await client.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()', [scope])
        : await client.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()");
      return rows[0].n;
    } finally {
      await client.end();
    }
  }
  const conn = await mysql.createConnection(MYSQL_URL);
  try {
    const [rows] = await conn.query("SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon' AND DB = ?", [
      scope ?? 'test',
    ]);
    return Number((rows as Array<{ n: number }>)[0].n);
  } finally {
    await conn.end();
  }
}

/** Server pids / thread ids of sessions to kill in fault tests, optionally only those of `applicationName` (PostgreSQL). */
export async function killSessions(dialect: Dialect, filter?: { applicationName?: string; ids?: number[] }): Promise<number> {
  if (dialect === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      const { rows } = filter?.ids
        ? await client.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [filter.ids])
        : await client.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND application_name = $1",
            [filter?.applicationName ?? 'nestjs-dbpool'],
          );
      return rows.length;
    } finally {
      await client.end();
    }
  }
  const conn = await mysql.createConnection(MYSQL_URL);
  try {
    let ids = filter?.ids;
    if (!ids) {
      const [rows] = await conn.query("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND COMMAND <> 'Daemon' AND DB = 'test'");
      ids = (rows as Array<{ ID: number }>).map((r) => Number(r.ID));
    }
    for (const id of ids) await conn.query(`KILL CONNECTION ${Number(id)}`).catch(() => {});
    return ids.length;
  } finally {
    await conn.end();
  }
}
