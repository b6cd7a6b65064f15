/**
 * The private port through which a `Database`'s transactions reach it: BEGIN on a pool (or
 * session) connection, statements and streams inside the transaction, savepoints, COMMIT and
 * ROLLBACK, the statements that undo session state at its end. Not part of the `Database` a user
 * injects.
 */
import type { Readable } from 'node:stream';
import type { TraceSpan } from '../telemetry/tracing.js';
import { settlesWithin } from '../core/timers.js';
import { QueryTimeout, type ErrorClass } from '../core/errors.js';
import type { QueryOptions } from '../core/types.js';
import type { ExecuteOptions, ResultSet } from '../drivers/driver.js';
import type { Lease } from '../pool/pool.js';
import type { SqlQuery } from '../sql/template.js';
import { currentSession } from '../transactions/transaction.context.js';
import type { TransactionRunnerHost } from '../transactions/transaction.runner.js';
import { Transaction, type TransactionOptions } from '../transactions/transaction.js';
import { CallHandle } from './call.js';
import type { Engine } from './engine.js';
import { checkSettings, type DatabaseSession } from './session.js';

/** How BEGIN, COMMIT, ROLLBACK, SAVEPOINT and SET are sent: no rows to shape, and mysql2's cheaper positional path. */
const CONTROL: ExecuteOptions = { rowMode: 'object' };

/** Each open transaction's span (OpenTelemetry), when tracing is on. */
const spans = new WeakMap<Transaction, TraceSpan>();
/** The cancel request of an interrupted transaction, until it has reached the server. */
const cancels = new WeakMap<Transaction, Promise<void>>();

export class TransactionPort implements TransactionRunnerHost {
  constructor(private readonly engine: Engine) {}

  get owner(): object {
    return this.engine.owner;
  }

  get name(): string {
    return this.engine.name;
  }

  get logger() {
    return this.engine.logger;
  }

  classify(error: unknown): ErrorClass {
    return this.engine.driver.classify(error);
  }

  async end(tx: Transaction, how: 'commit' | 'rollback'): Promise<'committed' | 'rolledBack'> {
    const { commit, rollback } = this.engine.driver.endStatements;
    // After an interruption, the cancel request must have reached the server before ROLLBACK is sent: a late one could
    // cancel the ROLLBACK itself (the statement may have ended first, by the server's own statement timeout).
    const cancel = cancels.get(tx);
    if (cancel && how === 'rollback') await settlesWithin(cancel, this.engine.interruptGraceMs);
    let result: ResultSet;
    try {
      result = await this.control(tx, how === 'commit' ? commit : rollback);
    } catch (error) {
      // A COMMIT whose answer was lost: the runner reports CommitOutcomeUnknown; the span says so too.
      if (how === 'commit') spans.get(tx)?.setAttribute('nestjs_dbpool.transaction.commit_failed', true);
      throw error;
    }
    if (how === 'rollback' || this.engine.driver.commitRolledBack?.(result)) return 'rolledBack';
    // What it wrote, replicas must have replayed before reads that must see it go there.
    if (this.engine.replicas && !tx.options.readOnly && tx.lease.pool === this.engine.pool) await this.engine.replicas.afterWrite(tx.lease.connection);
    return 'committed';
  }

  /**
   * Takes a connection and runs BEGIN (and the server-side timeout, and the settings)
   * on it. Inside a session whose connection runs no transaction, that connection; else one
   * from the pool, which then gets the session's settings for the length of the transaction.
   */
  async begin(options: TransactionOptions): Promise<Transaction> {
    this.engine.assertUsable();
    // The transaction's span, child of the caller's: BEGIN, the statements and the end are in it.
    const span = this.engine.tracer?.transaction();
    try {
      const tx = await this.beginTraced(options, span);
      if (span) spans.set(tx, span);
      return tx;
    } catch (error) {
      this.engine.tracer?.end(span, error);
      throw error;
    }
  }

  /** Runs `fn` (the interaction) with the transaction's span active, so that its statements are the span's children. */
  within<R>(tx: Transaction, fn: () => R): R {
    const tracer = this.engine.tracer;
    return tracer ? tracer.within(spans.get(tx), fn) : fn();
  }

  private async beginTraced(options: TransactionOptions, span: TraceSpan | undefined): Promise<Transaction> {
    const session = currentSession<DatabaseSession>(this.owner);
    const onSession = session !== undefined && session.transaction === undefined;
    let lease: Lease;
    if (onSession) {
      lease = await this.engine.sessionLease(session);
    } else {
      const call = new CallHandle(this.engine);
      // Taking the connection for BEGIN is bounded like a query: by queryTimeoutMs, if set.
      if (this.engine.queryTimeoutMs > 0) call.deadline(this.engine.queryTimeoutMs);
      try {
        // A read-only transaction goes to a replica that has what the caller must see, when there is one.
        const replicas = this.engine.replicas;
        lease = (options.readOnly && replicas ? await this.engine.replicaLease(replicas, call) : undefined) ?? (await this.engine.acquire(call));
      } finally {
        call.settle();
      }
      this.engine.tracer?.waited(span, call);
    }
    const tx = new Transaction(this, lease, options);
    tx.ownsConnection = !onSession;
    tx.session = session;
    if (onSession) session.transaction = tx;
    try {
      const given = typeof options.settings === 'function' ? options.settings() : options.settings;
      const settings = [...(session && !onSession ? checkSettings(session.settings, 'session') : []), ...checkSettings(given, 'TransactionOptions.settings')];
      for (const statement of this.engine.driver.beginStatements(options)) await this.control(tx, statement);
      if (options.timeoutMs && options.timeoutMs > 0) {
        const statement = this.engine.driver.transactionTimeoutStatement?.(options.timeoutMs);
        if (statement) await this.control(tx, statement);
      }
      if (settings.length > 0) {
        const statement = this.engine.settingsStatement(settings, true);
        await this.control(tx, statement.text, statement.values);
        if (!this.engine.driver.localSettings) tx.settingsToClear = settings.map(([name]) => name);
      }
    } catch (error) {
      await this.finish(tx);
      throw error;
    }
    return tx;
  }

  async finish(tx: Transaction): Promise<void> {
    if (tx.state === 'active' || tx.state === 'ending') tx.state = 'rolledBack';
    const after = [...(this.engine.driver.finishStatements?.(tx.options) ?? [])];
    const session = tx.ownsConnection ? undefined : (tx.session as DatabaseSession | undefined);
    if (tx.settingsToClear) {
      // Settings the dialect cannot scope to the transaction (MySQL user variables) are undone, and the session's own restored.
      after.push(this.engine.driver.clearSettingsStatement!(tx.settingsToClear));
    }
    if (after.length > 0 && !tx.lease.discard && !tx.connection.broken) {
      try {
        for (const statement of after) await this.control(tx, statement);
        const own = session ? checkSettings(session.settings, 'session') : [];
        if (tx.settingsToClear && own.length > 0) {
          const restore = this.engine.settingsStatement(own, false);
          await this.control(tx, restore.text, restore.values);
        }
      } catch {
        tx.lease.discard = true;
      }
    }
    tx.holdsConnection = false;
    if (tx.ownsConnection) tx.lease.pool.release(tx.lease);
    else if (session && session.transaction === tx) session.transaction = undefined;
    const span = spans.get(tx);
    if (span) {
      spans.delete(tx);
      span.setAttribute(
        'nestjs_dbpool.transaction.outcome',
        tx.state === 'committed' ? 'committed' : tx.state === 'rolledBack' ? 'rolled_back' : String(tx.state),
      );
      this.engine.tracer?.end(span);
    }
  }

  interrupt(tx: Transaction): void {
    tx.lease.discard = true;
    cancels.set(
      tx,
      tx.connection.cancel().catch(() => {}),
    );
  }

  isDeathError(error: unknown): boolean {
    return this.engine.detector.isDeathError(error);
  }

  async control(tx: Transaction, text: string, values: unknown[] = []): Promise<ResultSet> {
    const limitMs = this.engine.queryTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    try {
      const pending = tx.connection.execute(text, values, CONTROL);
      if (limitMs > 0) {
        // BEGIN/COMMIT/ROLLBACK/SAVEPOINT get queryTimeoutMs too. No answer: the connection is destroyed, which ends the
        // statement with a connection error, so an unanswered COMMIT becomes CommitOutcomeUnknown, never a hang.
        timer = setTimeout(() => {
          timedOut = true;
          tx.lease.discard = true;
          tx.connection.destroy();
        }, limitMs);
      }
      return await pending;
    } catch (error) {
      let e = this.engine.failed(error);
      if (timedOut) {
        e = new QueryTimeout(`${text} on database "${this.engine.name}" got no answer within ${limitMs} ms (queryTimeoutMs); the connection was destroyed`, {
          timeoutMs: limitMs,
          query: text,
          dialect: this.engine.dialect,
          database: this.engine.name,
          cause: e,
        });
      }
      if (this.engine.detector.isDeathError(e)) tx.lease.discard = true;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string {
    return this.engine.driver.savepointStatement(kind, name);
  }

  runInTransaction(
    tx: Transaction,
    mode: 'rows' | 'operation',
    query: string | SqlQuery,
    params: unknown[] | undefined,
    options: QueryOptions | undefined,
  ): Promise<unknown> {
    return this.engine.call(options, async (call) => {
      const { text, values } = this.engine.compile(query, params);
      return this.engine.shape(mode, await tx.track(this.executeOnTransaction(tx, call, text, values, this.engine.executeOptions(call, options))));
    });
  }

  async executeOnTransaction(tx: Transaction, call: CallHandle, text: string, values: unknown[], exec: ExecuteOptions): Promise<ResultSet> {
    if (tx.timedOut) {
      throw new QueryTimeout(`transaction on database "${this.engine.name}" exceeded its timeoutMs (${tx.options.timeoutMs} ms)`, {
        database: this.engine.name,
        timeoutMs: tx.options.timeoutMs,
        query: text,
      });
    }
    tx.assertActive();
    tx.assertNoStream();
    // The transaction's own deadline governs the server side inside it.
    if (tx.options.timeoutMs && exec.statementTimeoutMs !== undefined) exec = { ...exec, statementTimeoutMs: undefined };
    // Statements of a savepoint level wait while one of its nested scopes is open (see SavepointScope).
    const scope = tx.currentScope();
    const admitted = scope.admit();
    let pending: Promise<ResultSet>;
    try {
      if (admitted) {
        await admitted;
        tx.assertActive();
        tx.assertNoStream();
      }
      // run() hands the statement to the connection before its first await: its place in the connection's queue is fixed here.
      pending = this.engine.run(tx.connection, call, text, values, exec);
    } finally {
      scope.sent();
    }
    let result: ResultSet;
    try {
      result = await pending;
    } catch (error) {
      if (call.interruption || this.engine.detector.isDeathError(error)) tx.lease.discard = true;
      throw error;
    }
    const ended = tx.checkStillOpen(text);
    if (ended) throw ended;
    if (tx.ownsConnection) this.engine.markIfSessionChanged(tx.lease, text);
    return result;
  }

  streamInTransaction<T>(
    tx: Transaction,
    query: string | SqlQuery,
    params: unknown[] | undefined,
    options: QueryOptions | undefined,
  ): AsyncIterable<T> & { readable(): Readable } {
    return this.engine.rowStream<T>(options, async (iterator) => {
      tx.assertActive();
      tx.assertNoStream('open a second stream');
      const { text, values } = this.engine.compile(query, params);
      const scope = tx.currentScope();
      const admitted = scope.admit();
      if (admitted) await admitted;
      // Closed by the transaction when its interaction ends, if the consumer abandoned it.
      tx.streams.add(iterator);
      return {
        connection: tx.connection,
        text,
        values,
        opened: () => scope.sent(),
        finish: (error?: unknown) => {
          if (error !== undefined && this.engine.detector.isDeathError(error)) tx.lease.discard = true;
          tx.streams.delete(iterator);
        },
      };
    });
  }

  get interruptGraceMs(): number {
    return this.engine.interruptGraceMs;
  }
}
