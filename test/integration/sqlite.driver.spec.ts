import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseError, QueryCanceled } from '../../lib/core/errors.js';
import type { Connection } from '../../lib/drivers/driver.js';
import { SqliteDriver } from '../../lib/drivers/sqlite/sqlite.driver.js';
import { cpuTicks, until, voluntarySwitches } from '../support/wait.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OBJECT = { rowMode: 'object' } as const;
const ARRAY = { rowMode: 'array' } as const;
/** About 1–2 s of pure CPU inside SQLite on the test machine. */
const LONG_QUERY = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 5000000) SELECT count(*) AS n FROM c';

function settings(filename: string, driverOptions?: Record<string, unknown>) {
  return { filename, connectTimeoutMs: 5000, statementTimeoutMs: 0, driverOptions };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The operating system's id of the process that runs the connection's statements. */
const pidOf = (c: Connection): number => (c as unknown as { processId: number }).processId;

/**
 * Resolves once the statement just handed to `c` is running in its process: that process, idle
 * until then, has used `ticks` (10 ms each) of CPU since `before` (its `cpuTicks` before the call).
 */
function untilRunning(c: Connection, before: number, ticks = 5): Promise<void> {
  return until(() => (cpuTicks(pidOf(c)) ?? before) - before >= ticks, 'the statement to run in its connection process');
}

/**
 * Resolves once the statement just handed to `c` waits for another writer's lock inside SQLite's
 * busy handler, which sleeps 1, 2, 5, 10… ms between attempts: the main thread of the process
 * goes to sleep over and over (an idle one sleeps once per request), so its voluntary context
 * switches climb past `before` (the count before the call) while the statement gets no answer.
 */
function untilWaitingForLock(c: Connection, before: number): Promise<void> {
  return until(() => (voluntarySwitches(pidOf(c)) ?? before) - before >= 8, 'the statement to wait for the write lock');
}

async function settleTime(promise: Promise<unknown>): Promise<{ ms: number; error?: unknown; value?: unknown }> {
  const start = performance.now();
  try {
    const value = await promise;
    return { ms: performance.now() - start, value };
  } catch (error) {
    return { ms: performance.now() - start, error };
  }
}

describe('SqliteDriver on a file', () => {
  let dir: string;
  let driver: SqliteDriver;
  const open: Connection[] = [];
  const connect = async (d = driver) => {
    const c = await d.connect();
    open.push(c);
    return c;
  };

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-sqlite-'));
    driver = new SqliteDriver(settings(path.join(dir, 'nested', 'dir', 'test.db')));
  });

  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  afterAll(async () => {
    await driver.end();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('creates the missing parent directory and opens the file in WAL mode', async () => {
    const c = await connect();
    expect(fs.existsSync(path.join(dir, 'nested', 'dir', 'test.db'))).toBe(true);
    expect(await c.execute('PRAGMA journal_mode', [], OBJECT)).toEqual({ rows: [{ journal_mode: 'wal' }], affectedRows: 0 });
    expect(driver.describe()).toBe(`sqlite:${path.join(dir, 'nested', 'dir', 'test.db')}`);
  });

  it('reports affectedRows and insertId exactly', async () => {
    const c = await connect();
    await c.execute('CREATE TABLE counts (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER)', [], OBJECT);
    expect(await c.execute('INSERT INTO counts (name, n) VALUES (?, ?)', ['a', 1], OBJECT)).toEqual({
      rows: [],
      affectedRows: 1,
      insertId: 1,
    });
    expect(await c.execute('INSERT INTO counts (name, n) VALUES (?, ?), (?, ?)', ['b', 2, 'c', 3], OBJECT)).toEqual({
      rows: [],
      affectedRows: 2,
      insertId: 2, // the first row's, as on MySQL
    });
    expect(await c.execute('UPDATE counts SET n = n + 10 WHERE n >= ?', [2], OBJECT)).toEqual({ rows: [], affectedRows: 2 });
    expect(await c.execute('UPDATE counts SET n = 0 WHERE name = ?', ['nobody'], OBJECT)).toEqual({ rows: [], affectedRows: 0 });
    expect(await c.execute('SELECT id, name, n FROM counts ORDER BY id', [], OBJECT)).toEqual({
      rows: [
        { id: 1, name: 'a', n: 1 },
        { id: 2, name: 'b', n: 12 },
        { id: 3, name: 'c', n: 13 },
      ],
      affectedRows: 0,
    });
    expect((await c.execute('SELECT id, name FROM counts WHERE id = ?', [2], ARRAY)).rows).toEqual([[2, 'b']]);
    expect(await c.execute('DELETE FROM counts WHERE id > ?', [1], OBJECT)).toEqual({ rows: [], affectedRows: 2 });
    // A rowid beyond 2^53 comes back as a string, never rounded.
    const big = await c.execute('INSERT INTO counts (id, name) VALUES (?, ?)', [2n ** 60n + 1n, 'big'], OBJECT);
    expect(big.insertId).toBe('1152921504606846977');
    // RETURNING: the rows, and one affected row per row returned.
    expect(await c.execute('UPDATE counts SET n = 7 RETURNING name', [], OBJECT)).toEqual({
      rows: [{ name: 'a' }, { name: 'big' }],
      affectedRows: 2,
    });
  });

  it('binds and returns values without loss', async () => {
    const c = await connect();
    await c.execute('CREATE TABLE vals (b INTEGER, d TEXT, blob BLOB, big INTEGER, j TEXT, r REAL)', [], OBJECT);
    const date = new Date('2024-02-29T12:34:56.789Z');
    await c.execute('INSERT INTO vals VALUES (?, ?, ?, ?, ?, ?)', [true, date, Buffer.from([0, 1, 255]), 9007199254740993n, { a: [1] }, 1.5], OBJECT);
    const { rows } = await c.execute('SELECT * FROM vals', [], OBJECT);
    // Columns without a declared type: the values as stored (a Date is written as SQLite writes instants).
    expect(rows).toEqual([{ b: 1, d: '2024-02-29 12:34:56.789', blob: Buffer.from([0, 1, 255]), big: '9007199254740993', j: '{"a":[1]}', r: 1.5 }]);
    expect(Buffer.isBuffer((rows[0] as { blob: unknown }).blob)).toBe(true);
    await expect(c.execute('SELECT ?', [undefined], OBJECT)).rejects.toMatchObject({ code: 'INVALID_PARAMETER', position: 1 });
    await expect(c.execute('SELECT ?', [new Date(NaN)], OBJECT)).rejects.toMatchObject({ code: 'INVALID_PARAMETER' });
  });

  it('runs a script of several statements', async () => {
    const c = await connect();
    const result = await c.execute('CREATE TABLE script (a); INSERT INTO script VALUES (1); INSERT INTO script VALUES (2), (3);', [], OBJECT);
    expect(result).toEqual({ rows: [], affectedRows: 3 });
  });

  it('keeps working past the prepared statement cache size', async () => {
    const c = await connect();
    for (let i = 0; i < 250; i++) await c.execute(`SELECT ${i} AS n`, [], OBJECT);
    expect((await c.execute('SELECT 0 AS n', [], OBJECT)).rows).toEqual([{ n: 0 }]);
  });

  it('gives two connections separate transactions that see each other’s committed data', async () => {
    const a = await connect();
    const b = await connect();
    expect(a.serverId).not.toBe(b.serverId);
    await a.execute('CREATE TABLE shared (v TEXT)', [], OBJECT);

    for (const statement of driver.beginStatements({})) await a.execute(statement, [], OBJECT);
    expect(a.transactionStatus).toBe('transaction');
    await a.execute('INSERT INTO shared VALUES (?)', ['committed'], OBJECT);
    expect((await b.execute('SELECT count(*) AS n FROM shared', [], OBJECT)).rows).toEqual([{ n: 0 }]);
    expect(b.transactionStatus).toBe('idle');
    await a.execute('COMMIT', [], OBJECT);
    expect(a.transactionStatus).toBe('idle');
    expect((await b.execute('SELECT v FROM shared', [], OBJECT)).rows).toEqual([{ v: 'committed' }]);

    await a.execute('BEGIN IMMEDIATE', [], OBJECT);
    await a.execute('INSERT INTO shared VALUES (?)', ['rolled back'], OBJECT);
    await a.execute(driver.savepointStatement('create', 'sp"1'), [], OBJECT);
    await a.execute('INSERT INTO shared VALUES (?)', ['in savepoint'], OBJECT);
    await a.execute(driver.savepointStatement('rollback', 'sp"1'), [], OBJECT);
    await a.execute('ROLLBACK', [], OBJECT);
    expect((await b.execute('SELECT v FROM shared', [], OBJECT)).rows).toEqual([{ v: 'committed' }]);
    expect((await a.execute('SELECT v FROM shared', [], OBJECT)).rows).toEqual([{ v: 'committed' }]);
  });

  it('makes a second writer wait for the first one’s commit without stalling the worker', async () => {
    const a = await connect();
    const b = await connect();
    await a.execute('CREATE TABLE writers (who TEXT)', [], OBJECT);
    await a.execute('BEGIN IMMEDIATE', [], OBJECT);
    await a.execute('INSERT INTO writers VALUES (?)', ['a'], OBJECT);
    const switches = voluntarySwitches(pidOf(b))!;
    const bBegins = settleTime(b.execute('BEGIN IMMEDIATE', [], OBJECT));
    await untilWaitingForLock(b, switches);
    // b waits for the write lock; a must still be served meanwhile.
    const aCommits = await settleTime(a.execute('COMMIT', [], OBJECT));
    expect(aCommits.error).toBeUndefined();
    // Far below the 5 s busy timeout a native busy wait on the shared thread would cost.
    expect(aCommits.ms).toBeLessThan(1000);
    const begun = await bBegins;
    expect(begun.error).toBeUndefined();
    await b.execute('INSERT INTO writers VALUES (?)', ['b'], OBJECT);
    await b.execute('COMMIT', [], OBJECT);
    expect((await a.execute('SELECT who FROM writers ORDER BY who', [], ARRAY)).rows).toEqual([['a'], ['b']]);
  });

  it('fails a waiting writer with SQLITE_BUSY after busyTimeoutMs', async () => {
    const impatient = new SqliteDriver(settings(path.join(dir, 'busy.db'), { busyTimeoutMs: 200 }));
    try {
      const a = await impatient.connect();
      const b = await impatient.connect();
      await a.execute('BEGIN IMMEDIATE', [], OBJECT);
      const begun = await settleTime(b.execute('BEGIN IMMEDIATE', [], OBJECT));
      expect(begun.error).toMatchObject({ code: 'SQLITE_BUSY', dialect: 'sqlite', query: 'BEGIN IMMEDIATE' });
      expect(begun.ms).toBeGreaterThanOrEqual(150);
      expect(begun.ms).toBeLessThan(1500);
      await a.execute('ROLLBACK', [], OBJECT);
      await b.execute('BEGIN IMMEDIATE', [], OBJECT);
      await b.execute('ROLLBACK', [], OBJECT);
    } finally {
      await impatient.end();
    }
  });

  it('maps errors to DatabaseError with the SQLite code and never the values', async () => {
    const c = await connect();
    const syntax = await settleTime(c.execute('SELEC 1', [], OBJECT));
    expect(syntax.error).toBeInstanceOf(DatabaseError);
    expect(syntax.error).toMatchObject({ code: 'SQLITE_ERROR', dialect: 'sqlite', query: 'SELEC 1' });
    expect((syntax.error as Error).message).toMatch(/near "SELEC": syntax error/);

    await c.execute('CREATE TABLE users (login TEXT UNIQUE, age INTEGER CHECK (age >= 0))', [], OBJECT);
    await c.execute('INSERT INTO users (login) VALUES (?)', ['secret-login-42'], OBJECT);
    const unique = await settleTime(c.execute('INSERT INTO users (login) VALUES (?)', ['secret-login-42'], OBJECT));
    expect(unique.error).toMatchObject({ code: 'SQLITE_CONSTRAINT_UNIQUE', query: 'INSERT INTO users (login) VALUES (?)' });
    expect(JSON.stringify(unique.error)).not.toContain('secret-login-42');
    expect(String((unique.error as Error).message)).not.toContain('secret-login-42');
    const check = await settleTime(c.execute('INSERT INTO users (login, age) VALUES (?, ?)', ['x', -123456], OBJECT));
    expect(check.error).toMatchObject({ code: 'SQLITE_CONSTRAINT_CHECK' });
    expect(JSON.stringify(check.error)).not.toContain('123456');

    await expect(c.execute('SELECT ?', [1, 2], OBJECT)).rejects.toMatchObject({ code: 'SQLITE_RANGE' });
    // The connection is fine after errors.
    expect((await c.execute('SELECT 1 AS one', [], OBJECT)).rows).toEqual([{ one: 1 }]);
    expect(c.transactionStatus).toBe('idle');
  });

  it('streams in batches, and an early break leaves the connection usable', async () => {
    const c = await connect();
    await c.execute('CREATE TABLE many (n INTEGER)', [], OBJECT);
    await c.execute('WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM s WHERE n < 1000) INSERT INTO many SELECT n FROM s', [], OBJECT);
    const seen: unknown[] = [];
    for await (const row of rowsOf(c, 'SELECT n FROM many ORDER BY n', [], { rowMode: 'object', batchSize: 10 })) {
      seen.push(row);
      if (seen.length === 25) break;
    }
    expect(seen[24]).toEqual({ n: 25 });
    expect(c.broken).toBe(false);
    // The same text again (a cached statement that was being iterated) and another statement.
    expect((await c.execute('SELECT count(*) AS n FROM many', [], OBJECT)).rows).toEqual([{ n: 1000 }]);
    let count = 0;
    let last: unknown;
    for await (const row of rowsOf(c, 'SELECT n FROM many WHERE n > ? ORDER BY n', [990], { rowMode: 'array', batchSize: 3 })) {
      count++;
      last = row;
    }
    expect(count).toBe(10);
    expect(last).toEqual([1000]);
    // A write with RETURNING streams too, and is committed.
    const deleted: unknown[] = [];
    for await (const row of rowsOf(c, 'DELETE FROM many WHERE n <= ? RETURNING n', [5], { rowMode: 'array', batchSize: 2 })) deleted.push(row);
    expect(deleted).toHaveLength(5);
    expect((await c.execute('SELECT count(*) AS n FROM many', [], OBJECT)).rows).toEqual([{ n: 995 }]);
  });

  it('pings', async () => {
    const c = await connect();
    await expect(c.ping()).resolves.toBeUndefined();
  });

  it('keeps the event loop running during a CPU-heavy query', async () => {
    const c = await connect();
    let last = performance.now();
    let maxGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
    }, 10);
    try {
      const run = await settleTime(c.execute(LONG_QUERY, [], OBJECT));
      expect(run.error).toBeUndefined();
      expect((run.value as { rows: unknown[] }).rows).toEqual([{ n: 5000000 }]);
      console.log(`event loop: query took ${run.ms.toFixed(0)} ms, largest gap between 10 ms ticks ${maxGap.toFixed(1)} ms`);
      expect(run.ms).toBeGreaterThan(300);
      expect(maxGap).toBeLessThan(run.ms / 2); // a query run on the event loop would leave one gap as long as the query
    } finally {
      clearInterval(ticker);
    }
  });

  it('cancels a running query by stopping its connection only: the statement stops, another connection’s open transaction commits', async () => {
    const setup = await connect();
    await setup.execute('CREATE TABLE survives (v TEXT)', [], OBJECT);
    await setup.execute('INSERT INTO survives VALUES (?)', ['kept'], OBJECT);
    const c = await connect();
    const bystander = await connect();
    await bystander.execute('BEGIN', [], OBJECT);
    await bystander.execute('SELECT count(*) FROM survives', [], OBJECT);
    const pid = pidOf(c);

    const cpu = cpuTicks(pid)!;
    const running = settleTime(c.execute(LONG_QUERY, [], OBJECT));
    await untilRunning(c, cpu);
    const canceledAt = performance.now();
    await c.cancel();
    const outcome = await running;
    const settledIn = performance.now() - canceledAt;
    console.log(`cancel: the canceled query settled ${settledIn.toFixed(1)} ms after cancel()`);
    expect(outcome.error).toBeInstanceOf(QueryCanceled);
    expect(outcome.error).toMatchObject({ code: 'QUERY_CANCELED', dialect: 'sqlite', query: LONG_QUERY });
    expect(settledIn).toBeLessThan(1000);
    // The statement stopped with its process (nothing goes on burning a CPU); only that connection is gone.
    let gone = false;
    for (let i = 0; i < 200 && !gone; i++) {
      try {
        process.kill(pid, 0);
        await sleep(5); // poll interval
      } catch {
        gone = true;
      }
    }
    expect(gone).toBe(true);
    expect(c.broken).toBe(true);
    expect(bystander.broken).toBe(false);
    await bystander.execute('INSERT INTO survives VALUES (?)', ['bystander'], OBJECT);
    await bystander.execute('COMMIT', [], OBJECT);
    const after = await connect();
    expect((await after.execute('SELECT v FROM survives ORDER BY v', [], OBJECT)).rows).toEqual([{ v: 'bystander' }, { v: 'kept' }]);
  });

  it('cancels a write so that it has no effect, and its write lock is free at once', async () => {
    const setup = await connect();
    await setup.execute('CREATE TABLE bulk (x INTEGER)', [], OBJECT);
    const c = await connect();
    const cpu = cpuTicks(pidOf(c))!;
    const running = settleTime(
      c.execute('WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM s WHERE x < 30000000) INSERT INTO bulk SELECT x FROM s', [], OBJECT),
    );
    await untilRunning(c, cpu, 10); // 100 ms into the write: rows are being inserted
    await c.cancel();
    expect((await running).error).toBeInstanceOf(QueryCanceled);
    // The lock went with the stopped process: another writer gets it without waiting (busy timeout 0).
    const impatient = new SqliteDriver(settings(path.join(dir, 'nested', 'dir', 'test.db'), { busyTimeoutMs: 0 }));
    try {
      const after = await impatient.connect();
      const started = performance.now();
      await after.execute('BEGIN IMMEDIATE', [], OBJECT);
      await after.execute('COMMIT', [], OBJECT);
      expect(performance.now() - started).toBeLessThan(500);
      expect((await after.execute('SELECT count(*) AS n FROM bulk', [], OBJECT)).rows).toEqual([{ n: 0 }]);
    } finally {
      await impatient.end();
    }
  });

  it('cancels a statement waiting for another writer’s lock without disturbing that writer', async () => {
    const setup = await connect();
    await setup.execute('CREATE TABLE queued (v TEXT)', [], OBJECT);
    const holder = await connect();
    const waiter = await connect();
    await holder.execute('BEGIN IMMEDIATE', [], OBJECT);
    await holder.execute('INSERT INTO queued VALUES (?)', ['holder'], OBJECT);
    const switches = voluntarySwitches(pidOf(waiter))!;
    const queued = settleTime(waiter.execute('INSERT INTO queued VALUES (?)', ['never'], OBJECT));
    await untilWaitingForLock(waiter, switches);
    await waiter.cancel();
    expect((await queued).error).toBeInstanceOf(QueryCanceled);
    await holder.execute('COMMIT', [], OBJECT);
    expect(holder.broken).toBe(false);
    expect((await holder.execute('SELECT v FROM queued', [], OBJECT)).rows).toEqual([{ v: 'holder' }]);
  });

  it('does nothing when cancel() finds nothing running', async () => {
    const c = await connect();
    await c.cancel();
    expect((await c.execute('SELECT 1 AS one', [], OBJECT)).rows).toEqual([{ one: 1 }]);
  });

  it('closes and destroys connections', async () => {
    const c = await driver.connect();
    const d = await driver.connect();
    let ends = 0;
    c.onEnd(() => ends++);
    d.onEnd(() => ends++);
    await c.close();
    d.destroy();
    expect(ends).toBe(2);
    expect(c.broken && d.broken).toBe(true);
    await expect(c.execute('SELECT 1', [], OBJECT)).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });
});

describe('SqliteDriver on :memory:', () => {
  let driver: SqliteDriver;
  beforeEach(() => {
    driver = new SqliteDriver(settings(':memory:'));
  });
  afterEach(() => driver.end());

  it('shares one private database between its connections; it outlives them and a cancel, and goes with end()', async () => {
    expect(driver.describe()).toBe('sqlite::memory:');
    const a = await driver.connect();
    const b = await driver.connect();
    await a.execute('CREATE TABLE t (v)', [], OBJECT);
    await a.execute('INSERT INTO t VALUES (?)', [1], OBJECT);
    expect((await b.execute('SELECT v FROM t', [], ARRAY)).rows).toEqual([[1]]);
    // A cancel stops one connection; the data stays.
    const cpu = cpuTicks(pidOf(a))!;
    const long = settleTime(a.execute(LONG_QUERY, [], OBJECT));
    await untilRunning(a, cpu);
    await a.cancel();
    expect((await long).error).toBeInstanceOf(QueryCanceled);
    await b.close();
    // The data outlives the connections (an idle pool closing its last one loses nothing)...
    const c = await driver.connect();
    expect((await c.execute('SELECT v FROM t', [], ARRAY)).rows).toEqual([[1]]);
    // ...but not the driver.
    await driver.end();
    const fresh = new SqliteDriver(settings(':memory:'));
    try {
      const d = await fresh.connect();
      await expect(d.execute('SELECT v FROM t', [], ARRAY)).rejects.toMatchObject({ code: 'SQLITE_ERROR' });
    } finally {
      await fresh.end();
    }
  });
});

describe('SqliteDriver settings and dialect SQL', () => {
  it('requires a filename and checks driverOptions', () => {
    expect(() => new SqliteDriver({ connectTimeoutMs: 0, statementTimeoutMs: 0 })).toThrow(/filename/);
    expect(() => new SqliteDriver(settings(':memory:', { pragmas: { 'x; DROP TABLE y': 1 } }))).toThrow(/PRAGMA/);
    expect(() => new SqliteDriver(settings(':memory:', { busyTimeoutMs: -1 }))).toThrow(/busyTimeoutMs/);
  });

  it('writes BEGIN and SAVEPOINT statements', () => {
    const driver = new SqliteDriver(settings(':memory:'));
    expect(driver.dialect).toBe('sqlite');
    expect(driver.syntax.maxParameters).toBe(32766);
    expect(driver.beginStatements({})).toEqual(['BEGIN IMMEDIATE']);
    expect(driver.beginStatements({ isolation: 'read committed' })).toEqual(['BEGIN IMMEDIATE']);
    expect(driver.beginStatements({ readOnly: true, isolation: 'serializable' })).toEqual(['BEGIN', 'PRAGMA query_only = ON']);
    expect(driver.finishStatements({ readOnly: true })).toEqual(['PRAGMA query_only = OFF']);
    expect(driver.savepointStatement('create', 'a"b')).toBe('SAVEPOINT "a""b"');
    expect(driver.savepointStatement('release', 's')).toBe('RELEASE SAVEPOINT "s"');
    expect(driver.savepointStatement('rollback', 's')).toBe('ROLLBACK TO SAVEPOINT "s"');
  });
});

describe('SqliteDriver compiled to JavaScript, in its own process', () => {
  let out: string;

  beforeAll(() => {
    // Only the driver and what it imports, so that other files of lib/ being edited cannot break this.
    out = fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-sqlite-dist-'));
    execFileSync(
      process.execPath,
      [
        path.join(ROOT, 'node_modules/typescript/bin/tsc'),
        path.join(ROOT, 'lib/drivers/sqlite/sqlite.driver.ts'),
        ...['--outDir', out, '--rootDir', ROOT, '--module', 'NodeNext', '--moduleResolution', 'NodeNext'],
        ...['--target', 'ES2022', '--types', 'node', '--strict', '--skipLibCheck', '--declaration', 'false'],
      ],
      { cwd: ROOT, stdio: 'pipe' },
    );
    fs.copyFileSync(path.join(ROOT, 'lib/drivers/sqlite/sqlite.child.cjs'), path.join(out, 'lib/drivers/sqlite/sqlite.child.cjs'));
    fs.writeFileSync(path.join(out, 'package.json'), '{"type":"module"}');
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(out, 'node_modules'), 'dir');
  }, 60_000);

  afterAll(() => fs.rmSync(out, { recursive: true, force: true }));

  function runScript(body: string): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
    const file = path.join(out, `script-${Math.random().toString(36).slice(2)}.mjs`);
    fs.writeFileSync(file, `import { SqliteDriver } from './lib/drivers/sqlite/sqlite.driver.js';\n${body}`);
    const start = performance.now();
    return new Promise((resolve) => {
      execFile(process.execPath, [file], { timeout: 10_000, env: { ...process.env, NODE_OPTIONS: '' } }, (error, stdout, stderr) =>
        resolve({ code: error ? ((error as { code?: number }).code ?? null) : 0, stdout, stderr, ms: performance.now() - start }),
      );
    });
  }

  it('exits by itself after end()', async () => {
    const result = await runScript(`
      const driver = new SqliteDriver({ filename: ${JSON.stringify(path.join(out, 'data', 'x.db'))}, connectTimeoutMs: 5000, statementTimeoutMs: 0 });
      const c = await driver.connect();
      await c.execute('CREATE TABLE t (v)', [], { rowMode: 'object' });
      await c.execute('INSERT INTO t VALUES (?)', ['ok'], { rowMode: 'object' });
      const { rows } = await c.execute('SELECT v FROM t', [], { rowMode: 'object' });
      console.log(JSON.stringify(rows));
      await driver.end();
    `);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('[{"v":"ok"}]');
    expect(result.code).toBe(0);
    expect(result.ms).toBeLessThan(5000);
  });

  it('exits within a second of end() even while a long statement runs', async () => {
    const result = await runScript(`
      import { readFileSync } from 'node:fs';
      const driver = new SqliteDriver({ filename: ':memory:', connectTimeoutMs: 5000, statementTimeoutMs: 0 });
      const c = await driver.connect();
      // CPU time (clock ticks) of the connection's process: it runs the statement once it climbs.
      const cpu = () => { const s = readFileSync('/proc/' + c.processId + '/stat', 'utf8'); const f = s.slice(s.lastIndexOf(')') + 2).split(' '); return Number(f[11]) + Number(f[12]); };
      const before = cpu();
      c.execute(${JSON.stringify(LONG_QUERY.replace('5000000', '300000000'))}, [], { rowMode: 'array' }).catch((e) => console.log(e.code));
      for (let i = 0; i < 500 && cpu() - before < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10)); // poll, bounded (5 s)
      if (cpu() - before < 5) console.log('the statement never ran');
      const closing = Date.now();
      await driver.end();
      process.on('exit', () => console.log('exit after', Date.now() - closing < 1000 ? 'under 1 s' : Date.now() - closing + ' ms'));
    `);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim().split('\n')).toEqual(['CONNECTION_LOST', 'exit after under 1 s']);
    expect(result.code).toBe(0);
  });

  it('lets the process exit while connections sit idle, but not while a query is in flight', async () => {
    const result = await runScript(`
      const driver = new SqliteDriver({ filename: ':memory:', connectTimeoutMs: 5000, statementTimeoutMs: 0 });
      const c = await driver.connect();
      // Nothing awaits this: only the in-flight query keeps the process alive until it answers.
      c.execute(${JSON.stringify(LONG_QUERY.replace('5000000', '1000000'))}, [], { rowMode: 'array' })
        .then(({ rows }) => console.log(JSON.stringify(rows)));
    `);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe('[[1000000]]');
    expect(result.code).toBe(0);
    expect(result.ms).toBeLessThan(5000);
  });
});

/** Rows of a driver cursor, one at a time; closes the cursor when the loop ends early. */
async function* rowsOf(
  c: {
    cursor(
      text: string,
      values: unknown[],
      options: { rowMode: 'object' | 'array'; batchSize: number },
    ): { read(): Promise<unknown[]>; close(): Promise<void> };
  },
  text: string,
  values: unknown[],
  options: { rowMode: 'object' | 'array'; batchSize: number },
): AsyncIterableIterator<unknown> {
  const cursor = c.cursor(text, values, options);
  let done = false;
  try {
    for (let rows = await cursor.read(); rows.length > 0; rows = await cursor.read()) yield* rows;
    done = true;
  } finally {
    if (!done) await cursor.close();
  }
}

describe('a SQLite timeout through a Database (sqlite::memory:, pool.max 2)', () => {
  it("stops only the caller's statement: the tables and rows stay, another caller's open transaction commits, the next call works", async () => {
    const { openDatabase } = await import('../support/app.js');
    const { db, close } = await openDatabase({ url: 'sqlite::memory:', pool: { max: 2 } });
    try {
      await db.runOperation('CREATE TABLE kept (id INTEGER PRIMARY KEY, v TEXT)');
      await db.runOperation("INSERT INTO kept (id, v) VALUES (1, 'before')");
      // Caller Y holds an open transaction on the other connection while caller X times out.
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let inside!: () => void;
      const started = new Promise<void>((resolve) => (inside = resolve));
      const y = db.runInteraction(async (tx) => {
        await tx.runOperation("INSERT INTO kept (id, v) VALUES (2, 'from Y')");
        inside();
        await held;
      });
      await started;
      const t0 = performance.now();
      const x = await db.runQuery(LONG_QUERY, [], { timeoutMs: 100 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const settledMs = performance.now() - t0;
      expect(x).toBeInstanceOf(DatabaseError);
      expect((x as DatabaseError).code).toBe('QUERY_TIMEOUT');
      expect(settledMs).toBeLessThan(2000);
      release();
      await y;
      expect(await db.runQuery('SELECT id, v FROM kept ORDER BY id')).toEqual([
        { id: 1, v: 'before' },
        { id: 2, v: 'from Y' },
      ]);
    } finally {
      await close();
    }
  });
});
