/**
 * One extra `mariadbd` instance: its own datadir (copied from a template made once per
 * machine with `mariadb-install-db` and cached in the temp dir), a generated my.cnf passed as `--defaults-file` (so nothing of the
 * system's /etc/mysql is read, by the server nor by the Galera SST scripts), its own port,
 * socket, pid file and error log. Runs as `mysql` when we are root. Memory is kept small.
 * Used by mariadb-replica.ts and galera.ts.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import nodeProcess from 'node:process';
import { mysqlQuery, type QueryOptions } from './clients.js';
import {
  chownTree,
  firstExisting,
  isRoot,
  makeDir,
  runCommand,
  tailFile,
  treeMemory,
  waitFor,
  type ManagedProcess,
  type MemoryUsage,
  type Workspace,
} from './process.js';

export type CnfValue = string | number | boolean | null;

export interface MariadbNode {
  readonly name: string;
  readonly port: number;
  /** `mysql://root@127.0.0.1:PORT/test` */
  readonly url: string;
  readonly dataDir: string;
  readonly socket: string;
  readonly errorLog: string;
  readonly cnfFile: string;
  readonly running: boolean;
  readonly pid: number | undefined;
  urlFor(database: string): string;
  /** One statement as root on this node (database `test`, once it exists). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  logTail(lines?: number): string;
  memory(): MemoryUsage;
}

export function mariadbBinaries(): { daemon: string; installDb: string } {
  const daemon = firstExisting(['/usr/sbin/mariadbd', '/usr/sbin/mysqld', '/usr/local/bin/mariadbd']);
  const installDb = firstExisting(['/usr/bin/mariadb-install-db', '/usr/bin/mysql_install_db', '/usr/local/bin/mariadb-install-db']);
  if (!daemon || !installDb) throw new Error('MariaDB server binaries (mariadbd, mariadb-install-db) not found: apt-get install mariadb-server');
  return { daemon, installDb };
}

const SERVER_USER = 'mysql';

const TEMPLATE_LAYOUT = 1; // bump when the install-db arguments change

/**
 * A datadir made by `mariadb-install-db` (root@127.0.0.1 and root@localhost with an empty
 * password, no test database), to copy for each instance. It is made once per machine and
 * MariaDB build and cached in the temp dir (install-db takes ~3 s; copying takes ~50 ms):
 * `<tmp>/ndbp-mariadb-template-<fingerprint>/data`. Never written to after it is made.
 */
export async function makeTemplateDatadir(ws: Workspace, timeoutMs = 120_000): Promise<string> {
  const { daemon, installDb } = mariadbBinaries();
  const st = fs.statSync(daemon);
  const fingerprint = `${TEMPLATE_LAYOUT}-${st.size}-${Math.floor(st.mtimeMs)}-${isRoot ? 'root' : nodeProcess.getuid?.()}`;
  const cacheDir = path.join(os.tmpdir(), `ndbp-mariadb-template-${fingerprint}`);
  if (fs.existsSync(path.join(cacheDir, 'complete'))) return path.join(cacheDir, 'data');

  const dir = makeDir(ws.path('mariadb-template'), SERVER_USER, 0o750);
  const data = path.join(dir, 'data');
  const args = [
    '--no-defaults',
    `--datadir=${data}`,
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
    '--skip-name-resolve',
    '--innodb-log-file-size=8M',
    '--innodb-buffer-pool-size=32M',
    '--performance-schema=OFF',
    ...(isRoot ? [`--user=${SERVER_USER}`] : []),
  ];
  try {
    await runCommand(installDb, args, { timeoutMs, cwd: dir });
  } catch (error) {
    throw new Error(`mariadb-install-db failed: ${(error as Error).message}`);
  }
  // publish atomically: another test process may be doing the same right now
  const staging = `${cacheDir}.${nodeProcess.pid}-${Date.now()}`;
  try {
    fs.mkdirSync(staging, { mode: 0o755 });
    fs.cpSync(data, path.join(staging, 'data'), { recursive: true, preserveTimestamps: true });
    fs.writeFileSync(path.join(staging, 'complete'), `${new Date().toISOString()} ${installDb}\n`);
    fs.renameSync(staging, cacheDir);
  } catch {
    // lost the race (or could not write): use our own copy
    fs.rmSync(staging, { recursive: true, force: true });
    return fs.existsSync(path.join(cacheDir, 'complete')) ? path.join(cacheDir, 'data') : data;
  }
  return path.join(cacheDir, 'data');
}

/** The settings every instance gets (bounded memory, nothing read from /etc/mysql). */
export function baseConfig(instanceDir: string, dataDir: string, port: number): Record<string, CnfValue> {
  return {
    ...(isRoot ? { user: SERVER_USER } : {}),
    datadir: dataDir,
    port,
    bind_address: '127.0.0.1',
    socket: path.join(instanceDir, 'mysqld.sock'),
    pid_file: path.join(instanceDir, 'mysqld.pid'),
    log_error: path.join(instanceDir, 'error.log'),
    tmpdir: path.join(instanceDir, 'tmp'),
    skip_name_resolve: true,
    performance_schema: 'OFF',
    innodb_buffer_pool_size: '32M',
    innodb_log_file_size: '8M',
    innodb_log_buffer_size: '2M',
    innodb_flush_log_at_trx_commit: 2,
    key_buffer_size: '1M',
    aria_pagecache_buffer_size: '8M',
    query_cache_type: 0,
    query_cache_size: 0,
    max_connections: 150,
    table_open_cache: 400,
    thread_cache_size: 8,
    character_set_server: 'utf8mb4',
    collation_server: 'utf8mb4_general_ci',
    max_allowed_packet: '64M',
  };
}

function renderCnf(settings: Record<string, CnfValue>): string {
  const lines = ['[mysqld]'];
  for (const [k, v] of Object.entries(settings)) {
    if (v === null || v === false) continue;
    lines.push(v === true ? k : `${k}=${typeof v === 'string' && /[\s;#]/.test(v) ? `"${v}"` : v}`);
  }
  return lines.join('\n') + '\n';
}

export class MariadbServer implements MariadbNode {
  readonly url: string;
  readonly dataDir: string;
  readonly socket: string;
  readonly errorLog: string;
  readonly cnfFile: string;
  readonly process: ManagedProcess;

  constructor(
    ws: Workspace,
    readonly name: string,
    readonly port: number,
    readonly instanceDir: string,
    readonly database: string,
    settings: Record<string, CnfValue>,
  ) {
    this.dataDir = String(settings.datadir);
    this.socket = String(settings.socket);
    this.errorLog = String(settings.log_error);
    this.cnfFile = path.join(instanceDir, 'my.cnf');
    fs.writeFileSync(this.cnfFile, renderCnf(settings));
    fs.chmodSync(this.cnfFile, 0o644);
    this.url = this.urlFor(database);
    this.process = ws.spawn({
      name: `mariadbd ${name} (port ${port})`,
      command: mariadbBinaries().daemon,
      args: [`--defaults-file=${this.cnfFile}`],
      cwd: instanceDir,
      outputFile: path.join(instanceDir, 'console.log'),
      logFile: this.errorLog,
    });
  }

  get running(): boolean {
    return this.process.running;
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  urlFor(database: string): string {
    return `mysql://root@127.0.0.1:${this.port}/${database}`;
  }

  query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
    return mysqlQuery<T>(this.url, sql, params);
  }

  /** A statement with no default database (works before `test` exists). */
  adminQuery<T = Record<string, unknown>>(sql: string, params: unknown[] = [], options?: QueryOptions): Promise<T[]> {
    return mysqlQuery<T>(`mysql://root@127.0.0.1:${this.port}/`, sql, params, options);
  }

  logTail(lines = 40): string {
    return this.process.logTail(lines);
  }

  errorLogTail(lines = 40): string {
    return tailFile(this.errorLog, lines);
  }

  memory(): MemoryUsage {
    return treeMemory(this.pid);
  }

  start(extraArgs: string[] = []): void {
    this.process.start(extraArgs);
  }

  /** Waits until root can run a query over TCP. */
  async waitReady(timeoutMs: number, what = `mariadbd ${this.name} on port ${this.port} accepting queries`): Promise<void> {
    await waitFor(what, async () => (await this.adminQuery('SELECT 1 AS one')).length === 1, { timeoutMs, process: this.process });
  }

  /** SIGTERM (clean shutdown) with SIGKILL after `timeoutMs`; or SIGKILL at once with `kill`. */
  async stop(options: { kill?: boolean; timeoutMs?: number } = {}): Promise<void> {
    if (options.kill) await this.process.kill();
    else await this.process.stop({ signal: 'SIGTERM', timeoutMs: options.timeoutMs ?? 30_000 });
  }
}

/** Creates (but does not start) an instance in `<workspace>/<name>` from the template datadir. */
export function createMariadbServer(
  ws: Workspace,
  options: { name: string; port: number; template: string; database: string; settings?: Record<string, CnfValue>; copyTemplate?: boolean },
): MariadbServer {
  const instanceDir = makeDir(ws.path(options.name), SERVER_USER, 0o750);
  const dataDir = path.join(instanceDir, 'data');
  if (options.copyTemplate ?? true) fs.cpSync(options.template, dataDir, { recursive: true, preserveTimestamps: true });
  else fs.mkdirSync(dataDir);
  makeDir(path.join(instanceDir, 'tmp'), SERVER_USER, 0o750);
  chownTree(instanceDir, isRoot ? SERVER_USER : undefined);
  const settings = { ...baseConfig(instanceDir, dataDir, options.port), ...options.settings };
  return new MariadbServer(ws, options.name, options.port, instanceDir, options.database, settings);
}
