/**
 * A scriptable driver with no server, for unit tests of what sits above the driver (the call
 * path, the pool, transactions): every statement is logged per connection, and `script` decides
 * what each one returns, throws, or how long it hangs.
 */
// Only the package's public types: a driver of a user's own needs nothing else.
import { DatabaseError, type Connection, type Driver, type ErrorClass, type ResultSet } from '../../lib/index.js';
import { classifyPostgresError } from '../../lib/drivers/postgres/postgres.errors.js';
import { POSTGRES_SCRIPT_SYNTAX, POSTGRES_SYNTAX } from '../../lib/drivers/postgres/postgres.syntax.js';

export type Script = (text: string, connection: FakeConnection) => ResultSet | Error | undefined | Promise<ResultSet | Error | undefined>;

export class FakeConnection implements Connection {
  transactionStatus: Connection['transactionStatus'] = 'idle';
  broken = false;
  destroyed = false;
  closed = false;
  cancels = 0;
  /** Settles the statement running now with this error when `destroy()` is called (as real drivers do). */
  private running?: (error: Error) => void;
  private errorHandler?: (e: DatabaseError) => void;
  private endHandlers: Array<() => void> = [];

  constructor(
    readonly serverId: number,
    private readonly driver: FakeDriver,
  ) {}

  async execute(text: string): Promise<ResultSet> {
    this.driver.log.push(`${this.serverId}: ${text}`);
    if (this.broken) throw new DatabaseError('Connection terminated', { code: 'CONNECTION_LOST' });
    const outcome = this.driver.script?.(text, this);
    const scripted =
      outcome instanceof Promise
        ? await Promise.race([outcome, new Promise<Error>((resolve) => (this.running = resolve))]).finally(() => (this.running = undefined))
        : outcome;
    if (scripted instanceof Error) throw scripted;
    if (/^BEGIN/.test(text)) this.transactionStatus = 'transaction';
    if (/^(COMMIT|ROLLBACK)$/.test(text)) this.transactionStatus = 'idle';
    return scripted ?? { rows: [], affectedRows: 0, command: text.split(' ')[0] };
  }
  cursor(): never {
    throw new Error('not used');
  }
  async cancel(): Promise<void> {
    this.cancels++;
    await this.driver.onCancel?.(this);
  }
  async ping(): Promise<void> {
    if (this.broken) throw new DatabaseError('broken', { code: 'CONNECTION_LOST' });
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  destroy(): void {
    this.destroyed = true;
    this.broken = true;
    this.running?.(new DatabaseError('connection destroyed', { code: 'CONNECTION_LOST' }));
  }
  onError(handler: (e: DatabaseError) => void): void {
    this.errorHandler = handler;
  }
  onEnd(handler: () => void): void {
    this.endHandlers.push(handler);
  }
  /** The server closed the socket while the connection sat idle. */
  die(): void {
    this.broken = true;
    this.errorHandler?.(new DatabaseError('reset', { code: 'ECONNRESET' }));
    for (const h of this.endHandlers) h();
  }
}

export class FakeDriver implements Driver {
  readonly dialect = 'postgres' as const;
  readonly syntax = POSTGRES_SYNTAX;
  readonly scriptSyntax = POSTGRES_SCRIPT_SYNTAX;
  readonly endStatements = { commit: 'COMMIT', rollback: 'ROLLBACK' } as const;
  classify(error: unknown): ErrorClass {
    return classifyPostgresError(error);
  }
  commitRolledBack(result: ResultSet): boolean {
    return result.command === 'ROLLBACK';
  }
  log: string[] = [];
  connections: FakeConnection[] = [];
  script?: Script;
  onCancel?: (connection: FakeConnection) => unknown;
  describe(): string {
    return 'fake://recording';
  }
  async connect(): Promise<Connection> {
    const connection = new FakeConnection(this.connections.length + 1, this);
    this.connections.push(connection);
    return connection;
  }
  translateError(error: unknown): DatabaseError {
    return error instanceof DatabaseError ? error : new DatabaseError(String((error as Error)?.message ?? error), { cause: error });
  }
  beginStatements(options: { isolation?: string; readOnly?: boolean; deferrable?: boolean }): string[] {
    let text = 'BEGIN';
    if (options.isolation) text += ` ISOLATION LEVEL ${options.isolation.toUpperCase()}`;
    if (options.readOnly) text += ' READ ONLY';
    if (options.deferrable) text += ' DEFERRABLE';
    return [text];
  }
  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string {
    return kind === 'create' ? `SAVEPOINT ${name}` : kind === 'release' ? `RELEASE SAVEPOINT ${name}` : `ROLLBACK TO SAVEPOINT ${name}`;
  }
  transactionTimeoutStatement(timeoutMs: number): string {
    return `SET LOCAL statement_timeout = ${timeoutMs}`;
  }
}
