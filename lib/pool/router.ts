/**
 * The seam above the pools: the engine asks a router for the pool a call's connection comes
 * from, by intent, and gives every connection back to the pool it came from (`lease.pool`).
 * One pool today (`SinglePoolRouter`); a replica router or a multi-host primary finder is
 * another `PoolRouter`, without a change to the engine or the facade.
 */
import type { PoolStats } from '../core/types.js';
import type { Pool } from './pool.js';

/** What a call will do with its connection: write (or read what it just wrote), or only read. */
export type Intent = 'write' | 'read';

export interface PoolRouter {
  /** The pool a call with this intent takes its connection from. */
  route(intent: Intent): Pool;
  /** Every pool it routes to, the primary first (bootstrap, fail fast, shutdown). */
  pools(): readonly Pool[];
  /** The counts of `Database.stats()`. */
  stats(): PoolStats;
}

/** Every call on one pool. */
export class SinglePoolRouter implements PoolRouter {
  constructor(private readonly pool: Pool) {}

  route(): Pool {
    return this.pool;
  }

  pools(): readonly Pool[] {
    return [this.pool];
  }

  stats(): PoolStats {
    return this.pool.stats();
  }
}
