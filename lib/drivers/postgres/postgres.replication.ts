/** PostgreSQL's streaming replication: WAL positions (LSNs) on the primary and the standby. */
import { setTimeout as delay } from 'node:timers/promises';
import type { Connection, ReplicationSupport } from '../driver.js';

/** An LSN as PostgreSQL prints it (`16/B374D848`) → one number to compare. */
function lsn(text: string): bigint {
  const slash = text.indexOf('/');
  return (BigInt('0x' + text.slice(0, slash)) << 32n) + BigInt('0x' + text.slice(slash + 1));
}

const STATUS =
  'SELECT pg_last_wal_replay_lsn()::text AS position, pg_is_in_recovery() AS replica, ' +
  'CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 ' +
  'ELSE COALESCE(EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp())) * 1000, 0) END::float8 AS lag_ms';

async function status(connection: Connection): Promise<{ position?: string; replica: boolean; lagMs: number }> {
  const result = await connection.execute(STATUS, [], { rowMode: 'object', prepare: false });
  const row = result.rows[0] as { position: string | null; replica: boolean; lag_ms: number | string };
  return { ...(row.position !== null ? { position: row.position } : {}), replica: row.replica, lagMs: Number(row.lag_ms) };
}

export const POSTGRES_REPLICATION: ReplicationSupport = {
  async positionAfterWrite(connection) {
    // The WAL written so far: at or past the end of the commit that just returned.
    const result = await connection.execute('SELECT pg_current_wal_lsn()::text AS position', [], { rowMode: 'object', prepare: false });
    return (result.rows[0] as { position: string }).position;
  },
  replicaStatus: status,
  async waitFor(connection, position, waitMs) {
    // PostgreSQL has no wait for a replay position: its replay position is read until it is there (every ms) or time is up.
    const deadline = Date.now() + waitMs;
    for (;;) {
      const now = await status(connection);
      if (!now.replica || now.position === undefined) return false;
      if (lsn(now.position) >= lsn(position)) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await delay(Math.min(1, left));
    }
  },
  includes: (a, b) => lsn(a) >= lsn(b),
  merge: (a, b) => (lsn(a) >= lsn(b) ? a : b),
  readOnlySession: 'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY',
};
