import { jest } from '@jest/globals';
import { backoff, ConnectionDead, DeadConnectionDetector, defaultDeathChecker, RetryingCall } from '../../lib/index.js';
import { withTransientErrors } from '../../lib/resilience/death-checker.js';
import { FakeClock, flush } from '../support/fake-clock.js';

const err = (fields: Record<string, unknown>) => Object.assign(new Error(String(fields.message ?? 'x')), fields);

describe('backoff', () => {
  it('retries at once first, then grows exponentially up to the cap', () => {
    const delays = [...backoff({ jitter: 0, maxRetries: 10 })];
    expect(delays).toEqual([0, 100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
  });

  it('keeps every delay within the jitter band and under the cap', () => {
    let seed = 1;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    const delays = [...backoff({ jitter: 0.2, maxRetries: 50, random })];
    delays.slice(1).forEach((d, i) => {
      const nominal = Math.min(10000, 100 * 2 ** i);
      expect(d).toBeGreaterThanOrEqual(Math.floor(nominal * 0.8));
      expect(d).toBeLessThanOrEqual(10000);
    });
  });

  it('honours initialDelayMs, factor and maxRetries, and is unbounded by default', () => {
    expect([...backoff({ initialDelayMs: 50, factor: 3, jitter: 0, maxRetries: 4 })]).toEqual([50, 150, 450, 1350]);
    const it = backoff()[Symbol.iterator]();
    for (let i = 0; i < 1000; i++) expect(it.next().done).toBe(false);
  });
});

describe('defaultDeathChecker', () => {
  it.each([
    { code: 'ECONNREFUSED' },
    { code: 'ECONNRESET' },
    { code: 'EPIPE' },
    { code: 'CONNECTION_LOST' },
    { code: '57P01' },
    { code: '57P02' },
    { code: '57P03' },
    { code: '08006' },
    { sqlState: '08003' },
    { code: 'PROTOCOL_CONNECTION_LOST' },
    { code: 'ER_SERVER_SHUTDOWN', errno: 1053 },
    { errno: 2006 },
    { errno: 2013 },
    { code: 'ER_CONNECTION_KILLED', errno: 1927 },
    { message: 'Connection terminated unexpectedly' },
    { message: 'MySQL server has gone away' },
    { code: 'X', cause: { code: 'ECONNRESET' } },
  ])('says dead for %j', (fields) => expect(defaultDeathChecker(err(fields))).toBe(true));

  it.each([
    { code: '42601', sqlState: '42601' },
    { code: '23505' },
    { code: 'ER_PARSE_ERROR', errno: 1064 },
    { code: 'ER_DUP_ENTRY', errno: 1062 },
    { code: '28P01', message: 'password authentication failed for user "x"' },
    { code: 'ER_ACCESS_DENIED_ERROR', errno: 1045 },
    { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' },
    { code: 'ERR_TLS_CERT_ALTNAME_INVALID' },
    { code: '40001' },
    { code: '57014' },
    { code: 'SQLITE_CONSTRAINT_UNIQUE' },
  ])('says alive for %j', (fields) => expect(defaultDeathChecker(err(fields))).toBe(false));

  it('is extended by transientErrors (codes, errnos, message fragments)', () => {
    const checker = withTransientErrors(defaultDeathChecker, ['ER_LOCK_WAIT_TIMEOUT', 1040, 'too many clients']);
    expect(checker(err({ code: 'ER_LOCK_WAIT_TIMEOUT' }))).toBe(true);
    expect(checker(err({ errno: 1040 }))).toBe(true);
    expect(checker(err({ message: 'sorry, too many clients already' }))).toBe(true);
    expect(checker(err({ code: '42601' }))).toBe(false);
  });
});

describe('DeadConnectionDetector (fake clock)', () => {
  function setup(reconnectResults: boolean[]) {
    const clock = new FakeClock();
    const attempts: number[] = [];
    const detector = new DeadConnectionDetector({
      deathChecker: defaultDeathChecker,
      clock,
      reconnect: { jitter: 0 },
      reconnector: async () => {
        attempts.push(clock.now());
        if (!(reconnectResults.shift() ?? true)) throw err({ code: 'ECONNREFUSED', message: 'refused' });
      },
    });
    return { clock, detector, attempts };
  }

  it('marks dead on a death error, fails fast, reconnects with backoff and runs recovery handlers once', async () => {
    const { clock, detector, attempts } = setup([false, false, false, true]);
    const recovered = jest.fn();
    detector.onRecovery(recovered);
    expect(detector.checkForDeadConnection(err({ code: '42601' }))).toBe(false);
    expect(detector.isDead).toBe(false);
    expect(detector.checkForDeadConnection(err({ code: 'ECONNRESET', message: 'reset' }))).toBe(true);
    expect(detector.isDead).toBe(true);
    expect(() => detector.assertAlive()).toThrow(ConnectionDead);
    await clock.advance(0);
    expect(attempts).toEqual([0]);
    await clock.advance(100);
    expect(attempts).toEqual([0, 100]);
    expect(detector.nextAttemptAt?.getTime()).toBe(300);
    const e = detector.deadError();
    expect(e.message).toContain('refused');
    expect(e.nextAttemptAt?.getTime()).toBe(300);
    await clock.advance(200);
    expect(attempts).toEqual([0, 100, 300]);
    expect(recovered).not.toHaveBeenCalled();
    await clock.advance(400);
    expect(attempts).toEqual([0, 100, 300, 700]);
    expect(recovered).toHaveBeenCalledTimes(1);
    expect(detector.isDead).toBe(false);
    expect(() => detector.assertAlive()).not.toThrow();
    expect(clock.pending).toBe(0);
  });

  it('runs recovery handlers before it lets calls through, and survives a handler that throws', async () => {
    const { clock, detector } = setup([true]);
    const order: string[] = [];
    detector.onRecovery(() => {
      order.push(`handler sees dead=${detector.isDead}`);
      throw new Error('handler failed');
    });
    const unsubscribe = detector.onRecovery(() => order.push('second'));
    detector.checkForDeadConnection(err({ code: 'ECONNREFUSED' }));
    await clock.advance(0);
    expect(order).toEqual(['handler sees dead=true', 'second']);
    unsubscribe();
    expect(detector.recoveryHandlers()).toHaveLength(1);
  });

  it('starts one loop however many death errors arrive', async () => {
    const { clock, detector, attempts } = setup([false, true]);
    for (let i = 0; i < 10; i++) detector.checkForDeadConnection(err({ code: 'ECONNRESET' }));
    await clock.advance(1000);
    expect(attempts).toEqual([0, 100]);
  });

  it('stops for good on close', async () => {
    const { clock, detector, attempts } = setup([false, false, false]);
    detector.checkForDeadConnection(err({ code: 'ECONNRESET' }));
    await clock.advance(0);
    await detector.close();
    await clock.advance(10_000);
    expect(attempts).toEqual([0]);
    expect(detector.checkForDeadConnection(err({ code: 'ECONNRESET' }))).toBe(false);
  });

  it('waitForRecovery resolves true on recovery and false on timeout', async () => {
    const { clock, detector } = setup([false, true]);
    detector.checkForDeadConnection(err({ code: 'ECONNRESET' }));
    const shortWait = detector.waitForRecovery(50);
    const longWait = detector.waitForRecovery(1000);
    await clock.advance(60);
    expect(await shortWait).toBe(false);
    await clock.advance(100);
    expect(await longWait).toBe(true);
  });
});

describe('RetryingCall', () => {
  it('retries until success, following the backoff', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const call = new RetryingCall(async (x: number) => {
      if (++calls < 3) throw new Error('transient');
      return x * 2;
    }, 21);
    call.clock = clock;
    const result = call.start(backoff({ jitter: 0 }));
    await clock.advance(1000);
    expect(await result).toBe(42);
    expect(call.attempts).toBe(2);
  });

  it('gives up when the failure tester says so, or when the backoff ends', async () => {
    const fatal = new Error('fatal');
    const call = new RetryingCall(async () => {
      throw fatal;
    });
    await expect(call.start(backoff({ jitter: 0 }), () => false)).rejects.toBe(fatal);
    const thrower = new RetryingCall(async () => {
      throw new Error('first');
    });
    await expect(
      thrower.start(backoff(), () => {
        throw new Error('tester says no');
      }),
    ).rejects.toThrow('tester says no');
    const clock = new FakeClock();
    const limited = new RetryingCall(async () => {
      throw new Error('always');
    });
    limited.clock = clock;
    const p = limited.start(backoff({ maxRetries: 2, jitter: 0 }));
    const settled = p.catch((e) => e);
    await clock.advance(1000);
    expect((await settled).message).toBe('always');
    expect(limited.attempts).toBe(3);
  });

  it('resetBackoff starts the delays over', () => {
    const call = new RetryingCall(async () => 1);
    expect(() => call.resetBackoff(backoff())).not.toThrow();
  });
});

void flush;

describe('DeadConnectionDetector.suspectDeadConnection (fake clock)', () => {
  function setup(results: Array<true | Record<string, unknown>>) {
    const clock = new FakeClock();
    let checks = 0;
    const detector = new DeadConnectionDetector({
      deathChecker: defaultDeathChecker,
      clock,
      reconnect: { jitter: 0 },
      reconnector: async () => {
        checks++;
        const r = results.shift() ?? true;
        if (r !== true) throw err(r);
      },
    });
    return { clock, detector, checks: () => checks };
  }

  it('one dead connection is checked with a reconnect: the server answers, so the database stays alive', async () => {
    const { clock, detector, checks } = setup([true]);
    const deaths = jest.fn();
    detector.onRecovery(deaths);
    expect(detector.suspectDeadConnection(err({ code: 'ECONNRESET' }))).toBe(true);
    expect(detector.isDead).toBe(false);
    expect(() => detector.assertAlive()).not.toThrow();
    await clock.advance(0);
    expect(checks()).toBe(1);
    expect(detector.isDead).toBe(false);
    expect(deaths).not.toHaveBeenCalled();
  });

  it('marks dead when the check fails with a death error, then reconnects with backoff and recovers once', async () => {
    const { clock, detector, checks } = setup([{ code: 'ECONNREFUSED', message: 'refused' }, { code: 'ECONNREFUSED', message: 'refused' }, true]);
    const recovered = jest.fn();
    detector.onRecovery(recovered);
    detector.suspectDeadConnection(err({ code: '57P01', message: 'terminating connection due to administrator command' }));
    await clock.advance(0);
    expect(detector.isDead).toBe(true);
    expect(detector.deadError().message).toContain('refused');
    await clock.advance(1000);
    expect(checks()).toBe(3);
    expect(recovered).toHaveBeenCalledTimes(1);
    expect(detector.isDead).toBe(false);
  });

  it('runs one check however many connections die together', async () => {
    const { clock, detector, checks } = setup([true]);
    for (let i = 0; i < 20; i++) detector.suspectDeadConnection(err({ code: 'ECONNRESET' }));
    await clock.advance(0);
    expect(checks()).toBe(1);
  });

  it('ignores ordinary errors, and a check refused for another reason (credentials) is not an outage', async () => {
    const { clock, detector, checks } = setup([{ code: '28P01', message: 'password authentication failed' }]);
    expect(detector.suspectDeadConnection(err({ code: '23505' }))).toBe(false);
    await clock.advance(0);
    expect(checks()).toBe(0);
    detector.suspectDeadConnection(err({ code: 'ECONNRESET' }));
    await clock.advance(0);
    expect(checks()).toBe(1);
    expect(detector.isDead).toBe(false);
  });

  it('while dead, a suspicion is just one more death error: no second loop', async () => {
    const { clock, detector, checks } = setup([{ code: 'ECONNREFUSED' }, { code: 'ECONNREFUSED' }, true]);
    detector.checkForDeadConnection(err({ code: 'ECONNREFUSED' }));
    detector.suspectDeadConnection(err({ code: 'ECONNRESET' }));
    await clock.advance(0);
    expect(checks()).toBe(1);
    await clock.advance(1000);
    expect(checks()).toBe(3);
    expect(detector.isDead).toBe(false);
  });
});

describe('DeadConnectionDetector with maxRetries', () => {
  it('stays dead when the attempts run out, and a new death error starts another round', async () => {
    const clock = new FakeClock();
    let attempts = 0;
    const detector = new DeadConnectionDetector({
      deathChecker: defaultDeathChecker,
      clock,
      reconnect: { jitter: 0, maxRetries: 2 },
      reconnector: async () => {
        attempts++;
        throw err({ code: 'ECONNREFUSED' });
      },
    });
    detector.checkForDeadConnection(err({ code: 'ECONNRESET' }));
    await clock.advance(5000);
    expect(attempts).toBe(2);
    expect(detector.isDead).toBe(true);
    detector.checkForDeadConnection(err({ code: 'ECONNRESET' }));
    await clock.advance(5000);
    expect(attempts).toBe(4);
  });
});
