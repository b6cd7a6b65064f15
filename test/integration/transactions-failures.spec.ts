import { jest } from '@jest/globals';
import { CommitOutcomeUnknown, Database, DatabaseError, QueryTimeout, RollbackFailed, sql, TransactionError } from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { sleep } from '../support/barrier.js';
import { describeEachDialect, serverCases, sqliteCase, uniqueTable, type DialectCase } from '../support/databases.js';
import { killSessions } from '../support/sessions.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { until } from '../support/wait.js';

describeEachDialect(serverCases, 'transaction timeouts and broken rollbacks', (c: DialectCase) => {
  let db: Database;
  let other: Database;
  let closeDb: () => Promise<void>;
  let closeOther: () => Promise<void>;
  const table = uniqueTable('txf');
  const sleepQuery = (seconds: number) => (c.dialect === 'postgres' ? `SELECT pg_sleep(${seconds})` : `SELECT SLEEP(${seconds})`);
  const itOnPostgres = c.dialect === 'postgres' ? it : it.skip;
  const sessionQuery = c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id';

  const visible = async (tag: string): Promise<number> => {
    const [row] = await other.runQuery<{ n: number | string }>(sql`SELECT count(*) AS n FROM ${sql.identifier(table)} WHERE tag = ${tag}`);
    return Number(row.n);
  };
  const insert = (tag: string) => db.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${tag})`);
  const sessionAlive = async (id: number): Promise<boolean> => {
    const text =
      c.dialect === 'postgres'
        ? sql`SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ${id}`
        : sql`SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ${id}`;
    const [row] = await other.runQuery<{ n: number | string }>(text);
    return Number(row.n) > 0;
  };

  beforeAll(async () => {
    const url = c.url();
    ({ db, close: closeDb } = await openDatabase({ url, pool: { max: 4 } }));
    ({ db: other, close: closeOther } = await openDatabase({ url, name: 'other' }));
    await db.runOperation(`CREATE TABLE ${table} (id ${c.serial}, tag VARCHAR(64) NOT NULL)`);
  });

  afterAll(async () => {
    await other.runOperation(`DROP TABLE ${table}`).catch(() => {});
    await closeDb();
    await closeOther();
  });

  describe('timeoutMs', () => {
    it(`rolls back a transaction stuck in ${c.dialect === 'postgres' ? 'pg_sleep' : 'SLEEP'} with QueryTimeout, within the deadline`, async () => {
      const started = Date.now();
      const error = await db
        .runInteraction(
          async (tx) => {
            await insert('timeout-sleep');
            await tx.runQuery(sleepQuery(5));
            await insert('timeout-after-sleep');
          },
          { timeoutMs: 300 },
        )
        .catch((e) => e);
      const elapsed = Date.now() - started;
      // On a loaded machine the server may not act on the cancel within the grace period: the connection is then
      // destroyed (the server rolls back) and no ROLLBACK can be sent, so the timeout comes wrapped in RollbackFailed.
      const timeout = error instanceof RollbackFailed ? (error.originalError as QueryTimeout) : error;
      expect(timeout).toBeInstanceOf(QueryTimeout);
      expect(timeout.timeoutMs).toBe(300);
      expect(timeout.message).toMatch(/exceeded timeoutMs \(300 ms\)/);
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(2000);
      expect(await visible('timeout-sleep')).toBe(0);
      expect(await visible('timeout-after-sleep')).toBe(0);
      expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    });

    it('rolls back a transaction that idled past timeoutMs in application code, refusing its next statement', async () => {
      let next: unknown;
      const started = Date.now();
      const error = await db
        .runInteraction(
          async () => {
            await insert('timeout-idle');
            await sleep(1000);
            next = await insert('timeout-idle-next').catch((e) => e);
          },
          { timeoutMs: 200 },
        )
        .catch((e) => e);
      // The caller is released at the deadline, not when the interaction gets round to its next statement.
      expect(Date.now() - started).toBeLessThan(800);
      // The body wakes from its idle and tries its next statement: refused.
      await until(() => next !== undefined, "the interaction's next statement to be refused");
      expect(next).toBeInstanceOf(QueryTimeout);
      expect(error).toBeInstanceOf(QueryTimeout);
      expect(await visible('timeout-idle')).toBe(0);
      expect(await visible('timeout-idle-next')).toBe(0);
    });

    it('keeps its deadline when the server stops answering, cancel included', async () => {
      const proxy = await FaultProxy.start(Number(new URL(c.url()).port));
      const { db: proxied, close } = await openDatabase({ url: proxy.url(c.url()), name: 'blackholed' });
      const warn = jest.spyOn(proxied.logger, 'warn').mockImplementation(() => {});
      try {
        const started = Date.now();
        const error = await proxied
          .runInteraction(
            async (tx) => {
              await tx.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${'timeout-blackhole'})`);
              const running = tx.runQuery(sleepQuery(0.5));
              await sleep(50);
              // Every byte dropped from here on, the cancel request's included.
              await proxy.setMode('blackhole');
              await running;
            },
            { timeoutMs: 300 },
          )
          .catch((e) => e);
        const elapsed = Date.now() - started;
        // The connection was given up on: its ROLLBACK could not run, the server ends the session's work.
        expect(error).toBeInstanceOf(RollbackFailed);
        expect(error.originalError).toBeInstanceOf(QueryTimeout);
        expect(elapsed).toBeLessThan(3000);
      } finally {
        warn.mockRestore();
        await proxy.close();
        await close();
      }
      expect(await visible('timeout-blackhole')).toBe(0);
    });

    it('commits a transaction that finishes within timeoutMs, and the next one on that connection has no leftover limit', async () => {
      await db.runInteraction(
        async () => {
          await insert('timeout-fast');
          if (c.dialect === 'postgres') {
            const [row] = await db.runQuery<{ statement_timeout: string }>('SHOW statement_timeout');
            expect(row.statement_timeout).toBe('1s');
          }
        },
        { timeoutMs: 1000 },
      );
      expect(await visible('timeout-fast')).toBe(1);
      if (c.dialect === 'postgres') {
        // SET LOCAL ended with the transaction.
        const rows = await Promise.all(Array.from({ length: 4 }, () => db.runQuery<{ statement_timeout: string }>('SHOW statement_timeout')));
        for (const [row] of rows) expect(row.statement_timeout).toBe('0');
      }
      await db.runInteraction((tx) => tx.runQuery(sleepQuery(0.3)));
    });
  });

  describe('RollbackFailed', () => {
    it('gives RollbackFailed with the original error when the transaction’s own session was killed, and destroys that connection', async () => {
      const boom = new Error('the interaction failed');
      let killed = 0;
      const warn = jest.spyOn(db.logger, 'warn').mockImplementation(() => {});
      try {
        const error = await db
          .runInteraction(async (tx) => {
            await insert('rollback-failed');
            const [row] = await tx.runQuery<{ id: number | string }>(sessionQuery);
            killed = Number(row.id);
            expect(tx.connection.serverId).toBe(killed);
            await killSessions(c.dialect, { ids: [killed] });
            // Wait until the server has really ended the session.
            for (let i = 0; i < 50 && (await sessionAlive(killed)); i++) await sleep(20);
            throw boom;
          })
          .catch((e) => e);
        expect(error).toBeInstanceOf(RollbackFailed);
        expect(error.code).toBe('ROLLBACK_FAILED');
        expect(error.originalError).toBe(boom);
        expect(error.cause).toBeInstanceOf(DatabaseError);
        expect(error.message).toMatch(/rollback failed/);
      } finally {
        warn.mockRestore();
      }
      // The server rolled back the killed session's work.
      expect(await visible('rollback-failed')).toBe(0);
      // The database recovers, and no later call gets the killed connection.
      await db.detector.waitForRecovery(5000);
      const sessions = await Promise.all(
        Array.from({ length: 4 }, () => db.runInteraction(async (tx) => Number((await tx.runQuery<{ id: number | string }>(sessionQuery))[0].id))),
      );
      expect(sessions).not.toContain(killed);
      expect(db.stats().busy).toBe(0);
    });
  });

  describe('failures around commit', () => {
    itOnPostgres('gives the commit error when the server refuses the COMMIT (a deferred constraint), and runs afterRollback', async () => {
      const refs = uniqueTable('refs');
      await db.runOperation(`CREATE TABLE ${refs} (id INT PRIMARY KEY, parent INT REFERENCES ${refs}(id) DEFERRABLE INITIALLY DEFERRED)`);
      try {
        const events: string[] = [];
        const error = await db
          .runInteraction(async (tx) => {
            tx.afterCommit(() => events.push('afterCommit'));
            tx.afterRollback(() => events.push('afterRollback'));
            await tx.runOperation(`INSERT INTO ${refs} (id, parent) VALUES (1, 99)`);
          })
          .catch((e) => e);
        expect(error).toBeInstanceOf(DatabaseError);
        expect(error.sqlState).toBe('23503');
        expect(events).toEqual(['afterRollback']);
      } finally {
        await db.runOperation(`DROP TABLE ${refs}`);
      }
    });

    it('gives CommitOutcomeUnknown when the reply to COMMIT is lost, and runs neither hook', async () => {
      const proxy = await FaultProxy.start(Number(new URL(c.url()).port));
      const { db: proxied, close } = await openDatabase({ url: proxy.url(c.url()), name: 'proxied' });
      const warn = jest.spyOn(proxied.logger, 'warn').mockImplementation(() => {});
      try {
        const events: string[] = [];
        proxy.dropServerToClientAfter((chunk) => chunk.includes('COMMIT'), { once: true, resetAfterMs: 100 });
        const error = await proxied
          .runInteraction(async (tx) => {
            await tx.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${'commit-unknown'})`);
            tx.afterCommit(() => events.push('afterCommit'));
            tx.afterRollback(() => events.push('afterRollback'));
          })
          .catch((e) => e);
        expect(error).toBeInstanceOf(CommitOutcomeUnknown);
        expect(error.code).toBe('COMMIT_OUTCOME_UNKNOWN');
        expect(events).toEqual([]);
        // Here the COMMIT did reach the server: "unknown" was the honest answer.
        expect(await visible('commit-unknown')).toBe(1);
      } finally {
        warn.mockRestore();
        await close();
        await proxy.close();
      }
    });

    itOnPostgres('refuses to commit a transaction whose failed statement was caught, naming that statement’s error', async () => {
      const error = await db
        .runInteraction(async (tx) => {
          await insert('aborted-before');
          await tx.runQuery('SELEC broken').catch(() => {});
        })
        .catch((e) => e);
      expect(error).toBeInstanceOf(TransactionError);
      expect(error.code).toBe('TRANSACTION_ABORTED');
      expect((error.cause as DatabaseError)?.sqlState).toBe('42601');
      expect(await visible('aborted-before')).toBe(0);
    });
  });
});

describe('transaction timeouts [sqlite]', () => {
  it('ends a long statement at timeoutMs without committing anything', async () => {
    const { db, close } = await openDatabase({ url: sqliteCase.url() });
    try {
      await db.runOperation('CREATE TABLE t (tag TEXT)');
      const started = Date.now();
      const error = await db
        .runInteraction(
          async (tx) => {
            await tx.runOperation(`INSERT INTO t (tag) VALUES ('timeout')`);
            // No sleep function in SQLite: a statement that counts for over a second instead (finite, should the stop fail).
            await tx.runQuery('WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 5000000) SELECT count(*) FROM r');
          },
          { timeoutMs: 300 },
        )
        .catch((e) => e);
      // The timeout stops the connection's process, which discards the transaction's work with it; the
      // ROLLBACK then has no connection to run on, which may surface as RollbackFailed around the timeout.
      if (error instanceof RollbackFailed) expect(error.originalError).toBeInstanceOf(QueryTimeout);
      else expect(error).toBeInstanceOf(QueryTimeout);
      expect(Date.now() - started).toBeLessThan(1000);
      expect(await db.runQuery('SELECT count(*) AS n FROM t')).toEqual([{ n: 0 }]);
    } finally {
      await close();
    }
  });
});
