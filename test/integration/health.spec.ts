import 'reflect-metadata';
import { inspect } from 'node:util';
import { DatabaseModule, getDatabaseToken, type Database } from '../../lib/index.js';
import { DatabaseHealthIndicator } from '../../lib/health/index.js';
import { bootContext } from '../support/app.js';
import { describeEachDialect, serverCases, tempSqliteUrl } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';

const until = async (condition: () => boolean | Promise<boolean>, ms: number) => {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20)); // poll interval
  }
};

describeEachDialect(serverCases, 'DatabaseHealthIndicator', (c) => {
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await FaultProxy.start(c.dialect === 'postgres' ? 5432 : 3306);
  });
  afterEach(async () => {
    await proxy.close();
  });

  async function boot(extra: Record<string, unknown> = {}) {
    const app = await bootContext([
      DatabaseModule.forRoot({ url: proxy.url(c.url()), pool: { max: 2, acquireTimeoutMs: 2000 }, connectTimeoutMs: 1000, ...extra }),
    ]);
    return { app, db: app.get<Database>(getDatabaseToken()), health: app.get(DatabaseHealthIndicator) };
  }

  it('is up with dialect, state, latency and pool stats; the latency follows the network', async () => {
    const { app, health } = await boot();
    try {
      const up = await health.pingCheck('database');
      expect(up.database).toMatchObject({ status: 'up', dialect: c.dialect, state: 'alive' });
      expect(up.database.pool).toMatchObject({ max: 2 });
      await proxy.setMode('latency', { latencyMs: 60 });
      const slow = await health.pingCheck('database');
      expect(slow.database.status).toBe('up');
      expect(slow.database.latencyMs as number).toBeGreaterThanOrEqual(100);
    } finally {
      await proxy.setMode('pass');
      await app.close();
    }
  });

  it('is down within timeoutMs + 200 ms when traffic is blackholed, and never hangs', async () => {
    const { app, health } = await boot();
    try {
      expect((await health.pingCheck('database')).database.status).toBe('up');
      await proxy.setMode('blackhole');
      for (let i = 0; i < 2; i++) {
        const started = Date.now();
        const down = await health.pingCheck('database', { timeoutMs: 500 });
        const took = Date.now() - started;
        console.log(`HEALTH blackhole ${c.dialect} downAfterMs=${took}`);
        expect(down.database.status).toBe('down');
        expect(String(down.database.message)).toMatch(/timeout of 500ms exceeded|timeout|refused|reset|terminated/i);
        expect(took).toBeLessThan(700);
      }
      // Concurrent probes share one ping and all settle in time.
      const started = Date.now();
      const all = await Promise.all(Array.from({ length: 10 }, () => health.pingCheck('database', { timeoutMs: 300 })));
      expect(all.every((r) => r.database.status === 'down')).toBe(true);
      expect(Date.now() - started).toBeLessThan(500);
    } finally {
      await proxy.setMode('pass');
      await app.close();
    }
  });

  it('is down at once (under 20 ms) while the detector says dead, and up again after recovery', async () => {
    const { app, db, health } = await boot({ reconnect: { maxDelayMs: 200 } });
    try {
      await db.runQuery('SELECT 1');
      await proxy.setMode('refuse');
      proxy.resetAll();
      await until(async () => {
        await db.runQuery('SELECT 1').catch(() => {});
        return db.detector.isDead;
      }, 5000);
      const started = performance.now();
      const down = await health.pingCheck('database');
      const took = performance.now() - started;
      console.log(`HEALTH dead ${c.dialect} downInMs=${took.toFixed(2)}`);
      expect(took).toBeLessThan(250); // answered from the detector's state, not after a connect attempt or a ping timeout
      expect(down.database).toMatchObject({ status: 'down', state: 'dead', dialect: c.dialect });
      expect(typeof down.database.deadSince).toBe('string');
      expect(typeof down.database.lastError).toBe('string');
      await proxy.setMode('pass');
      await until(async () => (await health.pingCheck('database')).database.status === 'up', 5000);
    } finally {
      await proxy.setMode('pass');
      await app.close();
    }
  });

  it('stays up while every pool connection is busy', async () => {
    const { app, db, health } = await boot();
    const releases: Array<() => void> = [];
    try {
      const held = [1, 2].map(() => db.runInteraction(() => new Promise<void>((resolve) => releases.push(resolve))));
      await until(() => db.stats().busy === 2, 2000);
      const started = Date.now();
      const result = await health.pingCheck('database', { timeoutMs: 1000 });
      expect(result.database.status).toBe('up');
      expect(Date.now() - started).toBeLessThan(1000);
      releases.forEach((r) => r());
      await Promise.all(held);
    } finally {
      releases.forEach((r) => r());
      await app.close();
    }
  });

  it('never shows the password or the full URL', async () => {
    const password = `Hc-${Date.now()}-secret`;
    // PostgreSQL trusts 127.0.0.1 and ignores it; MariaDB refuses it (an authentication error to inspect too).
    const withPassword = proxy.url(c.url()).replace(/\/\/([^@/]+)@/, `//$1:${password}@`);
    expect(withPassword).toContain(password);
    const app = await bootContext([DatabaseModule.forRoot({ url: withPassword, connectTimeoutMs: 1000, pool: { acquireTimeoutMs: 1000 } })]);
    try {
      const db = app.get<Database>(getDatabaseToken());
      const health = app.get(DatabaseHealthIndicator);
      const outputs: unknown[] = [];
      outputs.push(await health.pingCheck('database'));
      await db.runQuery('SELECT 1').catch((e) => outputs.push(e, e.message, e.stack));
      await proxy.setMode('refuse');
      proxy.resetAll();
      await db.runQuery('SELECT 1').catch((e) => outputs.push(e, e.message, e.stack));
      outputs.push(await health.pingCheck('database', { timeoutMs: 300 }), await health.pingCheckAll('all'), db.stats(), db.toJSON());
      for (const o of outputs) {
        const text = typeof o === 'string' ? o : JSON.stringify(o) + inspect(o, { depth: 6 });
        expect(text).not.toContain(password);
        expect(text).not.toContain(withPassword);
      }
      expect(inspect(db, { depth: 6 })).not.toContain(password);
    } finally {
      await proxy.setMode('pass');
      await app.close();
    }
  });
});

describe('DatabaseHealthIndicator across databases and shutdown', () => {
  it('pingCheckAll reports every named database; readiness is down as soon as shutdown begins', async () => {
    const app = await bootContext([
      DatabaseModule.forRoot({ url: serverCases[0].url() }),
      DatabaseModule.forRoot({ name: 'analytics', url: serverCases[1].url() }),
      DatabaseModule.forRoot({ name: 'local', url: tempSqliteUrl() }),
    ]);
    const health = app.get(DatabaseHealthIndicator);
    const all = await health.pingCheckAll('databases');
    expect(all.databases.status).toBe('up');
    expect(all.databases).toMatchObject({
      default: { status: 'up', dialect: 'postgres' },
      analytics: { status: 'up', dialect: 'mysql' },
      local: { status: 'up', dialect: 'sqlite' },
    });
    expect((await health.pingCheck('db', { connection: 'local' })).db.status).toBe('up');
    expect((await health.pingCheck('db', { connection: 'nope' })).db.status).toBe('down');
    const db = app.get<Database>(getDatabaseToken());
    // A slow query keeps the pool draining while readiness must already say down.
    const slow = db.runQuery('SELECT pg_sleep(0.5)');
    const closing = app.close();
    // Shutdown has begun once the module flagged the database (beforeApplicationShutdown); from then on it stays so.
    await until(() => db.shuttingDown || db.isClosed, 5000);
    const during = await health.pingCheck('database');
    expect(during.database).toMatchObject({ status: 'down', state: 'shutting_down' });
    await slow;
    await closing;
  });
});
