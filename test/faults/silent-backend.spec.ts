/**
 * Scenario 7: one backend is alive but silent. PostgreSQL: `kill -STOP` on the backend
 * process of our own session (found by our application_name and a marker in its query), then
 * `-CONT` in `finally`. MariaDB runs every session as a thread of one shared process, which
 * SIGSTOP would freeze for everyone, so there the proxy goes silent on that one connection
 * (server-to-client bytes of the victim's connection are dropped; the server itself is fine).
 */
import { QueryTimeout } from '../../lib/index.js';
import { describeEachDialect, serverCases } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { useFaultsLock, openAdmin, openFaultDb, recordProcessErrors, report, settleWithin, sleep, waitFor, type Admin, type FaultDb } from './harness.js';

const VICTIM_TIMEOUT_MS = 1500;
const OTHERS = 4;

useFaultsLock();

describeEachDialect(serverCases, 'faults: alive but silent backend', (c) => {
  let processErrors: ReturnType<typeof recordProcessErrors>;
  let admin: Admin;
  let proxy: FaultProxy | undefined;
  let f: FaultDb | undefined;

  beforeAll(async () => {
    processErrors = recordProcessErrors();
    admin = await openAdmin(c);
  });
  afterAll(async () => {
    await f?.close();
    await proxy?.close();
    await admin.close();
    processErrors.dispose();
    expect(processErrors.list).toEqual([]);
  });

  it("7. the silent backend's caller times out, its connection is destroyed, and the other callers are unaffected", async () => {
    if (c.dialect === 'mysql') proxy = await FaultProxy.start(3306);
    f = await openFaultDb(c, 'silent', { pool: { max: OTHERS + 1 } }, proxy);
    const { db } = f;
    const idSql = c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id';
    await Promise.all(Array.from({ length: OTHERS + 1 }, () => db.runQuery(`${idSql}, ${c.dialect === 'postgres' ? 'pg_sleep(0.02)' : 'SLEEP(0.02)'}`)));

    // Other callers keep working the whole time.
    let stopOthers = false;
    const others = { ok: 0, failed: [] as unknown[], ids: [] as Array<{ at: number; id: number }> };
    const loops = Array.from({ length: OTHERS }, async () => {
      for (let i = 0; i < 100_000 && !stopOthers; i++) {
        const r = await settleWithin(db.runQuery<{ id: number }>(idSql), 3000);
        if (r.status === 'fulfilled') {
          others.ok++;
          others.ids.push({ at: Date.now(), id: Number(r.value[0].id) });
        } else others.failed.push(r.status === 'rejected' ? r.reason : 'hung');
        await sleep(5); // pacing of the other callers
      }
    });

    const marker = `victim_${process.pid}_${Date.now()}`;
    let victimId: number | undefined;
    let stoppedPid: number | undefined;
    let victimMs = NaN;
    let destroyedAfterTimeoutMs = NaN;
    let victimOutcome: Awaited<ReturnType<typeof settleWithin>> | undefined;
    const closedBefore = f.closed.length;
    try {
      let victim: Promise<unknown>;
      const t0 = Date.now();
      if (c.dialect === 'postgres') {
        victim = db.runQuery(`SELECT pg_sleep(0.5) AS ${marker}`, [], { timeoutMs: VICTIM_TIMEOUT_MS });
        const found = await waitFor(
          async () => {
            const rows = await admin.query<{ pid: number }>(
              "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'active' AND query LIKE '%' || $2 || '%'",
              [f!.appName, marker],
            );
            if (rows.length === 1) victimId = Number(rows[0].pid);
            return victimId !== undefined;
          },
          400,
          5,
        );
        expect(found).toBe(true);
        process.kill(victimId!, 'SIGSTOP');
        stoppedPid = victimId;
      } else {
        const silence = proxy!.dropServerToClientAfter((chunk) => chunk.includes(marker), { once: true, resetAfterMs: 30_000 });
        victim = db.runQuery(`SELECT 1 AS ${marker}`, [], { timeoutMs: VICTIM_TIMEOUT_MS });
        victim.finally(silence).catch(() => {});
      }
      victimOutcome = await settleWithin(victim, VICTIM_TIMEOUT_MS + 3000);
      victimMs = Date.now() - t0;
      const timedOutAt = Date.now();
      // Its connection is destroyed (after the cancel's grace period), never handed out again.
      expect(await waitFor(() => f!.closed.length > closedBefore, 4000, 10)).toBe(true);
      destroyedAfterTimeoutMs = Date.now() - timedOutAt;
      victimId ??= f.closed[closedBefore];
      await sleep(800); // a negative check: the others go on a little longer, and must never get the victim's connection
      stopOthers = true;
      await Promise.all(loops);
      expect(others.ids.filter((u) => u.at > timedOutAt + destroyedAfterTimeoutMs && u.id === victimId)).toEqual([]);
    } finally {
      stopOthers = true;
      if (stoppedPid !== undefined) process.kill(stoppedPid, 'SIGCONT');
    }

    expect(victimOutcome?.status).toBe('rejected');
    expect((victimOutcome as { reason: unknown }).reason).toBeInstanceOf(QueryTimeout);
    expect(victimMs).toBeLessThan(VICTIM_TIMEOUT_MS + 300);
    expect(f.closed.slice(closedBefore)).toEqual([victimId]);
    expect(others.failed).toEqual([]);
    expect(others.ok).toBeGreaterThan(50);
    expect(f.deadEvents).toBe(0);
    if (stoppedPid !== undefined) {
      // Put back as found: once continued, the backend sees its client gone and exits.
      const gone = await waitFor(async () => (await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [stoppedPid])).length === 0, 5000, 50);
      expect(gone).toBe(true);
    }
    report('7-silent', c.dialect, {
      how: c.dialect === 'postgres' ? 'SIGSTOP' : 'proxy-silence',
      victimTimeoutMs: VICTIM_TIMEOUT_MS,
      victimSettledMs: victimMs,
      destroyedAfterTimeoutMs,
      othersOk: others.ok,
      othersFailed: others.failed.length,
      deadEvents: f.deadEvents,
    });
  }, 30_000);
});
