/**
 * The private port through which a `Database`'s sessions reach it: a pool connection pinned with
 * its settings, statements and streams on it, and its reset when the session ends.
 */
import type { Readable } from 'node:stream';
import { TransactionError, ErrorCode } from '../core/errors.js';
import type { QueryOptions } from '../core/types.js';
import type { ExecuteOptions, ResultSet } from '../drivers/driver.js';
import type { Lease } from '../pool/pool.js';
import type { SqlQuery } from '../sql/template.js';
import { runInSession } from '../transactions/transaction.context.js';
import { CallHandle } from './call.js';
import type { Engine } from './engine.js';
import { checkSettings, type DatabaseSession, type SessionHost, type Settings } from './session.js';

/** The calls a session makes on its Database (the facade's own, so that they run in the session's scope). */
export type SessionCalls = Pick<SessionHost, 'runQuery' | 'runOperation' | 'runInteraction' | 'stream'>;

export class SessionPort implements SessionHost {
  readonly runQuery: SessionCalls['runQuery'];
  readonly runOperation: SessionCalls['runOperation'];
  readonly runInteraction: SessionCalls['runInteraction'];
  readonly stream: SessionCalls['stream'];

  constructor(
    private readonly engine: Engine,
    calls: SessionCalls,
  ) {
    ({ runQuery: this.runQuery, runOperation: this.runOperation, runInteraction: this.runInteraction, stream: this.stream } = calls);
  }

  get name(): string {
    return this.engine.name;
  }

  openSession(session: DatabaseSession): Promise<Lease> {
    return this.openSessionLease(session);
  }

  closeSession(session: DatabaseSession): Promise<void> {
    return this.closeSessionLease(session);
  }

  inSession<R>(session: DatabaseSession, fn: () => R): R {
    return runInSession(this.engine.owner, session, fn);
  }

  async applySettings(session: DatabaseSession, settings: Settings): Promise<void> {
    const lease = await this.engine.sessionLease(session);
    const list = checkSettings(settings, 'session.set()');
    if (list.length === 0) return;
    const statement = this.engine.settingsStatement(list, false);
    await lease.connection.execute(statement.text, statement.values, { rowMode: 'array' });
  }

  async openSessionLease(session: DatabaseSession): Promise<Lease> {
    this.engine.assertUsable();
    const call = new CallHandle(this.engine);
    if (this.engine.queryTimeoutMs > 0) call.deadline(this.engine.queryTimeoutMs);
    let lease: Lease;
    try {
      lease = await this.engine.acquire(call);
    } finally {
      call.settle();
    }
    const settings = checkSettings(session.settings, 'session');
    if (settings.length > 0) {
      try {
        const statement = this.engine.settingsStatement(settings, false);
        await lease.connection.execute(statement.text, statement.values, { rowMode: 'array' });
      } catch (error) {
        lease.discard = true;
        lease.pool.release(lease);
        throw this.engine.driver.translateError(error);
      }
    }
    return lease;
  }

  /** The end of a session: its connection goes back reset (`sessionReset`), or with just its settings undone (`never`). */
  async closeSessionLease(session: DatabaseSession): Promise<void> {
    const lease = session.lease;
    if (!lease) return;
    for (const stream of [...session.streams]) await stream.return().catch(() => {});
    if (this.engine.options.sessionReset !== 'never') lease.dirty = true;
    else {
      const names = Object.keys(session.settings);
      if (names.length > 0 && !lease.discard && this.engine.driver.clearSettingsStatement) {
        await lease.connection.execute(this.engine.driver.clearSettingsStatement(names), [], { rowMode: 'array' }).catch(() => (lease.discard = true));
      }
    }
    lease.pool.release(lease);
  }

  async executeOnSession(session: DatabaseSession, call: CallHandle, text: string, values: unknown[], exec: ExecuteOptions): Promise<ResultSet> {
    const lease = await this.engine.sessionLease(session);
    if (session.streams.size > 0) {
      throw new TransactionError(
        'cannot run a statement on this session while one of its streams is still being read: they share its one connection. Finish (or break out of) the stream first, or collect its rows',
        { database: this.engine.name, code: ErrorCode.StreamOpen },
      );
    }
    try {
      return await this.engine.run(lease.connection, call, text, values, exec);
    } catch (error) {
      if (call.interruption || this.engine.detector.isDeathError(error)) lease.discard = true;
      throw error;
    }
  }

  streamInSession<T>(
    session: DatabaseSession,
    query: string | SqlQuery,
    params: unknown[] | undefined,
    options: QueryOptions | undefined,
  ): AsyncIterable<T> & { readable(): Readable } {
    return this.engine.rowStream<T>(options, async (iterator) => {
      const { text, values } = this.engine.compile(query, params);
      const lease = await this.engine.sessionLease(session);
      if (session.streams.size > 0) {
        throw new TransactionError('cannot open a second stream on this session while another is still being read: they share its one connection', {
          database: this.engine.name,
          code: ErrorCode.StreamOpen,
        });
      }
      session.streams.add(iterator);
      return {
        connection: lease.connection,
        text,
        values,
        finish: (error?: unknown) => {
          if (error !== undefined && this.engine.detector.isDeathError(error)) lease.discard = true;
          session.streams.delete(iterator);
        },
      };
    });
  }
}
