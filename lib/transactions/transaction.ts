/**
 * A transaction on one connection, as handed to `runInteraction` callbacks. Queries made on
 * it (or, inside its interaction, on its `Database`) run on its connection.
 *
 * @example
 * await db.runInteraction(async (tx) => {
 *   await tx.runOperation('UPDATE accounts SET balance = balance - $1 WHERE id = $2', [10, from]);
 *   await tx.savepoint(async () => audit(tx));       // rolled back alone if audit throws
 *   tx.afterCommit(() => events.emit('transferred')); // only once the COMMIT succeeded
 * });
 */
import type { OperationResult, QueryOptions } from '../core/types.js';
import type { Logger } from '../core/logger.js';
import type { Connection, IsolationLevel } from '../drivers/driver.js';
import { RollbackFailed, TransactionError, type DatabaseError, type ErrorClass, ErrorCode } from '../core/errors.js';
import type { Lease } from '../pool/pool.js';
import type { SqlQuery } from '../sql/template.js';
import { currentScope, runWithTransaction } from './transaction.context.js';

/** How a transactional call relates to a transaction already running, as in Spring. */
export type Propagation =
  /** Join the current transaction, or begin one. The default. */
  | 'required'
  /** Always begin a new transaction on its own connection; the outer one is suspended meanwhile. */
  | 'requiresNew'
  /** A savepoint inside the current transaction (rolled back alone), or a new transaction if none. */
  | 'nested'
  /** Join the current transaction; throw if there is none. */
  | 'mandatory'
  /** Run without a transaction; throw if one is active. */
  | 'never'
  /** Join the current transaction if there is one, else run without. */
  | 'supports'
  /** Run without a transaction, on a pool connection, even if one is active. */
  | 'notSupported';

export type ErrorMatcher = Array<abstract new (...args: never[]) => unknown> | ((error: unknown) => boolean);

export interface TransactionOptions {
  /** The named database. Default: `'default'`. */
  connection?: string;
  isolation?: IsolationLevel;
  readOnly?: boolean;
  /** PostgreSQL: `DEFERRABLE` (with serializable and readOnly, never fails with a serialization error). */
  deferrable?: boolean;
  /** Default: `'required'`. */
  propagation?: Propagation;
  /** Whole-transaction deadline: server side (`SET LOCAL statement_timeout` on PostgreSQL) and client side; ends in `QueryTimeout` and a rollback. */
  timeoutMs?: number;
  /**
   * Re-run the whole interaction on serialization failure (40001), deadlock (40P01, MySQL 1213)
   * or MySQL lock wait timeout (1205). A number: how many times to retry after the first attempt.
   * `{ attempts }`: how many attempts in all. Only where the transaction begins, never when it joins one.
   */
  retry?: number | { attempts: number; initialDelayMs?: number; maxDelayMs?: number };
  /** Roll back only for these errors (classes or a predicate). Default: every error. */
  rollbackFor?: ErrorMatcher;
  /** Commit anyway on these errors (the caller still gets the error). */
  noRollbackFor?: ErrorMatcher;
  /**
   * Settings for the length of the transaction, sent as parameters: `set_config(name, value, true)`
   * on PostgreSQL (gone at COMMIT/ROLLBACK), user variables on MySQL (set back to NULL after it).
   * A function is called when the transaction begins (say, to read the tenant of the current request).
   *
   * @example
   * @Transactional({ settings: () => ({ 'app.tenant_id': tenantOfThisRequest() }) })
   */
  settings?: Record<string, string | number | boolean | null> | (() => Record<string, string | number | boolean | null>);
}

export type TransactionState = 'active' | 'ending' | 'committed' | 'rolledBack';

/**
 * What a Transaction needs from its Database: a private port the `Database` builds for its
 * transactions (not methods of the `Database` itself).
 */
export interface TransactionHost {
  /** The key of this database's frames in the async context (the `Database` itself). */
  readonly owner: object;
  readonly name: string;
  readonly logger: Logger;
  /** What an error means, as the dialect classifies it. */
  classify(error: unknown): ErrorClass;
  runInTransaction(
    tx: Transaction,
    mode: 'rows' | 'operation',
    query: string | SqlQuery,
    params: unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<unknown>;
  streamInTransaction<T>(tx: Transaction, query: string | SqlQuery, params: unknown[] | undefined, options: QueryOptions | undefined): AsyncIterable<T>;
  /** Runs a control statement (BEGIN, SAVEPOINT, COMMIT...) on the transaction's connection. */
  control(tx: Transaction, text: string): Promise<unknown>;
  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string;
}

/**
 * One level of a transaction's savepoint stack: its top level, or a savepoint. Savepoints on
 * one connection are a stack, so the nested scopes of a level run one at a time (the next
 * one's SAVEPOINT goes out once the previous one was released or rolled back), and the
 * level's own statements wait while a nested scope is open: a `ROLLBACK TO SAVEPOINT` then
 * only ever undoes the work of the scope that failed, never that of a concurrent caller.
 */
export class SavepointScope {
  /** The nested scope open now. */
  private child?: SavepointScope;
  private waiting: Array<{ kind: 'statement' | 'scope'; grant(): void; fail(error: unknown): void }> = [];
  /** Statements let through and not yet handed to the connection: a SAVEPOINT must go after them. */
  private sending = 0;
  /** Why the scope no longer admits work: made when first needed (an Error's stack costs microseconds; most scopes close with nobody waiting). */
  private closedBy?: () => Error;
  private closedError?: Error;
  private idleWaiters: Array<() => void> = [];

  constructor(readonly name?: string) {}

  /**
   * Before one of this level's statements is sent: undefined when it may go at once (the usual
   * case, no allocation), else a promise that resolves once no nested scope is open.
   * `sent()` must follow, once the statement was handed to the connection (or failed before).
   */
  admit(): Promise<void> | undefined {
    if (this.closedBy !== undefined) return Promise.reject(this.refusal());
    if (this.child === undefined && this.waiting.length === 0) {
      this.sending++;
      return undefined;
    }
    return new Promise<void>((resolve, reject) =>
      this.waiting.push({
        kind: 'statement',
        grant: () => {
          this.sending++;
          resolve();
        },
        fail: reject,
      }),
    );
  }

  sent(): void {
    if (--this.sending === 0) this.pulse();
  }

  /** Resolves once `child` is this level's open nested scope (after the ones before it ended). */
  enter(child: SavepointScope): Promise<void> {
    if (this.closedBy !== undefined) return Promise.reject(this.refusal());
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({
        kind: 'scope',
        grant: () => {
          this.child = child;
          resolve();
        },
        fail: reject,
      });
      this.pulse();
    });
  }

  leave(child: SavepointScope): void {
    if (this.child === child) this.child = undefined;
    this.pulse();
  }

  /** True while a nested scope is open or waiting. */
  get busy(): boolean {
    return this.child !== undefined || this.waiting.length > 0;
  }

  /** Resolves once no nested scope is open or waiting (those its code started and did not await). */
  idle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** The transaction ended: whatever still waits here is refused with `error`. */
  close(error: () => Error): void {
    this.closedBy = error;
    for (const w of this.waiting.splice(0)) w.fail(this.refusal());
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private refusal(): Error {
    return (this.closedError ??= this.closedBy!());
  }

  private pulse(): void {
    while (this.child === undefined && this.waiting.length > 0) {
      const head = this.waiting[0];
      if (head.kind === 'scope' && this.sending > 0) return;
      this.waiting.shift();
      head.grant();
    }
    if (!this.busy && this.idleWaiters.length > 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}

/** No hooks registered: one shared empty list (never pushed to), instead of two arrays per transaction. */
const NO_HOOKS: Array<() => unknown> = [];

export class Transaction {
  state: TransactionState = 'active';
  /** Set when a joined inner scope failed: the transaction can only roll back. */
  rollbackOnlyCause?: unknown;
  /** Set when `timeoutMs` ran out. */
  timedOut = false;
  /** @internal Set by `Database.cancel()` of the interaction: the transaction can only roll back, with this error. */
  canceled?: DatabaseError;
  /**
   * @internal Set when a statement failed with an error after which the server has already rolled
   * the whole transaction back (a MySQL deadlock): later statements would run in autocommit, so
   * they are refused, and the transaction can only end in a rollback.
   */
  abortCause?: unknown;
  /**
   * @internal Set when a statement ended the transaction on the server (MySQL's implicit commit
   * of DDL, a COMMIT sent as a statement): what ran so far is committed, later statements are
   * refused, and the interaction fails with this error.
   */
  endedOnServer?: TransactionError;
  /** @internal The first statement error since the transaction (or the savepoint it was rolled back to) was clean. */
  statementError?: unknown;
  /** @internal The transaction of `withRollback` (tests): scopes that would begin one become savepoints. */
  rolledBackForTest = false;
  /** @internal True until the connection went back to the pool. */
  holdsConnection = true;
  /** @internal False when the connection is a session's: it stays with the session after the transaction. */
  ownsConnection = true;
  /** @internal The session the transaction was begun in, if any. */
  session?: object;
  /** @internal Settings to undo after the transaction, where the dialect cannot scope them to it (MySQL user variables). */
  settingsToClear?: string[];
  /** @internal The top level of the savepoint stack. */
  readonly root = new SavepointScope();
  /** @internal Streams opened on this transaction and not finished yet. */
  readonly streams = new Set<{ return(): Promise<unknown> }>();
  /** The nested scopes open now (made at the first savepoint: most transactions have none). */
  private scopes?: Set<SavepointScope>;
  private pending = 0;
  private idleWaiters?: Array<() => void>;
  private commitHooks: Array<() => unknown> = NO_HOOKS;
  private rollbackHooks: Array<() => unknown> = NO_HOOKS;
  private savepointCounter = 0;

  constructor(
    private readonly host: TransactionHost,
    /** @internal */ readonly lease: Lease,
    readonly options: TransactionOptions = {},
  ) {}

  /** @internal */
  get connection(): Connection {
    return this.lease.connection;
  }

  get isActive(): boolean {
    return this.state === 'active';
  }

  runQuery<T = Record<string, unknown>>(query: SqlQuery, options?: QueryOptions): Promise<T[]>;
  runQuery<T = Record<string, unknown>>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<T[]>;
  runQuery<T = Record<string, unknown>>(query: string | SqlQuery, params?: unknown[] | QueryOptions, options?: QueryOptions): Promise<T[]> {
    const [p, o] = Array.isArray(params) || params === undefined ? [params, options] : [undefined, params];
    return this.host.runInTransaction(this, 'rows', query, p, o) as Promise<T[]>;
  }

  runOperation(query: SqlQuery, options?: QueryOptions): Promise<OperationResult>;
  runOperation(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): Promise<OperationResult>;
  runOperation(query: string | SqlQuery, params?: unknown[] | QueryOptions, options?: QueryOptions): Promise<OperationResult> {
    const [p, o] = Array.isArray(params) || params === undefined ? [params, options] : [undefined, params];
    return this.host.runInTransaction(this, 'operation', query, p, o) as Promise<OperationResult>;
  }

  stream<T = Record<string, unknown>>(query: string | SqlQuery, params?: unknown[], options?: QueryOptions): AsyncIterable<T> {
    return this.host.streamInTransaction<T>(this, query, params, options);
  }

  /**
   * Runs `fn` inside a savepoint: if it rejects, only its work is rolled back and the error
   * is rethrown; the transaction goes on. Savepoints of one level run one at a time: a second
   * `savepoint()` (or `nested` call) started while one is open waits for it to end, and the
   * level's own statements wait too, so a failing scope never undoes a concurrent one's work.
   */
  async savepoint<R>(fn: (tx: Transaction) => Promise<R>): Promise<R> {
    this.assertActive();
    this.assertNoStream('open a savepoint');
    const parent = currentScope<SavepointScope>(this.host.owner, this) ?? this.root;
    const scope = new SavepointScope(`ndbp_sp_${++this.savepointCounter}`);
    await parent.enter(scope);
    (this.scopes ??= new Set()).add(scope);
    try {
      this.assertActive();
      const name = scope.name!;
      await this.host.control(this, this.host.savepointStatement('create', name));
      const { rollbackOnlyCause, statementError } = this;
      let result: R;
      try {
        result = await runWithTransaction(this.host.owner, this, () => fn(this), scope);
        await scope.idle();
      } catch (error) {
        // The server already ended the whole transaction: there is no savepoint left to return to.
        if (this.abortCause !== undefined || this.endedOnServer !== undefined) throw error;
        await scope.idle().catch(() => {});
        try {
          await this.host.control(this, this.host.savepointStatement('rollback', name));
          await this.host.control(this, this.host.savepointStatement('release', name));
        } catch (rollbackError) {
          this.lease.discard = true;
          throw new RollbackFailed(`rollback to savepoint failed (${(rollbackError as Error).message}); the original error is in originalError`, error, {
            cause: rollbackError,
            database: this.host.name,
          });
        }
        // What failed inside the savepoint was undone with it, so it no longer dooms the
        // transaction (Spring resets rollback-only on a rollback to savepoint too).
        this.rollbackOnlyCause = rollbackOnlyCause;
        this.statementError = statementError;
        throw error;
      }
      await this.host.control(this, this.host.savepointStatement('release', name));
      return result;
    } finally {
      this.scopes?.delete(scope);
      scope.close(
        () =>
          new TransactionError(
            'this savepoint scope has ended; a query issued after its function returned would run outside it. Await every query inside it.',
            {
              database: this.host.name,
              code: ErrorCode.TransactionEnded,
            },
          ),
      );
      parent.leave(scope);
    }
  }

  /** Runs `fn` once the transaction has committed. A hook that throws is logged; it does not change the outcome. */
  afterCommit(fn: () => unknown): void {
    if (this.commitHooks === NO_HOOKS) this.commitHooks = [];
    this.commitHooks.push(fn);
  }

  /** Runs `fn` once the transaction has rolled back. A hook that throws is logged. */
  afterRollback(fn: () => unknown): void {
    if (this.rollbackHooks === NO_HOOKS) this.rollbackHooks = [];
    this.rollbackHooks.push(fn);
  }

  /** @internal The savepoint level of the calling code. */
  currentScope(): SavepointScope {
    return currentScope<SavepointScope>(this.host.owner, this) ?? this.root;
  }

  /** @internal Throws unless queries may still run on this transaction (the leak guard). */
  assertActive(): void {
    if (this.state === 'active') {
      if (this.endedOnServer !== undefined) {
        throw new TransactionError(
          `an earlier statement ended this transaction on the server (${this.endedOnServer.message}); this statement would run outside it, in autocommit, so it was refused`,
          { database: this.host.name, code: ErrorCode.ImplicitCommit, cause: this.endedOnServer },
        );
      }
      if (this.canceled !== undefined) throw this.canceled;
      if (this.abortCause === undefined) return;
      throw new TransactionError(
        `the server already rolled this transaction back (${(this.abortCause as Error)?.message ?? this.abortCause}); ` +
          'a later statement would run outside it, in autocommit. Let the error end the interaction (retry re-runs it).',
        { database: this.host.name, code: ErrorCode.TransactionAborted, cause: this.abortCause },
      );
    }
    throw this.endedError();
  }

  /**
   * @internal Refuses a statement while a stream of this transaction is open: it would queue
   * behind the open cursor on the one connection and wait for ever (the loop reading the stream
   * waits for it in turn).
   */
  assertNoStream(what = 'run a statement'): void {
    if (this.streams.size === 0) return;
    throw new TransactionError(
      `cannot ${what} on this transaction while one of its streams is still being read: it shares the transaction's one ` +
        'connection, and would wait behind the open cursor for ever. Finish (or break out of) the stream first, or collect its rows into an array and loop over that',
      { database: this.host.name, code: ErrorCode.StreamOpen },
    );
  }

  /**
   * @internal Called after each statement of the interaction: if the server is no longer in a
   * transaction, the statement ended it (MySQL commits implicitly around DDL), and what ran so
   * far is committed. Returns the error to fail the statement with.
   */
  checkStillOpen(query: string): TransactionError | undefined {
    if (this.state !== 'active' || this.endedOnServer !== undefined || this.connection.transactionStatus !== 'idle') return undefined;
    this.endedOnServer = new TransactionError(
      'this statement ended the transaction on the server, so the work of the interaction so far is COMMITTED and cannot be rolled back. ' +
        'MySQL and MariaDB commit implicitly before and after DDL (CREATE, ALTER, DROP, RENAME, TRUNCATE, CREATE INDEX …), LOCK TABLES, ' +
        'and account or replication statements; a COMMIT or ROLLBACK sent as a statement ends it on every dialect. ' +
        'Later statements of this interaction are refused and it fails. Run DDL outside transactions (in a migration)',
      { database: this.host.name, code: ErrorCode.ImplicitCommit, query },
    );
    return this.endedOnServer;
  }

  /** @internal */
  track<T>(promise: Promise<T>): Promise<T> {
    this.pending++;
    const done = () => {
      if (--this.pending === 0 && this.idleWaiters) for (const w of this.idleWaiters.splice(0)) w();
    };
    promise.then(done, (error) => {
      if (this.state === 'active' && !(error instanceof TransactionError)) {
        this.statementError ??= error;
        if (this.host.classify(error).endsTransaction) this.abortCause ??= error;
      }
      done();
    });
    return promise;
  }

  /** @internal Statements of this transaction sent and not yet answered. */
  get running(): number {
    return this.pending;
  }

  /** @internal How many queries were still running; waits for them to settle, after closing abandoned streams. */
  async settle(): Promise<number> {
    for (const stream of [...this.streams]) await stream.return().catch(() => {});
    const running = this.pending;
    if (running > 0) await new Promise<void>((resolve) => (this.idleWaiters ??= []).push(resolve));
    return running;
  }

  /** @internal The interaction is over: statements and savepoints still waiting for their turn are refused. */
  close(): void {
    // The state now, not when (if ever) a late statement asks.
    const state = this.state;
    const refusal = () => this.endedError(state);
    this.root.close(refusal);
    for (const scope of this.scopes ?? []) scope.close(refusal);
    this.scopes?.clear();
  }

  /** @internal Forgets the hooks without running them. */
  dropHooks(): void {
    this.commitHooks = NO_HOOKS;
    this.rollbackHooks = NO_HOOKS;
  }

  /** @internal */
  async runHooks(outcome: 'committed' | 'rolledBack'): Promise<void> {
    if (this.commitHooks.length === 0 && this.rollbackHooks.length === 0) return;
    const hooks = outcome === 'committed' ? this.commitHooks : this.rollbackHooks;
    this.commitHooks = NO_HOOKS;
    this.rollbackHooks = NO_HOOKS;
    for (const hook of hooks) {
      try {
        await hook();
      } catch (error) {
        this.host.logger.error(
          `an ${outcome === 'committed' ? 'afterCommit' : 'afterRollback'} hook threw: ${(error as Error)?.message ?? error}`,
          (error as Error)?.stack,
        );
      }
    }
  }

  private endedError(state = this.state): TransactionError {
    return new TransactionError(
      `this transaction has already ${state === 'active' || state === 'ending' ? 'ended its interaction' : state === 'committed' ? 'committed' : 'rolled back'}; ` +
        'a query issued after its interaction returned would run outside it. Await every query inside the interaction.',
      { database: this.host.name, code: ErrorCode.TransactionEnded },
    );
  }
}

export function matches(matcher: ErrorMatcher | undefined, error: unknown): boolean {
  if (!matcher) return false;
  if (typeof matcher === 'function') return matcher(error);
  return matcher.some((cls) => error instanceof cls);
}

/**
 * Serialization failure, deadlock and MySQL lock wait timeout: the errors `retry` re-runs a
 * transaction for. Also a transaction that could only roll back because of one of them (the
 * interaction caught it, or a joined call failed with it): re-running the whole interaction is
 * as safe there, since nothing was committed.
 */
export function isRetryableTransactionError(error: unknown, classify: (error: unknown) => ErrorClass): boolean {
  const e = error as DatabaseError | undefined;
  if (e instanceof TransactionError && (e.code === ErrorCode.TransactionAborted || e.code === ErrorCode.TransactionRollbackOnly)) {
    return e.cause !== undefined && isRetryableTransactionError(e.cause, classify);
  }
  return classify(error).retry !== undefined;
}
