/**
 * Port ranges reserved for the throwaway servers, and reservation across test processes: a
 * port is taken by creating a lock file (O_EXCL) naming the owning Node process, and only
 * if nothing listens on it. Locks of dead owners are stale and reclaimed.
 *
 * Never used: 5432/3306 (the main servers) and 5433/3307 (other tests). Every range is below
 * Linux's ephemeral ports (32768-60999): a client socket of any process could hold a port there.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ownerAlive, ownerToken, type Workspace } from './process.js';

export interface PortRange {
  name: string;
  from: number;
  to: number;
}

export const PORT_RANGES = {
  postgres: { name: 'PostgreSQL', from: 15432, to: 15439 },
  pgbouncer: { name: 'PgBouncer', from: 16432, to: 16435 },
  mariadb: { name: 'MariaDB', from: 13061, to: 13069 },
  galera: { name: 'Galera replication/IST/SST', from: 14561, to: 14569 },
} as const satisfies Record<string, PortRange>;

const FORBIDDEN = new Set([5432, 5433, 3306, 3307]);

function lockDir(): string {
  const dir = path.join(os.tmpdir(), 'ndbp-port-locks');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Whether 127.0.0.1:port can be bound right now. */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

function tryLock(port: number): boolean {
  const file = path.join(lockDir(), String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, ownerToken() + '\n', { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      let token = '';
      try {
        token = fs.readFileSync(file, 'utf8');
      } catch {
        continue; // released meanwhile
      }
      if (token.trim() === '' || ownerAlive(token)) return false;
      fs.rmSync(file, { force: true }); // stale: its owner died
    }
  }
  return false;
}

function unlock(port: number): void {
  const file = path.join(lockDir(), String(port));
  try {
    if (fs.readFileSync(file, 'utf8').trim() === ownerToken()) fs.rmSync(file, { force: true });
  } catch {
    // already gone
  }
}

/**
 * Reserves `count` free ports of `range` for the workspace (released when it is destroyed).
 * With `explicit` ports, those exact ports are reserved instead (and must be free).
 */
export async function reservePorts(ws: Workspace, range: PortRange, count: number, explicit?: number[]): Promise<number[]> {
  const candidates = explicit ?? Array.from({ length: range.to - range.from + 1 }, (_, i) => range.from + i);
  if (explicit && explicit.length !== count) throw new Error(`${range.name}: ${count} ports needed, ${explicit.length} given`);
  const taken: number[] = [];
  const busy: string[] = [];
  for (const port of candidates) {
    if (taken.length === count) break;
    if (FORBIDDEN.has(port)) {
      busy.push(`${port} (reserved for other servers)`);
      continue;
    }
    if (!tryLock(port)) {
      busy.push(`${port} (locked by another test process)`);
      continue;
    }
    if (!(await portIsFree(port))) {
      unlock(port);
      busy.push(`${port} (in use)`);
      continue;
    }
    taken.push(port);
    ws.onDestroy(() => unlock(port));
  }
  if (taken.length < count) {
    throw new Error(
      `${range.name}: needed ${count} free port(s) in ${explicit ? explicit.join(',') : `${range.from}-${range.to}`}, got ${taken.length}; busy: ${busy.join(', ') || 'none'}`,
    );
  }
  return taken;
}
