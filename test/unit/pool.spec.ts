import { Pool, type PoolOptions } from '../../lib/pool/pool.js';
import { AcquireTimeout, DatabaseClosed, DatabaseError } from '../../lib/index.js';
import { FakeConnection, FakeDriver } from '../support/fakes.js';
import { until } from '../support/wait.js';

const defaults: PoolOptions = {
  min: 0,
  max: 2,
  idleTimeoutMs: 0,
  acquireTimeoutMs: 200,
  maxLifetimeMs: 0,
  leakDetectionMs: 0,
  validateAfterIdleMs: 30_000,
};

/** A pool of fake connections with the Database's policy: ping to validate, ROLLBACK to clean a connection released in a transaction. */
function makePool(options: Partial<PoolOptions> = {}) {
  const driver = new FakeDriver();
  const created = driver.connections;
  const leaks: Array<{ message: string; stack: string }> = [];
  const pool = new Pool(
    { ...defaults, ...options },
    {
      name: 'unit',
      validate: (c) => c.ping(),
      reset: async (c, dirty) => {
        if (dirty) throw new DatabaseError('no reset for a dirty connection here');
        await c.execute('ROLLBACK', [], { rowMode: 'array' });
      },
      create: () => driver.connect(),
      onLeak: (message, stack) => leaks.push({ message, stack }),
    },
  );
  return { pool, created, leaks, driver };
}

/** Gone: closed gracefully or destroyed. */
const gone = (c: FakeConnection) => c.closed || c.destroyed;

describe('Pool (fake connections)', () => {
  it('opens nothing until asked, reuses an idle connection, and never exceeds max', async () => {
    const { pool, created } = makePool();
    expect(pool.stats()).toEqual({ total: 0, idle: 0, busy: 0, waiting: 0, max: 2 });
    const a = await pool.acquire();
    pool.release(a);
    const b = await pool.acquire();
    expect(b.connection).toBe(a.connection);
    const c = await pool.acquire();
    const waiting = pool.acquire();
    expect(pool.stats()).toMatchObject({ total: 2, busy: 2, waiting: 1 });
    pool.release(c);
    expect((await waiting).connection).toBe(c.connection);
    expect(created).toHaveLength(2);
  });

  it('throws on a second release of the same lease', async () => {
    const { pool } = makePool();
    const lease = await pool.acquire();
    pool.release(lease);
    expect(() => pool.release(lease)).toThrow(/released twice/);
  });

  it('rejects with AcquireTimeout naming the database and the pool size', async () => {
    const { pool } = makePool({ max: 1, acquireTimeoutMs: 50 });
    await pool.acquire();
    const error = await pool.acquire().catch((e) => e);
    expect(error).toBeInstanceOf(AcquireTimeout);
    expect(error.message).toMatch(/"unit".*pool\.max = 1/);
    expect(pool.stats().waiting).toBe(0);
  });

  it('rolls back a connection released inside a transaction before anyone else gets it', async () => {
    const { pool, driver } = makePool({ max: 1 });
    const lease = await pool.acquire();
    const c = lease.connection as FakeConnection;
    c.transactionStatus = 'transaction';
    pool.release(lease);
    const next = await pool.acquire();
    expect(next.connection).toBe(c);
    expect(driver.log).toEqual([`${c.serverId}: ROLLBACK`]);
    expect(c.transactionStatus).toBe('idle');
  });

  it('destroys a connection whose rollback on release fails, and opens a fresh one', async () => {
    const { pool, created, driver } = makePool({ max: 1 });
    const lease = await pool.acquire();
    const c = lease.connection as FakeConnection;
    c.transactionStatus = 'failed';
    driver.script = (text, on) => (text === 'ROLLBACK' && on === c ? new DatabaseError('rollback failed') : undefined);
    pool.release(lease);
    const next = await pool.acquire();
    expect(next.connection).not.toBe(c);
    expect(gone(c)).toBe(true);
    expect(created).toHaveLength(2);
  });

  it('destroys a discarded or broken connection instead of reusing it', async () => {
    const { pool } = makePool({ max: 1 });
    const lease = await pool.acquire();
    lease.discard = true;
    pool.release(lease);
    expect(gone(lease.connection as FakeConnection)).toBe(true);
    const next = await pool.acquire();
    expect(next.connection).not.toBe(lease.connection);
  });

  it('drops a connection that dies while idle, and never hands it out', async () => {
    const { pool } = makePool();
    const lease = await pool.acquire();
    pool.release(lease);
    (lease.connection as FakeConnection).die();
    expect(pool.stats().idle).toBe(0);
    const next = await pool.acquire();
    expect(next.connection).not.toBe(lease.connection);
  });

  it('pings a connection idle longer than validateAfterIdleMs, and replaces it if the ping fails', async () => {
    const { pool } = makePool({ validateAfterIdleMs: 10 });
    const lease = await pool.acquire();
    pool.release(lease);
    (lease.connection as FakeConnection).broken = false;
    // Time passing, not an event: idle for longer than validateAfterIdleMs (a busy machine only makes it longer).
    await new Promise((r) => setTimeout(r, 20));
    // Broken without an event (a silent half-open socket): only the ping tells.
    const stale = lease.connection as FakeConnection;
    stale.ping = async () => {
      throw new DatabaseError('no answer', { code: 'ETIMEDOUT' });
    };
    const next = await pool.acquire();
    expect(next.connection).not.toBe(stale);
    expect(gone(stale)).toBe(true);
  });

  it('replaces a connection past its maximum lifetime when it is released', async () => {
    const { pool } = makePool({ maxLifetimeMs: 10 });
    const lease = await pool.acquire();
    // Time passing, not an event: older than maxLifetimeMs (a busy machine only makes it older).
    await new Promise((r) => setTimeout(r, 20));
    pool.release(lease);
    expect(gone(lease.connection as FakeConnection)).toBe(true);
  });

  it('warns once, with the stack that took it, about a connection held past leakDetectionMs', async () => {
    const { pool, leaks } = makePool({ leakDetectionMs: 20 });
    const lease = await (async function takeAndForget() {
      return pool.acquire();
    })();
    await until(() => leaks.length >= 1, 'the leak warning');
    await new Promise((r) => setTimeout(r, 60)); // a negative check: a second warning for the same lease would come here
    expect(leaks).toHaveLength(1);
    expect(leaks[0].message).toMatch(/held for more than 20 ms/);
    expect(leaks[0].stack).toMatch(/takeAndForget/);
    pool.release(lease);
  });

  it('keeps min connections open', async () => {
    const { pool } = makePool({ min: 2 });
    pool.fill();
    await until(() => pool.stats().idle === 2, 'min connections to open');
    expect(pool.stats()).toMatchObject({ total: 2, idle: 2 });
  });

  it('closes: waiters get DatabaseClosed, idle connections close, busy ones are waited for', async () => {
    const { pool } = makePool({ max: 1 });
    const lease = await pool.acquire();
    const waiter = pool.acquire();
    const closing = pool.close(1000);
    await expect(waiter).rejects.toBeInstanceOf(DatabaseClosed);
    let closed = false;
    void closing.then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 20)); // a negative check: close must not finish while a lease is out
    expect(closed).toBe(false);
    pool.release(lease);
    await closing;
    expect(gone(lease.connection as FakeConnection)).toBe(true);
    await expect(pool.acquire()).rejects.toBeInstanceOf(DatabaseClosed);
  });

  it('destroys a connection marked dirty whose session reset fails, and hands out a fresh one', async () => {
    const { pool, created } = makePool({ max: 1 });
    const lease = await pool.acquire();
    lease.dirty = true;
    pool.release(lease);
    await until(() => gone(created[0]), 'the connection whose reset failed to be destroyed');
    const next = await pool.acquire();
    expect(next.connection).not.toBe(created[0]);
    pool.release(next);
  });

  it('gives the error of a failed open to the waiter that asked', async () => {
    const pool = new Pool(defaults, {
      name: 'unit',
      validate: async () => {},
      reset: async () => {},
      create: async () => {
        throw new DatabaseError('refused', { code: 'ECONNREFUSED' });
      },
    });
    await expect(pool.acquire()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(pool.stats()).toMatchObject({ total: 0, waiting: 0 });
  });
});
