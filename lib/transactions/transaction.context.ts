/**
 * Where the current transaction of each `Database` is found: one AsyncLocalStorage whose
 * store is a chain of frames, innermost first. A transaction frame with `tx: null` hides the
 * outer transaction of its database (`notSupported`, `never`); its `scope` is the savepoint
 * level the code runs at. A stream frame records a stream opened by the code of this context,
 * so that a call which waits for a connection the same code holds is refused at once instead
 * of waiting for ever. One lookup per call; none at all outside transactions and streams.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

/** Something that holds a pool connection on behalf of the code of a context. */
export interface LeaseHolder {
  /** The lease held now, or undefined (not yet taken, given back, or not blocking this context). */
  heldLease(): object | undefined;
  /** True once it holds no lease and never will again. */
  readonly released: boolean;
}

interface Frame {
  readonly owner: object;
  readonly kind: 'tx' | 'stream' | 'session';
  /** kind 'tx': the transaction, or null for "no transaction here". */
  readonly tx: unknown;
  /** kind 'tx': the savepoint scope the code runs in (undefined: the transaction's top level). */
  readonly scope?: unknown;
  /** kind 'stream': the stream; kind 'session': the session (it holds its connection too). */
  readonly holder?: LeaseHolder;
  readonly parent: Frame | undefined;
}

const storage = new AsyncLocalStorage<Frame>();

/** The transaction of `owner` (a Database) active in this async context, if any. */
export function currentTransaction<T>(owner: object): T | undefined {
  for (let frame = storage.getStore(); frame !== undefined; frame = frame.parent) {
    if (frame.owner === owner && frame.kind === 'tx') return (frame.tx ?? undefined) as T | undefined;
  }
  return undefined;
}

/**
 * What the code of this context runs in on `owner`: its transaction, else its session (a pinned
 * connection), else nothing (the pool). A `null` transaction frame (`notSupported`, `never`)
 * hides outer transactions, not sessions. One walk, no allocation.
 */
export function currentWork<T extends object, S extends object>(owner: object): T | S | undefined {
  let hidden = false;
  for (let frame = storage.getStore(); frame !== undefined; frame = frame.parent) {
    if (frame.owner !== owner) continue;
    if (frame.kind === 'tx') {
      if (frame.tx && !hidden) return frame.tx as T;
      hidden = true;
    } else if (frame.kind === 'session') return frame.holder as unknown as S;
  }
  return undefined;
}

/** The session (pinned connection) of `owner` the code of this context runs in, if any. */
export function currentSession<S extends object>(owner: object): S | undefined {
  for (let frame = storage.getStore(); frame !== undefined; frame = frame.parent) {
    if (frame.owner === owner && frame.kind === 'session') return frame.holder as unknown as S;
  }
  return undefined;
}

/** Runs `fn` with `session` as `owner`'s session: its calls run on the session's connection. */
export function runInSession<R>(owner: object, session: LeaseHolder, fn: () => R): R {
  return storage.run({ owner, kind: 'session', tx: undefined, holder: session, parent: storage.getStore() }, fn);
}

/** The savepoint scope of `tx` the current code runs in, or undefined for its top level. */
export function currentScope<S>(owner: object, tx: object): S | undefined {
  for (let frame = storage.getStore(); frame !== undefined; frame = frame.parent) {
    if (frame.owner === owner && frame.kind === 'tx') return frame.tx === tx ? (frame.scope as S | undefined) : undefined;
  }
  return undefined;
}

/** Runs `fn` with `tx` (or, with null, no transaction) as `owner`'s current one, at savepoint `scope`. */
export function runWithTransaction<R>(owner: object, tx: unknown, fn: () => R, scope?: unknown): R {
  return storage.run({ owner, kind: 'tx', tx, scope, parent: storage.getStore() }, fn);
}

/**
 * Marks the rest of the calling code (the function that opened a stream with `for await`) as
 * holding `holder`'s connection. `enterWith` is the only way to reach the loop body of the
 * caller; the frame changes nothing else (transaction lookups pass through it).
 */
export function enterHolder(owner: object, holder: LeaseHolder): void {
  let parent = storage.getStore();
  // Streams read one after another in one function must not grow the chain: finished ones are skipped.
  while (parent !== undefined && parent.kind === 'stream' && parent.holder?.released) parent = parent.parent;
  storage.enterWith({ owner, kind: 'stream', tx: undefined, holder, parent });
}

/**
 * The pool connections of `owner` that the code of this context holds itself: those of the
 * transactions it runs in (suspended ones included) and of the streams it is reading. A call
 * from here that waits for a connection while these are all of the pool waits for itself.
 */
export function heldLeases(owner: object, txLease: (tx: unknown) => object | undefined): Set<object> {
  const held = new Set<object>();
  for (let frame = storage.getStore(); frame !== undefined; frame = frame.parent) {
    if (frame.owner !== owner) continue;
    const lease = frame.kind === 'tx' ? (frame.tx ? txLease(frame.tx) : undefined) : frame.holder?.heldLease();
    if (lease) held.add(lease);
  }
  return held;
}
