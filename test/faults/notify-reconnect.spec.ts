/**
 * LISTEN survives losing its connection: reset by the fault proxy, black-holed, or its backend
 * terminated. A sender on a direct connection keeps sending numbered notifications; the
 * listener's database goes through the proxy. Delivery is at most once: what is sent while
 * the listener is deaf is missed, everything sent after onResubscribe arrives, nothing twice.
 */
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { bootContext, openDatabase } from '../support/app.js';
import { PG_URL } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { killSessions } from '../support/sessions.js';
import { recordProcessErrors, report } from './harness.js';
import { Listener, type ListenerHost } from '../../lib/notify/listener.js';
import { DatabaseModule, getDatabaseToken, OnNotify, type Database, type Notification, type ResubscribeInfo } from '../../lib/index.js';
import { POSTGRES_NOTIFICATIONS } from '../../lib/drivers/postgres/postgres.features.js';

/** Notifications the sender has to get accepted after onResubscribe ran, before it stops: what must all arrive. */
const AFTER_HOOK = 20;

let channelCount = 0;
const channel = (label: string) => `n${process.pid}_${Date.now().toString(36)}_${++channelCount}_${label}`;

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10); // poll interval
  }
}

/** Sends `1, 2, 3…` on `ch` every `everyMs` from a direct connection until stopped. */
function startSender(sender: Database, ch: string, everyMs = 10) {
  let seq = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      const next = seq + 1;
      await sender.notify(ch, String(next));
      seq = next;
      await sleep(everyMs); // pacing: one notification every everyMs
    }
  })();
  return {
    /** The last number the server accepted. */
    get last() {
      return seq;
    },
    async stop() {
      running = false;
      await done;
    },
  };
}

/** No number twice, and in the order sent. */
function expectStrictlyIncreasing(received: number[]): void {
  for (let i = 1; i < received.length; i++) expect(received[i]).toBeGreaterThan(received[i - 1]);
  expect(new Set(received).size).toBe(received.length);
}

describe('@OnNotify while the server is unreachable at boot [postgres, fault proxy]', () => {
  it('the app boots, and the method gets notifications once the server can be reached', async () => {
    const ch = channel('boot');
    const proxy = await FaultProxy.start(Number(new URL(PG_URL).port || 5432));
    const processErrors = recordProcessErrors();
    const { db: sender, close: closeSender } = await openDatabase({ url: PG_URL, name: 'boot-sender' });

    @Injectable()
    class Subscriber {
      readonly seen: string[] = [];
      @OnNotify(ch)
      onMessage(n: Notification): void {
        this.seen.push(n.payload);
      }
    }

    await proxy.setMode('refuse');
    let app: INestApplicationContext | undefined;
    try {
      app = await bootContext([DatabaseModule.forRoot({ url: proxy.url(PG_URL), connectTimeoutMs: 1000, reconnect: { maxDelayMs: 200 } })], [Subscriber]);
      const db = app.get<Database>(getDatabaseToken());
      const subscriber = app.get(Subscriber);
      const infos: ResubscribeInfo[] = [];
      db.onResubscribe((info) => void infos.push(info));
      expect(db.listener!.channels()).toEqual([ch]);
      expect(db.listener!.connectionId).toBeUndefined();
      // The outage's length (nothing to wait for: the LISTEN already failed during the boot, which
      // waited for it): the server stays unreachable for 300 ms more.
      await sleep(300);
      await proxy.setMode('pass');
      await waitFor(() => infos.length === 1, 5000, 'LISTEN after the server came back');
      await sender.notify(ch, 'hello');
      await waitFor(() => subscriber.seen.length === 1, 5000, 'the notification');
      expect(subscriber.seen).toEqual(['hello']);
      expect(infos[0].channels).toEqual([ch]);
      expect(infos[0].downtimeMs).toBeGreaterThanOrEqual(250);
      report('notify-boot-unreachable', 'postgres', { downtimeMs: infos[0].downtimeMs });
    } finally {
      await app?.close();
      await closeSender();
      await proxy.close();
      processErrors.dispose();
    }
    expect(processErrors.list).toEqual([]);
  });
});

describe('notifications across reconnects [postgres, fault proxy]', () => {
  let proxy: FaultProxy;
  let db: Database;
  let closeDb: () => Promise<void>;
  let sender: Database;
  let closeSender: () => Promise<void>;
  let deaths: number;
  let processErrors: ReturnType<typeof recordProcessErrors>;

  beforeAll(async () => {
    ({ db: sender, close: closeSender } = await openDatabase({ url: PG_URL, name: 'sender', pool: { max: 2 } }));
  });
  afterAll(async () => {
    await closeSender();
  });
  beforeEach(async () => {
    processErrors = recordProcessErrors();
    proxy = await FaultProxy.start(Number(new URL(PG_URL).port || 5432));
    ({ db, close: closeDb } = await openDatabase({
      url: proxy.url(PG_URL),
      pool: { max: 2 },
      connectTimeoutMs: 1000,
      reconnect: { maxDelayMs: 200 },
    }));
    deaths = 0;
    db.events.on('dead', () => deaths++);
  });
  afterEach(async () => {
    await closeDb();
    await proxy.close();
    processErrors.dispose();
    expect(processErrors.list).toEqual([]); // no unhandled rejection from the listener's reconnects
  });

  it('after the proxy resets the listener connection and refuses for 600 ms, notifications sent after recovery arrive, onResubscribe reports the downtime, none arrives twice', async () => {
    const ch = channel('reset');
    const received: number[] = [];
    const infos: ResubscribeInfo[] = [];
    let catchUp: unknown;
    let seqAtHook = 0;
    await db.listen(ch, (n) => void received.push(Number(n.payload)));
    const out = startSender(sender, ch);
    db.onResubscribe(async (info) => {
      seqAtHook = out.last;
      infos.push(info);
      // The hook runs once the database takes calls again: the place to query what was missed.
      catchUp = await db.runQuery<{ ok: number }>('SELECT 1 AS ok').then(
        (rows) => rows[0].ok,
        (error: Error) => error,
      );
    });

    await waitFor(() => received.length >= 20, 5000, 'notifications before the fault');
    const seqBeforeFault = out.last;
    await waitFor(() => received.includes(seqBeforeFault));
    const faultAt = Date.now();
    await proxy.setMode('reset'); // RST every connection, and every new one
    await waitFor(() => db.listener!.connectionId === undefined, 5000, 'the listener to see its connection reset');
    await sleep(600); // the outage's length, from the moment the listener lost its connection
    await proxy.setMode('pass');
    await waitFor(() => infos.length === 1, 10_000, 'onResubscribe');
    const recoveredAfterMs = Date.now() - faultAt;
    await waitFor(() => out.last >= seqAtHook + AFTER_HOOK, 5000, 'notifications sent after onResubscribe');
    await out.stop();
    const last = out.last;
    await waitFor(() => received.includes(last), 5000, 'the last notification');
    await sleep(100); // a negative check: a duplicate would show up here

    expectStrictlyIncreasing(received);
    for (let i = 1; i <= seqBeforeFault; i++) expect(received).toContain(i);
    for (let i = seqAtHook + 1; i <= last; i++) expect(received).toContain(i);
    const missed = last - received.length;
    expect(infos).toHaveLength(1);
    expect(infos[0].channels).toEqual([ch]);
    expect(infos[0].downtimeMs).toBeGreaterThanOrEqual(550);
    expect(infos[0].downtimeMs).toBeLessThan(5000);
    expect(catchUp).toBe(1);
    expect(db.detector.state).toBe('alive');
    report('notify-reset-600ms', 'postgres', {
      downtimeMs: infos[0].downtimeMs,
      recoveredAfterMs,
      sent: last,
      received: received.length,
      missed,
      duplicates: received.length - new Set(received).size,
      deaths,
    });
  });

  it('a single reset of every connection is repaired at once, without marking the database dead', async () => {
    const ch = channel('blip');
    const received: number[] = [];
    const infos: ResubscribeInfo[] = [];
    await db.listen(ch, (n) => void received.push(Number(n.payload)));
    db.onResubscribe((info) => void infos.push(info));
    await db.runQuery('SELECT 1'); // a pool connection to be reset too
    const out = startSender(sender, ch);
    await waitFor(() => received.length >= 10);
    const pid = db.listener!.connectionId;
    proxy.resetAll();
    await waitFor(() => infos.length === 1, 5000, 'onResubscribe');
    const seqAtHook = out.last;
    await waitFor(() => out.last >= seqAtHook + AFTER_HOOK, 5000, 'notifications sent after onResubscribe');
    await out.stop();
    const last = out.last;
    await waitFor(() => received.includes(last), 5000, 'the last notification');
    await sleep(100); // a negative check: a duplicate would show up here

    expectStrictlyIncreasing(received);
    for (let i = seqAtHook + 1; i <= last; i++) expect(received).toContain(i);
    expect(db.listener!.connectionId).not.toBe(pid);
    expect(infos[0].downtimeMs).toBeLessThan(1000);
    expect(deaths).toBe(0);
    expect(await db.runQuery<{ n: number }>('SELECT 1 AS n')).toEqual([{ n: 1 }]);
    report('notify-reset-once', 'postgres', {
      downtimeMs: infos[0].downtimeMs,
      sent: last,
      received: received.length,
      missed: last - received.length,
      duplicates: received.length - new Set(received).size,
      deaths,
    });
  });

  it('a black-holed listener connection is found by the keepalive ping and replaced once traffic flows again', async () => {
    const ch = channel('hole');
    const listener = new Listener(
      {
        name: db.name,
        logger: db.logger,
        detector: db.detector,
        statements: POSTGRES_NOTIFICATIONS,
        openDedicatedConnection: () => db.openDedicatedConnection(),
      },
      200,
    ); // keepalive every 200 ms (the default is 10 s)
    try {
      const received: number[] = [];
      const infos: ResubscribeInfo[] = [];
      await listener.subscribe(ch, (n) => void received.push(Number(n.payload)));
      listener.onResubscribe((info) => void infos.push(info));
      const out = startSender(sender, ch);
      await waitFor(() => received.length >= 10);
      const pid = listener.connectionId;
      await proxy.setMode('blackhole');
      const holeAt = Date.now();
      // The keepalive finds the black hole: the listener drops the connection (within two intervals when not loaded).
      await waitFor(() => listener.connectionId === undefined, 10_000, 'the keepalive to find the black hole');
      const foundAfterMs = Date.now() - holeAt;
      await sleep(1000); // the outage's length, from the moment the listener found it
      await proxy.setMode('pass');
      await waitFor(() => infos.length === 1, 10_000, 'onResubscribe');
      const seqAtHook = out.last;
      await waitFor(() => out.last >= seqAtHook + AFTER_HOOK, 5000, 'notifications sent after onResubscribe');
      await out.stop();
      const last = out.last;
      await waitFor(() => received.includes(last), 5000, 'the last notification');
      await sleep(100); // a negative check: a duplicate would show up here

      expectStrictlyIncreasing(received);
      for (let i = seqAtHook + 1; i <= last; i++) expect(received).toContain(i);
      expect(listener.connectionId).not.toBe(pid);
      // Deaf from the moment the keepalive found the black hole until the proxy passed traffic again.
      expect(infos[0].downtimeMs).toBeGreaterThanOrEqual(1000);
      expect(infos[0].downtimeMs).toBeLessThan(6000);
      report('notify-blackhole', 'postgres', {
        keepaliveMs: 200,
        foundAfterMs,
        downtimeMs: infos[0].downtimeMs,
        sent: last,
        received: received.length,
        duplicates: received.length - new Set(received).size,
      });
    } finally {
      await listener.close();
    }
  });

  it('closing the listener during a black hole is bounded: a LISTEN stuck on the dead socket fails instead of holding up shutdown', async () => {
    // The listener's host is the database, with the statements its connection is given recorded.
    const sent: string[] = [];
    const host: ListenerHost = {
      name: db.name,
      logger: db.logger,
      detector: db.detector,
      statements: POSTGRES_NOTIFICATIONS,
      openDedicatedConnection: async () => {
        const connection = await db.openDedicatedConnection();
        const execute = connection.execute.bind(connection);
        connection.execute = (text, values, options) => {
          sent.push(text);
          return execute(text, values, options);
        };
        return connection;
      },
    };
    const listener = new Listener(host); // default keepalive (10 s): the ping would not notice in time
    await listener.subscribe(channel('open'), () => {});
    await proxy.setMode('blackhole');
    const stuckChannel = channel('stuck');
    const stuck = listener.subscribe(stuckChannel, () => {});
    stuck.catch(() => {});
    await waitFor(() => sent.some((text) => text.includes(stuckChannel)), 5000, 'the LISTEN to go out into the black hole');
    const started = Date.now();
    await listener.close();
    const closeMs = Date.now() - started;
    await expect(stuck).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
    expect(closeMs).toBeLessThan(2000);
    expect(listener.connectionId).toBeUndefined();
    await proxy.setMode('pass');
    report('notify-close-in-blackhole', 'postgres', { closeMs });
  });

  it('a terminated listener backend is replaced at once; the database is not marked dead', async () => {
    const ch = channel('kill');
    const received: number[] = [];
    const infos: ResubscribeInfo[] = [];
    await db.listen(ch, (n) => void received.push(Number(n.payload)));
    db.onResubscribe((info) => void infos.push(info));
    const out = startSender(sender, ch);
    await waitFor(() => received.length >= 10);
    const pid = db.listener!.connectionId!;
    expect(await killSessions('postgres', { ids: [pid] })).toBe(1);
    await waitFor(() => infos.length === 1, 5000, 'onResubscribe');
    const seqAtHook = out.last;
    await waitFor(() => out.last >= seqAtHook + AFTER_HOOK, 5000, 'notifications sent after onResubscribe');
    await out.stop();
    const last = out.last;
    await waitFor(() => received.includes(last), 5000, 'the last notification');

    expectStrictlyIncreasing(received);
    for (let i = seqAtHook + 1; i <= last; i++) expect(received).toContain(i);
    expect(db.listener!.connectionId).not.toBe(pid);
    expect(deaths).toBe(0);
    report('notify-terminate-backend', 'postgres', {
      downtimeMs: infos[0].downtimeMs,
      sent: last,
      received: received.length,
      missed: last - received.length,
      deaths,
    });
  });
});
