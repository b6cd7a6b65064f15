import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeEachDialect, serverCases } from '../support/databases.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dist = path.join(root, 'dist/lib/index.js');
const ROWS = 1_000_000;

/** Runs `body` in a child process on the compiled package; resolves with what it printed as JSON. */
async function child(url: string, body: string): Promise<{ rows: number; rssGrowthMb: number }> {
  const file = path.join(root, 'dist', `stream-memory-${process.pid}-${Date.now()}.mjs`);
  fs.writeFileSync(
    file,
    `import 'reflect-metadata';
     import { Module } from '@nestjs/common';
     import { NestFactory } from '@nestjs/core';
     import { DatabaseModule, getDatabaseToken } from ${JSON.stringify(dist)};
     class AppModule {}
     Module({ imports: [DatabaseModule.forRoot({ url: ${JSON.stringify(url)} })] })(AppModule);
     const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
     const db = app.get(getDatabaseToken());
     await db.runQuery('SELECT 1');
     global.gc();
     const base = process.memoryUsage().rss;
     let peak = base;
     const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
     let rows = 0;
     ${body}
     clearInterval(sampler);
     peak = Math.max(peak, process.memoryUsage().rss);
     await app.close();
     console.log(JSON.stringify({ rows, rssGrowthMb: (peak - base) / 1048576 }));`,
  );
  try {
    return await new Promise((resolve, reject) => {
      const proc = spawn(process.execPath, ['--expose-gc', file], { cwd: root, env: { ...process.env, NODE_OPTIONS: '' } });
      let out = '';
      let err = '';
      proc.stdout.on('data', (d) => (out += d));
      proc.stderr.on('data', (d) => (err += d));
      const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
      proc.on('exit', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(JSON.parse(out.trim().split('\n').pop()!));
        else reject(new Error(`child exited ${code}: ${err}`));
      });
    });
  } finally {
    fs.rmSync(file, { force: true });
  }
}

describeEachDialect(serverCases, 'streaming 1,000,000 rows in bounded memory', (c) => {
  const run = fs.existsSync(dist) ? it : it.skip;
  const query =
    c.dialect === 'postgres'
      ? `SELECT g AS id, 'row number ' || g AS label FROM generate_series(1, ${ROWS}) g`
      : `SELECT seq AS id, CONCAT('row number ', seq) AS label FROM seq_1_to_${ROWS}`;

  run(
    'counts every row exactly with RSS growth under 64 MB, where fetching all grows far more',
    async () => {
      const streamed = await child(c.url(), `for await (const row of db.stream(${JSON.stringify(query)})) rows++;`);
      const fetched = await child(c.url(), `rows = (await db.runQuery(${JSON.stringify(query)})).length;`);
      console.log(`STREAM ${c.dialect} rows=${streamed.rows} streamRssMb=${streamed.rssGrowthMb.toFixed(1)} fetchAllRssMb=${fetched.rssGrowthMb.toFixed(1)}`);
      expect(streamed.rows).toBe(ROWS);
      expect(fetched.rows).toBe(ROWS);
      expect(streamed.rssGrowthMb).toBeLessThan(64);
      expect(fetched.rssGrowthMb).toBeGreaterThan(streamed.rssGrowthMb * 2);
    },
    120_000,
  );
});
