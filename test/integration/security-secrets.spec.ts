/**
 * Secrets, one body per server dialect: a dedicated user with a random password on each shared
 * server (dropped afterwards) and, for what needs a server that checks passwords (the shared
 * PostgreSQL trusts 127.0.0.1), a throwaway PostgreSQL cluster with scram-sha-256. Every error,
 * log line, event, health result, stats() and JSON.stringify/util.inspect of every object within
 * reach is collected, and searched for the passwords at the end.
 */
import { jest } from '@jest/globals';
import { inspect } from 'node:util';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { DatabaseHealthIndicator } from '../../lib/health/index.js';
import { ConfigurationError, DatabaseError, DatabaseModule, getDatabaseToken, type Database, type DatabaseModuleOptions } from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { describeEachDialect, MYSQL_URL, PG_URL, serverCases } from '../support/databases.js';
import { useTestMeter } from '../support/otel.js';
import { bootWithLogger, CapturingLogger, isRestartError, ridingOutRestarts, waitForServer } from '../support/security.js';
import { startPostgres, type PostgresServer } from '../support/tls-servers.js';

jest.setTimeout(90_000);

const random = () => Math.random().toString(36).slice(2, 10);
/** URL-special characters on purpose: the password travels percent-encoded in URLs. */
const CORE = random();
const WRONG_CORE = random();
const PASSWORD = `Pw-${CORE}-@:/?#%&=+`;
const WRONG_PASSWORD = `Wrong-${WRONG_CORE}-@:/`;
/** Searched for: the random cores too, so that half a password (a redaction cut short) is caught as well. */
const SECRETS = [CORE, WRONG_CORE, PASSWORD, WRONG_PASSWORD, encodeURIComponent(PASSWORD), encodeURIComponent(WRONG_PASSWORD)];

/** Everything the suite saw: searched for the passwords in afterAll. */
const captured: Array<{ where: string; text: string }> = [];
const logger = new CapturingLogger();

/**
 * Records `value` as its message (if an error), JSON, and util.inspect: deep, and with hidden
 * properties too, unless `showHidden: false` (for objects that hold driver clients: pg keeps
 * its password in a non-enumerable property, which `showHidden` is there to show).
 */
function capture(where: string, value: unknown, { showHidden = true } = {}): void {
  if (value instanceof Error) {
    captured.push({ where: `${where} message`, text: value.message });
    captured.push({ where: `${where} stack`, text: String(value.stack) });
  }
  let json: string;
  try {
    json = JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? '';
  } catch (error) {
    json = `unserializable: ${(error as Error).message}`;
  }
  captured.push({ where: `${where} JSON`, text: json });
  captured.push({ where: `${where} inspect`, text: inspect(value, { depth: 12 }) });
  if (showHidden) captured.push({ where: `${where} inspect showHidden`, text: inspect(value, { depth: 6, showHidden: true }) });
}

/** Captures a Database and what hangs off it: itself, stats(), its detector, its resolved options. */
function captureDatabase(where: string, db: Database): void {
  capture(`${where} Database`, db);
  capture(`${where} stats()`, db.stats());
  capture(`${where} detector`, db.detector);
  capture(`${where} options`, (db as unknown as { options: unknown }).options);
}

/** Boots one database with the capturing logger, its events recorded, and the health indicator at hand. */
async function boot(options: DatabaseModuleOptions): Promise<{ db: Database; health: DatabaseHealthIndicator; close(): Promise<void> }> {
  const app = await bootWithLogger([DatabaseModule.forRoot(options)], logger);
  const db = app.get<Database>(getDatabaseToken(options.name));
  for (const event of ['connectionOpened', 'connectionClosed', 'dead', 'recovered', 'slowQuery', 'leak'] as const) {
    db.events.on(event, (payload: unknown) => capture(`event ${event}`, payload));
  }
  return { db, health: app.get(DatabaseHealthIndicator), close: () => app.close() };
}

async function errorOf(promise: Promise<unknown>, where: string): Promise<DatabaseError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DatabaseError);
  capture(where, error);
  return error as DatabaseError;
}

/** OpenTelemetry, on for the whole file: every span and metric point the module made is searched too. */
const spans = new InMemorySpanExporter();
beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
});

afterAll(async () => {
  const finished = spans.getFinishedSpans();
  for (const span of finished) capture(`span ${span.name}`, { name: span.name, attributes: span.attributes, events: span.events, status: span.status });
  const points = (await meter.collect()).flatMap((m) => m.dataPoints.map((p) => ({ metric: m.descriptor.name, attributes: p.attributes })));
  capture('metric points', points);
  trace.disable();
  context.disable();
  // The search saw spans and metrics of every server dialect.
  expect(finished.filter((span) => span.attributes['db.query.text'] !== undefined).length).toBeGreaterThan(10);
  expect(points.filter((p) => p.metric === 'db.client.operation.duration').length).toBeGreaterThan(1);

  captured.push(...logger.lines.map((text) => ({ where: 'log', text })));
  const leaks = captured.filter(({ text }) => SECRETS.some((secret) => text.includes(secret)));
  expect(leaks.map((l) => `${l.where}: ${l.text.slice(0, 300)}`)).toEqual([]);
  // The search saw something: the suite did capture logs, errors and health output.
  expect(logger.lines.length).toBeGreaterThan(0);
  expect(captured.length).toBeGreaterThan(50);
});
// After the search's afterAll, so that it runs first (hooks run in the order declared) and collects before the provider shuts down.
const meter = useTestMeter();

/** `url` logging in as `user` with `password` (percent-encoded). */
function withLogin(url: string, user: string, password: string): string {
  const u = new URL(url);
  u.username = user;
  u.password = encodeURIComponent(password);
  return u.toString();
}

/** What differs between the dialects: the dedicated user, the server that checks its password, and how a refusal reads. */
interface Account {
  /** Creates the user (no placeholders there: PASSWORD is built of characters that need no escaping in a '…' literal). */
  create: string[];
  drop: string;
  /** Names the user logged in, as `u`; and the name it must be. */
  whoAmI: string;
  me: string;
  /** Ways of logging in with PASSWORD: in a URL (percent-encoded) and through the `password` option. */
  logins(): DatabaseModuleOptions[];
  /** The server that checks passwords, logging in as the user, the password left to the `password` option. */
  checking(): DatabaseModuleOptions;
  /** A URL of that server, logging in as the user with `password`. */
  checkingUrl(password: string): string;
  /** What its refusal of a wrong password carries. */
  refusal: { fields: Partial<DatabaseError> & { code: string }; message: RegExp };
  /** Options with the password in them that the bootstrap refuses, and the option the ConfigurationError names. */
  malformed(): Array<[DatabaseModuleOptions, string]>;
}

describeEachDialect(serverCases, 'secrets', (c) => {
  const tag = c.dialect === 'postgres' ? 'pg' : 'mysql';
  const user = `ndbp_sec_${process.pid}_${random()}`;
  let admin: Awaited<ReturnType<typeof openDatabase>>;
  /** PostgreSQL: the shared server's rule for TCP logins from 127.0.0.1. */
  let sharedAuth = 'unknown';
  /**
   * PostgreSQL: a cluster that checks passwords (scram-sha-256), for what the shared server's
   * trust cannot show. MySQL needs none: the shared server checks passwords itself.
   */
  let strict: PostgresServer | undefined;

  const account: Account =
    c.dialect === 'postgres'
      ? {
          create: [`CREATE ROLE ${user} LOGIN PASSWORD '${PASSWORD}'`],
          drop: `DROP ROLE IF EXISTS ${user}`,
          whoAmI: 'SELECT current_user AS u',
          me: user,
          logins: () => [
            { url: withLogin(PG_URL, user, PASSWORD) },
            { url: strict!.url({ user, password: PASSWORD }) },
            { url: strict!.url({ user, password: 'x' }), password: PASSWORD },
          ],
          checking: () => ({ url: strict!.url({ user, password: 'unused' }) }),
          checkingUrl: (password) => strict!.url({ user, password }),
          refusal: { fields: { code: '28P01' }, message: /password authentication failed/ },
          malformed: () => [
            [{ url: `postgres://${user}:${PASSWORD}@[bad/test` }, 'url'],
            [{ url: `postgres://${user}:${encodeURIComponent(PASSWORD)}@h:99999/test` }, 'url'],
            [{ url: `oracle://${user}:${encodeURIComponent(PASSWORD)}@h/test` }, 'url'],
            [{ url: `postgres://${user}:${encodeURIComponent(PASSWORD)}@h/test?sslmode=${encodeURIComponent(PASSWORD)}` }, 'url'],
            [{ url: `postgres://${user}:${encodeURIComponent(PASSWORD)}@h/test`, pool: { max: -1 } }, 'pool.max'],
          ],
        }
      : {
          create: [`CREATE USER '${user}'@'%' IDENTIFIED BY '${PASSWORD}'`, `GRANT SELECT ON test.* TO '${user}'@'%'`],
          drop: `DROP USER IF EXISTS '${user}'@'%'`,
          whoAmI: 'SELECT CURRENT_USER() AS u',
          me: `${user}@%`,
          logins: () => [{ url: withLogin(MYSQL_URL, user, PASSWORD) }, { url: MYSQL_URL, user, password: PASSWORD }],
          checking: () => ({ url: MYSQL_URL, user }),
          checkingUrl: (password) => withLogin(MYSQL_URL, user, password),
          refusal: { fields: { code: 'ER_ACCESS_DENIED_ERROR', errno: 1045 }, message: /Access denied/ },
          malformed: () => [
            [{ url: `mysql://${user}:${PASSWORD}@host:notaport/test` }, 'url'],
            [{ url: `mysql://${user}:${encodeURIComponent(PASSWORD)}@[::1/test` }, 'url'],
            [{ url: `mysql://${user}:%E0%A4%A@h/test` }, 'url'],
          ],
        };

  /** Runs `attempt` on the server that checks passwords, riding out restarts when that is the shared one (other suites' fault tests restart it). */
  const onChecking = <T>(attempt: () => Promise<T>, isRestart?: (value: T) => boolean): Promise<T> =>
    strict ? attempt() : ridingOutRestarts({ url: c.url() }, attempt, isRestart);

  beforeAll(async () => {
    await waitForServer({ url: c.url() });
    admin = await openDatabase({ url: c.url() });
    for (const statement of account.create) await admin.db.runOperation(statement);
    if (c.dialect === 'postgres') {
      const rules = await admin.db.runQuery<{ type: string; address: string | null; netmask: string | null; auth_method: string }>(
        "SELECT type, address, netmask, auth_method FROM pg_hba_file_rules WHERE error IS NULL AND type IN ('host', 'hostnossl') ORDER BY line_number",
      );
      sharedAuth = rules.find((r) => appliesToLoopback(r.address, r.netmask))?.auth_method ?? 'unknown';
      strict = await startPostgres({ preferredPort: 5434 });
      for (const statement of account.create) await strict.psql(statement);
    }
  });
  afterAll(async () => {
    await admin?.db.runOperation(account.drop).catch(() => {});
    await admin?.close();
    await strict?.stop();
  });

  it('spans and metrics carry neither the password nor a value: a statement with the password as its value, and one that fails quoting it', async () => {
    // PostgreSQL quotes the value in its message ('invalid input syntax for type integer: "…"').
    const failing = c.dialect === 'postgres' ? `SELECT CAST(${c.p(1)} AS INTEGER) AS n` : `SELECT n FROM no_such_table_${tag} WHERE n = ${c.p(1)}`;
    const { db, close } = await boot({ ...account.logins()[0] });
    try {
      await ridingOutRestarts({ url: c.url() }, async () => {
        const rows = await db.runQuery<{ v: string }>(`SELECT ${c.p(1)} AS v`, [PASSWORD]);
        expect(rows[0].v).toBe(PASSWORD);
      });
      await errorOf(db.runQuery(failing, [PASSWORD]), `${tag} failed statement`);
    } finally {
      await close();
    }
    const mine = spans.getFinishedSpans().filter((span) => span.attributes['db.query.text'] === failing);
    expect(mine).toHaveLength(1);
    expect(mine[0].attributes['error.type']).toEqual(expect.any(String));
  });

  it('logs in as the dedicated user with the password from the URL (percent-encoded) and from the password option', async () => {
    for (const options of account.logins()) {
      const { db, health, close } = await boot({ ...options, slowQueryMs: 1, pool: { max: 2, leakDetectionMs: 50 } });
      try {
        const rows = await ridingOutRestarts({ url: c.url() }, async () => {
          const rows = await db.runQuery<{ u: string }>(account.whoAmI);
          // A connection held past leakDetectionMs: logged and emitted with its stack, never the password.
          await db.runInteraction(async (tx) => {
            capture(`${tag} transaction`, tx, { showHidden: false });
            await tx.runQuery(`SELECT ${c.sleep(0.1)}`);
          });
          return rows;
        });
        expect(rows[0].u).toBe(account.me);
        capture('health up', await health.pingCheck('database'));
        captureDatabase(`${tag} ok`, db);
      } finally {
        await close();
      }
    }
  });

  it(`refuses a wrong password with ${account.refusal.fields.code} (on a server that checks passwords), without the password, and without a reconnect storm`, async () => {
    // On 127.0.0.1 the shared PostgreSQL trusts every login, so a wrong password passes there: the strict cluster shows the refusal.
    if (sharedAuth === 'trust') {
      await withBoot({ url: withLogin(c.url(), user, WRONG_PASSWORD) }, async (db) => expect(await db.runQuery('SELECT 1')).toHaveLength(1));
    }
    let calls = 0;
    const { db, health, close } = await boot({
      ...account.checking(),
      password: async () => {
        calls++;
        return WRONG_PASSWORD;
      },
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    });
    try {
      for (let i = 0; i < 3; i++) {
        const error = await onChecking(
          () => errorOf(db.runQuery('SELECT 1'), `${tag} wrong password`),
          (e) => e.code !== account.refusal.fields.code,
        );
        expect(error).toMatchObject(account.refusal.fields);
        expect(error.message).toMatch(account.refusal.message);
      }
      // Not death: the detector stays alive, and nothing reconnects in the background.
      expect(db.detector.isDead).toBe(false);
      const after = calls;
      expect(after).toBeGreaterThanOrEqual(3);
      expect(after).toBeLessThanOrEqual(6);
      await new Promise((r) => setTimeout(r, 600)); // a negative check: a background reconnect would ask for the password again
      expect(calls).toBe(after);
      const down = await health.pingCheck('database');
      expect(down.database.status).toBe('down');
      capture(`health down (${tag} wrong password)`, down);
      captureDatabase(`${tag} wrong password`, db);
    } finally {
      await close();
    }
    // And at bootstrap, with verifyOnStartup.
    const boot2 = await onChecking(
      () => bootWithLogger([DatabaseModule.forRoot({ url: account.checkingUrl(WRONG_PASSWORD), verifyOnStartup: true })], logger).catch((e) => e),
      (e) => isRestartError((e as Error).cause),
    );
    expect(boot2).toBeInstanceOf(DatabaseError);
    expect(boot2.message).toMatch(account.refusal.message);
    capture(`${tag} wrong password at startup`, boot2);
  });

  it('calls an async password function once for each new connection (the server asks for it)', async () => {
    let calls = 0;
    const { db, close } = await boot({
      ...account.checking(),
      pool: { max: 3 },
      password: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 5)); // an asynchronous secret store's own delay, not a wait
        return PASSWORD;
      },
    });
    try {
      await onChecking(() => Promise.all([0, 1, 2].map(() => db.runQuery(`SELECT ${c.sleep(0.2)}`))));
      // The health probe has a connection of its own; the pool opened three (and more only where a
      // restart of the shared server was ridden out: the strict cluster is never restarted).
      const opened = calls;
      expect(opened).toBeGreaterThanOrEqual(3);
      if (strict) expect(opened).toBe(3);
      for (let i = 0; i < 10; i++) await db.runQuery('SELECT 1');
      // Reused connections ask for nothing.
      expect(calls).toBe(opened);
      expect(db.stats().total).toBeLessThanOrEqual(3);
      captureDatabase(`${tag} password function`, db);
      await db.runInteraction(async (tx) => capture(`${tag} transaction`, tx, { showHidden: false }));
    } finally {
      await close();
    }
  });

  it('a password function that rejects fails the call with a DatabaseError, and is tried again on the next call', async () => {
    let calls = 0;
    const { db, close } = await boot({
      ...account.checking(),
      password: async () => {
        calls++;
        if (calls === 1) throw new Error('vault unavailable');
        return PASSWORD;
      },
    });
    try {
      const error = await errorOf(db.runQuery('SELECT 1'), `${tag} password function rejects`);
      expect(error.message).toMatch(/vault unavailable/);
      expect(db.detector.isDead).toBe(false);
      expect(await onChecking(() => db.runQuery('SELECT 1 AS one'))).toEqual([{ one: 1 }]);
    } finally {
      await close();
    }
  });

  it('keeps the password out of the ConfigurationError of a malformed URL, an unknown scheme and a bad option', async () => {
    for (const [options, option] of account.malformed()) {
      const error = await bootWithLogger([DatabaseModule.forRoot(options)], logger).catch((e) => e);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error.option).toBe(option);
      capture(`${tag} configuration error`, error);
    }
  });

  // mysql2 also takes a URL of its own, in its options.
  if (c.dialect === 'mysql') {
    it('keeps a URL handed to mysql2 itself (driverOptions.uri) out of our error and its cause', async () => {
      const { db, close } = await boot({ url: MYSQL_URL, user, password: PASSWORD, driverOptions: { uri: `mysql://${user}:${PASSWORD}@host:notaport/test` } });
      try {
        const error = await errorOf(db.runQuery('SELECT 1'), 'mysql2 malformed uri');
        expect(inspect(error, { depth: 10 })).not.toContain(PASSWORD);
        expect(db.detector.isDead).toBe(false);
      } finally {
        await close();
      }
    });
  }

  it('marks the database dead when the server is unreachable, and logs, reports and emits that without the password', async () => {
    const linesBefore = logger.lines.length;
    const { db, health, close } = await boot({
      url: `${c.dialect}://${user}:${encodeURIComponent(PASSWORD)}@127.0.0.1:1/test`,
      reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
      pool: { acquireTimeoutMs: 300 },
    });
    try {
      await errorOf(db.runQuery('SELECT 1'), `${tag} unreachable`);
      expect(db.detector.isDead).toBe(true);
      await errorOf(db.runQuery('SELECT 1'), `${tag} dead`);
      const down = await health.pingCheck('database');
      expect(down.database.status).toBe('down');
      expect(down.database.state).toBe('dead');
      capture('health dead', down);
      captureDatabase(`${tag} dead`, db);
    } finally {
      await close();
    }
    expect(logger.lines.slice(linesBefore).some((l) => /marked dead/.test(l))).toBe(true);
  });
});

/** Whether a pg_hba rule's address matches 127.0.0.1. */
function appliesToLoopback(address: string | null, netmask: string | null): boolean {
  if (address === 'all' || address === 'samehost') return true;
  if (!address || !/^\d+\.\d+\.\d+\.\d+$/.test(address) || !netmask || !/^\d+\.\d+\.\d+\.\d+$/.test(netmask)) return false;
  const n = (ip: string) => ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
  const mask = n(netmask);
  const and = (a: number, b: number) => Number((BigInt(a) & BigInt(b)).toString());
  return and(n('127.0.0.1'), mask) === and(n(address), mask);
}

async function withBoot(options: DatabaseModuleOptions, body: (db: Database) => Promise<void>): Promise<void> {
  const { db, close } = await boot(options);
  try {
    await body(db);
  } finally {
    await close();
  }
}
