/**
 * Secrets: a dedicated user with a random password on each shared server (dropped afterwards)
 * and, for what needs a server that checks passwords (the shared PostgreSQL trusts 127.0.0.1),
 * a throwaway PostgreSQL cluster with scram-sha-256. Every error, log line, event, health
 * result, stats() and JSON.stringify/util.inspect of every object within reach is collected,
 * and searched for the passwords at the end.
 */
import { jest } from '@jest/globals';
import { inspect } from 'node:util';
import { DatabaseHealthIndicator } from '../../lib/health/index.js';
import {
  ConfigurationError,
  DatabaseError,
  DatabaseModule,
  getDatabaseToken,
  type Database,
  type DatabaseModuleOptions,
} from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { MYSQL_URL, PG_URL } from '../support/databases.js';
import { bootWithLogger, CapturingLogger, ridingOutRestarts, waitForServer } from '../support/security.js';
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

const sleepSql = (dialect: string, seconds: number) => (dialect === 'postgres' ? `SELECT pg_sleep(${seconds})` : `SELECT SLEEP(${seconds})`);

afterAll(() => {
  captured.push(...logger.lines.map((text) => ({ where: 'log', text })));
  const leaks = captured.filter(({ text }) => SECRETS.some((secret) => text.includes(secret)));
  expect(leaks.map((l) => `${l.where}: ${l.text.slice(0, 300)}`)).toEqual([]);
  // The search saw something: the suite did capture logs, errors and health output.
  expect(logger.lines.length).toBeGreaterThan(0);
  expect(captured.length).toBeGreaterThan(50);
});

describe('secrets [mysql] (shared server, a dedicated user)', () => {
  const user = `ndbp_sec_${process.pid}_${random()}`;
  let admin: Awaited<ReturnType<typeof openDatabase>>;
  const url = (password: string) => {
    const u = new URL(MYSQL_URL);
    u.username = user;
    u.password = encodeURIComponent(password);
    return u.toString();
  };

  beforeAll(async () => {
    await waitForServer({ url: MYSQL_URL });
    admin = await openDatabase({ url: MYSQL_URL });
    // CREATE USER takes no placeholders: the password is built of characters that need no escaping in a '…' literal.
    await admin.db.runOperation(`CREATE USER '${user}'@'%' IDENTIFIED BY '${PASSWORD}'`);
    await admin.db.runOperation(`GRANT SELECT ON test.* TO '${user}'@'%'`);
  });
  afterAll(async () => {
    await admin?.db.runOperation(`DROP USER IF EXISTS '${user}'@'%'`).catch(() => {});
    await admin?.close();
  });

  it('logs in with the password from the URL (percent-encoded) and from the password option', async () => {
    for (const options of [{ url: url(PASSWORD) }, { url: MYSQL_URL, user, password: PASSWORD }]) {
      const { db, health, close } = await boot({ ...options, slowQueryMs: 1 });
      try {
        const rows = await ridingOutRestarts({ url: MYSQL_URL }, () => db.runQuery<{ u: string }>('SELECT CURRENT_USER() AS u'));
        expect(rows[0].u).toBe(`${user}@%`);
        capture('health up', await health.pingCheck('database'));
        captureDatabase('mysql ok', db);
      } finally {
        await close();
      }
    }
  });

  it('refuses a wrong password with ER_ACCESS_DENIED_ERROR, without the password, and without a reconnect storm', async () => {
    let calls = 0;
    const { db, health, close } = await boot({
      url: MYSQL_URL,
      user,
      password: async () => {
        calls++;
        return WRONG_PASSWORD;
      },
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    });
    try {
      for (let i = 0; i < 3; i++) {
        const error = await ridingOutRestarts({ url: MYSQL_URL }, () => errorOf(db.runQuery('SELECT 1'), 'mysql wrong password'), (e) => e.code !== 'ER_ACCESS_DENIED_ERROR');
        expect(error.code).toBe('ER_ACCESS_DENIED_ERROR');
        expect(error.errno).toBe(1045);
        expect(error.message).toMatch(/Access denied/);
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
      capture('health down (wrong password)', down);
      captureDatabase('mysql wrong password', db);
    } finally {
      await close();
    }
  });

  it('calls an async password function once for each new connection', async () => {
    let calls = 0;
    const { db, close } = await boot({
      url: MYSQL_URL,
      user,
      pool: { max: 3 },
      password: async () => {
        calls++;
        await new Promise((r) => setTimeout(r, 5)); // an asynchronous secret store's own delay, not a wait
        return PASSWORD;
      },
    });
    try {
      await ridingOutRestarts({ url: MYSQL_URL }, () => Promise.all([0, 1, 2].map(() => db.runQuery(sleepSql('mysql', 0.2)))));
      const opened = calls;
      expect(opened).toBeGreaterThanOrEqual(3);
      for (let i = 0; i < 10; i++) await db.runQuery('SELECT 1');
      // Reused connections ask for nothing.
      expect(calls).toBe(opened);
      expect(db.stats().total).toBeLessThanOrEqual(3);
      captureDatabase('mysql password function', db);
      await db.runInteraction(async (tx) => capture('mysql transaction', tx, { showHidden: false }));
    } finally {
      await close();
    }
  });

  it('keeps the password of a malformed URL out of the ConfigurationError', async () => {
    for (const bad of [`mysql://${user}:${PASSWORD}@host:notaport/test`, `mysql://${user}:${encodeURIComponent(PASSWORD)}@[::1/test`, `mysql://${user}:%E0%A4%A@h/test`]) {
      const error = await openDatabase({ url: bad }).catch((e) => e);
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error.option).toBe('url');
      capture('malformed mysql url', error);
    }
  });

  it("keeps a URL handed to mysql2 itself (driverOptions.uri) out of our error and its cause", async () => {
    const { db, close } = await boot({ url: MYSQL_URL, user, password: PASSWORD, driverOptions: { uri: `mysql://${user}:${PASSWORD}@host:notaport/test` } });
    try {
      const error = await errorOf(db.runQuery('SELECT 1'), 'mysql2 malformed uri');
      expect(inspect(error, { depth: 10 })).not.toContain(PASSWORD);
      expect(db.detector.isDead).toBe(false);
    } finally {
      await close();
    }
  });

  it('marks the database dead when the server is unreachable, and logs, reports and emits that without the password', async () => {
    const { db, health, close } = await boot({ url: `mysql://${user}:${encodeURIComponent(PASSWORD)}@127.0.0.1:1/test`, reconnect: { initialDelayMs: 20, maxDelayMs: 50 }, pool: { acquireTimeoutMs: 300 } });
    try {
      await errorOf(db.runQuery('SELECT 1'), 'mysql unreachable');
      expect(db.detector.isDead).toBe(true);
      await errorOf(db.runQuery('SELECT 1'), 'mysql dead');
      const down = await health.pingCheck('database');
      expect(down.database.status).toBe('down');
      expect(down.database.state).toBe('dead');
      capture('health dead', down);
      captureDatabase('mysql dead', db);
    } finally {
      await close();
    }
    expect(logger.lines.some((l) => /marked dead/.test(l))).toBe(true);
  });
});

describe('secrets [postgres]', () => {
  const role = `ndbp_sec_${process.pid}_${random()}`;
  let admin: Awaited<ReturnType<typeof openDatabase>>;
  /** The shared server's rule for TCP logins from 127.0.0.1. */
  let sharedAuth = 'unknown';
  /** A cluster that checks passwords (scram-sha-256), for what the shared server's trust cannot show. */
  let strict: PostgresServer;

  beforeAll(async () => {
    await waitForServer({ url: PG_URL });
    admin = await openDatabase({ url: PG_URL });
    await admin.db.runOperation(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
    const rules = await admin.db.runQuery<{ type: string; address: string | null; netmask: string | null; auth_method: string }>(
      "SELECT type, address, netmask, auth_method FROM pg_hba_file_rules WHERE error IS NULL AND type IN ('host', 'hostnossl') ORDER BY line_number",
    );
    sharedAuth = rules.find((r) => appliesToLoopback(r.address, r.netmask))?.auth_method ?? 'unknown';
    strict = await startPostgres({ preferredPort: 5434 });
    await strict.psql(`CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}'`);
  });
  afterAll(async () => {
    await admin?.db.runOperation(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
    await admin?.close();
    await strict?.stop();
  });

  it('logs in as the dedicated role with the password from the URL and from the option', async () => {
    const shared = new URL(PG_URL);
    shared.username = role;
    shared.password = encodeURIComponent(PASSWORD);
    for (const options of [{ url: shared.toString() }, { url: strict.url({ user: role, password: PASSWORD }) }, { url: strict.url({ user: role, password: 'x' }), password: PASSWORD }]) {
      const { db, health, close } = await boot({ ...options, slowQueryMs: 1, pool: { max: 2, leakDetectionMs: 50 } });
      try {
        const rows = await ridingOutRestarts({ url: PG_URL }, () => db.runQuery<{ u: string }>('SELECT current_user AS u'));
        expect(rows[0].u).toBe(role);
        // A connection held past leakDetectionMs: logged and emitted with its stack, never the password.
        await db.runInteraction(async (tx) => {
          capture('pg transaction', tx, { showHidden: false });
          await tx.runQuery(sleepSql('postgres', 0.1));
        });
        capture('health up', await health.pingCheck('database'));
        captureDatabase('pg ok', db);
      } finally {
        await close();
      }
    }
  });

  it('refuses a wrong password with 28P01 (on a server that checks passwords), without the password, and without a reconnect storm', async () => {
    // On 127.0.0.1 the shared server trusts every login, so a wrong password passes there: the strict cluster shows the refusal.
    if (sharedAuth === 'trust') {
      const shared = new URL(PG_URL);
      shared.username = role;
      shared.password = encodeURIComponent(WRONG_PASSWORD);
      await withBoot({ url: shared.toString() }, async (db) => expect(await db.runQuery('SELECT 1')).toHaveLength(1));
    }
    let calls = 0;
    const { db, health, close } = await boot({
      url: strict.url({ user: role, password: 'unused' }),
      password: async () => {
        calls++;
        return WRONG_PASSWORD;
      },
      reconnect: { initialDelayMs: 10, maxDelayMs: 50 },
    });
    try {
      for (let i = 0; i < 3; i++) {
        const error = await errorOf(db.runQuery('SELECT 1'), 'pg wrong password');
        expect(error.code).toBe('28P01');
        expect(error.message).toMatch(/password authentication failed/);
      }
      expect(db.detector.isDead).toBe(false);
      const after = calls;
      expect(after).toBeGreaterThanOrEqual(3);
      expect(after).toBeLessThanOrEqual(6);
      await new Promise((r) => setTimeout(r, 600)); // a negative check: a background reconnect would ask for the password again
      expect(calls).toBe(after);
      const down = await health.pingCheck('database');
      expect(down.database.status).toBe('down');
      capture('health down (pg wrong password)', down);
      captureDatabase('pg wrong password', db);
    } finally {
      await close();
    }
    // And at bootstrap, with verifyOnStartup.
    const boot2 = await bootWithLogger([DatabaseModule.forRoot({ url: strict.url({ user: role, password: WRONG_PASSWORD }), verifyOnStartup: true })], logger).catch((e) => e);
    expect(boot2).toBeInstanceOf(DatabaseError);
    expect(boot2.message).toMatch(/password authentication failed/);
    capture('pg wrong password at startup', boot2);
  });

  it('calls an async password function once for each new connection (the server asks for it)', async () => {
    let calls = 0;
    const { db, close } = await boot({
      url: strict.url({ user: role, password: 'unused' }),
      pool: { max: 3 },
      password: async () => {
        calls++;
        return PASSWORD;
      },
    });
    try {
      await Promise.all([0, 1, 2].map(() => db.runQuery(sleepSql('postgres', 0.2))));
      // The health probe has a connection of its own; the pool opened three.
      expect(calls).toBe(3);
      for (let i = 0; i < 10; i++) await db.runQuery('SELECT 1');
      expect(calls).toBe(3);
      captureDatabase('pg password function', db);
    } finally {
      await close();
    }
  });

  it('a password function that rejects fails the call with a DatabaseError, and is tried again on the next call', async () => {
    let calls = 0;
    const { db, close } = await boot({
      url: strict.url({ user: role, password: 'unused' }),
      password: async () => {
        calls++;
        if (calls === 1) throw new Error('vault unavailable');
        return PASSWORD;
      },
    });
    try {
      const error = await errorOf(db.runQuery('SELECT 1'), 'pg password function rejects');
      expect(error.message).toMatch(/vault unavailable/);
      expect(db.detector.isDead).toBe(false);
      expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await close();
    }
  });

  it('keeps the password out of errors for a malformed URL, an unknown scheme and a bad option', async () => {
    for (const options of [
      { url: `postgres://${role}:${PASSWORD}@[bad/test` },
      { url: `postgres://${role}:${encodeURIComponent(PASSWORD)}@h:99999/test` },
      { url: `oracle://${role}:${encodeURIComponent(PASSWORD)}@h/test` },
      { url: `postgres://${role}:${encodeURIComponent(PASSWORD)}@h/test?sslmode=${encodeURIComponent(PASSWORD)}` },
      { url: `postgres://${role}:${encodeURIComponent(PASSWORD)}@h/test`, pool: { max: -1 } },
    ] as DatabaseModuleOptions[]) {
      const error = await bootWithLogger([DatabaseModule.forRoot(options)], logger).catch((e) => e);
      expect(error).toBeInstanceOf(ConfigurationError);
      capture('pg configuration error', error);
    }
  });

  it('marks the database dead when the server is unreachable, and logs, reports and emits that without the password', async () => {
    const { db, health, close } = await boot({ url: `postgres://${role}:${encodeURIComponent(PASSWORD)}@127.0.0.1:1/test`, reconnect: { initialDelayMs: 20, maxDelayMs: 50 }, pool: { acquireTimeoutMs: 300 } });
    try {
      await errorOf(db.runQuery('SELECT 1'), 'pg unreachable');
      expect(db.detector.isDead).toBe(true);
      await errorOf(db.runQuery('SELECT 1'), 'pg dead');
      const down = await health.pingCheck('database');
      expect(down.database.state).toBe('dead');
      capture('health dead', down);
      captureDatabase('pg dead', db);
    } finally {
      await close();
    }
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
