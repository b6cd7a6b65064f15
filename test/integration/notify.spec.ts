/**
 * LISTEN/NOTIFY against real PostgreSQL: delivery and its order, unsubscribe, failing
 * observers, payloads and channel names, a slow observer beside the pool, @OnNotify in a
 * booted app; MySQL and SQLite refuse at once. Reconnects are in test/faults/notify-reconnect.spec.ts.
 */
import { jest } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { bootContext, openDatabase } from '../support/app.js';
import { describeEachDialect, MYSQL_URL, mysqlCase, PG_URL, sqliteCase, uniqueTable } from '../support/databases.js';
import {
  DatabaseError,
  DatabaseModule,
  getDatabaseToken,
  InvalidParameter,
  NotSupported,
  OnNotify,
  type Database,
  type Notification,
} from '../../lib/index.js';

let channelCount = 0;
/** A channel name unique to this process, so concurrent test runs on the same server never hear each other. */
const channel = (label = 'c') => `n${process.pid}_${Date.now().toString(36)}_${++channelCount}_${label}`;

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10); // poll interval
  }
}

/** What the server says the session `pid` ran last, or undefined once the session is gone. */
async function lastQueryOf(db: Database, pid: number): Promise<string | undefined> {
  const rows = await db.runQuery<{ query: string }>('SELECT query FROM pg_stat_activity WHERE pid = $1', [pid]);
  return rows[0]?.query;
}

describe('notifications [postgres]', () => {
  let db: Database;
  let close: () => Promise<void>;

  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: PG_URL, pool: { max: 4 } }));
  });
  afterAll(async () => {
    await close();
  });

  it('delivers 1,000 notifications to two observers, each in the order they were sent', async () => {
    const ch = channel('order');
    const sync: string[] = [];
    const async: string[] = [];
    const stopSync = await db.listen(ch, (n) => void sync.push(n.payload));
    // The second one awaits between notifications: it must still see them one by one, in order.
    const stopAsync = await db.listen(ch, async (n) => {
      if (Number(n.payload) % 100 === 0) await sleep(1); // the observer's own asynchronous work, not a wait
      async.push(n.payload);
    });
    const sent = Array.from({ length: 1000 }, (_, i) => String(i + 1));
    for (const payload of sent) await db.notify(ch, payload);
    await waitFor(() => sync.length >= 1000 && async.length >= 1000, 10_000, '1,000 notifications twice');
    await sleep(50); // a negative check: nothing more (no duplicate) arrives
    expect(sync).toEqual(sent);
    expect(async).toEqual(sent);
    await stopSync();
    await stopAsync();
  });

  it('hands each observer the channel, the payload and the sender pid', async () => {
    const ch = channel('shape');
    const got: Notification[] = [];
    const stop = await db.listen(ch, (n) => void got.push(n));
    const [{ pid }] = await db.runInteraction(async (tx) => {
      await tx.runQuery('SELECT pg_notify($1, $2)', [ch, 'hello']);
      return tx.runQuery<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    });
    await waitFor(() => got.length === 1);
    expect(got[0]).toEqual({ channel: ch, payload: 'hello', processId: pid });
    await stop();
  });

  it('delivers a NOTIFY sent inside a transaction on COMMIT, and never on ROLLBACK', async () => {
    const ch = channel('tx');
    const got: string[] = [];
    const stop = await db.listen(ch, (n) => void got.push(n.payload));
    await expect(
      db.runInteraction(async () => {
        await db.notify(ch, 'rolled back');
        throw new Error('undo');
      }),
    ).rejects.toThrow('undo');
    await db.runInteraction(async () => {
      await db.notify(ch, 'committed');
      await sleep(100); // a negative check: a notification delivered before COMMIT would arrive here
      expect(got).toEqual([]); // not before COMMIT
    });
    await waitFor(() => got.length === 1);
    await sleep(100); // a negative check: the rolled-back one never arrives
    expect(got).toEqual(['committed']);
    await stop();
  });

  it('unsubscribe stops delivery, UNLISTENs when a channel loses its last observer, and closes the connection when the last one goes', async () => {
    const a = channel('a');
    const b = channel('b');
    const a1: string[] = [];
    const a2: string[] = [];
    const b1: string[] = [];
    const stopA1 = await db.listen(a, (n) => void a1.push(n.payload));
    const stopA2 = await db.listen(a, (n) => void a2.push(n.payload));
    const stopB1 = await db.listen(b, (n) => void b1.push(n.payload));
    const pid = db.listener!.connectionId!;
    expect(pid).toEqual(expect.any(Number));
    expect(db.listener!.channels().sort()).toEqual([a, b].sort());

    // One of two observers leaves: no UNLISTEN, the other still hears the channel.
    await stopA1();
    await stopA1(); // a second call is a no-op
    await db.notify(a, 'one');
    await waitFor(() => a2.length === 1);
    expect(await lastQueryOf(db, pid)).not.toMatch(/^UNLISTEN/i);
    expect(db.listener!.channels()).toContain(a);

    // The channel's last observer leaves: UNLISTEN on the same session, and nothing more arrives.
    await stopA2();
    expect(await lastQueryOf(db, pid)).toBe(`UNLISTEN "${a}"`);
    expect(db.listener!.channels()).toEqual([b]);
    await db.notify(a, 'two');
    await db.notify(b, 'b-one');
    await waitFor(() => b1.length === 1);
    await sleep(50); // a negative check: nothing arrives for the unsubscribed observers
    expect(a1).toEqual([]);
    expect(a2).toEqual(['one']);

    // The last subscription goes: the dedicated session closes.
    await stopB1();
    expect(db.listener!.connectionId).toBeUndefined();
    await waitFor(async () => (await lastQueryOf(db, pid)) === undefined, 5000, 'the listener session to end');

    // Listening again opens a new session.
    const again: string[] = [];
    const stopAgain = await db.listen(b, (n) => void again.push(n.payload));
    expect(db.listener!.connectionId).not.toBe(pid);
    await db.notify(b, 'b-two');
    await waitFor(() => again.length === 1);
    expect(b1).toEqual(['b-one']);
    await stopAgain();
  });

  it('an unsubscribe right after subscribe, before LISTEN went out, leaves nothing behind', async () => {
    const ch = channel('quick');
    const got: string[] = [];
    const stops = await Promise.all([1, 2, 3].map(() => db.listen(ch, (n) => void got.push(n.payload))));
    await Promise.all(stops.map((stop) => stop()));
    const stop = await db.listen(ch, (n) => void got.push(n.payload));
    await db.notify(ch, 'x');
    await waitFor(() => got.length === 1);
    await stop();
    expect(db.listener!.channels()).not.toContain(ch);
  });

  it('an observer that throws or rejects is logged, and the others still get every notification', async () => {
    const ch = channel('throw');
    const errors = jest.spyOn(db.logger, 'error').mockImplementation(() => {});
    try {
      const good: string[] = [];
      let thrown = 0;
      let rejected = 0;
      const stops = [
        await db.listen(ch, () => {
          thrown++;
          throw new Error('sync boom');
        }),
        await db.listen(ch, async () => {
          rejected++;
          throw new Error('async boom');
        }),
        await db.listen(ch, (n) => void good.push(n.payload)),
      ];
      for (let i = 1; i <= 5; i++) await db.notify(ch, String(i));
      await waitFor(() => good.length === 5 && rejected === 5);
      await sleep(20); // a negative check: nothing is delivered twice
      expect(good).toEqual(['1', '2', '3', '4', '5']);
      expect(thrown).toBe(5);
      const messages = errors.mock.calls.map((call) => String(call[0]));
      expect(messages.filter((m) => m.includes('threw: sync boom') && m.includes(ch))).toHaveLength(5);
      expect(messages.filter((m) => m.includes('threw: async boom') && m.includes(ch))).toHaveLength(5);
      for (const stop of stops) await stop();
    } finally {
      errors.mockRestore();
    }
  });

  it('payloads with quotes, backslashes, unicode, empty and 7,999 bytes arrive intact; 8,000 bytes is refused', async () => {
    const ch = channel('payload');
    const got: string[] = [];
    const stop = await db.listen(ch, (n) => void got.push(n.payload));
    const payloads = [
      `it's "quoted" \\ back\\slash $1 ?; '); DROP TABLE users; --`,
      'unicode: 日本語 ✓ émoji 🎉 RTL עברית',
      '',
      'x'.repeat(7999),
      '€'.repeat(2666) + 'a', // 3 bytes × 2666 + 1 = 7,999 bytes
      JSON.stringify({ id: 1, text: 'line\nbreak\ttab' }),
    ];
    expect(Buffer.byteLength(payloads[4])).toBe(7999);
    for (const p of payloads) await db.notify(ch, p);
    await expect(db.notify(ch, 'y'.repeat(8000))).rejects.toBeInstanceOf(DatabaseError);
    await expect(db.notify(ch, 42 as unknown as string)).rejects.toBeInstanceOf(InvalidParameter);
    await waitFor(() => got.length === payloads.length);
    await sleep(50); // a negative check: nothing more arrives
    expect(got).toEqual(payloads);
    await stop();
  });

  it('channel names with quotes, spaces, upper case and unicode work, and cannot inject SQL', async () => {
    const canary = uniqueTable('canary');
    await db.runOperation(`CREATE TABLE ${canary} (id INT)`);
    try {
      const base = `n${process.pid}_${++channelCount}`;
      const names = [
        `${base}_Orders`,
        `${base}_orders`, // a different channel: names are case-sensitive
        `${base} with space`,
        `${base}_quo"te`,
        `${base}"; DROP TABLE ${canary}; --`.slice(0, 63),
        `${base}_канал`,
      ];
      const got = new Map<string, string[]>(names.map((n) => [n, []]));
      const stops = [];
      for (const name of names) stops.push(await db.listen(name, (n) => void got.get(n.channel)!.push(n.payload)));
      expect(db.listener!.channels().sort()).toEqual([...names].sort());
      for (const name of names) await db.notify(name, `to ${name}`);
      await waitFor(() => [...got.values()].every((list) => list.length === 1));
      await sleep(50); // a negative check: no channel hears another's notification
      for (const name of names) expect(got.get(name)).toEqual([`to ${name}`]);
      for (const stop of stops) await stop(); // UNLISTEN quotes the same way
      expect(await db.runQuery(`SELECT count(*)::int AS n FROM ${canary}`)).toEqual([{ n: 0 }]);
    } finally {
      await db.runOperation(`DROP TABLE IF EXISTS ${canary}`);
    }
  });

  it('refuses channel names PostgreSQL would reject or truncate, before sending anything', async () => {
    const observer = () => {};
    await expect(db.listen('', observer)).rejects.toBeInstanceOf(InvalidParameter);
    await expect(db.listen('a\0b', observer)).rejects.toBeInstanceOf(InvalidParameter);
    await expect(db.listen('x'.repeat(64), observer)).rejects.toThrow(/at most 63 bytes/);
    await expect(db.listen('é'.repeat(32), observer)).rejects.toBeInstanceOf(InvalidParameter); // 64 bytes
    await expect(db.notify('x'.repeat(64), 'p')).rejects.toBeInstanceOf(InvalidParameter);
    await expect(db.listen(channel(), 'not a function' as never)).rejects.toBeInstanceOf(InvalidParameter);
    // 63 bytes is fine.
    const ch = `n${process.pid}_`.padEnd(63, 'z');
    const got: string[] = [];
    const stop = await db.listen(ch, (n) => void got.push(n.payload));
    await db.notify(ch, 'max');
    await waitFor(() => got.length === 1);
    await stop();
  });

  it('with 10 channels and a slow observer, the pool keeps answering promptly and other observers are not held up', async () => {
    const channels = Array.from({ length: 10 }, (_, i) => channel(`load${i}`));
    const fast = new Map<string, string[]>(channels.map((c) => [c, []]));
    const stops = [];
    for (const ch of channels) stops.push(await db.listen(ch, (n) => void fast.get(ch)!.push(n.payload)));
    // The slow observer does real work on the pool: 200 ms per notification.
    const slowSeen: string[] = [];
    let running = 0;
    let maxRunning = 0;
    stops.push(
      await db.listen(channels[0], async (n) => {
        maxRunning = Math.max(maxRunning, ++running);
        await db.runQuery('SELECT pg_sleep(0.2)');
        running--;
        slowSeen.push(n.payload);
      }),
    );

    const baseline: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      await db.runQuery('SELECT 1');
      baseline.push(performance.now() - t);
    }

    const sentAt = performance.now();
    // 10 notifications on each channel, each channel's burst in one statement.
    await Promise.all(channels.map((ch) => db.runQuery('SELECT pg_notify($1, i::text) FROM generate_series(1, 10) AS i', [ch])));
    const expected = Array.from({ length: 10 }, (_, i) => String(i + 1));

    const latencies: number[] = [];
    const measuring = (async () => {
      while (performance.now() - sentAt < 1500) {
        const t = performance.now();
        await db.runQuery('SELECT 1');
        latencies.push(performance.now() - t);
        await sleep(20); // pacing of the measuring queries
      }
    })();
    await waitFor(() => [...fast.values()].every((list) => list.length === 10), 5000, 'fast observers');
    const fastDoneMs = performance.now() - sentAt;
    await measuring;
    await waitFor(() => slowSeen.length === 10, 10_000, 'the slow observer');

    for (const ch of channels) expect(fast.get(ch)).toEqual(expected);
    expect(slowSeen).toEqual(expected);
    expect(maxRunning).toBe(1); // one notification at a time: it holds at most one pool connection
    expect(fastDoneMs).toBeLessThan(1000);
    const sorted = [...latencies].sort((x, y) => x - y);
    const p50 = sorted[Math.floor(sorted.length / 2)];
    const max = sorted[sorted.length - 1];
    // A pool query that waited behind a pg_sleep(0.2) would take 200 ms or more; the slow observer
    // runs for 2 s, so waiting behind it would show in most of the measuring queries, not only the
    // slowest one (which a busy machine can delay on its own).
    expect(p50).toBeLessThan(150);
    console.log(
      `slow observer: ${latencies.length} pool queries during the burst, p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms ` +
        `(baseline max ${Math.max(...baseline).toFixed(1)} ms); 100 fast deliveries done in ${fastDoneMs.toFixed(0)} ms`,
    );
    for (const stop of stops) await stop();
  });

  it('onResubscribe returns an unsubscribe, and opens no connection by itself', async () => {
    const { db: fresh, close: closeFresh } = await openDatabase({ url: PG_URL, name: 'resub' });
    try {
      const off = fresh.onResubscribe(() => {});
      expect(typeof off).toBe('function');
      expect(fresh.listener?.connectionId).toBeUndefined();
      expect(fresh.stats().total).toBe(0);
      off();
    } finally {
      await closeFresh();
    }
  });
});

describeEachDialect([mysqlCase, sqliteCase], 'notifications', (c) => {
  it('listen, notify and onResubscribe refuse at once with NotSupported saying notifications need PostgreSQL', async () => {
    const { db, close } = await openDatabase({ url: c.url() });
    try {
      const started = Date.now();
      const listening = db.listen('orders', () => {});
      await expect(listening).rejects.toBeInstanceOf(NotSupported);
      await expect(listening).rejects.toThrow(/needs LISTEN\/NOTIFY notifications.*\(postgres has them\)/);
      await expect(db.notify('orders', 'x')).rejects.toThrow(/postgres has them/);
      await expect(db.notify('orders', 'x')).rejects.toMatchObject({ code: 'NOT_SUPPORTED', dialect: c.dialect });
      expect(() => db.onResubscribe(() => {})).toThrow(NotSupported);
      expect(Date.now() - started).toBeLessThan(500); // refused at once, not after a connect attempt
      expect(db.stats().total).toBe(0); // nothing was sent, no connection opened
    } finally {
      await close();
    }
  });
});

describe('@OnNotify [postgres]', () => {
  it('calls provider methods for their channel, on the database named by `connection`', async () => {
    const orders = channel('orders');
    const audit = channel('audit');
    const other = channel('other');

    @Injectable()
    class Subscriber {
      readonly seen: Array<[string, string]> = [];
      readonly tag = 'bound';

      @OnNotify(orders)
      onOrder(n: Notification): void {
        this.seen.push([`order:${this.tag}`, n.payload]);
      }

      @OnNotify(audit, { connection: 'analytics' })
      async onAudit(n: Notification): Promise<void> {
        await sleep(1); // an asynchronous method: its own work, not a wait
        this.seen.push(['audit', n.payload]);
      }

      @OnNotify(other)
      @OnNotify(`${other}_2`)
      onEither(n: Notification): void {
        this.seen.push([n.channel === other ? 'other' : 'other2', n.payload]);
      }
    }

    const app = await bootContext([DatabaseModule.forRoot({ url: PG_URL }), DatabaseModule.forRoot({ name: 'analytics', url: PG_URL })], [Subscriber]);
    try {
      const main = app.get<Database>(getDatabaseToken());
      const analytics = app.get<Database>(getDatabaseToken('analytics'));
      const subscriber = app.get(Subscriber);
      expect(main.listener!.channels().sort()).toEqual([orders, other, `${other}_2`].sort());
      expect(analytics.listener!.channels()).toEqual([audit]);

      await main.notify(orders, '1');
      await analytics.notify(audit, 'a');
      await main.notify(other, 'o');
      await main.notify(`${other}_2`, 'o2');
      await waitFor(() => subscriber.seen.length === 4);
      expect(subscriber.seen.sort()).toEqual(
        [
          ['order:bound', '1'],
          ['audit', 'a'],
          ['other', 'o'],
          ['other2', 'o2'],
        ].sort(),
      );
    } finally {
      await app.close();
    }
  });

  it('fails the bootstrap, naming the method, when the database is not PostgreSQL', async () => {
    @Injectable()
    class MysqlSubscriber {
      @OnNotify('orders', { connection: 'legacy' })
      onOrder(): void {}
    }
    const errors = jest.spyOn(Logger.prototype, 'error').mockImplementation(() => {});
    try {
      await expect(bootContext([DatabaseModule.forRoot({ name: 'legacy', url: MYSQL_URL })], [MysqlSubscriber])).rejects.toBeInstanceOf(NotSupported);
      expect(errors.mock.calls.map((call) => String(call[0]))).toContainEqual(expect.stringContaining("@OnNotify('orders') on MysqlSubscriber.onOrder"));
    } finally {
      errors.mockRestore();
    }
  });
});
