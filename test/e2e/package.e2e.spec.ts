/**
 * The published package, as users get it: `npm pack` of this repo, installed from the tarball
 * (with `pg` as the only driver) into a fresh NestJS 11 CommonJS app and a fresh NestJS 12 ESM
 * app (test/e2e/fixtures), each compiled with tsc (skipLibCheck: false) and booted as a child
 * process, then asked over HTTP for a query, a `@Transactional()` method, an
 * `instanceof DatabaseError` and the health check. Both apps also load the package the other way
 * (import() from CommonJS, require() from ESM) and check they get the same module, not a copy.
 * The README's quick start is compiled and run in the CommonJS app, as `nest new` sets one up:
 * the snippets users copy are the ones tested here.
 *
 * The apps' dependencies come from the registry (npm's cache makes later runs quick);
 * TypeScript is this repository's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import pg from 'pg';
import { PG_URL } from '../support/databases.js';
import { root as ROOT } from '../support/child.js';
import { freePort } from '../support/http.js';

const FIXTURES = path.join(ROOT, 'test/e2e/fixtures');
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');
const APPS = ['nest11-cjs', 'nest12-esm'] as const;
/** The README app gets a database of its own: its `users` table is not the sample's. */
const README_DB_URL = PG_URL.replace(/\/[^/?]+(\?|$)/, '/root$1');
// Children run without Jest's --experimental-vm-modules, as an app would.
const ENV = { ...process.env, NODE_OPTIONS: '', npm_config_loglevel: 'error', npm_config_update_notifier: 'false' };

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = ENV): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function mustRun(command: string, args: string[], cwd: string): Promise<string> {
  const result = await run(command, args, cwd);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} (in ${cwd}) exited ${result.code}\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** npm as the one running this suite (`npm test`), or the one on PATH. */
const npm = (args: string[], cwd: string): Promise<string> =>
  process.env.npm_execpath?.endsWith('.js') ? mustRun(process.execPath, [process.env.npm_execpath, ...args], cwd) : mustRun('npm', args, cwd);

interface Booted {
  child: ChildProcess;
  port: number;
  stderr: () => string;
}

/** Starts `node <main>` on a free port; resolves once `probe` answers 200 (bounded). */
async function boot(cwd: string, main: string, probe: string, env: Record<string, string>): Promise<Booted> {
  const port = await freePort();
  const child = spawn(process.execPath, [main], { cwd, env: { ...ENV, PORT: String(port), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + 30_000;
  for (let i = 0; i < 3000 && Date.now() < deadline && !exited; i++) {
    const ok = await fetch(`http://127.0.0.1:${port}${probe}`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return { child, port, stderr: () => stderr };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`${cwd} ${main}: no 200 from ${probe} within 30 s\n${output}\n${stderr}`);
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
}

/** The README's TypeScript blocks whose first line names a file under src/. */
async function readmeFiles(): Promise<Map<string, string>> {
  const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8');
  const files = new Map<string, string>();
  for (const [, body] of readme.matchAll(/```ts\n([\s\S]*?)```/g)) {
    const name = /^\/\/ (src\/[\w./-]+\.ts)\n/.exec(body)?.[1];
    if (name) files.set(name, body);
  }
  return files;
}

describe('the packed tarball in fresh Nest 11 (CommonJS) and Nest 12 (ESM) apps', () => {
  let work: string;
  const booted = new Map<string, Booted>();

  beforeAll(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'nestjs-dbpool-package-'));
    for (const app of APPS) await cp(path.join(FIXTURES, app), path.join(work, app), { recursive: true });
    const install = (app: string, ...extra: string[]) =>
      npm(['install', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock', '--ignore-scripts', ...extra], path.join(work, app));
    // Packing is mostly tsc (CPU), installing mostly I/O: the apps' own dependencies install while the package builds.
    const [tarball] = await Promise.all([
      npm(['pack', '--json', '--pack-destination', work], ROOT).then((out) => path.join(work, (JSON.parse(out) as Array<{ filename: string }>)[0].filename)),
      (async () => {
        for (const app of APPS) await install(app);
      })(),
    ]);
    // As a user adds it: npm checks the peer dependencies against the app's NestJS.
    for (const app of APPS) await install(app, tarball);
    // The README's quick start, compiled in the CommonJS app (as `nest new` would), on a database of its own.
    const readmeDir = path.join(work, 'nest11-cjs', 'readme');
    for (const [name, body] of await readmeFiles()) {
      await mkdir(path.dirname(path.join(readmeDir, name)), { recursive: true });
      await writeFile(path.join(readmeDir, name), body);
    }
    const appTsconfig = JSON.parse((await readFile(path.join(work, 'nest11-cjs', 'tsconfig.json'), 'utf8')).replace(/^\s*\/\/.*$/gm, ''));
    await writeFile(
      path.join(readmeDir, 'tsconfig.json'),
      JSON.stringify({
        ...appTsconfig,
        compilerOptions: { ...appTsconfig.compilerOptions, rootDir: './src', outDir: './dist', strict: true },
        include: ['src'],
      }),
    );
    await Promise.all([...APPS.map((app) => path.join(work, app)), readmeDir].map((dir) => mustRun(process.execPath, [TSC, '-p', 'tsconfig.json'], dir)));
    const admin = new pg.Client({ connectionString: README_DB_URL });
    await admin.connect();
    try {
      await admin.query('CREATE TABLE IF NOT EXISTS users (login VARCHAR(64) PRIMARY KEY, name VARCHAR(255) NOT NULL)');
      await admin.query("INSERT INTO users (login, name) VALUES ('glyph', 'Glyph Lefkowitz') ON CONFLICT (login) DO NOTHING");
    } finally {
      await admin.end();
    }
    for (const app of APPS) booted.set(app, await boot(path.join(work, app), 'dist/main.js', '/health', { DATABASE_URL: PG_URL }));
    booted.set('readme', await boot(readmeDir, 'dist/main.js', '/health/ready', { DATABASE_URL: README_DB_URL }));
  }, 300_000);

  afterAll(async () => {
    await Promise.all([...booted.values()].map(({ child }) => stop(child)));
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each(APPS)('%s: only pg is installed as a driver', async (app) => {
    const installed = await readdir(path.join(work, app, 'node_modules'));
    expect(installed).toContain('pg');
    for (const other of ['mysql2', 'better-sqlite3', 'pg-cursor']) expect(installed).not.toContain(other);
  });

  it('the installed package maps every compiled file back to its TypeScript source, carried inside the map', async () => {
    const dist = path.join(work, APPS[0], 'node_modules', 'nestjs-dbpool', 'dist', 'cjs');
    const files = (await readdir(dist, { recursive: true })).filter((f) => f.endsWith('.js'));
    expect(files.length).toBeGreaterThan(30);
    for (const file of files) {
      const map = JSON.parse(await readFile(path.join(dist, `${file}.map`), 'utf8')) as { sources: string[]; sourcesContent?: Array<string | null> };
      expect(map.sources).toHaveLength(1);
      expect(map.sources[0]).toMatch(/\.ts$/);
      // The TypeScript is not published: the map must carry it, or a stack trace would point at nothing.
      expect(map.sourcesContent?.[0]?.length).toBeGreaterThan(0);
    }
  });

  it.each(APPS)('%s: queries, transactions, errors and one copy of the module', async (app) => {
    const { port } = booted.get(app)!;
    const response = await fetch(`http://127.0.0.1:${port}/`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ x: 1, transaction: true, databaseError: true, oneCopy: true, drivers: ['pg'] });
  });

  it.each(APPS)('%s: nestjs-dbpool/health with Terminus', async (app) => {
    const { port } = booted.get(app)!;
    const response = await fetch(`http://127.0.0.1:${port}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ status: 'ok', info: { database: { status: 'up', dialect: 'postgres' } } });
  });

  it.each(APPS)('%s: no warnings on stderr (no ExperimentalWarning from require(esm))', (app) => {
    expect(booted.get(app)!.stderr()).toBe('');
  });

  it('nest11-cjs: a missing driver fails the boot with a ConfigurationError naming the package and the install command', async () => {
    const script = `
      require('reflect-metadata');
      const { Module } = require('@nestjs/common');
      const { NestFactory } = require('@nestjs/core');
      const { DatabaseModule, ConfigurationError } = require('nestjs-dbpool');
      class M {}
      Module({ imports: [DatabaseModule.forRoot({ url: 'mysql://root@127.0.0.1:3306/test' })] })(M);
      NestFactory.createApplicationContext(M, { logger: false, abortOnError: false }).then(
        () => console.log('booted'),
        (e) => console.log(e instanceof ConfigurationError, e.message),
      );
    `;
    const result = await run(process.execPath, ['-e', script], path.join(work, 'nest11-cjs'));
    expect(result.stdout.trim()).toMatch(/^true .*"mysql2" package, which is not installed: npm install mysql2$/);
  });

  it("the README's quick start answers as the README says", async () => {
    const { port, stderr } = booted.get('readme')!;
    const found = await fetch(`http://127.0.0.1:${port}/users/glyph`);
    expect(found.status).toBe(200);
    expect(await found.json()).toEqual({ login: 'glyph', name: 'Glyph Lefkowitz' });
    expect((await fetch(`http://127.0.0.1:${port}/users/nobody`)).status).toBe(404);
    const ready = await fetch(`http://127.0.0.1:${port}/health/ready`);
    expect(await ready.json()).toMatchObject({ status: 'ok', info: { database: { status: 'up', default: { status: 'up', dialect: 'postgres' } } } });
    expect(stderr()).not.toMatch(/Error/);
  });
});
