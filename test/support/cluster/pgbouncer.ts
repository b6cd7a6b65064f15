/**
 * A throwaway PgBouncer in front of a PostgreSQL server: its own config, userlist and port, run
 * as the `postgres` user (PgBouncer refuses to run as root). Every database name is forwarded
 * (`* = host=... port=...`), so `bouncer.url` reaches database `test` and `urlFor('x')` any other.
 *
 *   const bouncer = await startPgBouncer({ port: pg.primary.port, poolMode: 'transaction' });
 *   await pgQuery(bouncer.url, 'SELECT 1');
 *   await bouncer.restart();                       // SIGTERM (immediate shutdown) + start
 *   await bouncer.restart({ poolMode: 'session' }); // same port, other pool mode
 *   await bouncer.dispose();                       // process, port and directory gone
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { pgQuery } from './clients.js';
import { PORT_RANGES, reservePorts } from './ports.js';
import { firstExisting, makeDir, treeMemory, waitFor, Workspace, type ManagedProcess, type MemoryUsage } from './process.js';

export type PoolMode = 'session' | 'transaction' | 'statement';

export interface PgBouncerOptions {
  /** The PostgreSQL server to pool (default host 127.0.0.1). */
  host?: string;
  port: number;
  poolMode?: PoolMode;
  /** Listen port (default: a free port of 16432-16435). */
  listenPort?: number;
  /** Database in `url` (default `test`). */
  database?: string;
  /** Users allowed in (auth_type trust still wants them in the userlist); default ['postgres']. */
  users?: string[];
  defaultPoolSize?: number;
  maxClientConn?: number;
  /** Extra [pgbouncer] settings, e.g. `{ server_idle_timeout: 5 }`. */
  settings?: Record<string, string | number>;
  /** When true (default), `start()` waits until a query through PgBouncer reaches the server. */
  waitForServer?: boolean;
  timeoutMs?: number;
}

export interface PgBouncer {
  readonly dir: string;
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:PORT/test` through PgBouncer. */
  readonly url: string;
  /** The admin console (`SHOW POOLS`, `PAUSE`, `RECONNECT` ...): database `pgbouncer`. */
  readonly adminUrl: string;
  readonly poolMode: PoolMode;
  readonly running: boolean;
  readonly pid: number | undefined;
  readonly configFile: string;
  urlFor(database: string, user?: string): string;
  /** A statement on the admin console, e.g. `admin('SHOW POOLS')`. */
  admin<T = Record<string, unknown>>(command: string): Promise<T[]>;
  /** Starts it (again), optionally in another pool mode; waits until it answers. */
  start(options?: { poolMode?: PoolMode }): Promise<void>;
  /**
   * Stops the process, keeping port and config so `start()` works again. `immediate` (default,
   * SIGTERM) drops clients at once; `safe` (SIGINT) waits for server connections to be released,
   * then SIGKILL after `timeoutMs`.
   */
  stop(options?: { mode?: 'immediate' | 'safe'; timeoutMs?: number }): Promise<void>;
  /** stop + start; same port. */
  restart(options?: { poolMode?: PoolMode; mode?: 'immediate' | 'safe' }): Promise<void>;
  logTail(lines?: number): string;
  memory(): MemoryUsage;
  /** Kills it, releases the port and removes the directory. Safe to call twice. */
  dispose(): Promise<void>;
}

/** Starts PgBouncer; on failure everything is removed again. */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const binary = firstExisting(['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']);
  if (!binary) throw new Error('pgbouncer not found (apt-get install pgbouncer)');
  const timeoutMs = options.timeoutMs ?? 30_000;
  const database = options.database ?? 'test';
  const users = options.users ?? ['postgres'];
  const ws = Workspace.create('pgbouncer');
  const dispose = (): Promise<void> => ws.destroy();
  try {
    const [port] = await reservePorts(ws, PORT_RANGES.pgbouncer, 1, options.listenPort === undefined ? undefined : [options.listenPort]);
    const dir = makeDir(ws.path('pgbouncer'), 'postgres', 0o755);
    const configFile = path.join(dir, 'pgbouncer.ini');
    const userlist = path.join(dir, 'userlist.txt');
    fs.writeFileSync(userlist, users.map((u) => `"${u}" ""`).join('\n') + '\n');
    let poolMode: PoolMode = options.poolMode ?? 'transaction';

    const writeConfig = (): void => {
      const settings: Record<string, string | number> = {
        listen_addr: '127.0.0.1',
        listen_port: port!,
        unix_socket_dir: dir,
        auth_type: 'trust',
        auth_file: userlist,
        admin_users: users[0] ?? 'postgres',
        stats_users: users[0] ?? 'postgres',
        pool_mode: poolMode,
        max_client_conn: options.maxClientConn ?? 200,
        default_pool_size: options.defaultPoolSize ?? 10,
        server_reset_query: 'DISCARD ALL',
        server_login_retry: 1,
        server_connect_timeout: 5,
        query_wait_timeout: 30,
        ignore_startup_parameters: 'extra_float_digits',
        pidfile: path.join(dir, 'pgbouncer.pid'),
        ...options.settings,
      };
      const lines = [
        '[databases]',
        `* = host=${options.host ?? '127.0.0.1'} port=${options.port}`,
        '',
        '[pgbouncer]',
        ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`),
        '',
      ];
      fs.writeFileSync(configFile, lines.join('\n'));
    };

    const proc: ManagedProcess = ws.spawn({
      name: `pgbouncer (port ${port})`,
      command: binary,
      args: [configFile],
      user: 'postgres', // "PgBouncer should not run as root"
      cwd: dir,
      outputFile: path.join(ws.root, 'pgbouncer.log'),
    });

    const urlFor = (db: string, user = users[0] ?? 'postgres'): string => `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${db}`;
    const url = urlFor(database);

    const start = async (startOptions: { poolMode?: PoolMode } = {}): Promise<void> => {
      if (startOptions.poolMode) poolMode = startOptions.poolMode;
      writeConfig();
      proc.start();
      await waitFor(`pgbouncer listening on 127.0.0.1:${port}`, () => canConnect(port!), { timeoutMs, process: proc });
      if (options.waitForServer ?? true) {
        await waitFor(
          `query through pgbouncer (port ${port}) to postgres port ${options.port}`,
          async () => (await pgQuery(url, 'SELECT 1 AS one')).length === 1,
          {
            timeoutMs,
            process: proc,
          },
        );
      }
    };

    const stop = async ({ mode = 'immediate', timeoutMs: stopTimeout = 15_000 }: { mode?: 'immediate' | 'safe'; timeoutMs?: number } = {}): Promise<void> => {
      await proc.stop({ signal: mode === 'safe' ? 'SIGINT' : 'SIGTERM', timeoutMs: stopTimeout });
    };

    await start();

    return {
      dir: ws.root,
      port: port!,
      url,
      adminUrl: urlFor('pgbouncer'),
      get poolMode() {
        return poolMode;
      },
      get running() {
        return proc.running;
      },
      get pid() {
        return proc.pid;
      },
      configFile,
      urlFor,
      admin: <T = Record<string, unknown>>(command: string) => pgQuery<T>(urlFor('pgbouncer'), command),
      start,
      stop,
      async restart(restartOptions = {}) {
        await stop({ mode: restartOptions.mode });
        await start({ poolMode: restartOptions.poolMode });
      },
      logTail: (lines = 40) => proc.logTail(lines),
      memory: () => treeMemory(proc.pid),
      dispose,
    };
  } catch (error) {
    await dispose();
    throw error;
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
