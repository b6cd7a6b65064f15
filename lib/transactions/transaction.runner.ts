/**
 * Runs an interaction under a `TransactionOptions`: propagation decided in one switch, then
 * BEGIN / COMMIT / ROLLBACK with the rules the README states (rollback rules, RollbackFailed,
 * CommitOutcomeUnknown, the leak guard, afterCommit hooks, retry on serialization failure).
 */
import { CommitOutcomeUnknown, ConfigurationError, DatabaseError, QueryTimeout, RollbackFailed, TransactionError, ErrorCode } from '../core/errors.js';
import { backoff } from '../resilience/backoff.js';
import { currentTransaction, runWithTransaction } from './transaction.context.js';
import { isRetryableTransactionError, matches, Transaction, type TransactionHost, type TransactionOptions } from './transaction.js';

/** What the runner needs from the Database beyond what a Transaction needs (the same private port). */
export interface TransactionRunnerHost extends TransactionHost {
  /**
   * Sends COMMIT or ROLLBACK. A COMMIT resolves `'rolledBack'` when the server rolled back
   * instead, without an error (PostgreSQL, after a failed statement whose error was caught).
   */
  end(tx: Transaction, how: 'commit' | 'rollback'): Promise<'committed' | 'rolledBack'>;
  /** Takes a connection and runs BEGIN (and the server-side timeout) on it. */
  begin(options: TransactionOptions): Promise<Transaction>;
  /** Gives the connection back (destroyed if the lease says discard), after the driver's end-of-transaction statements. */
  finish(tx: Transaction): Promise<void>;
  /** Cancels the statement running on the transaction's connection, if any. */
  interrupt(tx: Transaction): void;
  /** How long an interrupted statement may take to stop before its connection is destroyed. */
  readonly interruptGraceMs: number;
  isDeathError(error: unknown): boolean;
  /** Runs the interaction with the transaction's span active (tracing), when there is one. */
  within?<R>(tx: Transaction, fn: () => R): R;
}

/**
 * The cancel of one `runInteraction` (`Database.cancel(promise)`): possible when the
 * interaction began its own transaction, which is then rolled back; refused when it joined
 * one (canceling would end the caller's transaction too) or runs without one.
 */
export class InteractionControl {
  canceled?: DatabaseError;
  /** Why this interaction cannot be canceled, once its propagation decided it. */
  refusal?: string;
  private onCancel?: (error: DatabaseError) => void;

  cancel(error: DatabaseError): void {
    if (this.refusal !== undefined) {
      throw new TransactionError(this.refusal, { code: ErrorCode.CancelNotSupported, database: error.database });
    }
    if (this.canceled !== undefined) return;
    this.canceled = error;
    this.onCancel?.(error);
  }

  /** The running attempt's interrupt; called at once if the cancel came first. */
  bind(onCancel: ((error: DatabaseError) => void) | undefined): void {
    this.onCancel = onCancel;
    if (onCancel && this.canceled) onCancel(this.canceled);
  }
}

export function runTransactional<R>(
  host: TransactionRunnerHost,
  options: TransactionOptions,
  fn: (tx: Transaction) => Promise<R>,
  control?: InteractionControl,
): Promise<R> {
  const current = currentTransaction<Transaction>(host.owner);
  const propagation = options.propagation ?? 'required';
  if (current?.rolledBackForTest) return inTestTransaction(current, propagation, options, fn);
  if (control && current && propagation !== 'requiresNew' && propagation !== 'notSupported') {
    control.refusal =
      `this interaction ${propagation === 'nested' ? 'runs in a savepoint of' : 'joined'} an outer transaction of database "${host.name}"; ` +
      'canceling it would end that transaction too: cancel the outer runInteraction instead';
  } else if (control && (propagation === 'never' || propagation === 'supports' || propagation === 'notSupported')) {
    control.refusal = `this interaction runs without a transaction (propagation "${propagation}"); cancel its queries instead`;
  }
  switch (propagation) {
    case 'required':
      return current ? join(current, options, fn) : beginWithRetry(host, options, fn, control);
    case 'requiresNew':
      return beginWithRetry(host, options, fn, control);
    case 'nested':
      return current ? current.savepoint(fn) : beginWithRetry(host, options, fn, control);
    case 'mandatory':
      if (!current) {
        return Promise.reject(
          new TransactionError(`propagation "mandatory" needs an active transaction on database "${host.name}", and there is none`, {
            code: ErrorCode.TransactionRequired,
          }),
        );
      }
      return join(current, options, fn);
    case 'never':
      if (current) {
        return Promise.reject(
          new TransactionError(`propagation "never" forbids an active transaction, and database "${host.name}" has one`, {
            code: ErrorCode.TransactionForbidden,
          }),
        );
      }
      return runWithTransaction(host.owner, null, () => fn(undefined as unknown as Transaction));
    case 'supports':
      return current ? join(current, options, fn) : fn(undefined as unknown as Transaction);
    case 'notSupported':
      return runWithTransaction(host.owner, null, () => fn(undefined as unknown as Transaction));
    default:
      return Promise.reject(
        new ConfigurationError(
          `unknown propagation "${String(propagation)}"; accepted: required, requiresNew, nested, mandatory, never, supports, notSupported`,
          { option: 'propagation', database: host.name },
        ),
      );
  }
}

/**
 * Inside `withRollback` (tests): everything runs in the test's transaction, which is rolled back
 * at the end, so nothing is left behind. A scope that would begin a transaction of its own
 * (`required` at the top, `requiresNew`, `nested`) gets a savepoint instead, so that its own
 * failure still undoes exactly its work; the rest joins.
 */
function inTestTransaction<R>(current: Transaction, propagation: string, options: TransactionOptions, fn: (tx: Transaction) => Promise<R>): Promise<R> {
  const atTop = current.currentScope() === current.root;
  if (propagation === 'requiresNew' || propagation === 'nested' || (propagation === 'required' && atTop)) return current.savepoint(fn);
  return join(current, options, fn);
}

/**
 * The transaction of `withRollback`: `fn` runs in it, and it is always rolled back at the end,
 * whatever `fn` did; no hook of the code under test runs.
 */
export async function runRolledBack<R>(host: TransactionRunnerHost, fn: (tx: Transaction) => Promise<R>): Promise<R> {
  if (currentTransaction<Transaction>(host.owner)) {
    throw new TransactionError(`withRollback() runs inside a transaction of database "${host.name}" already; call it at the top of the test`, {
      code: ErrorCode.TransactionForbidden,
      database: host.name,
    });
  }
  const tx = await host.begin({});
  tx.rolledBackForTest = true;
  try {
    return await runWithTransaction(host.owner, tx, () => fn(tx));
  } finally {
    tx.state = 'ending';
    await tx.settle();
    tx.dropHooks();
    try {
      await rollback(host, tx, undefined);
    } finally {
      tx.close();
      await host.finish(tx);
    }
  }
}

/** Joins the current transaction; a failure marks it rollback-only, as Spring does. */
async function join<R>(tx: Transaction, options: TransactionOptions, fn: (tx: Transaction) => Promise<R>): Promise<R> {
  tx.assertActive();
  try {
    return await fn(tx);
  } catch (error) {
    if (rollsBack(options, error)) tx.rollbackOnlyCause ??= error;
    throw error;
  }
}

function rollsBack(options: TransactionOptions, error: unknown): boolean {
  if (matches(options.noRollbackFor, error)) return false;
  if (options.rollbackFor) return matches(options.rollbackFor, error);
  return true;
}

async function beginWithRetry<R>(
  host: TransactionRunnerHost,
  options: TransactionOptions,
  fn: (tx: Transaction) => Promise<R>,
  control?: InteractionControl,
): Promise<R> {
  const retry = options.retry;
  const attempts = retry === undefined ? 1 : typeof retry === 'number' ? retry + 1 : retry.attempts;
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new ConfigurationError(`TransactionOptions.retry must be a number >= 0 or { attempts: n >= 1 } (got ${JSON.stringify(retry)})`, {
      option: 'retry',
      database: host.name,
    });
  }
  if (attempts === 1) return runOnce(host, options, fn, control);
  const delays = backoff({
    initialDelayMs: typeof retry === 'object' ? (retry.initialDelayMs ?? 5) : 5,
    maxDelayMs: typeof retry === 'object' ? (retry.maxDelayMs ?? 500) : 500,
    jitter: 0.5,
  });
  for (let attempt = 1; ; attempt++) {
    try {
      return await runOnce(host, options, fn, control);
    } catch (error) {
      if (attempt >= attempts || !isRetryableTransactionError(error, (e) => host.classify(e)) || control?.canceled) throw error;
      const delay = delays.next().value ?? 500;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

async function runOnce<R>(
  host: TransactionRunnerHost,
  options: TransactionOptions,
  fn: (tx: Transaction) => Promise<R>,
  control?: InteractionControl,
): Promise<R> {
  if (control?.canceled) throw control.canceled;
  const tx = await host.begin(options);
  let timer: NodeJS.Timeout | undefined;
  let graceTimer: NodeJS.Timeout | undefined;
  // Rejects when the interaction must stop (its deadline passed, or it was canceled), once a
  // running statement was given the cancel's grace: an interaction awaiting something else
  // entirely cannot hold the connection past it.
  let stopError: DatabaseError | undefined;
  let stopNow: ((error: DatabaseError) => void) | undefined;
  const expire = (error: DatabaseError): void => {
    if (stopNow) stopNow(error);
    else stopError ??= error;
  };
  const timeoutError = () =>
    new QueryTimeout(`transaction on database "${host.name}" exceeded timeoutMs (${options.timeoutMs} ms) and was rolled back`, {
      timeoutMs: options.timeoutMs,
      database: host.name,
    });
  let stopping = false;
  const stop = (error: DatabaseError) => {
    if (stopping) return;
    stopping = true;
    // Only a running statement needs the server's cancel: an idle transaction refuses its next
    // statement client-side, and a cancel sent to an idle session could hit the ROLLBACK.
    if (tx.running === 0) return expire(error);
    host.interrupt(tx);
    // A server that does not answer the cancel either must not hold the caller: its
    // connection is given up on, which fails the statement.
    graceTimer = setTimeout(() => {
      if (tx.running > 0) tx.connection.destroy();
      expire(error);
    }, host.interruptGraceMs);
  };
  if (options.timeoutMs && options.timeoutMs > 0) {
    timer = setTimeout(() => {
      tx.timedOut = true;
      stop(timeoutError());
    }, options.timeoutMs);
  }
  control?.bind((error) => {
    tx.canceled = error;
    stop(error);
  });
  const interruptible = timer !== undefined || control !== undefined;
  try {
    let result: R;
    try {
      const interaction = host.within
        ? host.within(tx, () => runWithTransaction(host.owner, tx, () => fn(tx)))
        : runWithTransaction(host.owner, tx, () => fn(tx));
      // The interaction, or the stop if it comes first (a race without Promise.race's allocations); the interaction's
      // late rejection is handled by the same then().
      result = interruptible
        ? await new Promise<R>((resolve, reject) => {
            if (stopError !== undefined) reject(stopError);
            stopNow = reject;
            interaction.then(resolve, reject);
          })
        : await interaction;
    } catch (error) {
      tx.state = 'ending';
      await tx.settle();
      if (tx.endedOnServer) return endedOnServer(tx);
      const failure = tx.timedOut ? timeoutError() : (tx.canceled ?? error);
      if (!rollsBack(options, error) && !tx.timedOut && !tx.canceled && tx.rollbackOnlyCause === undefined && tx.abortCause === undefined) {
        await commit(host, tx);
        throw error;
      }
      await rollback(host, tx, failure);
      throw failure;
    }
    tx.state = 'ending';
    const orphans = await tx.settle();
    if (tx.endedOnServer) return endedOnServer(tx);
    if (tx.timedOut || tx.canceled) {
      const failure = tx.canceled ?? timeoutError();
      await rollback(host, tx, failure);
      throw failure;
    }
    if (orphans > 0) {
      const failure = new TransactionError(
        `${orphans} ${orphans === 1 ? 'query was' : 'queries were'} still running when the interaction returned, ` +
          'so the transaction was rolled back instead of committing part of the work; await every query (Promise.all) before returning',
        { code: ErrorCode.TransactionOrphanedQueries, database: host.name },
      );
      await rollback(host, tx, failure);
      throw failure;
    }
    if (tx.abortCause !== undefined) {
      const failure = abortedError(host, tx.abortCause);
      await rollback(host, tx, failure);
      throw failure;
    }
    if (tx.rollbackOnlyCause !== undefined) {
      const failure = new TransactionError(
        `transaction rolled back because a joined inner call failed: ${(tx.rollbackOnlyCause as Error)?.message ?? tx.rollbackOnlyCause}`,
        { code: ErrorCode.TransactionRollbackOnly, cause: tx.rollbackOnlyCause, database: host.name },
      );
      await rollback(host, tx, failure);
      throw failure;
    }
    await commit(host, tx);
    return result;
  } finally {
    clearTimeout(timer);
    clearTimeout(graceTimer);
    control?.bind(undefined);
    tx.close();
    await host.finish(tx);
  }
}

/**
 * A statement ended the transaction on the server (an implicit commit): there is nothing left to
 * commit or roll back, and neither hook runs; the interaction fails with that error, whatever it
 * returned or threw.
 */
function endedOnServer(tx: Transaction): never {
  tx.state = 'committed';
  tx.dropHooks();
  throw tx.endedOnServer!;
}

async function commit(host: TransactionRunnerHost, tx: Transaction): Promise<void> {
  let outcome: 'committed' | 'rolledBack';
  try {
    outcome = await host.end(tx, 'commit');
  } catch (error) {
    tx.state = 'rolledBack';
    if (host.isDeathError(error)) {
      tx.lease.discard = true;
      // Neither hook runs: the outcome is not known, and may never be.
      tx.dropHooks();
      throw new CommitOutcomeUnknown(
        `the connection to database "${host.name}" was lost after COMMIT was sent: the transaction may or may not have committed; ` +
          'check the data before retrying',
        { cause: error, database: host.name },
      );
    }
    // A commit the server refused (a deferred constraint, a serialization failure) is a rollback.
    if (tx.connection.transactionStatus !== 'idle') {
      await host.end(tx, 'rollback').catch(() => (tx.lease.discard = true));
    }
    await tx.runHooks('rolledBack');
    throw error;
  }
  if (outcome === 'rolledBack') {
    // The server answered COMMIT by rolling back: a statement inside had failed, and its error was caught.
    tx.state = 'rolledBack';
    await tx.runHooks('rolledBack');
    throw new TransactionError(
      'the server rolled the transaction back at COMMIT because a statement inside it had failed (and its error was caught)' +
        (tx.statementError !== undefined ? `: ${(tx.statementError as Error)?.message ?? tx.statementError}` : ''),
      { code: ErrorCode.TransactionAborted, database: host.name, cause: tx.statementError },
    );
  }
  tx.state = 'committed';
  await tx.runHooks('committed');
}

async function rollback(host: TransactionRunnerHost, tx: Transaction, originalError: unknown): Promise<void> {
  if (tx.canceled && tx.connection.broken) {
    // The cancel itself ended the session (SQLite stops the connection's process): a session that
    // is gone has rolled its transaction back, and the caller asked for exactly that.
    tx.state = 'rolledBack';
    tx.lease.discard = true;
    await tx.runHooks('rolledBack');
    return;
  }
  try {
    await host.end(tx, 'rollback');
  } catch (rollbackError) {
    tx.state = 'rolledBack';
    tx.lease.discard = true;
    await tx.runHooks('rolledBack');
    const reason = rollbackError instanceof DatabaseError ? rollbackError.message : String(rollbackError);
    throw new RollbackFailed(
      `rollback failed on database "${host.name}" (${reason}); the connection was destroyed. The error that caused the rollback is in originalError`,
      originalError,
      { cause: rollbackError, database: host.name },
    );
  }
  tx.state = 'rolledBack';
  await tx.runHooks('rolledBack');
}

function abortedError(host: TransactionRunnerHost, cause: unknown): TransactionError {
  return new TransactionError(
    `the server rolled the transaction back when a statement failed (${(cause as Error)?.message ?? cause}), ` +
      'and the interaction went on; nothing was committed',
    { code: ErrorCode.TransactionAborted, cause, database: host.name },
  );
}
