/**
 * A throwaway PostgreSQL primary with one or more streaming standbys (physical replication,
 * `pg_basebackup -R -X stream`), each its own `postgres` process on its own port, all in one
 * temp directory. Runs as the `postgres` user when we are root (PostgreSQL refuses root).
 *
 *   const pg = await startPostgresCluster();            // primary + 1 standby, database `test`
 *   await pgQuery(pg.primaryUrl, 'INSERT ...');
 *   await pg.waitForReplay();                           // standby has replayed everything so far
 *   await pgQuery(pg.standbyUrl, 'SELECT ...');
 *   await pg.stop();
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pgQuery } from './clients.js';
import { postgresBinDir } from './packages.js';
import { PORT_RANGES, reservePorts } from './ports.js';
import { makeDir, runCommand, treeMemory, waitFor, Workspace, type ManagedProcess, type MemoryUsage } from './process.js';

export type PgStopMode = 'smart' | 'fast' | 'immediate';

const STOP_SIGNAL: Record<PgStopMode, NodeJS.Signals> = { smart: 'SIGTERM', fast: 'SIGINT', immediate: 'SIGQUIT' };

export interface PgClusterOptions {
  /** Number of streaming standbys (default 1; at most 7 with the default port range). */
  standbys?: number;
  /** Database created on the primary, used in the URLs (default `test`). */
  database?: string;
  /** Exact ports, primary first (default: free ports of 55432-55439). */
  ports?: number[];
  /** Extra postgresql.conf settings for every node, e.g. `{ max_connections: 200 }`. */
  settings?: Record<string, string | number | boolean>;
  /** Bound for each wait while starting (default 60 s). */
  timeoutMs?: number;
}

export interface PgNode {
  /** `primary`, `standby1`, `standby2`, ... */
  readonly name: string;
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:PORT/test` */
  readonly url: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** What the node is now (a promoted standby is a primary). */
  readonly role: 'primary' | 'standby';
  readonly running: boolean;
  /** The postmaster's pid while running. */
  readonly pid: number | undefined;
  urlFor(database: string): string;
  /** One statement on this node's database. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  logTail(lines?: number): string;
  /** RSS/PSS of the postmaster and all its backends. */
  memory(): MemoryUsage;
}

export interface PgCluster {
  /** The temp directory holding everything (removed by `stop()`). */
  readonly dir: string;
  readonly primary: PgNode;
  readonly standbys: readonly PgNode[];
  /** Same as `primary.url`. */
  readonly primaryUrl: string;
  /** URL of the first standby. */
  readonly standbyUrl: string;
  readonly standbyUrls: readonly string[];
  /** Every node, primary first. */
  readonly nodes: readonly PgNode[];
  /** `pg_ctl promote` standby `i` (default 0), then waits until `pg_is_in_recovery()` is false. */
  promote(i?: number): Promise<void>;
  stopPrimary(options?: { mode?: PgStopMode }): Promise<void>;
  /** Starts the primary again and waits until it accepts queries (and its standbys stream again). */
  startPrimary(): Promise<void>;
  stopStandby(i?: number, options?: { mode?: PgStopMode }): Promise<void>;
  /** Starts standby `i` again and waits until it is in recovery (and streaming, when the primary runs). */
  startStandby(i?: number): Promise<void>;
  /** `pg_wal_replay_pause()` on standby `i`, waiting until the pause state is `paused`. */
  pauseReplay(i?: number): Promise<void>;
  /** `pg_wal_replay_resume()` on standby `i`, waiting until it is `not paused`. */
  resumeReplay(i?: number): Promise<void>;
  /** Waits until standby `i` (default: every running standby) has replayed the primary's current WAL position. */
  waitForReplay(i?: number, timeoutMs?: number): Promise<void>;
  /** Kills every process and removes the directory. Safe to call twice. */
  stop(): Promise<void>;
}

class PgServer implements PgNode {
  role: 'primary' | 'standby';
  readonly url: string;
  readonly logFile: string;

  constructor(
    readonly name: string,
    readonly port: number,
    readonly dataDir: string,
    readonly database: string,
    readonly process: ManagedProcess,
    role: 'primary' | 'standby',
  ) {
    this.role = role;
    this.url = this.urlFor(database);
    this.logFile = process.spec.outputFile;
  }

  get running(): boolean {
    return this.process.running;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  urlFor(database: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    return pgQuery<T>(this.url, sql, params);
  }

  adminQuery<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    return pgQuery<T>(this.urlFor('postgres'), sql, params);
  }

  logTail(lines = 40): string {
    return this.process.logTail(lines);
  }

  memory(): MemoryUsage {
    return treeMemory(this.pid);
  }

  start(): void {
    this.process.start();
  }

  /** Waits until it answers, as a primary or a standby as expected. */
  async waitReady(timeoutMs: number): Promise<void> {
    await waitFor(
      `postgres ${this.name} on port ${this.port} accepting queries as ${this.role}`,
      async () => {
        const rows = await this.adminQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
        return rows[0]?.r === (this.role === 'standby');
      },
      { timeoutMs, process: this.process },
    );
  }

  async stop(mode: PgStopMode, timeoutMs = 30_000): Promise<void> {
    await this.process.stop({ signal: STOP_SIGNAL[mode], timeoutMs });
  }
}

/** Starts a primary and `standbys` streaming standbys; on failure everything started is removed. */
export async function startPostgresCluster(options: PgClusterOptions = {}): Promise<PgCluster> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL server binaries not found (install postgresql-15, or set PG_BIN)');
  const standbyCount = options.standbys ?? 1;
  if (standbyCount < 0) throw new Error('standbys must be >= 0');
  const database = options.database ?? 'test';
  const timeoutMs = options.timeoutMs ?? 60_000;
  const ws = Workspace.create('pg');
  // Immediate shutdown (SIGQUIT) first: it removes the shared memory segment a SIGKILL would leak.
  const destroy = (): Promise<void> => ws.destroy(() => ({ signal: 'SIGQUIT', timeoutMs: 5_000 }));
  const pgDir = makeDir(ws.path('pg'), 'postgres', 0o755);
  const servers: PgServer[] = [];

  const makeServer = (name: string, port: number, role: 'primary' | 'standby'): PgServer => {
    const dataDir = path.join(pgDir, name);
    const proc = ws.spawn({
      name: `postgres ${name} (port ${port})`,
      command: path.join(bin, 'postgres'),
      args: ['-D', dataDir],
      user: 'postgres',
      cwd: pgDir,
      outputFile: path.join(ws.root, `${name}.log`),
    });
    return new PgServer(name, port, dataDir, database, proc, role);
  };

  try {
    const ports = await reservePorts(ws, PORT_RANGES.postgres, 1 + standbyCount, options.ports);
    const primary = makeServer('primary', ports[0]!, 'primary');
    servers.push(primary);

    await runCommand(
      path.join(bin, 'initdb'),
      ['-D', primary.dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
      { user: 'postgres', timeoutMs, cwd: pgDir },
    );
    const settings: Record<string, string | number | boolean> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: pgDir,
      wal_level: 'replica',
      max_wal_senders: 10,
      max_replication_slots: 10,
      wal_keep_size: '128MB',
      hot_standby: 'on',
      wal_receiver_status_interval: '1s',
      wal_retrieve_retry_interval: '500ms',
      // bounded memory, fast and disposable
      shared_buffers: '16MB',
      max_connections: 60,
      work_mem: '2MB',
      maintenance_work_mem: '16MB',
      max_worker_processes: 4,
      max_parallel_workers: 2,
      max_parallel_workers_per_gather: 0,
      dynamic_shared_memory_type: 'mmap', // files inside the data dir, removed with it
      huge_pages: 'off',
      // fsync off only matters for an OS crash; synchronous_commit stays on so a commit that
      // returned survives a killed primary (as in production) and waitForReplay covers it
      fsync: 'off',
      full_page_writes: 'off',
      logging_collector: 'off',
      log_min_messages: 'warning',
      log_line_prefix: "'%m [%p] %q%a '",
      ...options.settings,
    };
    const conf = Object.entries(settings).map(([k, v]) => `${k} = ${formatSetting(v)}`);
    fs.appendFileSync(path.join(primary.dataDir, 'postgresql.conf'), `\n# nestjs-dbpool cluster helper\n${conf.join('\n')}\nport = ${primary.port}\n`);
    fs.writeFileSync(
      path.join(primary.dataDir, 'pg_hba.conf'),
      ['local all all trust', 'host all all 127.0.0.1/32 trust', 'local replication all trust', 'host replication all 127.0.0.1/32 trust', ''].join('\n'),
    );
    primary.start();
    await primary.waitReady(timeoutMs);
    if (database !== 'postgres') await primary.adminQuery(`CREATE DATABASE ${quoteIdent(database)}`);

    for (let i = 1; i <= standbyCount; i++) {
      const standby = makeServer(`standby${i}`, ports[i]!, 'standby');
      servers.push(standby);
      await runCommand(
        path.join(bin, 'pg_basebackup'),
        ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', standby.dataDir, '-R', '-X', 'stream', '-c', 'fast', '--no-sync'],
        { user: 'postgres', timeoutMs, cwd: pgDir },
      );
      fs.appendFileSync(path.join(standby.dataDir, 'postgresql.conf'), `port = ${standby.port}\n`);
      fs.appendFileSync(
        path.join(standby.dataDir, 'postgresql.auto.conf'),
        `primary_conninfo = 'host=127.0.0.1 port=${primary.port} user=postgres application_name=${standby.name}'\n`,
      );
    }
    const standbys = servers.slice(1);
    for (const s of standbys) s.start();
    await Promise.all(standbys.map((s) => s.waitReady(timeoutMs)));
    await Promise.all(standbys.map((s) => waitStreaming(primary, s, timeoutMs)));
    await Promise.all(standbys.map((s) => waitReplayed(primary, s, timeoutMs)));

    return makeHandle(ws, servers, destroy, timeoutMs);
  } catch (error) {
    await destroy();
    throw error;
  }
}

function formatSetting(v: string | number | boolean): string {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return v.startsWith("'") ? v : `'${v.replace(/'/g, "''")}'`;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

async function waitStreaming(primary: PgServer, standby: PgServer, timeoutMs: number): Promise<void> {
  await waitFor(
    `${standby.name} streaming from ${primary.name}`,
    async () => {
      const rows = await primary.adminQuery<{ state: string }>('SELECT state FROM pg_stat_replication WHERE application_name = $1', [standby.name]);
      return rows.some((r) => r.state === 'streaming');
    },
    { timeoutMs, process: standby.process, logTail: () => `${standby.logTail(20)}\n${primary.logTail(10)}` },
  );
}

async function waitReplayed(primary: PgServer, standby: PgServer, timeoutMs: number): Promise<void> {
  if (!primary.running) throw new Error(`waitForReplay: the primary is not running`);
  // The flush position covers every commit that has returned (synchronous_commit on), and unlike
  // the insert position it never points past a page header no record follows yet.
  const [{ lsn }] = await primary.adminQuery<{ lsn: string }>('SELECT pg_current_wal_flush_lsn()::text AS lsn');
  await waitFor(
    `${standby.name} replaying up to ${lsn}`,
    async () => {
      const rows = await standby.adminQuery<{ ok: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok', [lsn]);
      return rows[0]?.ok === true;
    },
    { timeoutMs, process: standby.process },
  );
}

function makeHandle(ws: Workspace, servers: PgServer[], destroy: () => Promise<void>, timeoutMs: number): PgCluster {
  const primary = servers[0]!;
  const standbys = servers.slice(1);
  const standby = (i: number): PgServer => {
    const s = standbys[i];
    if (!s) throw new Error(`no standby ${i} (there are ${standbys.length})`);
    return s;
  };
  const replicating = (s: PgServer): boolean => s.role === 'standby' && s.running && primary.running && primary.role === 'primary';

  return {
    dir: ws.root,
    primary,
    standbys,
    nodes: servers,
    primaryUrl: primary.url,
    standbyUrl: standbys[0]?.url ?? '',
    standbyUrls: standbys.map((s) => s.url),

    async promote(i = 0) {
      const s = standby(i);
      if (!s.running) throw new Error(`promote: ${s.name} is not running`);
      await runCommand(path.join(postgresBinDir()!, 'pg_ctl'), ['promote', '-D', s.dataDir, '-w', '-t', String(Math.ceil(timeoutMs / 1000))], {
        user: 'postgres',
        timeoutMs: timeoutMs + 5_000,
      });
      await waitFor(
        `${s.name} out of recovery after promote`,
        async () => (await s.adminQuery<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === false,
        { timeoutMs, process: s.process },
      );
      s.role = 'primary';
    },

    async stopPrimary({ mode = 'fast' } = {}) {
      await primary.stop(mode);
    },

    async startPrimary() {
      primary.start();
      await primary.waitReady(timeoutMs);
      await Promise.all(standbys.filter(replicating).map((s) => waitStreaming(primary, s, timeoutMs)));
    },

    async stopStandby(i = 0, { mode = 'fast' } = {}) {
      await standby(i).stop(mode);
    },

    async startStandby(i = 0) {
      const s = standby(i);
      s.start();
      await s.waitReady(timeoutMs);
      if (replicating(s)) await waitStreaming(primary, s, timeoutMs);
    },

    async pauseReplay(i = 0) {
      const s = standby(i);
      await s.adminQuery('SELECT pg_wal_replay_pause()');
      await waitFor(
        `${s.name} replay paused`,
        async () => (await s.adminQuery<{ state: string }>('SELECT pg_get_wal_replay_pause_state() AS state'))[0]?.state === 'paused',
        { timeoutMs, process: s.process },
      );
    },

    async resumeReplay(i = 0) {
      const s = standby(i);
      await s.adminQuery('SELECT pg_wal_replay_resume()');
      await waitFor(
        `${s.name} replay resumed`,
        async () => (await s.adminQuery<{ state: string }>('SELECT pg_get_wal_replay_pause_state() AS state'))[0]?.state === 'not paused',
        { timeoutMs, process: s.process },
      );
    },

    async waitForReplay(i?: number, waitMs = timeoutMs) {
      if (!primary.running) throw new Error('waitForReplay: the primary is not running');
      const targets = i === undefined ? standbys.filter(replicating) : [standby(i)];
      await Promise.all(targets.map((s) => waitReplayed(primary, s, waitMs)));
    },

    stop: destroy,
  };
}
