/** PostgreSQL's streaming replication: WAL positions (LSNs) on the primary and the standby. */
import type { ReplicationSupport } from '../driver.js';

/** An LSN as PostgreSQL prints it (`16/B374D848`) → one number to compare. */
function lsn(text: string): bigint {
  const slash = text.indexOf('/');
  return (BigInt('0x' + text.slice(0, slash)) << 32n) + BigInt('0x' + text.slice(slash + 1));
}

export const POSTGRES_REPLICATION: ReplicationSupport = {
  // The WAL written so far: at or past the end of the commit that just returned.
  positionStatement: 'SELECT pg_current_wal_lsn()::text AS position',
  replicaStatusStatement:
    'SELECT pg_last_wal_replay_lsn()::text AS position, pg_is_in_recovery() AS replica, ' +
    'CASE WHEN NOT pg_is_in_recovery() OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 ' +
    'ELSE COALESCE(EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp())) * 1000, 0) END::float8 AS lag_ms',
  compare(a, b) {
    const x = lsn(a);
    const y = lsn(b);
    return x < y ? -1 : x > y ? 1 : 0;
  },
};
