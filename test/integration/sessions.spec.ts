/**
 * Sessions and tenants: `db.session()` pins a connection with settings sent as parameters,
 * `@InjectConnection()` gives one per HTTP request, transaction settings end with their
 * transaction, and no session state (settings, variables, advisory locks, temporary tables)
 * ever reaches the next user of a connection. The proof under load: 32 concurrent callers
 * alternating two tenants for 10 s, through @Transactional services and sessions, with random
 * failures; a tenant never sees the other's rows, and no pooled connection keeps a setting.
 */
import 'reflect-metadata';
import { Controller, Get, Injectable, Module, Scope, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AsyncLocalStorage } from 'node:async_hooks';
import request from 'supertest';
import {
  Database,
  DatabaseModule,
  DatabaseSession,
  getDatabaseToken,
  InjectConnection,
  InvalidParameter,
  NotSupported,
  sql,
  Transactional,
  type DatabaseModuleOptions,
} from '../../lib/index.js';
import { bootContext, openDatabase } from '../support/app.js';
import { MYSQL_URL, PG_URL, describeEachDialect, serverCases, sqliteCase, uniqueTable, type DialectCase } from '../support/databases.js';
import { report } from '../faults/harness.js';

/** Reads a setting on whatever connection the call runs on: '' / null when unset. */
const readSetting = (c: DialectCase, name: string) =>
  c.dialect === 'postgres' ? sql`SELECT current_setting(${name}, true) AS v` : sql`SELECT ${sql.raw(`@\`${name}\``)} AS v`;
const sessionId = (c: DialectCase) => (c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id');
const unset = (v: unknown) => v === null || v === '' || v === undefined;

describeEachDialect(serverCases, 'db.session()', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url(), name: 'sessions', pool: { max: 2 } }));
  });
  afterAll(() => close());

  it('pins one connection for the scope, with its settings sent as parameters, and resets it afterwards', async () => {
    const hostile = "'; DROP TABLE users; --";
    const ids = await db.session(
      async () => {
        const [{ v }] = await db.runQuery<{ v: string }>(readSetting(c, 'app.tenant_id'));
        expect(v).toBe(hostile);
        const seen = await Promise.all([1, 2, 3].map(async () => Number((await db.runQuery<{ id: number }>(sessionId(c)))[0].id)));
        // A transaction inside the session runs on its connection too, and sees its settings.
        const inTx = await db.runInteraction(async () => Number((await db.runQuery<{ id: number }>(sessionId(c)))[0].id));
        return [...seen, inTx];
      },
      { settings: { 'app.tenant_id': hostile } },
    );
    expect(new Set(ids).size).toBe(1);
    // Every connection of the pool, afterwards: nothing left.
    const after = await Promise.all([1, 2].map(() => db.runInteraction(async () => (await db.runQuery<{ v: unknown }>(readSetting(c, 'app.tenant_id')))[0].v)));
    for (const v of after) expect(unset(v)).toBe(true);
  });

  it('refuses a setting name that is not a plain name, before anything is sent', async () => {
    await expect(db.session(async () => 1, { settings: { 'app.x; DROP TABLE t': '1' } })).rejects.toBeInstanceOf(InvalidParameter);
    await expect(db.runInteraction(async () => 1, { settings: { 'bad name': '1' } })).rejects.toBeInstanceOf(InvalidParameter);
  });

  it('transaction settings last as long as the transaction', async () => {
    const inside = await db.runInteraction(async () => (await db.runQuery<{ v: string }>(readSetting(c, 'app.tenant_id')))[0].v, {
      settings: () => ({ 'app.tenant_id': 'tx-tenant' }),
    });
    expect(inside).toBe('tx-tenant');
    const after = await Promise.all([1, 2].map(() => db.runInteraction(async () => (await db.runQuery<{ v: unknown }>(readSetting(c, 'app.tenant_id')))[0].v)));
    for (const v of after) expect(unset(v)).toBe(true);
  });

  it('session state set by a plain statement (SET, variables, advisory locks, temporary tables) never reaches the next caller', async () => {
    const { db: one, close: closeOne } = await openDatabase({ url: c.url(), name: 'one', pool: { max: 1 } });
    try {
      const [{ id }] = await one.runQuery<{ id: number }>(sessionId(c));
      if (c.dialect === 'postgres') {
        await one.runQuery("SET search_path = 'nowhere'");
        await one.runQuery('SELECT pg_advisory_lock(4242)');
        await one.runQuery('CREATE TEMP TABLE leftover (a int)');
        const [{ path, locks }] = await one.runQuery<{ path: string; locks: string }>(
          "SELECT current_setting('search_path') AS path, (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks",
        );
        expect(path).not.toContain('nowhere');
        expect(Number(locks)).toBe(0);
        await expect(one.runQuery('SELECT * FROM leftover')).rejects.toMatchObject({ sqlState: '42P01' });
      } else {
        await one.runQuery("SET @leftover = 'secret'");
        await one.runQuery("SELECT GET_LOCK('ndbp-lock', 1)");
        await one.runQuery('CREATE TEMPORARY TABLE leftover (a int)');
        const [{ v, mine }] = await one.runQuery<{ v: unknown; mine: unknown }>("SELECT @leftover AS v, IS_USED_LOCK('ndbp-lock') = CONNECTION_ID() AS mine");
        expect(v).toBeNull();
        expect(mine).toBeNull();
        await expect(one.runQuery('SELECT * FROM leftover')).rejects.toMatchObject({ errno: 1146 });
      }
      // Reset, not replaced: the same session id (a reset costs one round trip, a new connection many).
      const [{ id: again }] = await one.runQuery<{ id: number }>(sessionId(c));
      expect(Number(again)).toBe(Number(id));
    } finally {
      await closeOne();
    }
  });

  it("sessionReset: 'never' leaves session state to the app, but a session still undoes its own settings", async () => {
    const { db: one, close: closeOne } = await openDatabase({ url: c.url(), name: 'never', pool: { max: 1 }, sessionReset: 'never' });
    try {
      await one.session(() => one.runQuery('SELECT 1'), { settings: { 'app.tenant_id': 'gone-after' } });
      const [{ v }] = await one.runQuery<{ v: unknown }>(readSetting(c, 'app.tenant_id'));
      expect(unset(v)).toBe(true);
    } finally {
      await closeOne();
    }
  });
});

describe('sessions on SQLite', () => {
  it('refuses settings with NotSupported (SQLite has no session settings)', async () => {
    const { db, close } = await openDatabase({ url: sqliteCase.url() });
    try {
      await expect(db.session(async () => db.runQuery('SELECT 1'), { settings: { 'app.tenant_id': '1' } })).rejects.toBeInstanceOf(NotSupported);
      expect(await db.session(() => db.runQuery('SELECT 1 AS one'))).toEqual([{ one: 1 }]);
    } finally {
      await close();
    }
  });
});

// ---- @InjectConnection() over HTTP --------------------------------------------------------------

@Injectable({ scope: Scope.REQUEST })
class TenantReader {
  constructor(@InjectConnection() private readonly session: DatabaseSession) {}
  async whoAmI(c: DialectCase): Promise<{ tenant: unknown; id: number }> {
    const [{ v }] = await this.session.runQuery<{ v: unknown }>(readSetting(c, 'app.tenant_id'));
    const [{ id }] = await this.session.runQuery<{ id: number }>(sessionId(c));
    return { tenant: v, id: Number(id) };
  }
}

const dialectOfApp = { current: undefined as DialectCase | undefined };

@Controller('tenant')
class TenantController {
  constructor(private readonly reader: TenantReader) {}
  @Get()
  get(): Promise<{ tenant: unknown; id: number }> {
    return this.reader.whoAmI(dialectOfApp.current!);
  }
}

describeEachDialect(serverCases, '@InjectConnection() per HTTP request', (c) => {
  let app: INestApplication;
  beforeAll(async () => {
    dialectOfApp.current = c;
    @Module({
      imports: [
        DatabaseModule.forRoot({
          url: c.url(),
          pool: { max: 2 },
          requestSettings: (req) => ({ 'app.tenant_id': (req as { headers: Record<string, string> }).headers['x-tenant'] ?? null }),
        }),
      ],
      controllers: [TenantController],
      providers: [TenantReader],
    })
    class HttpModule {}
    app = await NestFactory.create(HttpModule, { logger: false });
    await app.init();
  });
  afterAll(() => app.close());

  it('gives each request its own pinned session with its tenant, released when the response is sent', async () => {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        request(app.getHttpServer())
          .get('/tenant')
          .set('x-tenant', `t${i % 2}`),
      ),
    );
    results.forEach((res, i) => {
      expect(res.status).toBe(200);
      expect(res.body.tenant).toBe(`t${i % 2}`);
    });
    const db = app.get(Database);
    for (let i = 0; i < 100 && db.stats().busy > 0; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(db.stats().busy).toBe(0);
    const leftovers = await Promise.all(
      [1, 2].map(() => db.runInteraction(async () => (await db.runQuery<{ v: unknown }>(readSetting(c, 'app.tenant_id')))[0].v)),
    );
    for (const v of leftovers) expect(unset(v)).toBe(true);
  });
});

// ---- the proof: tenant isolation under load ------------------------------------------------------

const DURATION_MS = 10_000;
const CALLERS = 32;
const tenantOfCaller = new AsyncLocalStorage<string>();
const items = { table: '' };

@Injectable()
class ItemsService {
  constructor(private readonly db: Database) {}

  /** The tenant comes from the caller's context, as an app reads it from its request. */
  @Transactional({ settings: () => ({ 'app.tenant_id': tenantOfCaller.getStore() ?? null }) })
  async listInTransaction(fail: boolean): Promise<string[]> {
    const rows = await this.visibleItems();
    if (fail) throw new Error('injected failure');
    return rows;
  }

  /** RLS on PostgreSQL; on MySQL the queries filter on the user variable. */
  async visibleItems(): Promise<string[]> {
    const query =
      this.db.dialect === 'postgres'
        ? sql`SELECT tenant FROM ${sql.identifier(items.table)}`
        : sql`SELECT tenant FROM ${sql.identifier(items.table)} WHERE tenant = @\`app.tenant_id\``;
    return (await this.db.runQuery<{ tenant: string }>(query)).map((r) => r.tenant);
  }
}

describeEachDialect(serverCases, 'tenant isolation under load', (c) => {
  const role = `ndbp_tenant_app_${process.pid}`;
  const table = uniqueTable('items');
  let admin: Database;
  let closeAdmin: () => Promise<void>;

  beforeAll(async () => {
    items.table = table;
    ({ db: admin, close: closeAdmin } = await openDatabase({ url: c.url(), name: 'admin' }));
    await admin.runOperation(`CREATE TABLE ${table} (tenant VARCHAR(20) NOT NULL, label VARCHAR(40) NOT NULL)`);
    const rows = Array.from({ length: 20 }, (_, i) => `('${i % 2 ? 'beta' : 'alpha'}', 'item-${i}')`).join(', ');
    await admin.runOperation(`INSERT INTO ${table} (tenant, label) VALUES ${rows}`);
    if (c.dialect === 'postgres') {
      // Row-level security does not apply to superusers: the app connects as a role of its own.
      await admin.runOperation(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${role}') THEN CREATE ROLE ${role} LOGIN; END IF; END $$`);
      await admin.runOperation(`GRANT SELECT ON ${table} TO ${role}`);
      await admin.runOperation(`ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`);
      await admin.runOperation(`CREATE POLICY tenant_only ON ${table} USING (tenant = current_setting('app.tenant_id', true))`);
    }
  });
  afterAll(async () => {
    await admin.runOperation(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    if (c.dialect === 'postgres') await admin.runOperation(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
    await closeAdmin();
  });

  it('32 callers alternating two tenants for 10 s, through @Transactional and sessions, with random failures: no row of one tenant ever reaches the other, no setting survives in the pool', async () => {
    const url = c.dialect === 'postgres' ? PG_URL.replace('postgres://postgres@', `postgres://${role}@`) : MYSQL_URL;
    const options: DatabaseModuleOptions = { url, pool: { max: 8 } };
    const app = await bootContext([DatabaseModule.forRoot(options)], [ItemsService]);
    const db = app.get<Database>(getDatabaseToken());
    const service = app.get(ItemsService);
    let calls = 0;
    let injected = 0;
    let leaked = 0;
    let emptyReads = 0;
    const unexpected: unknown[] = [];
    const deadline = Date.now() + DURATION_MS;
    const caller = async (n: number) => {
      for (let i = 0; i < 1_000_000 && Date.now() < deadline; i++) {
        const tenant = (n + i) % 2 ? 'beta' : 'alpha';
        const fail = Math.random() < 0.1;
        const viaSession = (n + i) % 3 === 0;
        calls++;
        try {
          const seen = viaSession
            ? await db.session(
                async () => {
                  const rows = await service.visibleItems();
                  if (fail) throw new Error('injected failure');
                  return rows;
                },
                { settings: { 'app.tenant_id': tenant } },
              )
            : await tenantOfCaller.run(tenant, () => service.listInTransaction(fail));
          if (seen.length === 0) emptyReads++;
          leaked += seen.filter((t) => t !== tenant).length;
        } catch (error) {
          if ((error as Error).message === 'injected failure') injected++;
          else unexpected.push(error);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: CALLERS }, (_, n) => caller(n)));
      // Every connection the pool holds, each taken at the same time (so none is checked twice): no tenant left on any.
      const total = db.stats().total;
      let arrived = 0;
      let openAll!: () => void;
      const allHeld = new Promise<void>((resolve) => (openAll = resolve));
      const leftovers = await Promise.all(
        Array.from({ length: total }, () =>
          db.runInteraction(async () => {
            const [{ v }] = await db.runQuery<{ v: unknown }>(readSetting(c, 'app.tenant_id'));
            if (++arrived === total) openAll();
            await allHeld;
            return v;
          }),
        ),
      );
      expect(leaked).toBe(0);
      expect(emptyReads).toBe(0);
      expect(unexpected).toEqual([]);
      expect(injected).toBeGreaterThan(0);
      expect(leftovers.filter((v) => !unset(v))).toEqual([]);
      report('tenant-isolation', c.dialect, {
        callers: CALLERS,
        durationS: DURATION_MS / 1000,
        calls,
        injectedFailures: injected,
        otherTenantRows: leaked,
        unexpectedErrors: unexpected.length,
        pooledConnections: total,
        connectionsWithTenantLeft: leftovers.filter((v) => !unset(v)).length,
      });
    } finally {
      await app.close();
    }
  }, 60_000);
});

describe("sessionReset: 'always' [postgres]", () => {
  // A function that sets session state: no statement text says so, so 'auto' cannot see it.
  const fn = `ndbp_set_tenant_${process.pid}`;
  beforeAll(async () => {
    const { db, close } = await openDatabase({ url: PG_URL });
    await db.runOperation(`CREATE OR REPLACE FUNCTION ${fn}(t text) RETURNS text LANGUAGE sql AS $$ SELECT set_config('app.hidden', t, false) $$`);
    await close();
  });
  afterAll(async () => {
    const { db, close } = await openDatabase({ url: PG_URL });
    await db.runOperation(`DROP FUNCTION IF EXISTS ${fn}(text)`);
    await close();
  });

  const leftOver = async (sessionReset: 'auto' | 'always') => {
    const { db, close } = await openDatabase({ url: PG_URL, pool: { max: 1 }, sessionReset });
    try {
      await db.runQuery(`SELECT ${fn}($1)`, ['tenant-a']);
      const [row] = await db.runQuery<{ v: string | null }>("SELECT current_setting('app.hidden', true) AS v");
      return row.v;
    } finally {
      await close();
    }
  };

  it("resets after every use: state set where 'auto' cannot see it does not reach the next caller", async () => {
    // The same pooled connection (pool.max 1) serves both calls.
    expect(await leftOver('auto')).toBe('tenant-a');
    expect([null, '']).toContain(await leftOver('always'));
  });
});
