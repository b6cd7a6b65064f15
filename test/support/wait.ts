/**
 * Waiting for something to have happened, for the unit and integration tests: poll a condition
 * (bounded in time and in count) instead of sleeping a fixed time and hoping it happened.
 * The fault suite has the same `waitFor` in test/faults/harness.ts.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database } from '../../lib/index.js';

/** Polls `condition` every `everyMs` until it is true or `timeoutMs` passed; resolves with whether it came true. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000, everyMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 100_000 && Date.now() < deadline; i++) {
    if (await condition()) return true;
    await sleep(everyMs);
  }
  return condition();
}

/** Like {@link waitFor}, but throws `timed out after … waiting for <what>` when the condition never came true. */
export async function until(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000, everyMs = 10): Promise<void> {
  if (!(await waitFor(condition, timeoutMs, everyMs))) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * Whether a statement whose text contains `marker` is running right now on the server of `db`
 * (PostgreSQL `pg_stat_activity`, MySQL/MariaDB `PROCESSLIST`), in another session than the one
 * asking. Asks through `db`, so the pool needs a free connection.
 */
export async function statementRunning(db: Database, marker: string): Promise<boolean> {
  if (db.dialect === 'postgres') {
    const rows = await db.runQuery<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0",
      [marker],
    );
    return Number(rows[0].n) > 0;
  }
  if (db.dialect === 'mysql') {
    const rows = await db.runQuery<{ n: number }>(
      // INFO is the statement a session runs now (COMMAND 'Query', or 'Execute' when prepared), NULL when idle.
      'SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND LOCATE(?, INFO) > 0',
      [marker],
    );
    return Number(rows[0].n) > 0;
  }
  throw new Error(`statementRunning: no server-side view of running statements on ${db.dialect}`);
}

// ---- processes (Linux /proc): the SQLite driver runs each connection's statements in a child process ----

/** CPU time (user + system, in clock ticks, usually 10 ms) the process `pid` has used, or undefined once it is gone. */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of proc(5))
  } catch {
    return undefined;
  }
}

/** Times the main thread of `pid` went to sleep of its own accord (`voluntary_ctxt_switches`), or undefined once it is gone. */
export function voluntarySwitches(pid: number): number | undefined {
  try {
    const match = /^voluntary_ctxt_switches:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The pids of this process's children (the SQLite connection processes among them). */
export function childPids(parent = process.pid): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/**
 * Watches the children this process has now; `busy(ticks)` says whether one of them has used at
 * least `ticks` of CPU since. A SQLite connection process running a long statement passes; idle
 * ones use none, and the spare one a starting driver keeps ready uses about 150 ms in all to start.
 */
export function watchChildCpu(): { busy(ticks: number): boolean } {
  const baseline = new Map<number, number>();
  for (const pid of childPids()) {
    const ticks = cpuTicks(pid);
    if (ticks !== undefined) baseline.set(pid, ticks);
  }
  return {
    busy(ticks) {
      for (const [pid, before] of baseline) if ((cpuTicks(pid) ?? before) - before >= ticks) return true;
      return false;
    },
  };
}
