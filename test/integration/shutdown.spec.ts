import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { allCases, describeEachDialect } from '../support/databases.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const dist = path.join(root, 'dist/lib/index.js');

/**
 * A child process boots the module, queries, closes the app, and must then exit on its own:
 * no timer, socket or worker left behind. Runs against the compiled package (`npm run build`).
 */
describeEachDialect(allCases, 'process exit after app.close()', (c) => {
  const run = fs.existsSync(dist) ? it : it.skip;
  run('exits by itself within 5 s', async () => {
    const script = `
      import 'reflect-metadata';
      import { Module } from '@nestjs/common';
      import { NestFactory } from '@nestjs/core';
      import { DatabaseModule, getDatabaseToken } from ${JSON.stringify(dist)};
      @Module({ imports: [DatabaseModule.forRoot({ url: ${JSON.stringify(c.url())}, pool: { min: 1 } })] })
      class AppModule {}
      const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
      const db = app.get(getDatabaseToken());
      await db.runQuery('SELECT 1');
      await Promise.all([db.runQuery('SELECT 2'), db.runInteraction(async (tx) => tx.runQuery('SELECT 3'))]);
      await app.close();
      console.log('closed');
    `;
    // Decorators need a compiler: write the module as plain JS instead.
    const js = script.replace(/@Module\(([\s\S]*?)\)\s*class AppModule \{\}/, 'class AppModule {}\nModule($1)(AppModule);');
    const file = path.join(root, 'dist', `exit-check-${c.dialect}-${process.pid}.mjs`);
    fs.writeFileSync(file, js);
    try {
      const started = Date.now();
      const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [file], { cwd: root, env: { ...process.env, NODE_OPTIONS: '' } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.on('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr });
        });
      });
      expect(stderr).toBe('');
      expect(stdout.trim()).toBe('closed');
      expect(code).toBe(0);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});
