/**
 * The transaction runner against a recording fake driver: the exact BEGIN / SAVEPOINT / COMMIT /
 * ROLLBACK sequence per connection for each propagation, and the failure paths that are hard to
 * provoke on a real server on cue (a refused ROLLBACK, a COMMIT answered with ROLLBACK).
 */
import { jest } from '@jest/globals';
import { DatabaseError, RollbackFailed, TransactionError, type Database } from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { until } from '../support/wait.js';
import { FakeDriver as RecordingDriver } from '../support/fakes.js';

describe('transaction runner (recording fake connection)', () => {
  let driver: RecordingDriver;
  let db: Database;
  let close: () => Promise<void>;

  beforeEach(async () => {
    driver = new RecordingDriver();
    ({ db, close } = await openDatabase({ driver, pool: { max: 4 } }));
  });

  afterEach(async () => {
    await close();
  });

  it('required inside required: one BEGIN and one COMMIT on one connection', async () => {
    await db.runInteraction(async () => {
      await db.runQuery('SELECT 1');
      await db.runInteraction(() => db.runQuery('SELECT 2'));
    });
    expect(driver.log).toEqual(['1: BEGIN', '1: SELECT 1', '1: SELECT 2', '1: COMMIT']);
  });

  it('requiresNew: a second connection with its own BEGIN and COMMIT, inside the outer one', async () => {
    await db.runInteraction(async () => {
      await db.runQuery('SELECT outer');
      await db.runInteraction(() => db.runQuery('SELECT inner'), { propagation: 'requiresNew' });
      await db.runQuery('SELECT outer again');
    });
    expect(driver.log).toEqual(['1: BEGIN', '1: SELECT outer', '2: BEGIN', '2: SELECT inner', '2: COMMIT', '1: SELECT outer again', '1: COMMIT']);
  });

  it('nested: SAVEPOINT, ROLLBACK TO and RELEASE on a failure, RELEASE on success', async () => {
    await db.runInteraction(async () => {
      await db.runInteraction(async () => Promise.reject(new Error('x')), { propagation: 'nested' }).catch(() => {});
      await db.runInteraction(() => db.runQuery('SELECT kept'), { propagation: 'nested' });
    });
    expect(driver.log).toEqual([
      '1: BEGIN',
      '1: SAVEPOINT ndbp_sp_1',
      '1: ROLLBACK TO SAVEPOINT ndbp_sp_1',
      '1: RELEASE SAVEPOINT ndbp_sp_1',
      '1: SAVEPOINT ndbp_sp_2',
      '1: SELECT kept',
      '1: RELEASE SAVEPOINT ndbp_sp_2',
      '1: COMMIT',
    ]);
  });

  it('notSupported and never run on a pool connection without BEGIN; supports without a transaction too', async () => {
    await db.runInteraction(async () => {
      await db.runInteraction(() => db.runQuery('SELECT outside'), { propagation: 'notSupported' });
    });
    await db.runInteraction(() => db.runQuery('SELECT never'), { propagation: 'never' });
    await db.runInteraction(() => db.runQuery('SELECT supports'), { propagation: 'supports' });
    expect(driver.log).toEqual(['1: BEGIN', '2: SELECT outside', '1: COMMIT', '1: SELECT never', '1: SELECT supports']);
  });

  it('passes isolation, readOnly, deferrable and the timeout to the driver’s BEGIN statements', async () => {
    await db.runInteraction(async () => undefined, { isolation: 'serializable', readOnly: true, deferrable: true, timeoutMs: 5000 });
    expect(driver.log).toEqual(['1: BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE', '1: SET LOCAL statement_timeout = 5000', '1: COMMIT']);
  });

  it('gives RollbackFailed carrying the original error when ROLLBACK fails, and destroys the connection', async () => {
    driver.script = (text) => (text === 'ROLLBACK' ? new DatabaseError('ROLLBACK refused', { code: 'XX000' }) : undefined);
    const original = new Error('interaction failed');
    const error = await db.runInteraction(async () => Promise.reject(original)).catch((e) => e);
    expect(error).toBeInstanceOf(RollbackFailed);
    expect(error.originalError).toBe(original);
    expect(driver.connections[0].destroyed).toBe(true);
    driver.script = undefined;
    await db.runQuery('SELECT after');
    expect(driver.log.at(-1)).toBe('2: SELECT after');
  });

  it('a COMMIT answered with ROLLBACK is a failure, and runs afterRollback, not afterCommit', async () => {
    driver.script = (text) => (text === 'COMMIT' ? { rows: [], affectedRows: 0, command: 'ROLLBACK' } : undefined);
    const events: string[] = [];
    const error = await db
      .runInteraction(async (tx) => {
        tx.afterCommit(() => events.push('afterCommit'));
        tx.afterRollback(() => events.push('afterRollback'));
      })
      .catch((e) => e);
    expect(error).toBeInstanceOf(TransactionError);
    expect(error.code).toBe('TRANSACTION_ABORTED');
    expect(events).toEqual(['afterRollback']);
  });

  it('retry: a serialization failure at COMMIT re-runs the whole interaction, with a new BEGIN', async () => {
    let commits = 0;
    driver.script = (text) =>
      text === 'COMMIT' && ++commits === 1 ? new DatabaseError('could not serialize access', { code: '40001', sqlState: '40001' }) : undefined;
    let runs = 0;
    await db.runInteraction(
      async () => {
        runs++;
        await db.runQuery('SELECT work');
      },
      { retry: 2 },
    );
    expect(runs).toBe(2);
    expect(driver.log.filter((l) => !l.endsWith('ROLLBACK'))).toEqual(['1: BEGIN', '1: SELECT work', '1: COMMIT', '1: BEGIN', '1: SELECT work', '1: COMMIT']);
  });

  it('timeoutMs sends the server a cancel only while a statement runs', async () => {
    let release!: () => void;
    driver.script = (text) => (text === 'SELECT slow' ? new Promise<undefined>((resolve) => (release = () => resolve(undefined))) : undefined);
    const slow = db.runInteraction(() => db.runQuery('SELECT slow'), { timeoutMs: 50 }).catch((e) => e);
    await until(() => (driver.connections[0]?.cancels ?? 0) >= 1, 'the cancel of the running statement');
    expect(driver.connections[0].cancels).toBe(1);
    release();
    expect((await slow).code).toBe('QUERY_TIMEOUT');

    // No statement runs: the interaction just does not end (until released) before its timeout.
    let finish!: () => void;
    const held = new Promise<void>((resolve) => (finish = resolve));
    const idle = (await db.runInteraction(() => held, { timeoutMs: 50 }).catch((e) => e)) as DatabaseError;
    finish();
    expect(idle.code).toBe('QUERY_TIMEOUT');
    expect(driver.connections.reduce((n, c) => n + c.cancels, 0)).toBe(1);
  });

  it('runs an afterCommit hook exactly once', async () => {
    const hook = jest.fn();
    await db.runInteraction(async (tx) => {
      tx.afterCommit(hook);
    });
    expect(hook).toHaveBeenCalledTimes(1);
  });
});
