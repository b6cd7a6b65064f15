/**
 * `npm run bench:profile -- <client> <workload> [ms]`: one client of the benchmark alone, for a
 * CPU profile of where its time goes. Prints ops/s and Node CPU µs per operation, then the
 * functions with the most self time (the in-process V8 profiler), this module's own first.
 *
 *   npm run bench:profile -- "nestjs-dbpool (pg)" point
 *   npm run bench:profile -- "pg Pool (named)" point 5000
 *
 * Workloads: point (point select, 32 in flight), select1 (concurrency 1), tx (short transaction,
 * 16 in flight), wide (100 rows × 12 columns, 16 in flight).
 */
import { Session } from 'node:inspector/promises';
import { ITEMS, MYSQL_URL, PG_URL, WIDE_GROUPS, moduleClient, mysqlPoolClient, pgPoolClient, setupMysql, setupPostgres, type Client } from './clients.js';

const [clientName = 'nestjs-dbpool (pg)', workload = 'point', msArg] = process.argv.slice(2);
const MS = Number(msArg ?? 4000);

const clients: Client[] = [
  moduleClient('nestjs-dbpool (pg)', 'postgres', PG_URL),
  moduleClient('nestjs-dbpool (mysql)', 'mysql', MYSQL_URL),
  pgPoolClient('pg Pool (named)', true),
  pgPoolClient('pg Pool (unnamed)', false),
  mysqlPoolClient('mysql2 pool execute', true),
  mysqlPoolClient('mysql2 pool query', false),
];

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

async function load(c: Client, inFlight: number, ms: number): Promise<{ ops: number; cpuUs: number }> {
  const step = async (id: number): Promise<void> => {
    if (workload === 'point') await c.pointSelect(id);
    else if (workload === 'select1') await c.select1();
    else if (workload === 'tx') await c.transaction!(id);
    else if (workload === 'wide') await c.wideRows!(1 + (id % WIDE_GROUPS));
    else throw new Error(`unknown workload ${workload}`);
  };
  let ops = 0;
  const end = performance.now() + ms;
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        await step(1 + Math.floor(Math.random() * ITEMS));
        ops++;
      }
    }),
  );
  const used = process.cpuUsage(cpu);
  return { ops: ops / (ms / 1000), cpuUs: (used.user + used.system) / ops };
}

async function main(): Promise<void> {
  const client = clients.find((c) => c.name === clientName);
  if (!client) throw new Error(`no client named ${clientName}: ${clients.map((c) => c.name).join(', ')}`);
  await (client.dialect === 'postgres' ? setupPostgres() : setupMysql());
  await client.open();
  const inFlight = workload === 'select1' ? 1 : workload === 'point' ? 32 : 16;
  await load(client, inFlight, 1000); // warm-up: JIT, connections, prepared statements
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  const { ops, cpuUs } = await load(client, inFlight, MS);
  const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] } };
  await client.close();

  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const frame = byId.get(id)!.callFrame;
    const where = frame.url.replace(/^.*node_modules\//, '').replace(/^.*\/dist\//, '');
    const key = `${frame.functionName || '(anonymous)'} ${where}${where ? `:${frame.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + profile.timeDeltas[i]);
    total += profile.timeDeltas[i];
  });
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]);
  console.log(`${client.name} ${workload}: ${ops.toFixed(0)} ops/s, ${cpuUs.toFixed(1)} CPU µs/op (node)`);
  const show = (title: string, list: Array<[string, number]>) => {
    console.log(`\n${title}`);
    for (const [key, t] of list.slice(0, 25))
      console.log(`${((100 * t) / total).toFixed(1).padStart(5)}%  ${((1000 * t) / (ops * (MS / 1000))).toFixed(0).padStart(5)} ns/op  ${key}`);
  };
  show(
    'this module (lib/), by self time',
    rows.filter(([k]) => k.includes(' lib/')),
  );
  show('everything, by self time', rows);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
