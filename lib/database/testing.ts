/**
 * Test support: run a test's body in a transaction that is always rolled back, so a test
 * against a real server leaves nothing behind and needs no cleanup.
 */
import type { Transaction } from '../transactions/transaction.js';
import { runRolledBack } from '../transactions/transaction.runner.js';
import { transactionPortOf, type Database } from './database.js';

/**
 * Runs `fn` in a transaction of `db` that is rolled back at the end, whatever happens. Code
 * under test that uses `@Transactional()` or `runInteraction` runs inside it: a scope that would
 * begin its own transaction gets a savepoint instead (its failure still undoes just its work),
 * `requiresNew` included, so nothing it does is committed; `afterCommit` hooks never run. Only
 * `db` is covered: wrap each database the test writes to.
 *
 * @example
 * it('renames a user', () =>
 *   withRollback(db, async () => {
 *     await users.rename('glyph', 'Glyph');             // @Transactional inside: a savepoint here
 *     expect(await users.find('glyph')).toMatchObject({ name: 'Glyph' });
 *   }));                                                // rolled back: the table is as before
 */
export function withRollback<R>(db: Database, fn: (tx: Transaction) => Promise<R>): Promise<R> {
  return runRolledBack(transactionPortOf(db), fn);
}
