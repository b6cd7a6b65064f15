/**
 * Failures that are not "dead connection": wrong credentials and TLS that cannot be set up.
 * Every call fails at once with the server's reason, the detector never marks the database
 * dead, and no background reconnect loop hammers the server: the proxy counts exactly one
 * connection attempt per call, and none while nobody calls.
 *
 * The local PostgreSQL trusts 127.0.0.1, so a wrong password cannot fail there (28P01 is
 * covered by the death checker's unit test); an unknown role fails the same way (28000). Both
 * local servers run without TLS, so `ssl` fails the handshake ("does not support SSL").
 */
import { ConnectionDead, DatabaseError, type DatabaseModuleOptions } from '../../lib/index.js';
import { describeEachDialect, serverCases } from '../support/databases.js';
import { useFaultsLock, useProxyFaults, report, settleWithin, sleep } from './harness.js';

useFaultsLock();

describeEachDialect(serverCases, 'faults: authentication and TLS failures are not outages', (c) => {
  const faults = useProxyFaults(c);

  const cases: Array<{ name: string; options: Partial<DatabaseModuleOptions>; code: (e: DatabaseError) => boolean }> = [
    c.dialect === 'postgres'
      ? { name: 'an unknown role (28000)', options: { user: `ndbp_no_such_role_${process.pid}` }, code: (e) => e.code === '28000' }
      : {
          name: 'a wrong password (ER_ACCESS_DENIED_ERROR)',
          options: { password: 'wrong-password' },
          code: (e) => e.code === 'ER_ACCESS_DENIED_ERROR' && !e.message.includes('wrong-password'),
        },
    {
      name: 'TLS the server cannot do',
      options: { ssl: { rejectUnauthorized: true } },
      code: (e) => /ssl|secure connection|tls/i.test(e.message),
    },
  ];

  for (const k of cases) {
    it(`${k.name}: every call fails at once with that error, never ConnectionDead, and nothing reconnects in the background`, async () => {
      const f = await faults.open('auth', { ...k.options, pool: { max: 4 }, connectTimeoutMs: 3000, reconnect: { maxDelayMs: 200 } });
      const { db } = f;
      const before = faults.proxy.connectionsAccepted;
      const latencies: number[] = [];
      const wrong: unknown[] = [];
      const call = async () => {
        const t0 = performance.now();
        const r = await settleWithin(db.runQuery('SELECT 1 AS n'), 5000);
        latencies.push(performance.now() - t0);
        const reason = r.status === 'rejected' ? r.reason : r;
        if (!(reason instanceof DatabaseError) || reason instanceof ConnectionDead || !k.code(reason)) wrong.push(reason);
      };
      for (let i = 0; i < 5; i++) await call();
      await Promise.all(Array.from({ length: 6 }, call)); // more than pool.max at once
      const calls = latencies.length;
      expect(wrong).toEqual([]);
      expect(db.detector.isDead).toBe(false);
      expect(Math.max(...latencies)).toBeLessThan(1000);
      await sleep(1500); // a negative check: a reconnect loop (first retry at once, capped at 200 ms) would show up here
      const attempts = faults.proxy.connectionsAccepted - before;
      expect(attempts).toBe(calls);
      expect(f.deadEvents).toBe(0);
      report('auth-tls', c.dialect, {
        case: k.name.startsWith('TLS') ? 'tls' : c.dialect === 'postgres' ? 'unknown-role-28000' : 'wrong-password-1045',
        calls,
        connectionAttempts: attempts,
        maxFailMs: Math.max(...latencies),
        deadEvents: f.deadEvents,
      });
    }, 20_000);
  }
});
