/**
 * A session: one pooled connection pinned for a scope (a job, a request), for the state that
 * lives in a session rather than a transaction: settings such as PostgreSQL's `app.tenant_id`
 * for row-level security, advisory locks, temporary tables, `search_path`, MySQL user variables.
 * Everything run through the session (and, inside `db.session(fn)`, everything run on its
 * `Database`) uses that connection. When the session ends the connection is reset before the
 * pool hands it to anyone else, so nothing set for one tenant is ever seen by the next.
 *
 * @example
 * await db.session(async () => {
 *   await orders.listForCurrentTenant();           // plain db.runQuery calls: on the session's connection
 * }, { settings: { 'app.tenant_id': tenantId } }); // sent as parameters (set_config / user variables)
 */
import type { Readable } from 'node:stream';
import { InvalidParameter, TransactionError, ErrorCode } from '../core/errors.js';
import type { Lease } from '../pool/pool.js';
import type { SqlQuery } from '../sql/template.js';
import type { LeaseHolder } from '../transactions/transaction.context.js';
import type { Transaction, TransactionOptions } from '../transactions/transaction.js';
import type { OperationResult, QueryOptions, Row } from '../core/types.js';

/** Session or transaction settings: names as the server spells them (`app.tenant_id`, `search_path`), values sent as parameters. */
export type Settings = Record<string, string | number | boolean | null>;

export interface SessionOptions {
  /**
   * Applied when the session takes its connection: `set_config(name, value, false)` on
   * PostgreSQL, user variables (`@name`) on MySQL. SQLite has no session settings.
   */
  settings?: Settings;
}

/** What a session needs from its Database. */
export interface SessionHost {
  readonly name: string;
  /** Takes a pool connection for the session and applies its settings. */
  openSession(session: DatabaseSession): Promise<Lease>;
  /** Gives the connection back, reset (or destroyed). */
  closeSession(session: DatabaseSession): Promise<void>;
  /** Runs `fn` with the session as its Database's current one. */
  inSession<R>(session: DatabaseSession, fn: () => R): R;
  applySettings(session: DatabaseSession, settings: Settings): Promise<void>;
  runQuery<T>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  runOperation(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<OperationResult>;
  runInteraction<R>(fn: (tx: Transaction) => Promise<R>, options?: TransactionOptions): Promise<R>;
  stream<T>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): AsyncIterable<T> & { readable(): Readable };
}

const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z_][A-Za-z0-9_$]*)*$/;

/** Checks settings once, where they are given: a bad name or value is refused before anything is sent. */
export function checkSettings(settings: unknown, where: string): Array<[string, string | number | boolean | null]> {
  if (settings === undefined) return [];
  if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) {
    throw new InvalidParameter(`${where}: settings must be an object of name → value, such as { 'app.tenant_id': '42' }`);
  }
  const out: Array<[string, string | number | boolean | null]> = [];
  for (const [name, value] of Object.entries(settings)) {
    if (!SETTING_NAME.test(name) || name.length > 63) {
      throw new InvalidParameter(`${where}: the setting name "${name.slice(0, 40)}" is not a plain name (letters, digits, _ and dots, at most 63 characters)`);
    }
    if (value !== null && !['string', 'number', 'boolean'].includes(typeof value)) {
      throw new InvalidParameter(`${where}: the setting "${name}" must be a string, number, boolean or null (got ${typeof value})`);
    }
    out.push([name, value as string | number | boolean | null]);
  }
  return out;
}

export class DatabaseSession implements LeaseHolder {
  /** @internal The pinned connection, once taken. */
  lease?: Lease;
  /** @internal Streams being read on the session's connection. */
  readonly streams = new Set<{ return(): Promise<unknown> }>();
  /** @internal A transaction runs on the session's connection now. */
  transaction?: Transaction;
  private opening?: Promise<Lease>;
  private ended = false;

  constructor(
    private readonly host: SessionHost,
    /** @internal The settings applied when the connection is taken. */
    readonly settings: Settings = {},
  ) {
    checkSettings(settings, 'session');
  }

  /** True once the session ended: its connection went back to the pool, reset. */
  get isEnded(): boolean {
    return this.ended;
  }

  /** @internal The session's connection (taken at the first call). */
  connect(): Promise<Lease> {
    if (this.ended) return Promise.reject(this.endedError());
    if (this.lease) return Promise.resolve(this.lease);
    this.opening ??= this.host.openSession(this).then(
      (lease) => {
        this.lease = lease;
        if (this.ended) {
          // Ended while the connection was being taken: give it back at once.
          void this.host.closeSession(this);
          throw this.endedError();
        }
        return lease;
      },
      (error: unknown) => {
        this.opening = undefined;
        throw error;
      },
    );
    return this.opening;
  }

  heldLease(): object | undefined {
    return this.ended ? undefined : this.lease;
  }

  get released(): boolean {
    return this.ended;
  }

  runQuery<T = Row>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<T[]> {
    return this.host.inSession(this, () => this.host.runQuery<T>(query, params, options));
  }

  runOperation(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<OperationResult> {
    return this.host.inSession(this, () => this.host.runOperation(query, params, options));
  }

  /** A transaction on the session's connection; `settings` of the session stay, the transaction's own are local to it. */
  runInteraction<R>(fn: (tx: Transaction) => Promise<R>, options?: TransactionOptions): Promise<R> {
    return this.host.inSession(this, () => this.host.runInteraction(fn, options));
  }

  stream<T = Row>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): AsyncIterable<T> & { readable(): Readable } {
    const inner = this.host.inSession(this, () => this.host.stream<T>(query, params, options));
    return {
      [Symbol.asyncIterator]: () => this.host.inSession(this, () => inner[Symbol.asyncIterator]()),
      readable: () => this.host.inSession(this, () => inner.readable()),
    };
  }

  /** Runs `fn` with this session as its Database's current one: every call on the Database inside uses its connection. */
  run<R>(fn: () => R): R {
    return this.host.inSession(this, fn);
  }

  /** Applies more settings to the session (session-wide, until it ends). */
  async set(settings: Settings): Promise<void> {
    checkSettings(settings, 'session.set()');
    await this.host.applySettings(this, settings);
    Object.assign(this.settings, settings);
  }

  /** Ends the session: its connection is reset and given back to the pool. Later calls are refused. */
  async release(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    if (this.opening && !this.lease) await this.opening.catch(() => {});
    if (this.lease) await this.host.closeSession(this);
  }

  private endedError(): TransactionError {
    return new TransactionError(`this session of database "${this.host.name}" has ended; its connection went back to the pool`, {
      code: ErrorCode.SessionEnded,
      database: this.host.name,
    });
  }
}
