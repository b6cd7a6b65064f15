/**
 * Scenario 5: the server closes idle connections behind the pool's back (MariaDB
 * `wait_timeout=2`, PostgreSQL `idle_session_timeout=2s`) while the app idles, until the server
 * reports every one of them closed.
 * Scenario 6: the pool is exhausted by leaked connections.
 */
import { jest } from '@jest/globals';
import { AcquireTimeout, ConnectionDead, type Database } from '../../lib/index.js';
import { describeEachDialect, serverCases } from '../support/databases.js';
import { useFaultsLock, openAdmin, openFaultDb, recordProcessErrors, report, settleWithin, sleep, waitFor, type Admin, type FaultDb } from './harness.js';

useFaultsLock();

describeEachDialect(serverCases, 'faults: idle connections and leaks', (c) => {
  let processErrors: ReturnType<typeof recordProcessErrors>;
  let f: FaultDb | undefined;

  beforeAll(() => {
    processErrors = recordProcessErrors();
  });
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });
  afterAll(() => {
    processErrors.dispose();
    expect(processErrors.list).toEqual([]);
  });

  const serverIdSql = c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id';
  /** How many of the sessions `ids` the server still has open. */
  const openSessions = async (admin: Admin, ids: number[]): Promise<number> => {
    const list = ids.map(Number).join(',');
    const [r] = await admin.query<{ n: number }>(
      c.dialect === 'postgres'
        ? `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid IN (${list})`
        : `SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID IN (${list})`,
    );
    return Number(r.n);
  };

  it(`5. idle past the server's ${c.dialect === 'postgres' ? 'idle_session_timeout' : 'wait_timeout'} (2 s) until the server closed every session: the next queries succeed on fresh connections, never on a stale one`, async () => {
    const open = () =>
      openFaultDb(c, 'idle', {
        pool: { max: 3 },
        // PostgreSQL: a per-session setting, nothing global to change.
        driverOptions: c.dialect === 'postgres' ? { options: '-c idle_session_timeout=2000' } : undefined,
      });
    const openThree = (db: Database) =>
      Promise.all([1, 2, 3].map(() => db.runQuery<{ id: number }>(`${serverIdSql}, ${c.dialect === 'postgres' ? 'pg_sleep(0.05)' : 'SLEEP(0.05)'}`)));
    let stale: number[];
    if (c.dialect === 'mysql') {
      // SET GLOBAL only for the moment it takes to open the pool's sessions (they copy it at connect), then put it back.
      const admin = await openAdmin(c);
      const [{ v: original }] = await admin.query<{ v: number }>('SELECT @@GLOBAL.wait_timeout AS v');
      try {
        await admin.query('SET GLOBAL wait_timeout = 2');
        f = await open();
        stale = (await openThree(f.db)).map((r) => Number(r[0].id));
      } finally {
        await admin.query(`SET GLOBAL wait_timeout = ${Number(original)}`);
        const [{ v: now }] = await admin.query<{ v: number }>('SELECT @@GLOBAL.wait_timeout AS v');
        await admin.close();
        expect(Number(now)).toBe(Number(original));
      }
      const [{ t }] = await f.db.runQuery<{ t: number }>('SELECT @@SESSION.wait_timeout AS t');
      expect(Number(t)).toBe(2);
    } else {
      f = await open();
      stale = (await openThree(f.db)).map((r) => Number(r[0].id));
    }
    expect(new Set(stale).size).toBe(3);
    const { db } = f;

    // Idle until the server itself reports all three sessions closed (its 2 s timeout, however
    // late a busy machine gets there), not for a fixed time that may or may not be long enough.
    const idleFrom = Date.now();
    const admin = await openAdmin(c);
    let serverClosed: boolean;
    try {
      serverClosed = await waitFor(async () => (await openSessions(admin, stale)) === 0, 20_000, 100);
    } finally {
      await admin.close();
    }
    expect(serverClosed).toBe(true);
    const idleMs = Date.now() - idleFrom;
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 6 }, () => settleWithin(db.runQuery<{ id: number }>(serverIdSql), 5000)));
    const firstMs = Date.now() - started;
    const failures = results.filter((r) => r.status !== 'fulfilled');
    expect(failures).toEqual([]);
    const used = results.map((r) => (r.status === 'fulfilled' ? Number(r.value[0].id) : -1));
    expect(used.filter((id) => stale.includes(id))).toEqual([]);
    // A session the server closed is not an outage: the detector never marked the database dead.
    expect(f.deadEvents).toBe(0);
    expect(stale.every((id) => f!.closed.includes(id))).toBe(true);
    report('5-idle-timeout', c.dialect, {
      serverTimeoutS: 2,
      idleMs,
      staleSessions: stale.length,
      queries: results.length,
      failures: failures.length,
      staleHandedOut: 0,
      firstBatchMs: firstMs,
      deadEvents: f.deadEvents,
    });
  }, 20_000);

  it('6. pool exhausted by leaked connections: AcquireTimeout after acquireTimeoutMs, and one leak warning per connection naming the stack that took it', async () => {
    const ACQUIRE_MS = 500;
    const LEAK_MS = 300;
    f = await openFaultDb(c, 'leak', { pool: { max: 2, acquireTimeoutMs: ACQUIRE_MS, leakDetectionMs: LEAK_MS } });
    const { db } = f;
    const warn = jest.spyOn(db.logger, 'warn');
    const leaks: Array<{ message: string; stack: string }> = [];
    db.events.on('leak', (e) => leaks.push(e));

    // Two ways an application leaks: an interaction that never finishes, and a stream it stopped reading.
    let finishInteraction!: () => void;
    const interactionHeld = new Promise<void>((resolve) => (finishInteraction = resolve));
    function leakConnectionInInteraction(): Promise<unknown> {
      return db.runInteraction(async (tx) => {
        await tx.runQuery('SELECT 1 AS n');
        await interactionHeld;
      });
    }
    const interaction = leakConnectionInInteraction();
    const rows = c.dialect === 'postgres' ? 'SELECT generate_series(1, 100000) AS n' : 'SELECT seq AS n FROM seq_1_to_100000';
    async function leakConnectionInStream(): Promise<AsyncIterator<unknown>> {
      const iterator = db.stream(rows, [], { batchSize: 10 })[Symbol.asyncIterator]();
      await iterator.next();
      return iterator;
    }
    const stream = await leakConnectionInStream();
    expect(db.stats()).toMatchObject({ busy: 2, idle: 0 });

    const started = Date.now();
    const outcome = await settleWithin(db.runQuery('SELECT 1 AS n'), 5000);
    const acquireMs = Date.now() - started;
    expect(outcome.status).toBe('rejected');
    const reason = (outcome as { reason: unknown }).reason;
    expect(reason).toBeInstanceOf(AcquireTimeout);
    expect(reason).not.toBeInstanceOf(ConnectionDead);
    expect(acquireMs).toBeGreaterThanOrEqual(ACQUIRE_MS - 20);
    expect(acquireMs).toBeLessThan(ACQUIRE_MS + 300);

    expect(await waitFor(() => leaks.length >= 2, 2000)).toBe(true);
    await sleep(LEAK_MS * 3); // a negative check: three more periods for a repeated warning to show up (none may)
    expect(leaks).toHaveLength(2); // once per connection, not once per period
    const stacks = leaks.map((l) => l.stack).join('\n---\n');
    expect(stacks).toContain('leakConnectionInInteraction');
    expect(stacks).toContain('leakConnectionInStream');
    expect(stacks).toContain('idle-and-leaks.spec');
    const logged = warn.mock.calls.map((args) => String(args[0])).filter((m) => m.includes('leakDetectionMs'));
    expect(logged).toHaveLength(2);
    expect(logged.join('\n')).toContain('leakConnectionIn');

    finishInteraction();
    await interaction;
    await stream.return?.();
    expect(await waitFor(() => db.stats().busy === 0, 3000)).toBe(true);
    expect(await db.runQuery('SELECT 1 AS n')).toHaveLength(1);
    const frame = (name: string) =>
      (
        leaks
          .find((l) => l.stack.includes(name))
          ?.stack.split('\n')
          .find((line) => line.includes(name)) ?? ''
      ).trim();
    report('6-leak', c.dialect, {
      poolMax: 2,
      acquireTimeoutMs: ACQUIRE_MS,
      acquireTimeoutAfterMs: acquireMs,
      leakDetectionMs: LEAK_MS,
      leakWarnings: leaks.length,
      stackNamesCaller: frame('leakConnectionInInteraction') !== '' && frame('leakConnectionInStream') !== '',
    });
  }, 20_000);
});
