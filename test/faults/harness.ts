/**
 * Shared pieces of the fault-injection suite: the unhandled-rejection recorder, the one-line
 * `FAULTS <scenario> <dialect> key=value ...` report, bounded waiting, the sessions a test owns
 * on the real servers (PostgreSQL by a unique application_name, MariaDB by the thread ids the
 * pool opened) and server stop/start that always puts the server back.
 *
 * Every loop here is bounded in time and in count; nothing but 127.0.0.1 is ever touched.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import vm from 'node:vm';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { CommitOutcomeUnknown, ConnectionDead, type Database, type DatabaseError, type DatabaseModuleOptions } from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { MYSQL_URL, PG_URL, type DialectCase } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';

export { sleep };
const run = promisify(execFile);

// ---- process-level safety -------------------------------------------------------------------

/**
 * Records every unhandled rejection and uncaught exception while installed; assert `list` stays
 * empty. Jest gives test code a copy of `process` whose listeners Node never calls, so the
 * recorder listens on the real one, reached through the main context.
 */
export function recordProcessErrors(): { list: unknown[]; dispose(): void } {
  const realProcess = vm.runInThisContext('process') as NodeJS.Process;
  const list: unknown[] = [];
  const onRejection = (reason: unknown) => list.push(reason);
  const onException = (error: unknown) => list.push(error);
  realProcess.on('unhandledRejection', onRejection);
  realProcess.on('uncaughtException', onException);
  return {
    list,
    dispose: () => {
      realProcess.off('unhandledRejection', onRejection);
      realProcess.off('uncaughtException', onException);
    },
  };
}

// ---- one faults file at a time, across processes -------------------------------------------------

const LOCK_DIR = join(tmpdir(), 'nestjs-dbpool-faults.lock');
const LOCK_OWNER = join(LOCK_DIR, 'owner');

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Several developers (and CI) run the whole suite against the same servers at once. A faults
 * file restarts servers, kills sessions and measures latencies, so two of them must not overlap:
 * each file holds this lock (a directory, created atomically) while it runs, and waits for the
 * other's file to finish first (bounded: after `maxWaitMs` it goes ahead and says so). A lock
 * left by a process that died is taken over. Then it waits (bounded) for the servers to answer,
 * in case someone else's restart is under way. Returns the release.
 */
export async function beginFaultsFile(maxWaitMs = 240_000): Promise<() => void> {
  const deadline = Date.now() + maxWaitMs;
  let owned = false;
  for (let i = 0; i < 100_000 && !owned; i++) {
    try {
      mkdirSync(LOCK_DIR);
      writeFileSync(LOCK_OWNER, String(process.pid));
      owned = true;
    } catch {
      let owner = NaN;
      try {
        owner = Number(readFileSync(LOCK_OWNER, 'utf8'));
      } catch {
        // being created right now
      }
      if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) {
        rmSync(LOCK_DIR, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) {
        console.log(`FAULTS lock: still held by pid ${owner} after ${maxWaitMs} ms; going ahead`);
        break;
      }
      await sleep(250); // poll interval: another run holds the lock
    }
  }
  for (const c of [{ dialect: 'postgres' }, { dialect: 'mysql' }] as DialectCase[]) {
    if (!(await waitFor(() => serverIsUp(c), 60_000, 500))) throw new Error(`${c.dialect} is not answering; the faults suite needs both servers`);
  }
  return () => {
    if (!owned) return;
    owned = false;
    try {
      if (Number(readFileSync(LOCK_OWNER, 'utf8')) === process.pid) rmSync(LOCK_DIR, { recursive: true, force: true });
    } catch {
      // already gone
    }
  };
}

// ---- numbers --------------------------------------------------------------------------------

/** Prints one README-ready line: `FAULTS <scenario> <dialect> key=value ...`. */
/** Takes the faults lock for the whole file: one faults file at a time across concurrent runs of the suite (they share the servers). */
export function useFaultsLock(): void {
  let release: (() => void) | undefined;
  beforeAll(async () => {
    release = await beginFaultsFile();
  }, 330_000);
  afterAll(() => release?.());
}

export function report(scenario: string, dialect: string, fields: Record<string, string | number | boolean>): void {
  const pairs = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : v}`);
  console.log(`FAULTS ${scenario} ${dialect} ${pairs.join(' ')}`);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Polls `condition` every `everyMs` until it is true or `timeoutMs` passed; resolves with whether it came true. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    if (await condition()) return true;
    await sleep(everyMs); // poll interval
  }
  return condition();
}

/** Settles with the promise's outcome, or `'pending'` if it did not settle within `timeoutMs`. */
export async function settleWithin<T>(
  promise: Promise<T>,
  timeoutMs: number,
): Promise<{ status: 'fulfilled'; value: T } | { status: 'rejected'; reason: unknown } | { status: 'pending' }> {
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<{ status: 'pending' }>((resolve) => (timer = setTimeout(() => resolve({ status: 'pending' }), timeoutMs)));
  try {
    return await Promise.race([
      promise.then(
        (value) => ({ status: 'fulfilled' as const, value }),
        (reason: unknown) => ({ status: 'rejected' as const, reason }),
      ),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- the sessions a test owns ---------------------------------------------------------------

let appCount = 0;
/** An application_name no other test (nor another developer) uses: the filter for killing our own PostgreSQL sessions. */
export function uniqueAppName(scenario: string): string {
  return `ndbp-faults-${scenario}-${process.pid}-${++appCount}`;
}

export interface FaultDb {
  db: Database;
  close(): Promise<void>;
  /** PostgreSQL application_name of this pool's sessions. */
  appName: string;
  /** Server ids (backend pid / thread id) of the pool's connections open right now, from the pool's own events. */
  serverIds: Set<number>;
  /** Every server id the pool ever opened. */
  everOpened: number[];
  closed: number[];
  deadEvents: number;
  recoveredEvents: Array<{ downtimeMs: number }>;
}

/** Opens a Database (in a Nest app context) for a fault test, through `proxy` when given, and tracks what it opens. */
export async function openFaultDb(c: DialectCase, scenario: string, options: Partial<DatabaseModuleOptions> = {}, proxy?: FaultProxy): Promise<FaultDb> {
  const appName = uniqueAppName(scenario);
  const base = c.url();
  const url = proxy ? proxy.url(base) : base;
  const driverOptions = c.dialect === 'postgres' ? { application_name: appName, ...options.driverOptions } : options.driverOptions;
  const { db, close } = await openDatabase({ ...options, url, driverOptions });
  const tracked: FaultDb = { db, close, appName, serverIds: new Set(), everOpened: [], closed: [], deadEvents: 0, recoveredEvents: [] };
  db.events.on('connectionOpened', ({ serverId }) => {
    tracked.serverIds.add(serverId);
    tracked.everOpened.push(serverId);
  });
  db.events.on('connectionClosed', ({ serverId }) => {
    tracked.serverIds.delete(serverId);
    tracked.closed.push(serverId);
  });
  db.events.on('dead', () => tracked.deadEvents++);
  db.events.on('recovered', (e) => tracked.recoveredEvents.push({ downtimeMs: e.downtimeMs }));
  return tracked;
}

/** A raw admin session (not through the module) for killing, counting and server variables. */
export interface Admin {
  query<T = Record<string, unknown>>(text: string, params?: unknown[]): Promise<T[]>;
  close(): Promise<void>;
}

export async function openAdmin(c: DialectCase): Promise<Admin> {
  if (c.dialect === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL, application_name: `ndbp-faults-admin-${process.pid}` });
    client.on('error', () => {});
    await client.connect();
    return {
      query: async <T>(text: string, params: unknown[] = []) => (await client.query(text, params)).rows as T[],
      close: () => client.end().catch(() => {}),
    };
  }
  const conn = await mysql.createConnection(MYSQL_URL);
  conn.on('error', () => {});
  return {
    query: async <T>(text: string, params: unknown[] = []) => {
      const [rows] = await conn.query(text, params);
      return (Array.isArray(rows) ? rows : []) as T[];
    },
    close: () => conn.end().catch(() => {}),
  };
}

/** Kills every session this pool owns: by application_name on PostgreSQL, by the pool's thread ids on MariaDB. Returns how many. */
export async function killOwnSessions(c: DialectCase, admin: Admin, f: FaultDb): Promise<number> {
  if (c.dialect === 'postgres') {
    const rows = await admin.query(
      "SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1 AND backend_type = 'client backend'",
      [f.appName],
    );
    return rows.length;
  }
  let killed = 0;
  for (const id of [...f.serverIds].slice(0, 200)) {
    await admin.query(`KILL CONNECTION ${Number(id)}`).then(
      () => killed++,
      () => {}, // already gone
    );
  }
  return killed;
}

// ---- servers: stop and start, always put back -------------------------------------------------

const pgVersion = (): string => readdirSync('/etc/postgresql').sort()[0];

async function pgIsUp(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function mariadbIsUp(): Promise<boolean> {
  try {
    const conn = await mysql.createConnection({ uri: MYSQL_URL, connectTimeout: 1000 });
    conn.on('error', () => {});
    await conn.query('SELECT 1');
    await conn.end();
    return true;
  } catch {
    return false;
  }
}

export function serverIsUp(c: DialectCase): Promise<boolean> {
  return c.dialect === 'postgres' ? pgIsUp() : mariadbIsUp();
}

export async function stopServer(c: DialectCase): Promise<void> {
  if (c.dialect === 'postgres') {
    await run('pg_ctlcluster', ['--skip-systemctl-redirect', pgVersion(), 'main', 'stop'], { timeout: 30_000 });
    return;
  }
  await run('mariadb-admin', ['-h127.0.0.1', '-uroot', 'shutdown'], { timeout: 30_000 });
  // shutdown returns once the server acknowledged; wait (bounded) for the port to close.
  await waitFor(async () => !(await mariadbIsUp()), 20_000, 100);
}

export async function startServer(c: DialectCase): Promise<void> {
  if (c.dialect === 'postgres') {
    await run('pg_ctlcluster', ['--skip-systemctl-redirect', pgVersion(), 'main', 'start'], { timeout: 60_000 }).catch(() => {});
  } else {
    await run('start-stop-daemon', ['--start', '--oknodo', '--background', '--exec', '/usr/sbin/mariadbd'], { timeout: 30_000 }).catch(() => {});
  }
  if (!(await waitFor(() => serverIsUp(c), 60_000, 200))) throw new Error(`${c.dialect} server did not come back within 60 s`);
}

/** Starts the server if it is down (for afterAll: whatever happened, leave it running). */
export async function ensureServerUp(c: DialectCase): Promise<void> {
  if (await serverIsUp(c)) return;
  await startServer(c);
}

// ---- a describe block whose tests go through one fault proxy ----------------------------------

export interface ProxyFaults {
  /** The proxy in front of this dialect's server (set in beforeAll). */
  readonly proxy: FaultProxy;
  /** Opens a tracked database through the proxy; closed after the test. */
  open(scenario: string, options?: Partial<DatabaseModuleOptions>): Promise<FaultDb>;
}

/**
 * Hooks for a describe block of proxy faults: one proxy per block; after each test the proxy
 * passes traffic again and the test's database is closed; at the end no unhandled rejection or
 * uncaught exception may have happened.
 */
export function useProxyFaults(c: DialectCase): ProxyFaults {
  let processErrors: ReturnType<typeof recordProcessErrors>;
  let proxy: FaultProxy | undefined;
  const opened: FaultDb[] = [];
  beforeAll(async () => {
    processErrors = recordProcessErrors();
    proxy = await FaultProxy.start(c.dialect === 'postgres' ? 5432 : 3306);
  });
  afterEach(async () => {
    await proxy?.setMode('pass');
    for (const f of opened.splice(0)) await f.close();
  });
  afterAll(async () => {
    await proxy?.close();
    processErrors.dispose();
    expect(processErrors.list).toEqual([]);
  });
  return {
    get proxy() {
      if (!proxy) throw new Error('the fault proxy starts in beforeAll');
      return proxy;
    },
    async open(scenario, options = {}) {
      const f = await openFaultDb(c, scenario, options, this.proxy);
      opened.push(f);
      return f;
    },
  };
}

/**
 * `count` callers, each running `step` again and again until `stop()`, which waits for every
 * caller's call in flight to settle: the load of the scale-out scenarios (readers, writers).
 */
export function callers(count: number, step: (caller: number, i: number) => Promise<void>): { stop(): Promise<void> } {
  let stopped = false;
  const loops = Array.from({ length: count }, async (_, caller) => {
    for (let i = 0; i < 1_000_000 && !stopped; i++) await step(caller, i);
  });
  return {
    stop: async () => {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** A failure, as the scale-out scenarios count it: the documented outcomes of a lost server by class, anything else by code. */
export function outcomeKind(error: unknown): string {
  if (error instanceof CommitOutcomeUnknown) return 'CommitOutcomeUnknown';
  if (error instanceof ConnectionDead) return 'ConnectionDead';
  return `${(error as Error)?.name}:${(error as DatabaseError)?.code}`;
}

/** Counts by kind, and the `kind=n,…` text a report shows ('none' when empty). */
export class Tally {
  readonly counts = new Map<string, number>();
  add(kind: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }
  get(kind: string): number {
    return this.counts.get(kind) ?? 0;
  }
  toString(): string {
    return [...this.counts].map(([k, v]) => `${k}=${v}`).join(',') || 'none';
  }
}
