/**
 * A throwaway MariaDB Galera cluster (galera-4): N `mariadbd` nodes (default 3) on loopback,
 * the first bootstrapped with `--wsrep-new-cluster`, the others joining one by one by state
 * transfer (rsync SST by default). Each node has its own datadir, port, socket, and Galera
 * group-communication / IST / SST ports (14561-14569: three per node, so at most 3 nodes).
 *
 *   const g = await startGaleraCluster();
 *   await mysqlQuery(g.urls[0], 'INSERT ...');      // synchronous replication:
 *   await mysqlQuery(g.urls[2], 'SELECT ...');      // committed on node 1 = visible on node 3
 *   await g.killNode(1);                           // SIGKILL; waits until the others see 2 nodes
 *   await g.startNode(1);                          // rejoins (IST or SST), waits until Synced
 *   await g.stop();
 *
 * Failure detection is tuned down (suspect 3 s, inactive 6 s) so a killed node leaves the
 * cluster within ~6 s instead of the default ~15 s.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GALERA_PROVIDER_CANDIDATES } from './packages.js';
import { PORT_RANGES, reservePorts } from './ports.js';
import { createMariadbServer, makeTemplateDatadir, mariadbBinaries, type CnfValue, type MariadbNode, type MariadbServer } from './mariadb.js';
import { firstExisting, runCommand, tailFile, waitFor, Workspace } from './process.js';

export type SstMethod = 'rsync' | 'mariabackup';

export interface GaleraOptions {
  /** Number of nodes, 1-3 (default 3). */
  nodes?: number;
  /** State snapshot transfer method (default rsync; mariabackup needs the mariadb-backup and socat packages). */
  sstMethod?: SstMethod;
  /** Database created through node 1 (default `test`). */
  database?: string;
  /** Extra my.cnf settings for every node. */
  settings?: Record<string, CnfValue>;
  /**
   * wsrep_sync_wait=1 on every node: a read waits until the node has applied everything
   * committed anywhere before it (read-your-writes across nodes). Default false, as in
   * production: a read on node 3 right after a commit on node 1 may then miss it briefly.
   */
  causalReads?: boolean;
  /** Extra wsrep_provider_options, appended (`key=value;key=value`). */
  providerOptions?: string;
  /** Bound for each wait (default 120 s: a join includes a state transfer). */
  timeoutMs?: number;
}

export interface GaleraStatus {
  ready: string;
  state: string;
  clusterSize: number;
  clusterStatus: string;
  connected: string;
}

export interface GaleraCluster {
  readonly dir: string;
  readonly nodes: readonly MariadbNode[];
  /** `mysql://root@127.0.0.1:PORT/test`, one per node. */
  readonly urls: readonly string[];
  /** wsrep status of node i. */
  status(i: number): Promise<GaleraStatus>;
  /** SIGKILLs node i; with `wait` (default) waits until the remaining nodes form a Synced primary component without it. */
  killNode(i: number, options?: { wait?: boolean }): Promise<void>;
  /** Clean shutdown (SIGTERM) of node i; waits like killNode. */
  stopNode(i: number, options?: { wait?: boolean }): Promise<void>;
  /**
   * Starts node i again; after a kill it first recovers its position (`--wsrep-recover`), so it
   * rejoins by IST when the donor's gcache still has the missed write-sets (else SST); waits
   * until every running node is Synced with the full size.
   * `bootstrap` starts it as a new cluster (only when no node runs).
   */
  startNode(i: number, options?: { bootstrap?: boolean }): Promise<void>;
  /** How node i got its state at its last start (from its error log): full SST, IST, or none. */
  lastStateTransfer(i: number): 'IST' | 'SST' | 'none' | undefined;
  /** Waits until every running node reports ready, Synced, Primary and cluster size = running nodes. */
  waitForSync(timeoutMs?: number): Promise<void>;
  /** Kills every node and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

export async function startGaleraCluster(options: GaleraOptions = {}): Promise<GaleraCluster> {
  const n = options.nodes ?? 3;
  if (!Number.isInteger(n) || n < 1 || n > 3) throw new Error('galera: nodes must be 1, 2 or 3 (three Galera ports per node in 14561-14569)');
  const provider = firstExisting(GALERA_PROVIDER_CANDIDATES);
  if (!provider) throw new Error('galera: libgalera_smm.so not found (apt-get install galera-4)');
  const database = options.database ?? 'test';
  const timeoutMs = options.timeoutMs ?? 120_000;
  const sstMethod = options.sstMethod ?? 'rsync';
  const sstNeeds = sstMethod === 'rsync' ? ['rsync'] : ['mariadb-backup', 'socat'];
  const missingTool = sstNeeds.find((tool) => !firstExisting([`/usr/bin/${tool}`, `/usr/local/bin/${tool}`]));
  if (missingTool)
    throw new Error(
      `galera: SST method ${sstMethod} needs ${missingTool} (apt-get install ${missingTool === 'mariadb-backup' ? 'mariadb-backup' : missingTool})`,
    );
  const ws = Workspace.create('galera');
  const destroy = (): Promise<void> => ws.destroy();
  try {
    const mysqlPorts = await reservePorts(ws, PORT_RANGES.mariadb, n);
    const galeraPorts = await reservePorts(ws, PORT_RANGES.galera, 3 * n);
    const gcommPorts = galeraPorts.slice(0, n);
    const istPorts = galeraPorts.slice(n, 2 * n);
    const sstPorts = galeraPorts.slice(2 * n, 3 * n);
    const template = await makeTemplateDatadir(ws);
    const clusterAddress = `gcomm://${gcommPorts.map((p) => `127.0.0.1:${p}`).join(',')}`;
    const nodes: MariadbServer[] = [];
    for (let i = 0; i < n; i++) {
      const providerOptions = [
        `base_host=127.0.0.1`,
        `base_port=${gcommPorts[i]}`,
        `gmcast.listen_addr=tcp://127.0.0.1:${gcommPorts[i]}`,
        `ist.recv_addr=127.0.0.1:${istPorts[i]}`,
        'gcache.size=32M',
        'gcache.page_size=16M',
        'evs.keepalive_period=PT1S',
        'evs.suspect_timeout=PT3S',
        'evs.inactive_timeout=PT6S',
        'evs.install_timeout=PT6S',
        'pc.wait_prim_timeout=PT30S',
        ...(options.providerOptions ? [options.providerOptions] : []),
      ].join(';');
      const settings: Record<string, CnfValue> = {
        wsrep_on: 'ON',
        wsrep_provider: provider,
        wsrep_cluster_name: 'ndbp-test',
        wsrep_cluster_address: clusterAddress,
        wsrep_node_name: `node${i + 1}`,
        wsrep_node_address: `127.0.0.1:${gcommPorts[i]}`,
        wsrep_node_incoming_address: `127.0.0.1:${mysqlPorts[i]}`,
        wsrep_sst_method: sstMethod,
        wsrep_sst_receive_address: `127.0.0.1:${sstPorts[i]}`,
        wsrep_provider_options: providerOptions,
        wsrep_slave_threads: 1,
        binlog_format: 'ROW',
        default_storage_engine: 'InnoDB',
        innodb_autoinc_lock_mode: 2,
        innodb_flush_log_at_trx_commit: 0,
        ...(options.causalReads ? { wsrep_sync_wait: 1 } : {}),
        ...(sstMethod === 'mariabackup' ? { wsrep_sst_auth: 'root:' } : {}),
        ...options.settings,
      };
      nodes.push(createMariadbServer(ws, { name: `node${i + 1}`, port: mysqlPorts[i]!, template, database, settings }));
    }

    const handle = makeHandle(ws, nodes, destroy, timeoutMs);
    nodes[0]!.start(['--wsrep-new-cluster']);
    await nodes[0]!.waitReady(timeoutMs);
    await handle.waitForSync();
    await nodes[0]!.adminQuery(`CREATE DATABASE IF NOT EXISTS \`${database}\``);
    for (let i = 1; i < n; i++) {
      nodes[i]!.start();
      await handle.waitForSync();
    }
    return handle;
  } catch (error) {
    await destroy();
    throw error;
  }
}

async function wsrepStatus(node: MariadbServer): Promise<GaleraStatus> {
  const rows = await node.adminQuery<{ Variable_name: string; Value: string }>(
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready','wsrep_local_state_comment','wsrep_cluster_size','wsrep_cluster_status','wsrep_connected')",
  );
  const v = Object.fromEntries(rows.map((r) => [r.Variable_name, r.Value]));
  return {
    ready: v.wsrep_ready ?? '',
    state: v.wsrep_local_state_comment ?? '',
    clusterSize: Number(v.wsrep_cluster_size ?? 0),
    clusterStatus: v.wsrep_cluster_status ?? '',
    connected: v.wsrep_connected ?? '',
  };
}

/**
 * After a crash grastate.dat says `seqno: -1` and the node would need a full SST. Like
 * `galera_recovery` (what systemd/mysqld_safe run), `mariadbd --wsrep-recover` reads the last
 * committed position from InnoDB; starting with `--wsrep-start-position` lets the node rejoin
 * by IST when the donor's gcache still holds what it missed.
 */
async function recoverPosition(node: MariadbServer, timeoutMs: number): Promise<string | undefined> {
  const grastate = path.join(node.dataDir, 'grastate.dat');
  if (!fs.existsSync(grastate)) return undefined;
  const state = fs.readFileSync(grastate, 'utf8');
  if (!/^seqno:\s*-1\s*$/m.test(state) || /^uuid:\s*0{8}-0{4}-0{4}-0{4}-0{12}\s*$/m.test(state)) return undefined;
  const log = path.join(node.instanceDir, 'wsrep-recover.log');
  fs.rmSync(log, { force: true });
  await runCommand(mariadbBinaries().daemon, [`--defaults-file=${node.cnfFile}`, '--wsrep-recover', `--log-error=${log}`], {
    timeoutMs,
    cwd: node.instanceDir,
  }).catch((error: Error) => {
    throw new Error(`galera: ${node.name}: mariadbd --wsrep-recover failed: ${error.message}\n${tailFile(log, 20)}`);
  });
  const match = /WSREP: Recovered position:\s*([0-9a-f-]{36}:-?\d+)/.exec(fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '');
  return match && !match[1]!.endsWith(':-1') ? match[1] : undefined;
}

/** How the last start of a node got its state, from its error log. */
function lastStateTransfer(node: MariadbServer): 'IST' | 'SST' | 'none' | undefined {
  if (!fs.existsSync(node.errorLog)) return undefined;
  const text = fs.readFileSync(node.errorLog, 'utf8');
  const since = text.slice(text.lastIndexOf('[Note] Starting MariaDB'));
  // the joiner announces what it asks for: a zero uuid means "no usable state", i.e. a full SST
  if (/####### IST uuid:0{8}-0{4}-0{4}-0{4}-0{12}/.test(since)) return 'SST';
  if (/####### IST uuid:/.test(since)) return 'IST';
  if (/Shifting JOINED -> SYNCED|Synchronized with group/.test(since)) return 'none';
  return undefined;
}

/** grastate.dat: after a crash seqno is -1; for a bootstrap safe_to_bootstrap must be 1. */
function markSafeToBootstrap(node: MariadbServer): void {
  const file = path.join(node.dataDir, 'grastate.dat');
  if (!fs.existsSync(file)) return;
  const text = fs.readFileSync(file, 'utf8').replace(/^safe_to_bootstrap:\s*0/m, 'safe_to_bootstrap: 1');
  fs.writeFileSync(file, text);
}

function makeHandle(ws: Workspace, nodes: MariadbServer[], destroy: () => Promise<void>, timeoutMs: number): GaleraCluster {
  const node = (i: number): MariadbServer => {
    const s = nodes[i];
    if (!s) throw new Error(`galera: no node ${i} (there are ${nodes.length}, numbered from 0)`);
    return s;
  };
  const statuses = new Map<string, string>();

  const waitForSync = async (waitMs = timeoutMs): Promise<void> => {
    const running = nodes.filter((s) => s.running);
    if (running.length === 0) return;
    statuses.clear();
    await waitFor(
      `galera: ${running.map((s) => s.name).join(', ')} Synced in a primary component of ${running.length}`,
      async () => {
        const all = await Promise.all(
          running.map(async (s) => {
            try {
              const st = await wsrepStatus(s);
              statuses.set(s.name, JSON.stringify(st));
              return st.ready === 'ON' && st.state === 'Synced' && st.clusterStatus === 'Primary' && st.clusterSize === running.length;
            } catch (error) {
              statuses.set(s.name, (error as Error).message);
              return false;
            }
          }),
        );
        return all.every(Boolean);
      },
      {
        timeoutMs: waitMs,
        intervalMs: 250,
        abort: () => {
          const dead = running.find((s) => !s.running);
          return dead ? `${dead.name} exited (${dead.process.exitDescription()}) while waiting` : undefined;
        },
        logTail: () =>
          [...statuses].map(([name, st]) => `${name}: ${st}`).join('\n') +
          '\n' +
          running.map((s) => `--- ${s.name} error log ---\n${s.errorLogTail(15)}`).join('\n'),
      },
    );
  };

  return {
    dir: ws.root,
    nodes,
    urls: nodes.map((s) => s.url),
    status: (i) => wsrepStatus(node(i)),

    async killNode(i, { wait = true } = {}) {
      await node(i).stop({ kill: true });
      if (wait) await waitForSync();
    },

    async stopNode(i, { wait = true } = {}) {
      await node(i).stop();
      if (wait) await waitForSync();
    },

    async startNode(i, { bootstrap = false } = {}) {
      const s = node(i);
      if (bootstrap) {
        if (nodes.some((o) => o.running)) throw new Error('galera: bootstrap only when no node runs');
        markSafeToBootstrap(s);
      }
      const position = await recoverPosition(s, timeoutMs);
      s.start([...(bootstrap ? ['--wsrep-new-cluster'] : []), ...(position ? [`--wsrep-start-position=${position}`] : [])]);
      await waitForSync();
    },

    waitForSync,
    lastStateTransfer: (i) => lastStateTransfer(node(i)),
    stop: destroy,
  };
}
