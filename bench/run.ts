/**
 * `npm run bench`: this module side by side with the raw drivers and the wrappers users would
 * pick instead, in one process, clients alternated round by round; medians and ratios to the
 * raw driver measured in the same run. Every answer is checked, so a wrong answer cannot look
 * fast. `--smoke` (used by CI) runs each workload once, briefly, and only checks the answers.
 *
 * Results: printed as a table and written to bench/results/latest.json.
 */
import 'reflect-metadata';
import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import QueryStream from 'pg-query-stream';
import mysql from 'mysql2';
import knexFactory, { type Knex } from 'knex';
import postgresJs from 'postgres';
import { DataSource } from 'typeorm';
import { Database, DatabaseModule, getDatabaseToken, InjectDatabase, Transactional, type DatabaseModuleOptions } from '../lib/index.js';
import { printReplicaRows, replicaWorkloads, type ReplicaRow } from './replicas.js';

const SMOKE = process.argv.includes('--smoke');
const ROUNDS = SMOKE ? 1 : Number(process.env.BENCH_ROUNDS ?? 4);
const ROUND_MS = SMOKE ? 150 : Number(process.env.BENCH_ROUND_MS ?? 1000);
const ITEMS = 10_000;
const STREAM_ROWS = SMOKE ? 2_000 : 200_000;
const POOL = 10;
const PG_URL = process.env.PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
const ONLY = process.env.BENCH_ONLY?.split(',');

type Dialect = 'postgres' | 'mysql' | 'sqlite';
interface Item {
  id: number | string;
  name: string;
}

/** One way of talking to a database, as a user would write it. */
interface Client {
  name: string;
  dialect: Dialect;
  /** The raw-driver client this one is compared to (ratios); undefined for a raw one. */
  open(): Promise<void>;
  pointSelect(id: number): Promise<Item>;
  select1(): Promise<unknown>;
  transaction?(id: number): Promise<number>;
  stream?(): Promise<number>;
  close(): Promise<void>;
}

const pgText = {
  point: 'SELECT id, name FROM bench_items WHERE id = $1',
  update: 'UPDATE bench_accounts SET balance = balance + 1 WHERE id = $1',
  balance: 'SELECT balance FROM bench_accounts WHERE id = $1',
};
const myText = {
  point: 'SELECT id, name FROM bench_items WHERE id = ?',
  update: 'UPDATE bench_accounts SET balance = balance + 1 WHERE id = ?',
  balance: 'SELECT balance FROM bench_accounts WHERE id = ?',
};
const streamText = 'SELECT id, payload FROM bench_stream';

// ---- this module -------------------------------------------------------------------------

@Injectable()
class TxService {
  constructor(@InjectDatabase() private readonly db: Database) {}

  @Transactional()
  async bump(id: number, text: typeof pgText): Promise<number> {
    await this.db.runOperation(text.update, [id]);
    const rows = await this.db.runQuery<{ balance: number }>(text.balance, [id]);
    return Number(rows[0].balance);
  }
}

function moduleClient(name: string, dialect: Dialect, url: string, options: Partial<DatabaseModuleOptions> = {}): Client {
  let app: INestApplicationContext;
  let db: Database;
  let tx: TxService;
  const text = dialect === 'postgres' ? pgText : myText;
  return {
    name,
    dialect,
    async open() {
      @Module({ imports: [DatabaseModule.forRoot({ url, pool: { max: POOL }, ...options })], providers: [TxService] })
      class BenchModule {}
      app = await NestFactory.createApplicationContext(BenchModule, { logger: false });
      db = app.get(getDatabaseToken());
      tx = app.get(TxService);
    },
    async pointSelect(id) {
      return (await db.runQuery<Item>(text.point, [id]))[0];
    },
    select1: () => db.runQuery('SELECT 1'),
    transaction: (id) => tx.bump(id, text),
    async stream() {
      let n = 0;
      for await (const _row of db.stream(streamText)) n++;
      return n;
    },
    close: () => app.close(),
  };
}

// ---- raw drivers ---------------------------------------------------------------------------

function pgPoolClient(name: string, named: boolean): Client {
  let pool: pg.Pool;
  const q = (text: string, key: string, values: unknown[]) => (named ? { name: key, text, values } : { text, values });
  return {
    name,
    dialect: 'postgres',
    async open() {
      pool = new pg.Pool({ connectionString: PG_URL, max: POOL });
    },
    async pointSelect(id) {
      return (await pool.query<Item>(q(pgText.point, 'point', [id]))).rows[0];
    },
    select1: () => pool.query(named ? { name: 'one', text: 'SELECT 1' } : 'SELECT 1'),
    async transaction(id) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(q(pgText.update, 'update', [id]));
        const { rows } = await client.query(q(pgText.balance, 'balance', [id]));
        await client.query('COMMIT');
        return Number(rows[0].balance);
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    async stream() {
      const client = await pool.connect();
      try {
        let n = 0;
        for await (const _row of client.query(new QueryStream(streamText, [], { batchSize: 1000 }))) n++;
        return n;
      } finally {
        client.release();
      }
    },
    close: () => pool.end(),
  };
}

function mysqlPoolClient(name: string, execute: boolean): Client {
  let pool: mysql.Pool;
  let promisePool: ReturnType<mysql.Pool['promise']>;
  const run = <T>(text: string, values: unknown[] = []) =>
    (execute ? promisePool.execute(text, values as never) : promisePool.query(text, values)).then(([rows]) => rows as unknown as T);
  return {
    name,
    dialect: 'mysql',
    async open() {
      pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: POOL, supportBigNumbers: true, bigNumberStrings: true, timezone: 'Z' });
      promisePool = pool.promise();
    },
    async pointSelect(id) {
      return (await run<Item[]>(myText.point, [id]))[0];
    },
    select1: () => run('SELECT 1'),
    async transaction(id) {
      const conn = await promisePool.getConnection();
      try {
        await conn.query('START TRANSACTION');
        if (execute) await conn.execute(myText.update, [id]);
        else await conn.query(myText.update, [id]);
        const [rows] = execute ? await conn.execute(myText.balance, [id]) : await conn.query(myText.balance, [id]);
        await conn.query('COMMIT');
        return Number((rows as Array<{ balance: number }>)[0].balance);
      } catch (error) {
        await conn.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        conn.release();
      }
    },
    async stream() {
      return new Promise<number>((resolve, reject) => {
        pool.getConnection((err, conn) => {
          if (err) return reject(err);
          let n = 0;
          (async () => {
            for await (const _row of conn.query(streamText).stream({ highWaterMark: 1000 })) n++;
          })().then(
            () => {
              conn.release();
              resolve(n);
            },
            (e) => {
              conn.release();
              reject(e);
            },
          );
        });
      });
    },
    close: () => new Promise<void>((resolve) => pool.end(() => resolve())),
  };
}

// ---- the wrappers users would pick instead ------------------------------------------------

function knexClient(name: string, dialect: 'postgres' | 'mysql'): Client {
  let knex: Knex;
  const text = dialect === 'postgres' ? { ...myText } : myText; // knex uses ? for both
  return {
    name,
    dialect,
    async open() {
      knex = knexFactory({
        client: dialect === 'postgres' ? 'pg' : 'mysql2',
        connection: dialect === 'postgres' ? PG_URL : ({ uri: MYSQL_URL, supportBigNumbers: true, bigNumberStrings: true } as never),
        pool: { min: 0, max: POOL },
      });
    },
    async pointSelect(id) {
      const r = await knex.raw(text.point, [id]);
      return (dialect === 'postgres' ? r.rows : r[0])[0];
    },
    select1: () => knex.raw('SELECT 1'),
    transaction: (id) =>
      knex.transaction(async (trx) => {
        await trx.raw(text.update, [id]);
        const r = await trx.raw(text.balance, [id]);
        return Number((dialect === 'postgres' ? r.rows : r[0])[0].balance);
      }),
    close: () => knex.destroy(),
  };
}

function typeormClient(name: string, dialect: 'postgres' | 'mysql'): Client {
  let ds: DataSource;
  const text = dialect === 'postgres' ? pgText : myText;
  return {
    name,
    dialect,
    async open() {
      ds = new DataSource(
        dialect === 'postgres'
          ? { type: 'postgres', url: PG_URL, poolSize: POOL }
          : { type: 'mysql', url: MYSQL_URL, poolSize: POOL, supportBigNumbers: true, bigNumberStrings: true },
      );
      await ds.initialize();
    },
    async pointSelect(id) {
      return (await ds.query(text.point, [id]))[0];
    },
    select1: () => ds.query('SELECT 1'),
    transaction: (id) =>
      ds.transaction(async (manager) => {
        await manager.query(text.update, [id]);
        return Number((await manager.query(text.balance, [id]))[0].balance);
      }),
    close: () => ds.destroy(),
  };
}

function postgresJsClient(name: string): Client {
  let sqlJs: ReturnType<typeof postgresJs>;
  return {
    name,
    dialect: 'postgres',
    async open() {
      sqlJs = postgresJs(PG_URL, { max: POOL });
    },
    async pointSelect(id) {
      return (await sqlJs.unsafe(pgText.point, [id], { prepare: true }))[0] as unknown as Item;
    },
    select1: () => sqlJs.unsafe('SELECT 1'),
    transaction: (id) =>
      sqlJs.begin(async (tx) => {
        await tx.unsafe(pgText.update, [id], { prepare: true });
        return Number((await tx.unsafe(pgText.balance, [id], { prepare: true }))[0].balance);
      }) as Promise<number>,
    close: () => sqlJs.end(),
  };
}

// ---- workloads -----------------------------------------------------------------------------

function check(item: Item | undefined, id: number, client: string): void {
  if (!item || Number(item.id) !== id || item.name !== `item${id}`) {
    throw new Error(`${client}: wrong answer for id ${id}: ${JSON.stringify(item)}`);
  }
}

interface Sample {
  value: number;
  cpuUsPerOp: number;
  p50?: number;
  p99?: number;
  rssMb?: number;
}

async function throughput(client: Client, inFlight: number, op: (id: number) => Promise<void>): Promise<Sample> {
  let ops = 0;
  const end = performance.now() + ROUND_MS;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        await op(1 + Math.floor(Math.random() * ITEMS));
        ops++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { value: ops / elapsed, cpuUsPerOp: (used.user + used.system) / ops };
}

async function latency(client: Client): Promise<Sample> {
  const times: number[] = [];
  const end = performance.now() + ROUND_MS;
  const cpu = process.cpuUsage();
  while (performance.now() < end) {
    const t = performance.now();
    const rows = (await client.select1()) as unknown;
    times.push(performance.now() - t);
    if (!rows) throw new Error(`${client.name}: SELECT 1 returned nothing`);
  }
  const used = process.cpuUsage(cpu);
  times.sort((a, b) => a - b);
  const p50 = times[Math.floor(times.length * 0.5)];
  const p99 = times[Math.min(times.length - 1, Math.floor(times.length * 0.99))];
  return { value: p50 * 1000, p50: p50 * 1000, p99: p99 * 1000, cpuUsPerOp: (used.user + used.system) / times.length };
}

async function streaming(client: Client): Promise<Sample> {
  global.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const cpu = process.cpuUsage();
  const t = performance.now();
  const n = await client.stream!();
  const ms = performance.now() - t;
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  const used = process.cpuUsage(cpu);
  if (n !== STREAM_ROWS) throw new Error(`${client.name}: streamed ${n} rows, expected ${STREAM_ROWS}`);
  return { value: ms, cpuUsPerOp: (used.user + used.system) / n, rssMb: (peak - base) / 1024 / 1024 };
}

// ---- setup -------------------------------------------------------------------------------

async function setupPostgres(): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query('CREATE TABLE IF NOT EXISTS bench_items (id int PRIMARY KEY, name text NOT NULL)');
    await client.query('CREATE TABLE IF NOT EXISTS bench_accounts (id int PRIMARY KEY, balance bigint NOT NULL)');
    await client.query('CREATE TABLE IF NOT EXISTS bench_stream (id int PRIMARY KEY, payload text NOT NULL)');
    if (Number((await client.query('SELECT count(*) AS n FROM bench_items')).rows[0].n) !== ITEMS) {
      await client.query('TRUNCATE bench_items, bench_accounts');
      await client.query(`INSERT INTO bench_items SELECT g, 'item' || g FROM generate_series(1, ${ITEMS}) g`);
      await client.query(`INSERT INTO bench_accounts SELECT g, 0 FROM generate_series(1, ${ITEMS}) g`);
    }
    if (Number((await client.query('SELECT count(*) AS n FROM bench_stream')).rows[0].n) !== STREAM_ROWS) {
      await client.query('TRUNCATE bench_stream');
      await client.query(`INSERT INTO bench_stream SELECT g, repeat('x', 100) FROM generate_series(1, ${STREAM_ROWS}) g`);
    }
  } finally {
    await client.end();
  }
}

async function setupMysql(): Promise<void> {
  const conn = mysql.createConnection({ uri: MYSQL_URL, multipleStatements: true }).promise();
  try {
    await conn.query('CREATE TABLE IF NOT EXISTS bench_items (id INT PRIMARY KEY, name VARCHAR(32) NOT NULL)');
    await conn.query('CREATE TABLE IF NOT EXISTS bench_accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)');
    await conn.query('CREATE TABLE IF NOT EXISTS bench_stream (id INT PRIMARY KEY, payload VARCHAR(128) NOT NULL)');
    const count = async (t: string) => Number(((await conn.query(`SELECT count(*) AS n FROM ${t}`))[0] as Array<{ n: number }>)[0].n);
    const fill = async (t: string, rows: number, row: (i: number) => string) => {
      await conn.query(`TRUNCATE ${t}`);
      for (let start = 1; start <= rows; start += 5000) {
        const values = Array.from({ length: Math.min(5000, rows - start + 1) }, (_, k) => row(start + k)).join(',');
        await conn.query(`INSERT INTO ${t} VALUES ${values}`);
      }
    };
    if ((await count('bench_items')) !== ITEMS) {
      await fill('bench_items', ITEMS, (i) => `(${i}, 'item${i}')`);
      await fill('bench_accounts', ITEMS, (i) => `(${i}, 0)`);
    }
    if ((await count('bench_stream')) !== STREAM_ROWS) await fill('bench_stream', STREAM_ROWS, (i) => `(${i}, REPEAT('x', 100))`);
  } finally {
    await conn.end();
  }
}

// ---- the run -------------------------------------------------------------------------------

interface Row {
  workload: string;
  client: string;
  dialect: Dialect;
  unit: string;
  median: number;
  cpuUsPerOp: number;
  p99?: number;
  rssMb?: number;
  ratios: Record<string, number>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

async function main(): Promise<void> {
  await setupPostgres();
  await setupMysql();
  const clients: Client[] = [
    moduleClient('nestjs-dbpool (pg)', 'postgres', PG_URL),
    pgPoolClient('pg Pool (unnamed)', false),
    pgPoolClient('pg Pool (named)', true),
    postgresJsClient('postgres.js'),
    knexClient('knex (pg)', 'postgres'),
    typeormClient('TypeORM query (pg)', 'postgres'),
    moduleClient('nestjs-dbpool (mysql)', 'mysql', MYSQL_URL),
    ...(process.env.BENCH_VARIANTS
      ? [
          moduleClient('nestjs-dbpool (pg, prepare)', 'postgres', PG_URL, { prepare: true }),
          moduleClient('nestjs-dbpool (mysql, prepare)', 'mysql', MYSQL_URL, { prepare: true }),
        ]
      : []),
    mysqlPoolClient('mysql2 pool query', false),
    mysqlPoolClient('mysql2 pool execute', true),
    knexClient('knex (mysql2)', 'mysql'),
    typeormClient('TypeORM query (mysql)', 'mysql'),
  ].filter((c) => !ONLY || ONLY.some((o) => c.name.includes(o)));
  for (const c of clients) await c.open();

  const workloads: Workload[] = [
    {
      name: 'point select (32 in flight, pool 10)',
      unit: 'ops/s',
      higherIsBetter: true,
      run: (c) => throughput(c, 32, async (id) => check(await c.pointSelect(id), id, c.name)),
    },
    { name: 'SELECT 1 latency (concurrency 1), p50', unit: 'µs', higherIsBetter: false, run: (c) => latency(c) },
    {
      name: 'short transaction (16 in flight, pool 10)',
      unit: 'tx/s',
      higherIsBetter: true,
      run: (c) =>
        c.transaction &&
        throughput(c, 16, async (id) => {
          const balance = await c.transaction!(id);
          if (!Number.isFinite(balance) || balance < 1) throw new Error(`${c.name}: wrong balance ${balance}`);
        }),
    },
    { name: `stream ${STREAM_ROWS} rows`, unit: 'ms', higherIsBetter: false, run: (c) => c.stream && streaming(c) },
  ];

  const results = await measure(clients, workloads);
  for (const c of clients) await c.close();
  if (process.env.BENCH_TELEMETRY !== '0') results.push(...(await telemetryCost(workloads.slice(0, 2))));
  // Read replicas on a throwaway primary + standby (not in --smoke: CI's tests run that cluster already). BENCH_REPLICAS=0 skips it.
  let replicas: ReplicaRow[] | string = 'skipped';
  if (!SMOKE && process.env.BENCH_REPLICAS !== '0') {
    try {
      replicas = await replicaWorkloads(ROUNDS, ROUND_MS);
      printReplicaRows(replicas);
    } catch (error) {
      replicas = `not run: ${(error as Error).message.split('\n')[0]}`;
      console.log(`\n## read replicas: ${replicas}`);
    }
  }
  const out = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../bench/results');
  fs.mkdirSync(out, { recursive: true });
  const report = { date: new Date().toISOString(), smoke: SMOKE, rounds: ROUNDS, roundMs: ROUND_MS, node: process.version, results, replicas };
  fs.writeFileSync(path.join(out, SMOKE ? 'smoke.json' : 'latest.json'), JSON.stringify(report, null, 2));
  console.log(`\n${SMOKE ? 'smoke: every answer checked' : `written to ${path.join(out, 'latest.json')}`}`);
}

/**
 * What OpenTelemetry costs per call, on point select and SELECT 1: first with `@opentelemetry/api`
 * installed and no SDK (every user of this package who has the API but not the SDK), then with
 * the SDK's tracer and meter providers registered (spans batched, metrics read, both exported to
 * nowhere), each against the module with `tracing: false, metrics: false` in the same rounds.
 */
async function telemetryCost(workloads: Workload[]): Promise<Row[]> {
  const off: Partial<DatabaseModuleOptions> = { tracing: false, metrics: false };
  const offClients = [
    moduleClient('nestjs-dbpool (pg, telemetry off)', 'postgres', PG_URL, off),
    moduleClient('nestjs-dbpool (mysql, telemetry off)', 'mysql', MYSQL_URL, off),
  ];
  const apiClients = [
    moduleClient('nestjs-dbpool (pg, API, no SDK)', 'postgres', PG_URL),
    moduleClient('nestjs-dbpool (mysql, API, no SDK)', 'mysql', MYSQL_URL),
  ];
  for (const c of [...offClients, ...apiClients]) await c.open();
  const rows = await measure(
    [...offClients, ...apiClients],
    workloads.map((w) => ({ ...w, name: `${w.name}: OpenTelemetry API without an SDK` })),
  );
  for (const c of apiClients) await c.close();

  const { context, metrics, trace } = await import('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { MeterProvider, PeriodicExportingMetricReader, AggregationTemporality } = await import('@opentelemetry/sdk-metrics');
  const nowhere = {
    export: (_items: unknown, done: (result: { code: number }) => void) => done({ code: 0 }),
    shutdown: async () => {},
    forceFlush: async () => {},
  };
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(nowhere)] });
  trace.setGlobalTracerProvider(tracerProvider);
  const meterProvider = new MeterProvider({
    readers: [
      new PeriodicExportingMetricReader({
        exporter: { ...nowhere, selectAggregationTemporality: () => AggregationTemporality.CUMULATIVE },
        exportIntervalMillis: 1000,
      }),
    ],
  });
  metrics.setGlobalMeterProvider(meterProvider);
  const sdkClients = [
    moduleClient('nestjs-dbpool (pg, OpenTelemetry SDK)', 'postgres', PG_URL),
    moduleClient('nestjs-dbpool (mysql, OpenTelemetry SDK)', 'mysql', MYSQL_URL),
  ];
  for (const c of sdkClients) await c.open();
  rows.push(
    ...(await measure(
      [...offClients, ...sdkClients],
      workloads.map((w) => ({ ...w, name: `${w.name}: OpenTelemetry SDK (spans + metrics)` })),
    )),
  );
  for (const c of [...offClients, ...sdkClients]) await c.close();
  trace.disable();
  metrics.disable();
  context.disable();
  await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
  return rows;
}

type Workload = { name: string; unit: string; higherIsBetter: boolean; run(c: Client): Promise<Sample> | undefined };

/** Runs each workload on every client, rounds alternated; prints and returns the rows with their ratios. */
async function measure(clients: Client[], workloads: Workload[]): Promise<Row[]> {
  const results: Row[] = [];
  for (const w of workloads) {
    // One unmeasured round first, so that no client pays for the JIT and connection set-up in a measured one.
    if (!SMOKE) for (const c of clients) await w.run(c);
    const samples = new Map<Client, Sample[]>();
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? clients : [...clients].reverse();
      for (const c of order) {
        const sample = await w.run(c);
        if (sample) samples.set(c, [...(samples.get(c) ?? []), sample]);
      }
    }
    const rows: Row[] = [...samples.entries()].map(([c, ss]) => ({
      workload: w.name,
      client: c.name,
      dialect: c.dialect,
      unit: w.unit,
      median: median(ss.map((s) => s.value)),
      cpuUsPerOp: median(ss.map((s) => s.cpuUsPerOp)),
      p99: ss[0].p99 !== undefined ? median(ss.map((s) => s.p99!)) : undefined,
      rssMb: ss[0].rssMb !== undefined ? median(ss.map((s) => s.rssMb!)) : undefined,
      ratios: {},
    }));
    // Ratios as "how much better than": > 1 means this client wins.
    for (const r of rows) {
      for (const o of rows) {
        if (o === r || o.dialect !== r.dialect || !r.client.startsWith('nestjs-dbpool')) continue;
        r.ratios[o.client] = w.higherIsBetter ? r.median / o.median : o.median / r.median;
      }
    }
    results.push(...rows);
    print(w.name, rows);
  }
  return results;
}

function print(workload: string, rows: Row[]): void {
  console.log(`\n## ${workload}`);
  console.log('| client | median | p99 | CPU µs/op | RSS MB | ratios (nestjs-dbpool vs; >1 = faster) |');
  console.log('|---|---:|---:|---:|---:|---|');
  for (const r of rows) {
    const ratios = Object.entries(r.ratios)
      .map(([k, v]) => `${k} ${v.toFixed(2)}`)
      .join(', ');
    console.log(
      `| ${r.client} | ${r.median.toFixed(0)} ${r.unit} | ${r.p99 !== undefined ? r.p99.toFixed(0) : ''} | ${r.cpuUsPerOp.toFixed(0)} | ${r.rssMb !== undefined ? r.rssMb.toFixed(1) : ''} | ${ratios} |`,
    );
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
