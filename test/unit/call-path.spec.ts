/**
 * The call path on a scripted fake driver, for the guarantees a real server cannot be made to
 * show on cue: a server that ignores a cancel, a death error the driver did not mark as broken,
 * a statement that provably never left the client.
 */
import { ConnectionDead, DatabaseError, QueryTimeout, type Database } from '../../lib/index.js';
import { markNotSent } from '../../lib/drivers/not-sent.js';
import { openDatabase } from '../support/app.js';
import { FakeDriver } from '../support/fakes.js';

describe('call path (scripted fake driver)', () => {
  let driver: FakeDriver;
  let db: Database;
  let close: () => Promise<void>;

  beforeEach(async () => {
    driver = new FakeDriver();
    ({ db, close } = await openDatabase({ driver, pool: { max: 1 } }));
  });
  afterEach(() => close());

  it('a timed-out statement whose server ignores the cancel: the caller gets QueryTimeout at once, the connection is destroyed after the grace period', async () => {
    driver.script = (text) => (text === 'SELECT stuck' ? new Promise<undefined>(() => {}) : undefined);
    const started = Date.now();
    await expect(db.runQuery('SELECT stuck', [], { timeoutMs: 100 })).rejects.toBeInstanceOf(QueryTimeout);
    expect(Date.now() - started).toBeLessThan(900);
    const stuck = driver.connections[0];
    expect(stuck.cancels).toBe(1);
    // The grace period (1 s) passes with no answer: the connection is destroyed, and the next call gets a new one.
    expect(await db.runQuery('SELECT next')).toEqual([]);
    expect(stuck.destroyed).toBe(true);
    expect(driver.log.at(-1)).toBe('2: SELECT next');
  });

  it('a death error the driver did not mark as broken still discards the connection, and the caller gets ConnectionDead', async () => {
    driver.script = (text, connection) =>
      text === 'SELECT lost' && connection.serverId === 1 ? new DatabaseError('read ECONNRESET', { code: 'ECONNRESET' }) : undefined;
    await expect(db.runQuery('SELECT lost')).rejects.toBeInstanceOf(ConnectionDead);
    // Destroyed on release, though the fake never set `broken` itself.
    expect(driver.connections[0].destroyed).toBe(true);
    await db.runQuery('SELECT after');
    // On a new connection (the reconnect's or one the call opened: which comes first is a matter of ticks).
    expect(driver.log.filter((line) => line.endsWith('SELECT after'))).toEqual([expect.not.stringMatching(/^1: /)]);
  });

  it('a statement that provably never left the client runs again on a fresh connection, and the caller never sees the failure', async () => {
    driver.script = (text, connection) =>
      connection.serverId === 1 && text === 'INSERT once' ? markNotSent(new DatabaseError('write EPIPE', { code: 'EPIPE' })) : { rows: [], affectedRows: 1 };
    expect(await db.runOperation('INSERT once')).toEqual({ affectedRows: 1 });
    // Twice in all: once on the first connection, where it was never sent, and once on a new one.
    expect(driver.log).toEqual(['1: INSERT once', expect.stringMatching(/^[2-9]: INSERT once$/)]);
  });

  it('a statement that may have reached the server is not run again', async () => {
    driver.script = (text, connection) =>
      connection.serverId === 1 ? new DatabaseError('read ECONNRESET', { code: 'ECONNRESET' }) : { rows: [], affectedRows: 1 };
    await expect(db.runOperation('INSERT maybe')).rejects.toBeInstanceOf(ConnectionDead);
    expect(driver.log).toEqual(['1: INSERT maybe']);
  });
});
