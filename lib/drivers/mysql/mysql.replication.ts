/**
 * MariaDB's GTID replication: the GTID a session's last commit got (`@@last_gtid`) on the
 * primary, `MASTER_GTID_WAIT()` and `SHOW ALL SLAVES STATUS` on the replica.
 */
import type { Connection, ReplicationSupport } from '../driver.js';

/** A GTID position (`0-1-42,1-2-7`): per replication domain, the highest sequence number. */
function domains(position: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const gtid of position.split(',')) {
    const parts = gtid.trim().split('-');
    if (parts.length !== 3) continue;
    const seq = BigInt(parts[2]);
    const before = out.get(parts[0]);
    if (before === undefined || seq > before) out.set(parts[0], seq);
  }
  return out;
}

/** Keeps the server id of the GTIDs it merges (MASTER_GTID_WAIT wants whole GTIDs). */
function gtids(position: string): Map<string, { server: string; seq: bigint }> {
  const out = new Map<string, { server: string; seq: bigint }>();
  for (const gtid of position.split(',')) {
    const parts = gtid.trim().split('-');
    if (parts.length !== 3) continue;
    const seq = BigInt(parts[2]);
    const before = out.get(parts[0]);
    if (before === undefined || seq > before.seq) out.set(parts[0], { server: parts[1], seq });
  }
  return out;
}

async function one<T>(connection: Connection, text: string, values: unknown[] = []): Promise<T | undefined> {
  const result = await connection.execute(text, values, { rowMode: 'object', prepare: false });
  return result.rows[0] as T | undefined;
}

export const MYSQL_REPLICATION: ReplicationSupport = {
  async positionAfterWrite(connection) {
    // The GTID of this session's last transaction; empty when it wrote nothing to the binary log.
    const row = await one<{ position: string }>(connection, 'SELECT @@last_gtid AS position');
    return row?.position ? row.position : undefined;
  },
  async replicaStatus(connection) {
    const result = await connection.execute('SHOW ALL SLAVES STATUS', [], { rowMode: 'object', prepare: false });
    const row = result.rows[0] as
      { Slave_SQL_Running?: string; Slave_IO_Running?: string; Seconds_Behind_Master?: number | string | null; Gtid_Slave_Pos?: string } | undefined;
    if (!row) return { replica: false, lagMs: 0 };
    // A stopped SQL thread applies nothing: as far behind as it gets.
    const behind = row.Slave_SQL_Running === 'Yes' && row.Seconds_Behind_Master !== null && row.Seconds_Behind_Master !== undefined;
    return {
      ...(row.Gtid_Slave_Pos ? { position: row.Gtid_Slave_Pos } : {}),
      replica: true,
      lagMs: behind ? Number(row.Seconds_Behind_Master) * 1000 : Infinity,
    };
  },
  async waitFor(connection, position, waitMs) {
    const row = await one<{ w: number | string | null }>(connection, 'SELECT MASTER_GTID_WAIT(?, ?) AS w', [position, Math.max(0, waitMs) / 1000]);
    return Number(row?.w) === 0;
  },
  includes(a, b) {
    const have = domains(a);
    for (const [domain, seq] of domains(b)) if ((have.get(domain) ?? -1n) < seq) return false;
    return true;
  },
  merge(a, b) {
    const out = gtids(a);
    for (const [domain, g] of gtids(b)) if ((out.get(domain)?.seq ?? -1n) < g.seq) out.set(domain, g);
    return [...out].map(([domain, g]) => `${domain}-${g.server}-${g.seq}`).join(',');
  },
  readOnlySession: 'SET SESSION TRANSACTION READ ONLY',
};
