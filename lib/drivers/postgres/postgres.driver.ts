/**
 * PostgreSQL through `pg` (node-postgres). `pg` is loaded on first use, so an app on MySQL
 * or SQLite never loads it.
 *
 * Types as they come back (pg's defaults, kept on purpose so that no value is rounded):
 * `int8`/`bigint` and `numeric` are strings, `int2`/`int4`/`float*` numbers,
 * `timestamptz`/`timestamp`/`date` JavaScript `Date`s, `json`/`jsonb` parsed objects,
 * `bytea` a `Buffer`.
 */
import { POSTGRES_REPLICATION } from './postgres.replication.js';
import * as net from 'node:net';
import {
  constraintViolation,
  DatabaseError,
  QueryCanceled,
  QueryTimeout,
  type ConstraintKind,
  type DatabaseErrorFields,
  type ErrorClass,
  ErrorCode,
} from '../../core/errors.js';
import type {
  BeginOptions,
  Connection,
  ConnectionSettings,
  Driver,
  ExecuteOptions,
  Notification,
  ResultSet,
  RowCursor,
  StreamOptions,
  TargetSessionAttrs,
} from '../driver.js';
import { ISOLATION_SQL } from '../driver.js';
import { savepointSql, STANDARD_END } from '../standard.js';
import { redact, redactError } from '../redact.js';
import { isWriteFailure, markNotSent } from '../not-sent.js';
import { loadPackage } from '../load-package.js';
import { POSTGRES_SCRIPT_SYNTAX, POSTGRES_SYNTAX } from './postgres.syntax.js';
import { classifyPostgresError } from './postgres.errors.js';
import { POSTGRES_MIGRATIONS, POSTGRES_NOTIFICATIONS, postgresProcedureCall } from './postgres.features.js';

type PgModule = typeof import('pg');
type PgClient = import('pg').Client;

let pgModule: Promise<PgModule> | undefined;
const loadPg = (): Promise<PgModule> =>
  (pgModule ??= loadPackage('pg', 'postgres', () => import('pg').then((m) => (m as unknown as { default?: PgModule }).default ?? m)));

type CursorCtor = new (
  text: string,
  values: unknown[],
  config?: { rowMode?: string },
) => {
  read(rows: number, cb: (err: Error | undefined, rows: unknown[]) => void): void;
  close(cb: (err?: Error) => void): void;
};
let cursorModule: Promise<CursorCtor> | undefined;
const loadCursor = (): Promise<CursorCtor> =>
  (cursorModule ??= loadPackage(
    'pg-cursor',
    'postgres',
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- pg-cursor ships no types: the cast keeps tsc from resolving it
    () => import('pg-cursor' as string).then((m: { default?: CursorCtor }) => (m.default ?? m) as unknown as CursorCtor),
    'Database.stream() on PostgreSQL',
  ));

/** Prepared statements kept per connection; past this the least recently used is deallocated (each holds backend memory). */
const MAX_PREPARED_PER_CONNECTION = 256;

/** Distinct statement texts given a name before new texts run unnamed (bounds memory when SQL is built dynamically). */
const MAX_STATEMENT_NAMES = 10_000;

/** Statement names are global per process and stable for a text, so every connection prepares a text under one name. */
const statementNames = new Map<string, string>();
let nameCounter = 0;
function statementName(text: string): string | undefined {
  let name = statementNames.get(text);
  if (name === undefined) {
    if (statementNames.size >= MAX_STATEMENT_NAMES) return undefined;
    name = `ndbp_${(nameCounter++).toString(36)}`;
    statementNames.set(text, name);
  }
  return name;
}

/** 0A000 "cached plan must not change result type": the table changed under a prepared statement. */
/** SQLSTATE 25006: a write refused by a read-only server or transaction. */
const READ_ONLY_SQL_TRANSACTION = '25006';
const STALE_PLAN = /cached plan must not change result type/i;

/**
 * Statements whose effect outlives them on the session: SET (not SET LOCAL or SET TRANSACTION),
 * RESET, set_config(), session-level advisory locks, temporary tables, LISTEN, PREPARE, cursors
 * WITH HOLD, SET ROLE / SESSION AUTHORIZATION.
 */
const PG_SESSION_STATE =
  /^\s*(?:SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)|RESET\b|LISTEN\b|PREPARE\b|DECLARE\b[\s\S]*\bWITH\s+HOLD\b|CREATE\s+(?:GLOBAL\s+|LOCAL\s+)?TEMP(?:ORARY)?\b)|\bset_config\s*\(|\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i;

/** SQLSTATE class 23 codes with a class of their own. */
const PG_CONSTRAINTS: Record<string, ConstraintKind> = { '23505': 'unique', '23503': 'foreignKey', '23502': 'notNull', '23514': 'check' };

/** pg's own refusal of a query on a client whose socket is gone: nothing was written. */
const NOT_QUERYABLE = /is not queryable/i;

export class PostgresDriver implements Driver {
  readonly dialect = 'postgres' as const;
  readonly syntax = POSTGRES_SYNTAX;
  readonly scriptSyntax = POSTGRES_SCRIPT_SYNTAX;
  readonly endStatements = STANDARD_END;
  readonly notifications = POSTGRES_NOTIFICATIONS;
  readonly migrations = POSTGRES_MIGRATIONS;
  readonly replication = POSTGRES_REPLICATION;
  readonly procedureCall = postgresProcedureCall;

  classify(error: unknown): ErrorClass {
    return classifyPostgresError(error);
  }

  /** PostgreSQL answers COMMIT of a failed transaction with ROLLBACK, and no error. */
  commitRolledBack(result: ResultSet): boolean {
    return result.command === 'ROLLBACK';
  }

  constructor(private readonly settings: ConnectionSettings) {}

  describe(): string {
    const { host = 'localhost', port = 5432, database = '' } = this.settings;
    return `postgres://${host}:${port}/${database}`;
  }

  async load(): Promise<void> {
    await loadPg();
  }

  private typesValue?: { getTypeParser(oid: number, format?: string): unknown };
  /**
   * How this connection parses values (pg's defaults otherwise), the same rules as the other
   * dialects: int8 by `types.int64` (COUNT(*) included); `date` as its 'YYYY-MM-DD' text (a day,
   * not an instant); `timestamp` without time zone read as UTC, as MySQL's DATETIME is.
   * Per client, never pg's global parsers: other pg users in the process are not affected.
   */
  private types(pg: PgModule): { getTypeParser(oid: number, format?: string): unknown } {
    if (this.typesValue) return this.typesValue;
    const base = pg.types.getTypeParser as (oid: number, format?: string) => (value: string) => unknown;
    const mode = this.settings.types?.int64 ?? 'number';
    const int8 =
      mode === 'string'
        ? (v: string) => v
        : mode === 'bigint'
          ? (v: string) => BigInt(v)
          : (v: string) => {
              const n = Number(v);
              return Number.isSafeInteger(n) ? n : v;
            };
    const utc = (v: string) => {
      const d = new Date(`${v.replace(' ', 'T')}Z`);
      return Number.isNaN(d.getTime()) ? base(1114)(v) : d;
    };
    const array = (element: (v: string) => unknown) => (v: string) =>
      (pg.types as unknown as { arrayParser: { create(s: string, t: (v: string) => unknown): { parse(): unknown } } }).arrayParser.create(v, element).parse();
    const text = (v: string) => v;
    const own: Record<number, (v: string) => unknown> = { 20: int8, 1016: array(int8), 1082: text, 1182: array(text), 1114: utc, 1115: array(utc) };
    return (this.typesValue = {
      getTypeParser: (oid: number, format = 'text') => (format === 'text' && own[oid]) || base(oid, format),
    });
  }

  /** Named statements are off: the server lost one it had prepared (PgBouncer in transaction mode hands out other server connections). */
  namedStatementsOff = false;
  onWarning?: (message: string) => void;

  /** The host that answered as asked last time: tried first (after a failover, the old one fails and the next is found). */
  private preferredHost = 0;

  /**
   * A connection; with several hosts or `target_session_attrs`, one to a host that is what it
   * asks for (libpq's rules: `read-write` and `read-only` by `transaction_read_only`, `primary`
   * and `standby` by `pg_is_in_recovery()`, `prefer-standby` a standby if any answers, else any).
   */
  async connect(): Promise<Connection> {
    const s = this.settings;
    const attrs = s.targetSessionAttrs ?? 'any';
    const hosts = s.hosts ?? [{ host: s.host ?? '127.0.0.1', port: s.port }];
    if (hosts.length === 1 && attrs === 'any') return this.connectTo(s.host, s.port);
    const passes: TargetSessionAttrs[] = attrs === 'prefer-standby' ? ['standby', 'any'] : [attrs];
    const refusals: string[] = [];
    let lastError: DatabaseError | undefined;
    for (const want of passes) {
      for (let k = 0; k < hosts.length; k++) {
        const i = (this.preferredHost + k) % hosts.length;
        const { host, port } = hosts[i];
        let connection: PostgresConnection;
        try {
          connection = await this.connectTo(host, port);
        } catch (error) {
          lastError = error as DatabaseError;
          refusals.push(`${host}:${port ?? ''} ${lastError.message}`);
          continue;
        }
        if (want === 'any') {
          this.preferredHost = i;
          return connection;
        }
        let role: { standby: boolean; read_only: string };
        try {
          const result = await connection.execute("SELECT pg_is_in_recovery() AS standby, current_setting('transaction_read_only') AS read_only", [], {
            rowMode: 'object',
            prepare: false,
          });
          role = result.rows[0] as typeof role;
        } catch (error) {
          connection.destroy();
          lastError = error as DatabaseError;
          refusals.push(`${host}:${port ?? ''} ${lastError.message}`);
          continue;
        }
        const fits =
          want === 'read-write' ? role.read_only === 'off' : want === 'read-only' ? role.read_only === 'on' : want === 'primary' ? !role.standby : role.standby;
        if (fits) {
          this.preferredHost = i;
          return connection;
        }
        connection.destroy();
        refusals.push(`${host}:${port ?? ''} is ${role.standby ? 'a standby' : role.read_only === 'on' ? 'read-only' : 'a primary'}`);
      }
    }
    // Nothing that fits answers (a failover under way): the same as a server that is gone, so the reconnect loop goes on.
    throw new DatabaseError(`no host fits target_session_attrs=${attrs}: ${refusals.join('; ')}`, {
      code: ErrorCode.ConnectionLost,
      dialect: 'postgres',
      database: s.name,
      cause: lastError,
    });
  }

  /** True when the connection string names several hosts or a target_session_attrs: a read-only refusal then means "wrong host". */
  get multiHost(): boolean {
    return (this.settings.hosts?.length ?? 0) > 1 || (this.settings.targetSessionAttrs ?? 'any') !== 'any';
  }

  private async connectTo(host: string | undefined, port: number | undefined): Promise<PostgresConnection> {
    const pg = await loadPg();
    const s = this.settings;
    const client = new pg.Client({
      host,
      port,
      user: s.user,
      password: s.password,
      database: s.database,
      ssl: s.ssl as never,
      connectionTimeoutMillis: s.connectTimeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      statement_timeout: s.statementTimeoutMs > 0 ? s.statementTimeoutMs : undefined,
      application_name: 'nestjs-dbpool',
      types: this.types(pg),
      ...s.driverOptions,
    });
    // Until our own handlers are attached, an error event must not crash the process.
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (error) {
      client.removeAllListeners();
      client.on('error', () => {});
      (client as unknown as { connection: { stream: net.Socket } }).connection?.stream?.destroy?.();
      throw this.translateError(error);
    }
    return new PostgresConnection(client, this, s.statementTimeoutMs);
  }

  translateError(error: unknown, query?: string): DatabaseError {
    if (error instanceof DatabaseError) return error;
    const e = error as { code?: string; message?: string; errno?: number } | undefined;
    // The driver's error stays reachable as `cause` (util.inspect prints it): scrub it as our own message.
    redactError(error, this.settings.password);
    let message = redact(e?.message ?? String(error), this.settings.password);
    const code = e?.code;
    const fields: DatabaseErrorFields = { dialect: 'postgres', query, cause: error, database: this.settings.name };
    if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_(?:VERIFY|GET_ISSUER)/.test(code)) {
      message = `TLS: the server's certificate was refused: ${message} (check ssl.ca / sslrootcert, the host name and sslmode)`;
    }
    if (code === undefined && /server does not support SSL/i.test(message)) {
      return new DatabaseError(`${message}: TLS was asked for (ssl, sslmode) but the server runs without it`, { ...fields, code: ErrorCode.SslNotSupported });
    }
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
      fields.code = code;
      fields.sqlState = code;
      if (code === '57014') {
        return /statement timeout/i.test(message)
          ? new QueryTimeout(message, { ...fields, code: ErrorCode.QueryTimeout })
          : new QueryCanceled(message, { ...fields, code: ErrorCode.QueryCanceled });
      }
      const kind = PG_CONSTRAINTS[code];
      if (kind) {
        const where = error as { constraint?: string; table?: string; column?: string };
        return constraintViolation(kind, message, { ...fields, constraint: where.constraint, table: where.table, column: where.column });
      }
      return new DatabaseError(message, fields);
    }
    if (typeof code === 'string') {
      fields.code = code; // ECONNREFUSED, ECONNRESET, ...
      if (typeof e?.errno === 'number') fields.errno = e.errno;
      return new DatabaseError(message, fields);
    }
    if (/Connection terminated|not queryable|Client was closed|connection ended|Connection closed/i.test(message)) {
      return new DatabaseError(message, { ...fields, code: ErrorCode.ConnectionLost });
    }
    if (/timeout expired/i.test(message)) {
      return new DatabaseError(`connect timeout: ${message}`, { ...fields, code: ErrorCode.ConnectTimeout });
    }
    return new DatabaseError(message, fields);
  }

  beginStatements(options: BeginOptions): string[] {
    let text = 'BEGIN';
    if (options.isolation) text += ` ISOLATION LEVEL ${ISOLATION_SQL[options.isolation]}`;
    if (options.readOnly) text += ' READ ONLY';
    if (options.deferrable) text += ' DEFERRABLE';
    return [text];
  }

  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string {
    return savepointSql(kind, name, POSTGRES_SYNTAX);
  }

  readonly localSettings = true;

  settingsStatement(settings: Array<[string, unknown]>, local: boolean): { text: string; values: unknown[] } {
    const calls = settings.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, ${local})`);
    return {
      text: `SELECT ${calls.join(', ')}`,
      values: settings.flatMap(([name, value]) => [name, value === null ? '' : String(value as string | number | boolean | bigint)]),
    };
  }

  clearSettingsStatement(names: string[]): string {
    return names.map((name) => `RESET ${name}`).join('; ');
  }

  changesSession(text: string): boolean {
    return PG_SESSION_STATE.test(text);
  }

  transactionTimeoutStatement(timeoutMs: number): string {
    return `SET LOCAL statement_timeout = ${Math.max(1, Math.floor(timeoutMs))}`;
  }

  /** Sends a CancelRequest for `processId` on a fresh socket, as the protocol asks. */
  sendCancel(processId: number, secretKey: number): Promise<void> {
    const { host = 'localhost', port = 5432 } = this.settings;
    return new Promise((resolve) => {
      const socket = host.startsWith('/') ? net.connect(`${host}/.s.PGSQL.${port}`) : net.connect(port, host);
      const done = () => {
        socket.destroy();
        resolve();
      };
      socket.setTimeout(this.settings.connectTimeoutMs || 5000, done);
      socket.on('error', done);
      socket.on('close', done);
      socket.on('connect', () => {
        const buf = Buffer.alloc(16);
        buf.writeInt32BE(16, 0);
        buf.writeInt32BE(80877102, 4);
        buf.writeInt32BE(processId, 8);
        buf.writeInt32BE(secretKey, 12);
        socket.end(buf);
      });
    });
  }
}

const TX_STATUS = { I: 'idle', T: 'transaction', E: 'failed' } as const;

class PostgresConnection implements Connection {
  transactionStatus: Connection['transactionStatus'] = 'idle';
  broken = false;
  /** The session's statement_timeout, as set at connect. */
  private readonly sessionTimeoutMs: number;
  /** Statements prepared on this session, with the tick of their last use (a set on a hit does not reorder a Map: cheaper than delete + set). */
  private readonly prepared = new Map<string, number>();
  private useTick = 0;
  private errorHandler: (e: DatabaseError) => void = () => {};
  private endHandlers: Array<() => void> = [];

  constructor(
    private readonly client: PgClient,
    private readonly driver: PostgresDriver,
    sessionTimeoutMs: number,
  ) {
    this.sessionTimeoutMs = sessionTimeoutMs;
    const raw = client as unknown as { connection: NodeJS.EventEmitter & { stream?: net.Socket } };
    raw.connection.on('readyForQuery', (msg: { status?: keyof typeof TX_STATUS }) => {
      this.transactionStatus = (msg.status && TX_STATUS[msg.status]) ?? 'unknown';
    });
    client.removeAllListeners('error');
    client.on('error', (error) => {
      this.broken = true;
      this.errorHandler(driver.translateError(error));
    });
    client.on('end', () => {
      this.broken = true;
      for (const handler of this.endHandlers) handler();
    });
  }

  get serverId(): number {
    return (this.client as unknown as { processID: number }).processID;
  }

  execute(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet> {
    if (this.broken) {
      return Promise.reject(
        markNotSent(
          new DatabaseError('the connection was already closed; the statement was not sent', {
            code: ErrorCode.ConnectionLost,
            dialect: 'postgres',
            query: text,
          }),
        ),
      );
    }
    const limit = options.statementTimeoutMs;
    if (limit !== undefined && limit !== this.sessionTimeoutMs) return this.withStatementTimeout(limit, () => this.run(text, values, options));
    return this.run(text, values, options);
  }

  /**
   * Runs `work` under another statement_timeout than the session's: SET before, SET back after,
   * queued on the connection in that order. Inside a transaction a failed statement makes the
   * SET back fail too, but then the rollback restores the value the session had before.
   */
  private async withStatementTimeout(ms: number, work: () => Promise<ResultSet>): Promise<ResultSet> {
    this.client.query(`SET statement_timeout = ${Math.max(0, Math.floor(ms))}`).catch(() => {});
    try {
      return await work();
    } finally {
      this.client.query(`SET statement_timeout = ${this.sessionTimeoutMs}`).catch(() => {
        // Outside a transaction nothing would put the session's limit back: the connection is not reused.
        if (this.transactionStatus === 'idle') this.broken = true;
      });
    }
  }

  private async run(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet> {
    const config: import('pg').QueryConfig & { rowMode?: string } = { text, values: values as unknown[] };
    if (options.rowMode === 'array') config.rowMode = 'array';
    if (options.prepare && !this.driver.namedStatementsOff) {
      const name = typeof options.prepare === 'string' ? options.prepare : statementName(text);
      if (name !== undefined) {
        config.name = name;
        const known = this.prepared.has(name);
        this.prepared.set(name, ++this.useTick);
        if (!known && this.prepared.size > MAX_PREPARED_PER_CONNECTION) this.evictLeastRecent();
      }
    }
    try {
      // Unnamed, without values, rows as objects (BEGIN, COMMIT, SET…): the text alone, which pg sends as it is, where a
      // config object is cloned first (about 2 µs a statement).
      const plain = config.name === undefined && values.length === 0 && config.rowMode === undefined;
      const result = plain ? await this.client.query(text) : await this.client.query(config as import('pg').QueryConfig);
      return { rows: result.rows, affectedRows: result.rowCount ?? 0, command: result.command };
    } catch (error) {
      if (config.name && STALE_PLAN.test((error as Error)?.message) && this.transactionStatus === 'idle') {
        // The statement failed before running: forget it, and run the text again unnamed.
        await this.client.query(`DEALLOCATE "${config.name.replace(/"/g, '""')}"`).catch(() => {});
        delete this.parsedStatements()[config.name];
        this.prepared.delete(config.name);
        return this.run(text, values, { rowMode: options.rowMode });
      }
      const state = (error as { code?: unknown })?.code;
      if (config.name && (state === '26000' || state === '42P05') && this.transactionStatus === 'idle') {
        // A statement this connection prepared is missing on the server, or one it never prepared is there: another
        // server connection answered (PgBouncer in transaction mode). It failed before running: named statements off, run it unnamed.
        delete this.parsedStatements()[config.name];
        this.prepared.delete(config.name);
        if (!this.driver.namedStatementsOff) {
          this.driver.namedStatementsOff = true;
          this.driver.onWarning?.(
            `prepared statement "${config.name}" was ${state === '26000' ? 'missing on' : 'already on'} the server connection that answered, so this connection ` +
              "does not reach one server connection (PgBouncer in transaction mode?): named prepared statements are off from now on; set pgbouncer: 'transaction' (or prepare: false) to say so",
          );
        }
        return this.run(text, values, { rowMode: options.rowMode });
      }
      const translated = this.driver.translateError(error, text);
      if (isWriteFailure(error) || NOT_QUERYABLE.test((error as Error)?.message ?? '')) markNotSent(translated);
      // A server that refuses writes is not the primary any more (a failover): this connection goes, the next finds the new one.
      if (translated.sqlState === READ_ONLY_SQL_TRANSACTION && this.driver.multiHost) this.broken = true;
      throw translated;
    }
  }

  /**
   * Deallocates the least recently used statement, queued before the next query. pg decides
   * whether a named query needs its Parse when the query is dispatched, by `parsedStatements`,
   * so that entry changes only once the server answered, in pg's own callback (which runs
   * before the next query is dispatched): a DEALLOCATE that fails (inside a failed transaction,
   * 25P02) leaves the statement known on both sides, and it is evicted again later. The cache
   * never disagrees with the server, so a name can never fail with 42P05 "already exists".
   */
  private evictLeastRecent(): void {
    // The smallest tick: a scan, only when a new statement overflows the cache.
    let oldest = '';
    let oldestTick = Infinity;
    for (const [name, tick] of this.prepared) {
      if (tick < oldestTick) [oldest, oldestTick] = [name, tick];
    }
    this.prepared.delete(oldest);
    this.client.query(`DEALLOCATE "${oldest.replace(/"/g, '""')}"`, (error: Error | null) => {
      if (!error) delete this.parsedStatements()[oldest];
      else if (!this.prepared.has(oldest)) {
        // Still on the server: known again, as the least recently used.
        this.prepared.set(oldest, 0);
      }
    });
  }

  private parsedStatements(): Record<string, string> {
    return (this.client as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements;
  }

  cursor(text: string, values: readonly unknown[], options: StreamOptions): RowCursor {
    // A portal read `batchSize` rows per Execute (pg-cursor): a server-side cursor without a transaction.
    let cursor: InstanceType<CursorCtor> | undefined;
    let done = false;
    const open = async () => {
      const Cursor = await loadCursor();
      return (cursor = this.client.query(
        new Cursor(text, values as unknown[], options.rowMode === 'array' ? { rowMode: 'array' } : undefined) as never,
      ) as unknown as InstanceType<CursorCtor>);
    };
    return {
      read: async () => {
        if (done) return [];
        const c = cursor ?? (await open());
        const rows = await new Promise<unknown[]>((resolve, reject) =>
          c.read(options.batchSize, (err, rows) => (err ? reject(this.driver.translateError(err, text)) : resolve(rows))),
        );
        if (rows.length === 0) done = true;
        return rows;
      },
      close: async () => {
        if (!cursor) return;
        const c = cursor;
        cursor = undefined;
        done = true;
        await new Promise<void>((resolve) => c.close(() => resolve()));
      },
    };
  }

  cancel(): Promise<void> {
    const c = this.client as unknown as { processID: number; secretKey: number };
    return this.driver.sendCancel(c.processID, c.secretKey);
  }

  async ping(): Promise<void> {
    await this.execute('SELECT 1', [], { rowMode: 'array' });
  }

  async close(): Promise<void> {
    try {
      await this.client.end();
    } catch {
      this.destroy();
    }
  }

  destroy(): void {
    this.broken = true;
    const raw = this.client as unknown as { connection?: { stream?: net.Socket } };
    raw.connection?.stream?.destroy();
    void this.client.end().catch(() => {});
  }

  onError(handler: (error: DatabaseError) => void): void {
    this.errorHandler = handler;
  }

  onEnd(handler: () => void): void {
    this.endHandlers.push(handler);
  }

  native(): unknown {
    return this.client;
  }

  /**
   * DISCARD ALL but for DEALLOCATE ALL: the statements this module prepared stay (a name is
   * always the same text), everything a caller may have set goes: parameters (back to the
   * connection's startup values, statement_timeout included), role, LISTENs, advisory locks,
   * temporary tables, cursors. One round trip.
   */
  async resetSession(): Promise<void> {
    await this.client.query(
      (this.transactionStatus === 'idle' ? '' : 'ROLLBACK; ') +
        'CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES',
    );
  }

  onNotification(handler: (n: Notification) => void): void {
    this.client.on('notification', (msg) => handler({ channel: msg.channel, payload: msg.payload ?? '', processId: msg.processId }));
  }
}
