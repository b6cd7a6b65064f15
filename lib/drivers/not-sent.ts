/**
 * Errors of statements that provably never left the client: the connection was already closed
 * when the statement was handed to it (an idle socket the server or the network reset, found
 * only when written to). Such a statement had no effect, so the pool path runs it again on a
 * fresh connection. Kept in a WeakSet rather than a field, so that the mark costs nothing and
 * shows nowhere.
 */
const notSent = new WeakSet<object>();

export function markNotSent<E extends object>(error: E): E {
  notSent.add(error);
  return error;
}

export function wasNotSent(error: unknown): boolean {
  return typeof error === 'object' && error !== null && notSent.has(error);
}

/** A socket error raised while writing (EPIPE, or ECONNRESET on write): the bytes were not accepted. */
export function isWriteFailure(error: unknown): boolean {
  const e = error as { syscall?: unknown; code?: unknown } | undefined;
  return e?.syscall === 'write' && (e.code === 'EPIPE' || e.code === 'ECONNRESET' || e.code === 'ERR_STREAM_DESTROYED');
}
