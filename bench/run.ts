/**
 * `npm run bench`: this module side by side with the raw drivers and the wrappers users would
 * pick instead, in one process, clients alternated round by round; medians and ratios to the
 * raw driver measured in the same run. Every answer is checked, so a wrong answer cannot look
 * fast. `--smoke` (used by CI) runs each workload once, briefly, and only checks the answers.
 *
 * Results: printed as a table and written to bench/results/latest.json.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DatabaseModuleOptions } from '../lib/index.js';
import {
  ITEMS,
  WIDE_GROUPS,
  WIDE_PER_GROUP,
  MYSQL_URL,
  PG_URL,
  knexClient,
  moduleClient,
  mysqlPoolClient,
  pgPoolClient,
  postgresJsClient,
  setupMysql,
  setupPostgres,
  typeormClient,
  type Client,
  type Dialect,
  type Item,
} from './clients.js';
import { printReplicaRows, replicaWorkloads, type ReplicaRow } from './replicas.js';

const SMOKE = process.argv.includes('--smoke');
const ROUNDS = SMOKE ? 1 : Number(process.env.BENCH_ROUNDS ?? 4);
const ROUND_MS = SMOKE ? 150 : Number(process.env.BENCH_ROUND_MS ?? 1000);
const STREAM_ROWS = SMOKE ? 2_000 : 200_000;
const ONLY = process.env.BENCH_ONLY?.split(',');
/** Workloads whose name contains one of these (comma-separated), for a quicker run: BENCH_WORKLOADS=transaction */
const WORKLOADS = process.env.BENCH_WORKLOADS?.split(',');

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
  await setupPostgres(STREAM_ROWS);
  await setupMysql(STREAM_ROWS);
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
    {
      name: `${WIDE_PER_GROUP} rows × 12 columns per query (16 in flight, pool 10)`,
      unit: 'queries/s',
      higherIsBetter: true,
      run: (c) =>
        c.wideRows &&
        throughput(c, 16, async (id) => {
          const group = 1 + (id % WIDE_GROUPS);
          const rows = await c.wideRows!(group);
          if (rows.length !== WIDE_PER_GROUP || Number(rows[0].grp) !== group) throw new Error(`${c.name}: wrong rows for group ${group}`);
        }),
    },
    { name: `stream ${STREAM_ROWS} rows`, unit: 'ms', higherIsBetter: false, run: (c) => c.stream && streaming(c) },
  ];

  const results = await measure(
    clients,
    workloads.filter((w) => !WORKLOADS || WORKLOADS.some((name) => w.name.includes(name))),
  );
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
