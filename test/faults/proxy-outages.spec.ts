/**
 * Scenarios 2 and 3: the network between the module and the server fails, through the suite's
 * own TCP proxy (127.0.0.1 only). 2: the proxy refuses (and resets what was open) for 5 s.
 * 3: the proxy blackholes every byte while queryTimeoutMs is 1000.
 */
import { ConnectionDead, QueryTimeout } from '../../lib/index.js';
import { describeEachDialect, serverCases } from '../support/databases.js';
import { useFaultsLock, useProxyFaults, percentile, report, settleWithin, sleep, waitFor } from './harness.js';

const REFUSE_MS = 5000;
const BACKOFF_CAP_MS = 1000;
const BLACKHOLE_MS = 3000;

useFaultsLock();

describeEachDialect(serverCases, 'faults: proxy outages', (c) => {
  const faults = useProxyFaults(c);

  it('2. refused for 5 s: calls fail fast with ConnectionDead, isDead, recovery handlers run once, serving again within the backoff cap + 1 s', async () => {
    const f = await faults.open('refuse', { pool: { max: 4 }, reconnect: { maxDelayMs: BACKOFF_CAP_MS }, connectTimeoutMs: 2000 });
    const { db } = f;
    await Promise.all([1, 2, 3, 4].map((n) => db.runQuery(`SELECT ${n} AS n`)));
    let recoveries = 0;
    db.detector.onRecovery(() => {
      recoveries++;
    });

    const outageStart = Date.now();
    await faults.proxy.setMode('refuse');
    faults.proxy.resetAll(); // the connections already open die too: the server is "gone"
    expect(await waitFor(() => db.detector.isDead, 3000, 5)).toBe(true);
    const detectMs = Date.now() - outageStart;

    // Fail-fast while dead: bursts of concurrent calls until the outage ends.
    const latencies: number[] = [];
    const wrong: unknown[] = [];
    for (let burst = 0; burst < 1000 && Date.now() - outageStart < REFUSE_MS; burst++) {
      expect(db.detector.isDead).toBe(true);
      await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          const started = performance.now();
          const call: Promise<unknown> = i % 2 ? db.runQuery('SELECT 1 AS n') : db.runOperation('SELECT 1');
          const outcome = await settleWithin(call, 1000);
          latencies.push(performance.now() - started);
          if (outcome.status !== 'rejected' || !(outcome.reason instanceof ConnectionDead)) wrong.push(outcome);
        }),
      );
      await sleep(20); // pacing between bursts
    }
    expect(wrong).toEqual([]);
    // Fail fast: a call settles without waiting on the network. The median is the signal (a
    // busy CI machine delays single callbacks by tens of ms); the tail is bounded by a quarter of
    // connectTimeoutMs, which a call that tried to connect would have had to wait out.
    const p99 = percentile(latencies, 99);
    expect(percentile(latencies, 50)).toBeLessThan(50);
    expect(p99).toBeLessThan(500);
    expect(recoveries).toBe(0);

    await faults.proxy.setMode('pass');
    const passAt = Date.now();
    let served = false;
    for (let i = 0; i < 400 && Date.now() - passAt < BACKOFF_CAP_MS + 3000 && !served; i++) {
      served = (await settleWithin(db.runQuery('SELECT 1 AS n'), 2000)).status === 'fulfilled';
      if (!served) await sleep(10); // poll interval
    }
    const recoveryMs = Date.now() - passAt;
    expect(served).toBe(true);
    expect(recoveryMs).toBeLessThanOrEqual(BACKOFF_CAP_MS + 1000);
    expect(db.detector.isDead).toBe(false);
    // The handlers ran and `recovered` was emitted before isDead turned false; this is a negative
    // check: a second recovery (or death) would show up within these 200 ms.
    await sleep(200);
    expect(recoveries).toBe(1);
    expect(f.deadEvents).toBe(1);
    expect(f.recoveredEvents).toHaveLength(1);
    report('2-refuse', c.dialect, {
      refuseMs: REFUSE_MS,
      detectMs,
      failFastCalls: latencies.length,
      p50ms: percentile(latencies, 50),
      p99ms: p99,
      maxms: Math.max(...latencies),
      recoveryMs,
      capMs: BACKOFF_CAP_MS,
      recoveryHandlerRuns: recoveries,
    });
  }, 20_000);

  it('3. blackholed with queryTimeoutMs 1000: every call settles by 2 s (QueryTimeout or ConnectionDead), none hangs, and the pool serves again', async () => {
    const f = await faults.open('blackhole', { pool: { max: 4 }, queryTimeoutMs: 1000, connectTimeoutMs: 1000, reconnect: { maxDelayMs: BACKOFF_CAP_MS } });
    const { db } = f;
    await Promise.all([1, 2, 3, 4].map((n) => db.runQuery(`SELECT ${n} AS n`)));

    await faults.proxy.setMode('blackhole');
    const started = Date.now();
    const calls: Array<Promise<{ ms: number; outcome: Awaited<ReturnType<typeof settleWithin>> }>> = [];
    for (let i = 0; i < 200 && Date.now() - started < BLACKHOLE_MS; i++) {
      const t0 = Date.now();
      const kind = i % 4;
      const p: Promise<unknown> =
        kind === 0 ? db.runInteraction((tx) => tx.runQuery('SELECT 1 AS n')) : kind === 1 ? db.runOperation('SELECT 1') : db.runQuery('SELECT 1 AS n');
      calls.push(settleWithin(p, 5000).then((outcome) => ({ ms: Date.now() - t0, outcome })));
      await sleep(50); // pacing: one call every 50 ms
    }
    const results = await Promise.all(calls);
    const hung = results.filter((r) => r.outcome.status === 'pending');
    const settleMs = results.map((r) => r.ms);
    const kinds = { timeout: 0, dead: 0, other: [] as unknown[] };
    for (const r of results) {
      const reason = r.outcome.status === 'rejected' ? r.outcome.reason : r.outcome;
      if (reason instanceof QueryTimeout) kinds.timeout++;
      else if (reason instanceof ConnectionDead) kinds.dead++;
      else kinds.other.push(reason);
    }
    expect(hung).toHaveLength(0);
    expect(Math.max(...settleMs)).toBeLessThanOrEqual(2000);
    expect(kinds.other).toEqual([]);

    await faults.proxy.setMode('pass');
    const passAt = Date.now();
    let served = false;
    for (let i = 0; i < 400 && Date.now() - passAt < 8000 && !served; i++) {
      served = (await settleWithin(db.runQuery('SELECT 1 AS n'), 2000)).status === 'fulfilled';
      if (!served) await sleep(20); // poll interval
    }
    const servedAgainMs = Date.now() - passAt;
    expect(served).toBe(true);
    // Afterwards the pool is whole again: every connection answers, nothing is left busy.
    await Promise.all([1, 2, 3, 4].map((n) => db.runQuery(`SELECT ${n} AS n`)));
    expect(await waitFor(() => db.stats().busy === 0, 3000)).toBe(true);
    report('3-blackhole', c.dialect, {
      blackholeMs: BLACKHOLE_MS,
      calls: results.length,
      queryTimeout: kinds.timeout,
      connectionDead: kinds.dead,
      maxSettleMs: Math.max(...settleMs),
      p50SettleMs: percentile(settleMs, 50),
      servedAgainMs,
    });
  }, 30_000);
});
