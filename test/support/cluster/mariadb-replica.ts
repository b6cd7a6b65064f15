/**
 * A throwaway MariaDB primary with an asynchronous GTID replica: two extra `mariadbd`
 * instances (binlog, distinct server_id, log_slave_updates, gtid_strict_mode), a `test`
 * database, and `CHANGE MASTER TO ... MASTER_USE_GTID=slave_pos` on the replica.
 *
 *   const my = await startMariadbReplication();
 *   await mysqlQuery(my.primaryUrl, 'INSERT ...');
 *   await my.waitForReplica();                 // replica applied all the primary has binlogged
 *   await mysqlQuery(my.replicaUrl, 'SELECT ...');
 *   await my.stop();
 *
 * The replica has read_only=ON by default, which root (like any user with READ ONLY ADMIN)
 * bypasses: do not write there, or gtid_strict_mode stops replication (as in production).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PORT_RANGES, reservePorts } from './ports.js';
import { createMariadbServer, makeTemplateDatadir, type CnfValue, type MariadbNode, type MariadbServer } from './mariadb.js';
import { waitFor, Workspace } from './process.js';

export interface MariadbReplicationOptions {
  /** Exact ports [primary, replica] (default: free ports of 13061-13069). */
  ports?: [number, number];
  /** Database created on the primary (default `test`). */
  database?: string;
  /** read_only on the replica (default true). */
  replicaReadOnly?: boolean;
  /** Extra my.cnf settings for both servers. */
  settings?: Record<string, CnfValue>;
  timeoutMs?: number;
}

export interface ReplicaStatus {
  ioRunning: string;
  sqlRunning: string;
  lastIoError: string;
  lastSqlError: string;
  secondsBehindMaster: number | null;
  gtidSlavePos: string;
}

export interface MariadbReplication {
  readonly dir: string;
  readonly primary: MariadbNode;
  readonly replica: MariadbNode;
  readonly primaryUrl: string;
  readonly replicaUrl: string;
  /** Stops the whole replica server (SIGTERM, or SIGKILL with `kill`). */
  stopReplica(options?: { kill?: boolean }): Promise<void>;
  /** Starts the replica server again; waits until its SQL thread runs (and the IO thread, if the primary runs). */
  startReplica(): Promise<void>;
  stopPrimary(options?: { kill?: boolean }): Promise<void>;
  /** Starts the primary again; waits until the replica's IO thread is connected again. */
  startPrimary(): Promise<void>;
  /** `STOP SLAVE SQL_THREAD`: the replica keeps receiving but applies nothing. */
  stopSqlThread(): Promise<void>;
  /** `START SLAVE SQL_THREAD`. */
  startSqlThread(): Promise<void>;
  /** `STOP SLAVE IO_THREAD`: the replica stops receiving. */
  stopIoThread(): Promise<void>;
  startIoThread(): Promise<void>;
  replicaStatus(): Promise<ReplicaStatus>;
  /** Waits (MASTER_GTID_WAIT) until the replica has applied the primary's current @@gtid_binlog_pos. */
  waitForReplica(timeoutMs?: number): Promise<void>;
  /** Kills both servers and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startMariadbReplication(options: MariadbReplicationOptions = {}): Promise<MariadbReplication> {
  const database = options.database ?? 'test';
  const timeoutMs = options.timeoutMs ?? 60_000;
  const ws = Workspace.create('mariadb-repl');
  const destroy = (): Promise<void> => ws.destroy();
  try {
    const [primaryPort, replicaPort] = await reservePorts(ws, PORT_RANGES.mariadb, 2, options.ports);
    const template = await makeTemplateDatadir(ws, timeoutMs * 2);
    const replicationSettings = (serverId: number, name: string): Record<string, CnfValue> => ({
      server_id: serverId,
      log_bin: ws.path(name, 'binlog', 'mariadb-bin'),
      relay_log: ws.path(name, 'binlog', 'relay-bin'),
      log_slave_updates: 'ON',
      gtid_strict_mode: 'ON',
      gtid_domain_id: 0,
      binlog_format: 'ROW',
      sync_binlog: 0,
      slave_net_timeout: 10,
      ...options.settings,
    });
    const primary = createMariadbServer(ws, { name: 'primary', port: primaryPort!, template, database, settings: replicationSettings(1, 'primary') });
    const replica = createMariadbServer(ws, {
      name: 'replica',
      port: replicaPort!,
      template,
      database,
      settings: { ...replicationSettings(2, 'replica'), read_only: (options.replicaReadOnly ?? true) ? 'ON' : 'OFF', ...options.settings },
    });
    for (const s of [primary, replica]) makeBinlogDir(s);

    primary.start();
    replica.start();
    await Promise.all([primary.waitReady(timeoutMs), replica.waitReady(timeoutMs)]);

    await primary.adminQuery(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    await primary.adminQuery("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY 'repl'");
    await primary.adminQuery("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'127.0.0.1'");
    await replica.adminQuery(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.port}, MASTER_USER='repl', MASTER_PASSWORD='repl', ` +
        'MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1',
    );
    await replica.adminQuery('START SLAVE');
    const handle = makeHandle(ws, primary, replica, destroy, timeoutMs);
    await waitThreads(replica, { io: 'Yes', sql: 'Yes' }, timeoutMs);
    await handle.waitForReplica(timeoutMs);
    return handle;
  } catch (error) {
    await destroy();
    throw error;
  }
}

/** log_bin and relay_log point into <instance>/binlog: create it, owned like the instance. */
function makeBinlogDir(s: MariadbServer): void {
  const dir = path.join(s.instanceDir, 'binlog');
  fs.mkdirSync(dir, { recursive: true });
  const st = fs.statSync(s.instanceDir);
  fs.chownSync(dir, st.uid, st.gid);
  fs.chmodSync(dir, 0o750);
}

async function slaveStatus(replica: MariadbServer): Promise<ReplicaStatus> {
  const rows = await replica.adminQuery<Record<string, unknown>>('SHOW SLAVE STATUS');
  const r = rows[0];
  if (!r) throw new Error('SHOW SLAVE STATUS returned nothing: replication is not configured');
  const [pos] = await replica.adminQuery<{ pos: string }>('SELECT @@GLOBAL.gtid_slave_pos AS pos');
  const behind = r.Seconds_Behind_Master;
  return {
    ioRunning: String(r.Slave_IO_Running),
    sqlRunning: String(r.Slave_SQL_Running),
    lastIoError: String(r.Last_IO_Error ?? ''),
    lastSqlError: String(r.Last_SQL_Error ?? ''),
    secondsBehindMaster: behind === null || behind === undefined ? null : Number(behind),
    gtidSlavePos: pos?.pos ?? '',
  };
}

async function waitThreads(replica: MariadbServer, want: { io?: string; sql?: string }, timeoutMs: number): Promise<void> {
  let last: ReplicaStatus | undefined;
  await waitFor(
    `replica ${replica.name} threads IO=${want.io ?? 'any'} SQL=${want.sql ?? 'any'}`,
    async () => {
      last = await slaveStatus(replica);
      return (!want.io || last.ioRunning === want.io) && (!want.sql || last.sqlRunning === want.sql);
    },
    {
      timeoutMs,
      process: replica.process,
      logTail: () =>
        `${last ? `slave status: IO=${last.ioRunning} SQL=${last.sqlRunning} io_error=${last.lastIoError} sql_error=${last.lastSqlError}\n` : ''}${replica.errorLogTail(20)}`,
    },
  );
}

function makeHandle(ws: Workspace, primary: MariadbServer, replica: MariadbServer, destroy: () => Promise<void>, timeoutMs: number): MariadbReplication {
  const handle: MariadbReplication = {
    dir: ws.root,
    primary,
    replica,
    primaryUrl: primary.url,
    replicaUrl: replica.url,

    async stopReplica({ kill = false } = {}) {
      await replica.stop({ kill });
    },

    async startReplica() {
      replica.start();
      await replica.waitReady(timeoutMs);
      await waitThreads(replica, primary.running ? { io: 'Yes', sql: 'Yes' } : { sql: 'Yes' }, timeoutMs);
    },

    async stopPrimary({ kill = false } = {}) {
      await primary.stop({ kill });
    },

    async startPrimary() {
      primary.start();
      await primary.waitReady(timeoutMs);
      if (replica.running) await waitThreads(replica, { io: 'Yes' }, timeoutMs);
    },

    async stopSqlThread() {
      await replica.adminQuery('STOP SLAVE SQL_THREAD');
      await waitThreads(replica, { sql: 'No' }, timeoutMs);
    },

    async startSqlThread() {
      await replica.adminQuery('START SLAVE SQL_THREAD');
      await waitThreads(replica, { sql: 'Yes' }, timeoutMs);
    },

    async stopIoThread() {
      await replica.adminQuery('STOP SLAVE IO_THREAD');
      await waitThreads(replica, { io: 'No' }, timeoutMs);
    },

    async startIoThread() {
      await replica.adminQuery('START SLAVE IO_THREAD');
      await waitThreads(replica, primary.running ? { io: 'Yes' } : {}, timeoutMs);
    },

    replicaStatus: () => slaveStatus(replica),

    async waitForReplica(waitMs = timeoutMs) {
      if (!primary.running) throw new Error('waitForReplica: the primary is not running');
      const [{ pos }] = await primary.adminQuery<{ pos: string }>('SELECT @@GLOBAL.gtid_binlog_pos AS pos');
      const seconds = Math.max(1, Math.ceil(waitMs / 1000));
      const [{ r }] = await mysqlWait(replica, pos, seconds);
      if (Number(r) !== 0) {
        const st = await slaveStatus(replica).catch((e: Error) => e.message);
        throw new Error(
          `waitForReplica: replica did not reach GTID ${pos} within ${waitMs} ms; status: ${JSON.stringify(st)}\n--- replica error log ---\n${replica.errorLogTail(20)}`,
        );
      }
    },

    stop: destroy,
  };
  return handle;
}

function mysqlWait(replica: MariadbServer, pos: string, seconds: number): Promise<Array<{ r: number | string | null }>> {
  if (!pos) return Promise.resolve([{ r: 0 }]);
  return replica.adminQuery<{ r: number | string | null }>('SELECT MASTER_GTID_WAIT(?, ?) AS r', [pos, seconds], { queryTimeoutMs: seconds * 1000 + 10_000 });
}
