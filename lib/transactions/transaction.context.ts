/**
 * Where the current transaction of each `Database` is found: one AsyncLocalStorage whose
 * store is a chain of frames, innermost first. A frame with `tx: null` hides the outer
 * transaction of its database (`notSupported`, `never`). One lookup per call.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

interface Frame {
  readonly owner: object;
  readonly tx: unknown;
  readonly parent: Frame | undefined;
}

const storage = new AsyncLocalStorage<Frame>();

/** The transaction of `owner` (a Database) active in this async context, if any. */
export function currentTransaction<T>(owner: object): T | undefined {
  for (let frame = storage.getStore(); frame !== undefined; frame = frame.parent) {
    if (frame.owner === owner) return (frame.tx ?? undefined) as T | undefined;
  }
  return undefined;
}

/** Runs `fn` with `tx` (or, with null, no transaction) as `owner`'s current one. */
export function runWithTransaction<R>(owner: object, tx: unknown, fn: () => R): R {
  return storage.run({ owner, tx, parent: storage.getStore() }, fn);
}
