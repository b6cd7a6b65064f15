/**
 * OpenTelemetry metrics, on every dialect, with the SDK's MeterProvider and a reader the test
 * collects on demand: the conventions' operation and connection-pool metrics against the pool's
 * real state, and the module's own (detector, reconnects, notifications), with no value and no
 * password in any attribute.
 */
import type { Histogram } from '@opentelemetry/sdk-metrics';
import { AcquireTimeout, DatabaseModule, getDatabaseToken, UniqueViolation, type Database } from '../../lib/index.js';
import { bootContext, openDatabase } from '../support/app.js';
import { allCases, describeEachDialect, mysqlCase, postgresCase, serverCases, uniqueTable, type DialectCase } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { useTestMeter } from '../support/otel.js';
import { until } from '../support/wait.js';

const { collect, points, value } = useTestMeter();

/** The number of recordings of a histogram over its matching points. */
async function histogramCount(name: string, match: Record<string, unknown> = {}): Promise<number> {
  return (await points(name, match)).reduce((n, p) => n + (p.value as Histogram).count, 0);
}

const NAMESPACE_QUERY = { postgres: 'SELECT current_database() AS ns', mysql: 'SELECT DATABASE() AS ns', sqlite: "SELECT 'main' AS ns" } as const;
const SYSTEMS = { postgres: ['postgresql'], mysql: ['mysql', 'mariadb'], sqlite: ['sqlite'] } as const;

describeEachDialect(allCases, 'OpenTelemetry metrics', (c: DialectCase) => {
  it('db.client.operation.duration: one recording per statement, by operation, with error.type and the server code on failure', async () => {
    const name = `metered_${c.dialect}_${Date.now()}`;
    const { db, close } = await openDatabase({ url: c.url(), name, pool: { max: 3 } });
    const table = uniqueTable('metered');
    // Timing statements for the histogram is not slow-query logging: without slowQueryMs, no slowQuery event.
    let slowEvents = 0;
    db.events.on('slowQuery', () => slowEvents++);
    try {
      await db.runOperation(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, secret VARCHAR(40))`);
      await db.runOperation(`INSERT INTO ${table} (id, secret) VALUES (1, ${c.p(1)})`, ['hunter2-value']);
      // Deltas over every SELECT point: nothing else in this file runs statements meanwhile.
      const base = { 'db.operation.name': 'SELECT' };
      const before = await histogramCount('db.client.operation.duration', base);
      for (let i = 0; i < 7; i++) await db.runQuery(`SELECT id FROM ${table} WHERE id = ${c.p(1)}`, [i]);
      expect((await histogramCount('db.client.operation.duration', base)) - before).toBe(7);

      const [{ ns }] = await db.runQuery<{ ns: string }>(NAMESPACE_QUERY[c.dialect]);
      const mine = await points('db.client.operation.duration', base);
      const select = mine.find(
        (p) =>
          (SYSTEMS[c.dialect] as readonly unknown[]).includes(p.attributes['db.system.name']) &&
          (c.dialect === 'sqlite' || p.attributes['db.namespace'] === ns),
      )!;
      expect(select).toBeDefined();
      if (c.dialect !== 'sqlite') expect(select.attributes).toMatchObject({ 'server.address': '127.0.0.1', 'server.port': expect.any(Number) });
      expect((select.value as Histogram).sum).toBeGreaterThan(0);
      expect((select.value as Histogram).buckets.boundaries).toEqual([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]);

      const failure = await db.runOperation(`INSERT INTO ${table} (id, secret) VALUES (1, ${c.p(1)})`, ['hunter2-value']).catch((e) => e);
      expect(failure).toBeInstanceOf(UniqueViolation);
      const failed = (await points('db.client.operation.duration', { 'db.operation.name': 'INSERT', 'error.type': 'UniqueViolation' })).filter(
        (p) => p.attributes['db.system.name'] === select.attributes['db.system.name'],
      );
      expect(failed).toHaveLength(1);
      expect((failed[0].value as Histogram).count).toBe(1);
      expect(failed[0].attributes['db.response.status_code']).toEqual(expect.any(String));
      expect(JSON.stringify((await collect()).map((m) => m.dataPoints.map((p) => p.attributes)))).not.toContain('hunter2-value');
      await db.runOperation(`DROP TABLE ${table}`);
      expect(slowEvents).toBe(0);
    } finally {
      await close();
    }
  });

  it('db.client.connection.*: count by state, max, idle bounds and pending requests are the pool state; wait_time, create_time and timeouts are recorded', async () => {
    const name = `pooled_${c.dialect}_${Date.now()}`;
    const { db, close } = await openDatabase({ url: c.url(), name, pool: { max: 2, min: 2, acquireTimeoutMs: 150 } });
    const pool = { 'db.client.connection.pool.name': name };
    try {
      await until(() => db.stats().idle === 2, 'the pool filled to its min');
      const created = await histogramCount('db.client.connection.create_time', pool);
      expect(created).toBe(2);
      expect(await value('db.client.connection.count', { ...pool, 'db.client.connection.state': 'idle' })).toBe(db.stats().idle);
      expect(await value('db.client.connection.max', pool)).toBe(2);
      expect(await value('db.client.connection.idle.max', pool)).toBe(2);
      expect(await value('db.client.connection.idle.min', pool)).toBe(2);

      // Both connections held by transactions that wait on the test: used = 2, then a caller waits.
      let open!: () => void;
      const gate = new Promise<void>((resolve) => (open = resolve));
      const held = [1, 2].map(() => db.runInteraction(async (tx) => (await tx.runQuery('SELECT 1 AS n'), gate)));
      await until(() => db.stats().busy === 2, 'two busy connections');
      const waiting = db.runQuery('SELECT 3 AS n').catch((e) => e);
      await until(() => db.stats().waiting === 1, 'a waiting caller');
      expect(await value('db.client.connection.count', { ...pool, 'db.client.connection.state': 'used' })).toBe(2);
      expect(await value('db.client.connection.count', { ...pool, 'db.client.connection.state': 'idle' })).toBe(0);
      expect(await value('db.client.connection.pending_requests', pool)).toBe(1);
      expect(await waiting).toBeInstanceOf(AcquireTimeout);
      expect(await value('db.client.connection.timeouts', pool)).toBe(1);
      open();
      await Promise.all(held);

      const waits = await points('db.client.connection.wait_time', pool);
      // The 2 transactions took a connection; the call that timed out records no wait.
      expect(waits.reduce((n, p) => n + (p.value as Histogram).count, 0)).toBe(2);
      expect(await value('db.client.connection.count', { ...pool, 'db.client.connection.state': 'used' })).toBe(0);
      expect(await histogramCount('db.client.connection.create_time', pool)).toBe(created);
    } finally {
      await close();
    }
    // A closed database reports its pool empty once, then stops observing.
    expect(await value('db.client.connection.count', { ...pool, 'db.client.connection.state': 'idle' })).toBe(0);
    expect(await value('db.client.connection.count', { ...pool, 'db.client.connection.state': 'used' })).toBe(0);
  });

  it('metrics: false reports nothing for that database', async () => {
    const name = `unmetered_${c.dialect}_${Date.now()}`;
    const { db, close } = await openDatabase({ url: c.url(), name, metrics: false });
    try {
      await db.runQuery('SELECT 1 AS n');
      expect(await points('db.client.connection.count', { 'db.client.connection.pool.name': name })).toEqual([]);
      expect(await points('nestjs_dbpool.connection.dead', { 'nestjs_dbpool.database': name })).toEqual([]);
    } finally {
      await close();
    }
  });
});

describeEachDialect([mysqlCase], 'OpenTelemetry db.system.name', (c) => {
  it('a MySQL-dialect database names the product its server is: mariadb or mysql', async () => {
    const name = `product_${Date.now()}`;
    const { db, close } = await openDatabase({ url: c.url(), name });
    try {
      const [{ v }] = await db.runQuery<{ v: string }>('SELECT VERSION() AS v');
      const expected = /mariadb/i.test(v) ? 'mariadb' : 'mysql';
      expect(await value('nestjs_dbpool.connection.dead', { 'nestjs_dbpool.database': name })).toBe(0);
      const [dead] = await points('nestjs_dbpool.connection.dead', { 'nestjs_dbpool.database': name });
      expect(dead.attributes['db.system.name']).toBe(expected);
      const selects = await points('db.client.operation.duration', { 'db.operation.name': 'SELECT', 'db.namespace': 'test', 'server.port': 3306 });
      expect(selects.map((p) => p.attributes['db.system.name'])).toEqual([expected]);
    } finally {
      await close();
    }
  });
});

describeEachDialect(serverCases, 'OpenTelemetry detector metrics', (c) => {
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await FaultProxy.start(c.dialect === 'postgres' ? 5432 : 3306);
  });
  afterEach(async () => {
    await proxy.close();
  });

  it('nestjs_dbpool.connection.dead, .dead_time and reconnect.attempts follow an outage; no password in any attribute', async () => {
    const name = `outage_${c.dialect}_${Date.now()}`;
    // PostgreSQL here trusts any password: the URL carries one, which no attribute may show.
    const url = c.dialect === 'postgres' ? proxy.url(c.url()).replace('postgres@', 'postgres:metric-secret@') : proxy.url(c.url());
    const app = await bootContext([DatabaseModule.forRoot({ url, name, pool: { max: 2 }, connectTimeoutMs: 1000, reconnect: { maxDelayMs: 100 } })]);
    const db = app.get<Database>(getDatabaseToken(name));
    const mine = { 'nestjs_dbpool.database': name };
    try {
      await db.runQuery('SELECT 1 AS n');
      expect(await value('nestjs_dbpool.connection.dead', mine)).toBe(0);
      expect(await value('nestjs_dbpool.connection.dead_time', mine)).toBe(0);
      expect(await value('nestjs_dbpool.reconnect.attempts', mine)).toBe(0);

      await proxy.setMode('refuse');
      proxy.resetAll();
      await until(async () => {
        await db.runQuery('SELECT 1 AS n').catch(() => {});
        return db.detector.isDead;
      }, 'the database marked dead');
      expect(await value('nestjs_dbpool.connection.dead', mine)).toBe(1);
      await until(() => db.detector.attempts >= 2, 'two reconnect attempts');
      expect(await value('nestjs_dbpool.reconnect.attempts', mine)).toBeGreaterThanOrEqual(2);
      const deadSoFar = (await value('nestjs_dbpool.connection.dead_time', mine))!;
      expect(deadSoFar).toBeGreaterThan(0);

      await proxy.setMode('pass');
      await until(() => !db.detector.isDead, 'the recovery');
      expect(await value('nestjs_dbpool.connection.dead', mine)).toBe(0);
      const total = (await value('nestjs_dbpool.connection.dead_time', mine))!;
      expect(total).toBeGreaterThanOrEqual(deadSoFar);
      // Stays put once alive: the outage is over.
      await db.runQuery('SELECT 1 AS n');
      expect(await value('nestjs_dbpool.connection.dead_time', mine)).toBe(total);
      expect(JSON.stringify((await collect()).map((m) => m.dataPoints.map((p) => p.attributes)))).not.toMatch(/metric-secret|password/);
    } finally {
      await app.close();
    }
  });
});

describeEachDialect([postgresCase], 'OpenTelemetry notification metrics', (c) => {
  it('nestjs_dbpool.notification.delivered counts what observers got', async () => {
    const name = `notified_${Date.now()}`;
    const { db, close } = await openDatabase({ url: c.url(), name });
    const mine = { 'nestjs_dbpool.database': name };
    try {
      const seen: string[] = [];
      await db.listen('metered_channel', (n) => void seen.push(n.payload));
      for (const payload of ['a', 'b', 'c']) await db.notify('metered_channel', payload);
      await until(() => seen.length === 3, 'three notifications');
      expect(await value('nestjs_dbpool.notification.delivered', mine)).toBe(3);
      expect(await value('nestjs_dbpool.notification.deaf_periods', mine)).toBe(0);
    } finally {
      await close();
    }
  });
});
