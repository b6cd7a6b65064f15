/**
 * Open databases by name, for what cannot be injected: `@Transactional()` on any provider
 * method finds its `Database` here. Filled when a `Database` starts, emptied when it closes.
 * A name may be registered more than once (several apps in one process, as in tests): the
 * most recent open one wins, and closing it uncovers the previous one.
 */
import { DatabaseError } from '../errors.js';
import type { Database } from '../database/database.js';

const databases = new Map<string, Database[]>();

export function registerDatabase(db: Database): void {
  const list = databases.get(db.name) ?? [];
  list.push(db);
  databases.set(db.name, list);
}

export function unregisterDatabase(db: Database): void {
  const list = databases.get(db.name);
  if (!list) return;
  const i = list.lastIndexOf(db);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) databases.delete(db.name);
}

export function findDatabase(name: string): Database {
  const list = databases.get(name);
  const db = list?.[list.length - 1];
  if (!db) {
    const known = [...databases.keys()];
    throw new DatabaseError(
      `no open database named "${name}"; ${known.length ? `open ones: ${known.join(', ')}` : 'import DatabaseModule.forRoot() first'}` +
        ` (TransactionOptions.connection / @OnNotify connection)`,
      { code: 'UNKNOWN_DATABASE' },
    );
  }
  return db;
}

/** The open databases, one per name (the most recent), for a check of them all. */
export function listDatabases(): Database[] {
  return [...databases.values()].map((list) => list[list.length - 1]);
}
