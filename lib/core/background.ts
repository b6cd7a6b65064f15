/** Where background work runs. */
import { AsyncResource } from 'node:async_hooks';

/**
 * The context of background work: captured when this module loads, before any request or
 * transaction exists, so that what runs in it (reconnect loops, recovery handlers, the
 * listener's connection and deliveries, pool housekeeping, health probes) never inherits the
 * transaction, or any other AsyncLocalStorage value, of the call that happened to start it.
 */
const background = new AsyncResource('nestjs-dbpool.background');

/** Runs `fn` in the background context: no transaction, no caller's context. */
export function inBackground<R>(fn: () => R): R {
  return background.runInAsyncScope(fn);
}
