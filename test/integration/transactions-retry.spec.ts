import 'reflect-metadata';
import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { Database, DatabaseError, DatabaseModule, getDatabaseToken, sql, Transactional, type TransactionOptions } from '../../lib/index.js';
import { bootContext } from '../support/app.js';
import { barrier, type Barrier } from '../support/barrier.js';
import { allCases, describeEachDialect, serverCases, uniqueTable, type DialectCase } from '../support/databases.js';

/** Set by each dialect's beforeAll; the suites run one after another. */
const target = { table: '', gate: undefined as Barrier | undefined, attempts: 0 };

/**
 * A read-modify-write of account 1 under serializable isolation: both callers read the same
 * balance, meet at the barrier, then both write. The second writer cannot serialize.
 */
@Injectable()
class Accounts {
  constructor(private readonly db: Database) {}

  async credit(amount: number): Promise<void> {
    target.attempts++;
    const [row] = await this.db.runQuery<{ balance: number }>(sql`SELECT balance FROM ${sql.identifier(target.table)} WHERE id = ${1}`);
    await target.gate?.wait();
    await this.db.runOperation(sql`UPDATE ${sql.identifier(target.table)} SET balance = ${Number(row.balance) + amount} WHERE id = ${1}`);
  }

  @Transactional({ isolation: 'serializable' })
  creditOnce(amount: number): Promise<void> {
    return this.credit(amount);
  }

  @Transactional({ isolation: 'serializable', retry: 3 })
  creditWithRetry(amount: number): Promise<void> {
    return this.credit(amount);
  }
}

describeEachDialect(serverCases, 'retry on serialization failure and deadlock', (c: DialectCase) => {
  let app: INestApplicationContext;
  let db: Database;
  let accounts: Accounts;
  const table = uniqueTable('acct');

  const balances = async (): Promise<number[]> =>
    (await db.runQuery<{ balance: number }>(sql`SELECT balance FROM ${sql.identifier(table)} ORDER BY id`)).map((r) => Number(r.balance));

  beforeAll(async () => {
    app = await bootContext([DatabaseModule.forRoot({ url: c.url(), pool: { max: 6 } })], [Accounts]);
    db = app.get<Database>(getDatabaseToken());
    accounts = app.get(Accounts);
    target.table = table;
    await db.runOperation(`CREATE TABLE ${table} (id INT PRIMARY KEY, balance INT NOT NULL)`);
  });

  beforeEach(async () => {
    await db.runOperation(`DELETE FROM ${table}`);
    await db.runOperation(`INSERT INTO ${table} (id, balance) VALUES (1, 100), (2, 100)`);
    target.gate = barrier(2);
    target.attempts = 0;
  });

  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`).catch(() => {});
    await app.close();
  });

  it('without retry, one of two conflicting serializable transactions fails with a serialization error', async () => {
    const results = await Promise.allSettled([accounts.creditOnce(10), accounts.creditOnce(20)]);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(failed).toHaveLength(1);
    const error = failed[0].reason as DatabaseError;
    expect(error).toBeInstanceOf(DatabaseError);
    // PostgreSQL: 40001 could not serialize; MariaDB's serializable takes shared locks on read, so the two writers deadlock (1213, SQLSTATE 40001).
    expect(error.sqlState).toBe('40001');
    if (c.dialect === 'mysql') expect(error.errno).toBe(1213);
    expect(target.attempts).toBe(2);
    const [balance] = await balances();
    expect([110, 120]).toContain(balance);
  });

  it('with retry, both conflicting serializable transactions succeed and no update is lost', async () => {
    await Promise.all([accounts.creditWithRetry(10), accounts.creditWithRetry(20)]);
    // Two first attempts and one retry of the transaction that lost.
    expect(target.attempts).toBe(3);
    expect(await balances()).toEqual([130, 100]);
  });

  /** Locks its first row, waits for the other, then takes the other's row: a lock cycle. */
  const crossUpdate = (first: number, second: number, calls: number[], options: TransactionOptions) =>
    db.runInteraction(async (tx) => {
      calls.push(first);
      await tx.runOperation(sql`UPDATE ${sql.identifier(table)} SET balance = balance + 1 WHERE id = ${first}`);
      await target.gate!.wait();
      await tx.runOperation(sql`UPDATE ${sql.identifier(table)} SET balance = balance + 1 WHERE id = ${second}`);
    }, options);

  it('without retry, a deadlock fails one of the two transactions', async () => {
    const calls: number[] = [];
    const results = await Promise.allSettled([crossUpdate(1, 2, calls, {}), crossUpdate(2, 1, calls, {})]);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(failed).toHaveLength(1);
    const error = failed[0].reason as DatabaseError;
    if (c.dialect === 'postgres') expect(error.sqlState).toBe('40P01');
    else expect(error.errno).toBe(1213);
    expect(calls).toHaveLength(2);
    expect(await balances()).toEqual([101, 101]);
  });

  it('with retry, a deadlock is resolved: the victim is re-run and both commit', async () => {
    const calls: number[] = [];
    await Promise.all([crossUpdate(1, 2, calls, { retry: 2 }), crossUpdate(2, 1, calls, { retry: 2 })]);
    expect(calls).toHaveLength(3);
    expect(await balances()).toEqual([102, 102]);
  });

  /** As crossUpdate, but the interaction catches the failure of its second update and goes on. */
  const swallowingCrossUpdate = (first: number, second: number, calls: number[], log: unknown[], options: TransactionOptions) =>
    db.runInteraction(async (tx) => {
      calls.push(first);
      await tx.runOperation(sql`UPDATE ${sql.identifier(table)} SET balance = balance + 1 WHERE id = ${first}`);
      await target.gate!.wait();
      await tx.runOperation(sql`UPDATE ${sql.identifier(table)} SET balance = balance + 1 WHERE id = ${second}`).catch((e) => log.push(e));
      await tx.runQuery('SELECT 1').catch((e) => log.push(e));
    }, options);

  it('a deadlock the interaction catches still ends in a rollback: later statements are refused, nothing half-done commits', async () => {
    const calls: number[] = [];
    const log: unknown[] = [];
    const results = await Promise.allSettled([swallowingCrossUpdate(1, 2, calls, log, {}), swallowingCrossUpdate(2, 1, calls, log, {})]);
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(failed).toHaveLength(1);
    expect(failed[0].reason.code).toBe('TRANSACTION_ABORTED');
    expect(log).toHaveLength(2);
    const [deadlock, later] = log as DatabaseError[];
    if (c.dialect === 'postgres') {
      expect(deadlock.sqlState).toBe('40P01');
      expect(later.sqlState).toBe('25P02');
    } else {
      expect(deadlock.errno).toBe(1213);
      // MariaDB already rolled the transaction back: the SELECT would have run in autocommit.
      expect(later.code).toBe('TRANSACTION_ABORTED');
    }
    expect(failed[0].reason.cause).toBe(deadlock);
    expect(await balances()).toEqual([101, 101]);
  });

  it('with retry, a deadlock the interaction caught still re-runs the transaction', async () => {
    const calls: number[] = [];
    const log: unknown[] = [];
    await Promise.all([swallowingCrossUpdate(1, 2, calls, log, { retry: 2 }), swallowingCrossUpdate(2, 1, calls, log, { retry: 2 })]);
    expect(calls).toHaveLength(3);
    expect(await balances()).toEqual([102, 102]);
  });

  if (c.dialect === 'mysql') {
    it('with retry, a lock wait timeout (1205) is re-run once the lock is free', async () => {
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      // The holder keeps the row locked until the first attempt has timed out waiting for it (bounded: 10 s).
      const firstAttemptTimedOut = barrier(2, 10_000);
      const holder = db.runInteraction(async (tx) => {
        await tx.runOperation(sql`UPDATE ${sql.identifier(table)} SET balance = balance + 1 WHERE id = ${1}`);
        locked();
        await firstAttemptTimedOut.wait();
      });
      await isLocked;
      let attempts = 0;
      const errors: unknown[] = [];
      await db.runInteraction(
        async (tx) => {
          attempts++;
          await tx.runOperation(`SET STATEMENT innodb_lock_wait_timeout = 1 FOR UPDATE ${table} SET balance = balance + 10 WHERE id = 1`).catch((e) => {
            errors.push(e);
            if (errors.length === 1) void firstAttemptTimedOut.wait();
            throw e;
          });
        },
        { retry: { attempts: 3, initialDelayMs: 10 } },
      );
      await holder;
      expect(attempts).toBe(2);
      expect((errors[0] as DatabaseError).errno).toBe(1205);
      expect(await balances()).toEqual([111, 100]);
    });

    it('with retry, a deadlock inside a nested savepoint re-runs the whole transaction', async () => {
      const calls: number[] = [];
      const nestedCross = (first: number, second: number) =>
        db.runInteraction(
          async (tx) => {
            calls.push(first);
            await tx.savepoint(async () => {
              await tx.runOperation(sql`UPDATE ${sql.identifier(table)} SET balance = balance + 1 WHERE id = ${first}`);
              await target.gate!.wait();
              await tx.runOperation(sql`UPDATE ${sql.identifier(table)} SET balance = balance + 1 WHERE id = ${second}`);
            });
          },
          { retry: 2 },
        );
      await Promise.all([nestedCross(1, 2), nestedCross(2, 1)]);
      expect(calls).toHaveLength(3);
      expect(await balances()).toEqual([102, 102]);
    });
  }
});

describeEachDialect(allCases, 'retry: what is and is not retried', (c: DialectCase) => {
  let app: INestApplicationContext;
  let db: Database;

  beforeAll(async () => {
    app = await bootContext([DatabaseModule.forRoot({ url: c.url(), pool: { max: 2 } })]);
    db = app.get<Database>(getDatabaseToken());
  });

  afterAll(async () => {
    await app.close();
  });

  const serializationFailure = () => new DatabaseError('could not serialize access', { sqlState: '40001', code: '40001' });

  it('re-runs the whole interaction up to the attempt bound, then gives the last error', async () => {
    let attempts = 0;
    const error = await db
      .runInteraction(
        async () => {
          attempts++;
          throw serializationFailure();
        },
        { retry: 3 },
      )
      .catch((e) => e);
    expect(attempts).toBe(4);
    expect(error.sqlState).toBe('40001');
    attempts = 0;
    await db.runInteraction(
      async () => {
        if (++attempts < 2) throw serializationFailure();
      },
      { retry: { attempts: 2 } },
    );
    expect(attempts).toBe(2);
  });

  it('never retries other errors', async () => {
    let attempts = 0;
    const table = uniqueTable('dup');
    await db.runOperation(`CREATE TABLE ${table} (id INT PRIMARY KEY)`);
    try {
      await db.runOperation(`INSERT INTO ${table} (id) VALUES (1)`);
      const error = await db
        .runInteraction(
          async (tx) => {
            attempts++;
            await tx.runOperation(`INSERT INTO ${table} (id) VALUES (1)`);
          },
          { retry: 5 },
        )
        .catch((e) => e);
      expect(error).toBeInstanceOf(DatabaseError);
      expect(attempts).toBe(1);
      attempts = 0;
      const plain = async () => {
        attempts++;
        throw new Error('plain');
      };
      await expect(db.runInteraction(plain, { retry: 5 })).rejects.toThrow('plain');
      expect(attempts).toBe(1);
    } finally {
      await db.runOperation(`DROP TABLE ${table}`);
    }
  });

  it('does not retry when the call joins an outer transaction: the outer one decides', async () => {
    let inner = 0;
    let outer = 0;
    const error = await db
      .runInteraction(async () => {
        outer++;
        await db.runInteraction(
          async () => {
            inner++;
            throw serializationFailure();
          },
          { retry: 3 },
        );
      })
      .catch((e) => e);
    expect(error.sqlState).toBe('40001');
    expect([outer, inner]).toEqual([1, 1]);
  });

  it('rejects a bad retry option with a ConfigurationError', async () => {
    const error = await db.runInteraction(async () => undefined, { retry: -1 }).catch((e) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error.code).toBe('CONFIGURATION_ERROR');
    expect(error.message).toMatch(/retry/);
  });
});
