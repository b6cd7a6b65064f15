/**
 * Fail fast means fail fast: while the detector says dead, every call rejects at once with
 * `ConnectionDead`, including the one that found the death and those already queued for a
 * connection; a lazy first call against an unreachable server fails within connectTimeoutMs;
 * waiting for the reconnect is the caller's choice (`waitForRecoveryMs`). And a job script whose
 * database is down learns it (its `catch` runs, it exits non-zero) instead of exiting 0.
 * Everything through the suite's own TCP proxy on 127.0.0.1; every wait bounded.
 */
import { ConnectionDead } from '../../lib/index.js';
import { runScript } from '../support/child.js';
import { describeEachDialect, serverCases } from '../support/databases.js';
import { report, settleWithin, useFaultsLock, useProxyFaults, waitFor } from './harness.js';

useFaultsLock();

/** A standalone job (no HTTP server): one call, its own catch, the exit code tells the outcome. */
const jobScript = (url: string, moduleOptions: string, call: string) => `
  import 'reflect-metadata';
  import { Module } from '@nestjs/common';
  import { NestFactory } from '@nestjs/core';
  import { DatabaseModule, getDatabaseToken } from DIST;
  class JobModule {}
  Module({ imports: [DatabaseModule.forRoot({ url: ${JSON.stringify(url)}, ${moduleOptions} })] })(JobModule);
  const app = await NestFactory.createApplicationContext(JobModule, { logger: false });
  const db = app.get(getDatabaseToken());
  try {
    await ${call};
    console.log('succeeded');
  } catch (error) {
    console.log('caught', error.constructor.name);
    process.exitCode = 3;
  }
  await app.close();
`;

describeEachDialect(serverCases, 'faults: fail fast', (c) => {
  const faults = useProxyFaults(c);

  it('a job run while the database is refused: its catch runs with ConnectionDead and it exits non-zero', async () => {
    await faults.proxy.setMode('refuse');
    const outcome = await runScript(`job-${c.dialect}`, jobScript(faults.proxy.url(c.url()), 'connectTimeoutMs: 2000', "db.runQuery('SELECT 1')"), 15_000);
    expect(outcome.killed).toBe(false);
    expect(outcome.stdout.trim()).toBe('caught ConnectionDead');
    expect(outcome.code).toBe(3);
    report('fail-fast-job', c.dialect, { exitMs: outcome.ms });
  });

  it('a job whose call waits for the reconnect (waitForRecoveryMs) keeps the process alive until it settles', async () => {
    await faults.proxy.setMode('refuse');
    const outcome = await runScript(
      `job-wait-${c.dialect}`,
      jobScript(
        faults.proxy.url(c.url()),
        'connectTimeoutMs: 2000, reconnect: { maxDelayMs: 200 }',
        "db.runQuery('SELECT 1', [], { waitForRecoveryMs: 1500 })",
      ),
      15_000,
    );
    expect(outcome.killed).toBe(false);
    expect(outcome.stdout.trim()).toBe('caught ConnectionDead');
    expect(outcome.ms).toBeGreaterThanOrEqual(1400);
  });

  it('a lazy first call against a server that accepts and never answers fails with ConnectionDead within connectTimeoutMs, not acquireTimeoutMs', async () => {
    await faults.proxy.setMode('blackhole');
    const f = await faults.open('lazy-blackhole', { connectTimeoutMs: 1000, pool: { acquireTimeoutMs: 10_000 } });
    const started = Date.now();
    const outcome = await settleWithin(f.db.runQuery('SELECT 1'), 8000);
    const ms = Date.now() - started;
    expect(outcome.status).toBe('rejected');
    expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(ConnectionDead);
    expect(ms).toBeLessThan(3000);
    report('fail-fast-lazy-blackhole', c.dialect, { ms });
  });

  it('the call that finds the death and every caller queued for a connection reject at once with ConnectionDead', async () => {
    const f = await faults.open('queued', { pool: { max: 1, acquireTimeoutMs: 10_000 }, connectTimeoutMs: 2000 });
    const { db } = f;
    await db.runQuery('SELECT 1');
    const slow = db.runQuery(c.dialect === 'postgres' ? 'SELECT pg_sleep(3)' : 'SELECT SLEEP(3)');
    const queued = Array.from({ length: 5 }, (_, i) => db.runQuery(`SELECT ${i} AS n`));
    expect(await waitFor(() => db.stats().waiting === 5, 2000, 5)).toBe(true);
    await faults.proxy.setMode('refuse');
    const cut = Date.now();
    faults.proxy.resetAll();
    const outcomes = await Promise.all([slow, ...queued].map((p) => settleWithin(p, 5000)));
    const settledMs = Date.now() - cut;
    for (const outcome of outcomes) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(ConnectionDead);
    }
    expect(settledMs).toBeLessThan(2000);
    expect(db.detector.isDead).toBe(true);
    report('fail-fast-queued', c.dialect, { settledMs });
  });

  it('waitForRecoveryMs: a call made while dead waits for the reconnect and then runs', async () => {
    const f = await faults.open('wait', { pool: { max: 2 }, connectTimeoutMs: 2000, reconnect: { maxDelayMs: 100 } });
    const { db } = f;
    await db.runQuery('SELECT 1');
    await faults.proxy.setMode('refuse');
    faults.proxy.resetAll();
    await db.runQuery('SELECT 1').catch(() => {});
    expect(await waitFor(() => db.detector.isDead, 3000, 5)).toBe(true);
    await expect(db.runQuery('SELECT 1')).rejects.toBeInstanceOf(ConnectionDead);
    const waiting = db.runQuery('SELECT 5 AS five', [], { waitForRecoveryMs: 8000 });
    await faults.proxy.setMode('pass');
    expect(await waiting).toEqual([{ five: 5 }]);
  });
});
