/**
 * The sample app (sample/) booted on SQLite, PostgreSQL and MariaDB and driven over HTTP:
 * seed, users, the transactional transfer, health probes, and notifications on PostgreSQL.
 *
 * The sample's tables have fixed names (`users`, `accounts`), so on the shared servers each
 * dialect's block holds a server-side lock for its whole run and starts from dropped tables:
 * two suites running at once on one server wait for each other instead of mixing balances.
 */
import 'reflect-metadata';
import type { INestApplication, LogLevel } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import mysql from 'mysql2/promise';
import pg from 'pg';
import request from 'supertest';
import { getDatabaseToken, type Database } from '../../lib/index.js';
import { AppModule } from '../../sample/app.module.js';
import { allCases, describeEachDialect, MYSQL_URL, PG_URL, type DialectCase } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';

const LOCK_NAME = 'nestjs-dbpool:e2e:sample';
const LOCK_WAIT_S = 60;
const SEED_BALANCES = [
  { id: 1, owner: 'yoen', balance: 100 },
  { id: 2, owner: 'esteban', balance: 50 },
];

async function bootSample(databaseUrl: string, logger: LogLevel[] | false = ['error', 'warn']): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({ imports: [AppModule.forRoot({ databaseUrl })] }).compile();
  const app = moduleRef.createNestApplication({ logger });
  await app.init();
  return app;
}

/** Polls `probe` every 50 ms until it returns true or `timeoutMs` passed; resolves with the last answer. */
async function eventually(probe: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Takes the suite's lock on a server and drops the sample's tables; resolves with the release. */
async function lockServer(dialect: 'postgres' | 'mysql'): Promise<() => Promise<void>> {
  if (dialect === 'postgres') {
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await client.query(`SET statement_timeout = ${LOCK_WAIT_S * 1000}`);
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [LOCK_NAME]);
      await client.query('SET statement_timeout = 0');
      await client.query('DROP TABLE IF EXISTS accounts, users, nestjs_dbpool_migrations');
    } catch (error) {
      await client.end();
      throw error;
    }
    return () => client.end(); // ending the session releases the advisory lock
  }
  const conn = await mysql.createConnection(MYSQL_URL);
  try {
    const [rows] = await conn.query('SELECT GET_LOCK(?, ?) AS got', [LOCK_NAME, LOCK_WAIT_S]);
    if ((rows as Array<{ got: number | null }>)[0].got !== 1) throw new Error(`another e2e run held ${LOCK_NAME} for ${LOCK_WAIT_S} s`);
    await conn.query('DROP TABLE IF EXISTS accounts, users, nestjs_dbpool_migrations');
  } catch (error) {
    await conn.end();
    throw error;
  }
  return () => conn.end(); // ending the session releases GET_LOCK
}

describeEachDialect(allCases, 'sample app', (c: DialectCase) => {
  const server = c.dialect !== 'sqlite';
  let url: string;
  let release: (() => Promise<void>) | undefined;

  beforeAll(
    async () => {
      url = c.url();
      if (c.dialect !== 'sqlite') release = await lockServer(c.dialect);
    },
    (LOCK_WAIT_S + 10) * 1000,
  );

  afterAll(async () => {
    await release?.();
  });

  describe('over HTTP', () => {
    let app: INestApplication;
    let http: ReturnType<typeof request>;

    beforeAll(async () => {
      app = await bootSample(url);
      http = request(app.getHttpServer());
    });

    afterAll(async () => {
      await app?.close();
    });

    it('creates its schema and seeds three users and two accounts at boot', async () => {
      const db = app.get<Database>(getDatabaseToken());
      expect(db.dialect).toBe(c.dialect);
      const [{ n }] = await db.runQuery<{ n: number | string }>('SELECT COUNT(*) AS n FROM users');
      expect(Number(n)).toBe(3);
      const res = await http.get('/accounts').expect(200);
      expect(res.body).toEqual(SEED_BALANCES);
    });

    it("greets a user with the tutorial's exact sentence", async () => {
      const res = await http
        .get('/users/yoen')
        .expect(200)
        .expect('Content-Type', /text\/plain/);
      expect(res.text).toBe("Mr 'Yoen Van der Veld' is connected under 'yoen'");
      expect((await http.get('/users/esteban').expect(200)).text).toBe("Mr 'Estebán Garcia Marquez' is connected under 'esteban'");
      expect((await http.get('/users/mohamed').expect(200)).text).toBe("Mr 'Mohamed Al Ghâlib' is connected under 'mohamed'");
    });

    it('streams every user with the accented names as they were written (GET /users)', async () => {
      const res = await http.get('/users').expect(200);
      expect(
        res.text
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line)),
      ).toEqual([
        { login: 'esteban', name: 'Garcia Marquez', forname: 'Estebán' },
        { login: 'mohamed', name: 'Al Ghâlib', forname: 'Mohamed' },
        { login: 'yoen', name: 'Van der Veld', forname: 'Yoen' },
      ]);
    });

    it('got its schema and seed from its migrations, recorded once', async () => {
      const db = app.get<Database>(getDatabaseToken());
      const rows = await db.runQuery<{ name: string; checksum: string | null }>('SELECT name, checksum FROM nestjs_dbpool_migrations ORDER BY name');
      expect(rows.map((r) => r.name)).toEqual(['001_create_tables', '002_seed']);
      expect(rows[0]!.checksum).toMatch(/^[0-9a-f]{64}$/);
    });

    it('answers 404 for an unknown login', async () => {
      const res = await http.get('/users/nobody').expect(404);
      expect(res.body).toMatchObject({ statusCode: 404, message: "No user 'nobody'" });
    });

    it('opens an account: 201, then 409 for a taken id (UniqueViolation) and 404 for an unknown owner (ForeignKeyViolation)', async () => {
      const db = app.get<Database>(getDatabaseToken());
      try {
        expect((await http.post('/accounts').send({ id: 3, owner: 'mohamed' }).expect(201)).body).toEqual({ id: 3, owner: 'mohamed', balance: 0 });
        expect((await http.post('/accounts').send({ id: 3, owner: 'yoen' }).expect(409)).body.message).toBe('Account 3 exists');
        expect((await http.post('/accounts').send({ id: 4, owner: 'nobody' }).expect(404)).body.message).toBe("No user 'nobody'");
      } finally {
        await db.runOperation('DELETE FROM accounts WHERE id > 2');
      }
    });

    it('commits a transfer: both balances change', async () => {
      const res = await http.post('/accounts/transfer').send({ from: 1, to: 2, amount: 30 }).expect(200);
      const after = [
        { id: 1, owner: 'yoen', balance: 70 },
        { id: 2, owner: 'esteban', balance: 80 },
      ];
      expect(res.body).toEqual(after);
      expect((await http.get('/accounts').expect(200)).body).toEqual(after);
    });

    it('rolls back an overdraft: 400 and no balance changes', async () => {
      const before = (await http.get('/accounts').expect(200)).body;
      const res = await http.post('/accounts/transfer').send({ from: 1, to: 2, amount: 71 }).expect(400);
      expect(res.body.message).toBe('Insufficient funds on account 1');
      expect((await http.get('/accounts').expect(200)).body).toEqual(before);
    });

    it('rolls back the withdrawal when the destination does not exist: 404 and no balance changes', async () => {
      const before = (await http.get('/accounts').expect(200)).body;
      await http.post('/accounts/transfer').send({ from: 1, to: 99, amount: 10 }).expect(404);
      expect((await http.get('/accounts').expect(200)).body).toEqual(before);
    });

    it('rejects malformed transfers with 400 before touching any balance', async () => {
      const before = (await http.get('/accounts').expect(200)).body;
      await http.post('/accounts/transfer').send({ from: 1, to: 2, amount: 'ten' }).expect(400);
      await http.post('/accounts/transfer').send({ from: 1, to: 2, amount: -5 }).expect(400);
      await http.post('/accounts/transfer').send({ from: 1, to: 1, amount: 5 }).expect(400);
      expect((await http.get('/accounts').expect(200)).body).toEqual(before);
    });

    it('keeps the total through concurrent transfers in both directions', async () => {
      const before: Array<{ balance: number }> = (await http.get('/accounts').expect(200)).body;
      const total = before.reduce((sum, a) => sum + a.balance, 0);
      const transfers = Array.from({ length: 20 }, (_, i) => ({ from: i % 2 ? 1 : 2, to: i % 2 ? 2 : 1, amount: 1 }));
      const statuses = await Promise.all(transfers.map(async (t) => (await http.post('/accounts/transfer').send(t)).status));
      expect(statuses).toEqual(transfers.map(() => 200));
      const after: Array<{ balance: number }> = (await http.get('/accounts').expect(200)).body;
      expect(after.reduce((sum, a) => sum + a.balance, 0)).toBe(total);
      expect(after).toEqual(before);
    });

    it('answers /health/live with 200', async () => {
      expect((await http.get('/health/live').expect(200)).body).toEqual({ status: 'ok' });
    });

    it('answers /health/ready with 200 while the database is up', async () => {
      const res = await http.get('/health/ready').expect(200);
      expect(res.body.status).toBe('ok');
      expect(res.body.details.database).toMatchObject({ status: 'up', default: { status: 'up', dialect: c.dialect } });
    });

    if (c.dialect === 'postgres') {
      it('looks up the tables named by a notification (POST /notify, then GET /notify/last)', async () => {
        const fragment = 'ccount';
        expect((await http.post('/notify').send({ fragment }).expect(202)).body).toEqual({ channel: 'table_changes', payload: fragment });
        let last: { fragment: string | null; tables: string[] } = { fragment: null, tables: [] };
        const arrived = await eventually(async () => {
          last = (await http.get('/notify/last').expect(200)).body;
          return last.fragment === fragment;
        }, 3000);
        expect(arrived).toBe(true);
        expect(last.tables).toContain('accounts');
        expect(last.tables.every((t) => t.includes(fragment))).toBe(true);
      });

      it('rejects an empty notification fragment with 400', async () => {
        await http.post('/notify').send({ fragment: '' }).expect(400);
      });
    } else {
      it('has no /notify endpoint: notifications need PostgreSQL', async () => {
        await http.post('/notify').send({ fragment: 'acc' }).expect(404);
        await http.get('/notify/last').expect(404);
      });
    }

    it('a second instance on the same database finds the migrations applied and changes nothing', async () => {
      const before = (await http.get('/accounts').expect(200)).body;
      const second = await bootSample(url);
      try {
        const db = second.get<Database>(getDatabaseToken());
        const [{ n }] = await db.runQuery<{ n: number | string }>('SELECT COUNT(*) AS n FROM users');
        expect(Number(n)).toBe(3);
        expect((await request(second.getHttpServer()).get('/accounts').expect(200)).body).toEqual(before);
      } finally {
        await second.close();
      }
      expect((await http.get('/users/mohamed').expect(200)).text).toBe("Mr 'Mohamed Al Ghâlib' is connected under 'mohamed'");
    });
  });

  if (server) {
    describe('health as the database goes away and comes back (through a fault proxy)', () => {
      let proxy: FaultProxy;
      let app: INestApplication;
      let http: ReturnType<typeof request>;

      beforeAll(async () => {
        proxy = await FaultProxy.start(Number(new URL(url).port));
        // The lib logs the lost connections as warnings: expected here, so kept quiet.
        app = await bootSample(proxy.url(url), false);
        http = request(app.getHttpServer());
      });

      afterAll(async () => {
        await app?.close();
        await proxy?.close();
      });

      it('readiness goes 503 and back to 200; liveness stays 200 throughout', async () => {
        await http.get('/health/ready').expect(200);

        await proxy.setMode('reset');
        const down = await eventually(async () => (await http.get('/health/ready')).status === 503, 3000);
        expect(down).toBe(true);
        const res = await http.get('/health/ready').expect(503);
        expect(res.body.details.database.default).toMatchObject({ status: 'down', dialect: c.dialect });
        await http.get('/health/live').expect(200);

        await proxy.setMode('pass');
        const up = await eventually(async () => (await http.get('/health/ready')).status === 200, 15_000);
        expect(up).toBe(true);
        await http.get('/health/live').expect(200);
        expect((await http.get('/users/yoen').expect(200)).text).toBe("Mr 'Yoen Van der Veld' is connected under 'yoen'");
      }, 30_000);
    });
  }
});
