/**
 * The replica workload of `npm run bench`: a throwaway PostgreSQL primary + streaming standby
 * (the test suite's cluster helper, on ports of its own), and this module on it three ways:
 * primary only, primary + replica with read-your-writes off, and with it on. Both servers share
 * this machine's CPU, so spreading reads cannot show what two machines would; the ratios say
 * what routing and the read-your-writes check cost here.
 */
import { Module, type INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Database, DatabaseModule, getDatabaseToken, type DatabaseModuleOptions } from '../lib/index.js';
import { pgQuery, startPostgresCluster } from '../test/support/cluster/index.js';

const ITEMS = 10_000;

export interface ReplicaRow {
  workload: string;
  client: string;
  unit: string;
  median: number;
  /** Reads the replica answered, of all reads. */
  replicaShare: number;
}

async function open(options: DatabaseModuleOptions): Promise<{ db: Database; app: INestApplicationContext }> {
  @Module({ imports: [DatabaseModule.forRoot(options)] })
  class ReplicaBenchModule {}
  const app = await NestFactory.createApplicationContext(ReplicaBenchModule, { logger: false });
  const db = app.get<Database>(getDatabaseToken());
  if (options.replicas) {
    for (let i = 0; i < 500 && (await db.checkReplicas())[0].state !== 'up'; i++) await new Promise((r) => setTimeout(r, 10));
  }
  return { db, app };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Ops per second of `op` with `inFlight` callers for `ms`, and the share of reads the replica answered. */
async function rate(inFlight: number, ms: number, op: (id: number) => Promise<boolean>): Promise<{ value: number; share: number }> {
  let ops = 0;
  let onReplica = 0;
  const end = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        if (await op(1 + Math.floor(Math.random() * ITEMS))) onReplica++;
        ops++;
      }
    }),
  );
  return { value: ops / ((performance.now() - started) / 1000), share: onReplica / ops };
}

export async function replicaWorkloads(rounds: number, roundMs: number): Promise<ReplicaRow[]> {
  const cluster = await startPostgresCluster({ standbys: 1 });
  try {
    await pgQuery(cluster.primaryUrl, 'CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, hits bigint NOT NULL DEFAULT 0)');
    await pgQuery(cluster.primaryUrl, `INSERT INTO items SELECT g, 'item' || g, 0 FROM generate_series(1, ${ITEMS}) g`);
    await cluster.waitForReplay();
    const base = { url: cluster.primaryUrl, pool: { max: 10 }, replicaCheckIntervalMs: 200 };
    const clients: Array<{ name: string; options: DatabaseModuleOptions }> = [
      { name: 'primary only', options: base },
      { name: 'primary + replica, readYourWrites off', options: { ...base, replicas: [cluster.standbyUrl], readYourWrites: 'off' } },
      // Each write-then-read pair in a read context of its own, as a request is: it waits for its own write only.
      { name: 'primary + replica, readYourWrites per context', options: { ...base, replicas: [cluster.standbyUrl], readYourWrites: 'context' } },
      {
        name: 'primary + replica, readYourWrites per context, replicaWaitMs 0',
        options: { ...base, replicas: [cluster.standbyUrl], readYourWrites: 'context', replicaWaitMs: 0 },
      },
    ];
    const opened = [];
    for (const c of clients) opened.push({ ...c, ...(await open(c.options)) });
    const read = async (db: Database, id: number) => {
      const [row] = await db.runQuery<{ name: string; r: boolean }>('SELECT name, pg_is_in_recovery() AS r FROM items WHERE id = $1', [id]);
      if (row?.name !== `item${id}`) throw new Error(`wrong answer for ${id}: ${JSON.stringify(row)}`);
      return row.r;
    };
    const workloads = [
      { name: 'point select (32 in flight)', unit: 'ops/s', op: (db: Database) => (id: number) => read(db, id) },
      {
        name: 'write, then read it (16 in flight)',
        unit: 'pairs/s',
        op: (db: Database) => (id: number) =>
          db.readContext(async () => {
            await db.runOperation('UPDATE items SET hits = hits + 1 WHERE id = $1', [id]);
            return read(db, id);
          }),
        inFlight: 16,
      },
    ];
    const rows: ReplicaRow[] = [];
    for (const w of workloads) {
      const samples = new Map<string, Array<{ value: number; share: number }>>();
      for (const c of opened) await rate(w.inFlight ?? 32, Math.min(roundMs, 300), w.op(c.db)); // warm-up
      for (let round = 0; round < rounds; round++) {
        for (const c of round % 2 ? [...opened].reverse() : opened) {
          samples.set(c.name, [...(samples.get(c.name) ?? []), await rate(w.inFlight ?? 32, roundMs, w.op(c.db))]);
        }
      }
      for (const [client, ss] of samples) {
        rows.push({ workload: w.name, client, unit: w.unit, median: median(ss.map((s) => s.value)), replicaShare: median(ss.map((s) => s.share)) });
      }
    }
    for (const c of opened) await c.app.close();
    return rows;
  } finally {
    await cluster.stop();
  }
}

export function printReplicaRows(rows: ReplicaRow[]): void {
  console.log('\n## read replicas (primary + streaming standby on this one machine)');
  console.log('| workload | client | median | vs primary only | reads on the replica |');
  console.log('|---|---|---:|---:|---:|');
  for (const r of rows) {
    const base = rows.find((o) => o.workload === r.workload && o.client === 'primary only')!;
    console.log(
      `| ${r.workload} | ${r.client} | ${r.median.toFixed(0)} ${r.unit} | ${(r.median / base.median).toFixed(2)} | ${(r.replicaShare * 100).toFixed(0)} % |`,
    );
  }
}
