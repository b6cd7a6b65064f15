/**
 * MySQL and MariaDB through `mysql2`, loaded on first use.
 *
 * Types as they come back: `BIGINT` and `DECIMAL` are strings (`supportBigNumbers` and
 * `bigNumberStrings`, so that no value is rounded, the same as PostgreSQL's int8 and numeric);
 * `INT`/`DOUBLE` numbers; `DATETIME`/`TIMESTAMP`/`DATE` JavaScript `Date`s read and written as
 * UTC (`timezone: 'Z'`); `JSON` parsed; `BLOB` a `Buffer`. `insertId` is a number while it is
 * a safe integer, a string beyond.
 */
import { MYSQL_REPLICATION } from './mysql.replication.js';
import {
  constraintViolation,
  DatabaseError,
  QueryCanceled,
  QueryTimeout,
  type ConstraintFields,
  type ConstraintKind,
  type DatabaseErrorFields,
  type ErrorClass,
  ErrorCode,
} from '../../core/errors.js';
import type { BeginOptions, Connection, ConnectionSettings, Driver, ExecuteOptions, ResultSet, RowCursor, StreamOptions } from '../driver.js';
import { ISOLATION_SQL } from '../driver.js';
import { savepointSql, STANDARD_END } from '../standard.js';
import { hidePasswords, redact, redactError } from '../redact.js';
import { isWriteFailure, markNotSent } from '../not-sent.js';
import { loadPackage } from '../load-package.js';
import { MYSQL_SCRIPT_SYNTAX, MYSQL_SYNTAX } from './mysql.syntax.js';
import { classifyMysqlError } from './mysql.errors.js';
import { MYSQL_MIGRATIONS, mysqlProcedureCall } from './mysql.features.js';

type Mysql2 = typeof import('mysql2');
type RawConnection = import('mysql2').Connection;

let mysqlModule: Promise<Mysql2> | undefined;
const loadMysql = (): Promise<Mysql2> =>
  (mysqlModule ??= loadPackage('mysql2', 'mysql', () => import('mysql2').then((m) => (m as { default?: Mysql2 }).default ?? m)));

const SERVER_STATUS_IN_TRANS = 1;
/** Statements the binary protocol does not take: transaction control, session settings, LOCK, CALL with OUT variables. */
const UNPREPARABLE = /^\s*(?:START|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|SET|LOCK|UNLOCK|CALL|XA|USE|KILL)\b/i;
/**
 * Integrity errors by errno, and what their message names: 1062 duplicate key, 1451/1452 (1216,
 * 1217) foreign key, 1048 NULL into NOT NULL, 1364 no value and no default, 4025 (MariaDB) and
 * 3819 (MySQL) CHECK.
 */
function mysqlConstraint(errno: number, message: string): { kind: ConstraintKind; where: ConstraintFields } | undefined {
  const unquote = (s: string | undefined) => s?.replace(/^[`'"]|[`'"]$/g, '');
  switch (errno) {
    case 1062:
    case 1586: {
      // MariaDB: "for key 'login'"; MySQL 8: "for key 'users.login'".
      const key = unquote(/for key '([^']+)'/.exec(message)?.[1]);
      const dot = key?.lastIndexOf('.') ?? -1;
      return { kind: 'unique', where: dot > 0 ? { table: key!.slice(0, dot), constraint: key!.slice(dot + 1) } : { constraint: key } };
    }
    case 1451:
    case 1452:
    case 1216:
    case 1217: {
      const m = /\(`[^`]*`\.`([^`]+)`, CONSTRAINT `([^`]+)` FOREIGN KEY \(`([^`]+)`/.exec(message);
      return { kind: 'foreignKey', where: m ? { table: m[1], constraint: m[2], column: m[3] } : {} };
    }
    case 1048:
    case 1364:
      return { kind: 'notNull', where: { column: unquote(/(?:Column|Field) '([^']+)'/.exec(message)?.[1]) } };
    case 4025: {
      const m = /CONSTRAINT `([^`]+)` failed for `[^`]*`\.`([^`]+)`/.exec(message);
      return { kind: 'check', where: m ? { constraint: m[1], table: m[2] } : {} };
    }
    case 3819:
      return { kind: 'check', where: { constraint: unquote(/Check constraint '([^']+)'/.exec(message)?.[1]) } };
    default:
      return undefined;
  }
}

const RETURNING = /\bRETURNING\b/i;
const WRITES = /^\s*(?:INSERT|REPLACE|DELETE|UPDATE)\b/i;

/** mysql2's refusal of a command on a connection whose socket is gone: nothing was written. */
const CLOSED_STATE = /can't add new command when connection is in closed state/i;
/** 1193: unknown system variable (MySQL has max_execution_time, MariaDB max_statement_time). */
const ER_UNKNOWN_SYSTEM_VARIABLE = 1193;
/** Errors after which the session cannot be trusted, so the pool destroys it rather than reusing it. */
/** 1047: Galera's "WSREP has not yet prepared node for application use". */
const ER_UNKNOWN_COM_ERROR = 1047;

/** A server of a list: a Galera node. */
interface Node {
  host: string;
  port?: number;
}

/** Why a Galera node does not take work now, or undefined when it does (or is no Galera node). */
async function galeraRefusal(raw: RawConnection): Promise<string | undefined> {
  const rows = await new Promise<Array<{ Variable_name: string; Value: string }>>((resolve, reject) =>
    raw.query("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state_comment')", (error, result) =>
      error ? reject(error) : resolve(result as Array<{ Variable_name: string; Value: string }>),
    ),
  );
  const status = new Map(rows.map((r) => [r.Variable_name.toLowerCase(), r.Value]));
  if (!status.has('wsrep_ready')) return undefined;
  if (status.get('wsrep_ready') !== 'ON') return `is not ready (wsrep_ready = ${status.get('wsrep_ready')})`;
  const state = status.get('wsrep_local_state_comment');
  return state === 'Synced' ? undefined : `is ${state ?? 'in an unknown state'}, not Synced`;
}

const FATAL_CODES = new Set(['ER_NET_PACKET_TOO_LARGE', 'PROTOCOL_CONNECTION_LOST', 'ER_NET_READ_INTERRUPTED', 'ER_NET_ERROR_ON_WRITE']);

export class MysqlDriver implements Driver {
  readonly dialect = 'mysql' as const;
  readonly syntax = MYSQL_SYNTAX;
  readonly scriptSyntax = MYSQL_SCRIPT_SYNTAX;
  readonly endStatements = STANDARD_END;
  readonly migrations = MYSQL_MIGRATIONS;
  readonly replication = MYSQL_REPLICATION;
  readonly procedureCall = mysqlProcedureCall;

  classify(error: unknown): ErrorClass {
    return classifyMysqlError(error);
  }

  constructor(private readonly settings: ConnectionSettings) {}

  /** `warningsAsErrors` (a module option). */
  get warningsAsErrors(): boolean {
    return this.settings.warningsAsErrors === true;
  }

  get databaseName(): string | undefined {
    return this.settings.name;
  }

  describe(): string {
    const { host = 'localhost', port = 3306, database = '' } = this.settings;
    return `mysql://${host}:${port}/${database}`;
  }

  async load(): Promise<void> {
    await loadMysql();
  }

  /** `types.int64: 'bigint'` and `types.tinyint1AsBoolean`, else mysql2's own casting. */
  private typeCast(): ((field: { type: string; length: number; string(): string | null }, next: () => unknown) => unknown) | undefined {
    const bigint = this.settings.types?.int64 === 'bigint';
    const booleans = this.settings.types?.tinyint1AsBoolean === true;
    if (!bigint && !booleans) return undefined;
    return (field, next) => {
      if (booleans && field.type === 'TINY' && field.length === 1) {
        const v = next();
        return v === null ? null : Number(v) === 1;
      }
      if (bigint && field.type === 'LONGLONG') {
        // With bigNumberStrings, mysql2 reads it as exact text on both protocols.
        const v = next();
        return v === null ? null : BigInt(v as string);
      }
      return next();
    };
  }

  /** Opens a raw mysql2 connection; the password function, if any, is called for each one. */
  async open(node?: Node): Promise<RawConnection> {
    const mysql = await loadMysql();
    const s = this.settings;
    const password = typeof s.password === 'function' ? await s.password() : s.password;
    const raw = mysql.createConnection({
      host: node?.host ?? s.host,
      port: node?.port ?? s.port,
      user: s.user,
      password,
      database: s.database,
      ssl: s.ssl as never,
      connectTimeout: s.connectTimeoutMs,
      enableKeepAlive: true,
      keepAliveInitialDelay: 10_000,
      // types.int64 'number': a number while exact, else a string (mysql2's own rule without bigNumberStrings).
      supportBigNumbers: true,
      bigNumberStrings: (s.types?.int64 ?? 'number') !== 'number',
      // A DATE is a day, not an instant: its 'YYYY-MM-DD' text, as on the other dialects.
      dateStrings: ['DATE'],
      typeCast: this.typeCast(),
      // mysql2 asks for FOUND_ROWS by default: an INSERT … ON DUPLICATE KEY UPDATE that changed nothing
      // would then report 1, like an insert. Without it that is 0; an UPDATE's matched rows come from its info.
      flags: ['-FOUND_ROWS'],
      timezone: 'Z',
      charset: 'utf8mb4',
      ...s.driverOptions,
      // Rows are objects unless a call asks for arrays (ExecuteOptions.rowMode): a connection-wide setting would change what
      // every call returns.
      rowsAsArray: false,
    });
    hidePasswords((raw as unknown as { config?: object }).config);
    // A connection error emitted while nobody listens would crash the process.
    raw.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      raw.connect((err) => (err ? reject(err) : resolve()));
    }).catch((error) => {
      raw.destroy();
      throw this.translateError(error);
    });
    return raw;
  }

  /** With several nodes (a Galera cluster): where the next connection starts looking, so that connections spread over the nodes. */
  private nextNode = 0;

  async connect(): Promise<Connection> {
    const hosts = this.settings.hosts;
    const { raw, node } = hosts && hosts.length > 1 ? await this.openUsableNode(hosts) : { raw: await this.open(), node: undefined };
    const connection = new MysqlConnection(raw, this, this.settings.statementTimeoutMs, node);
    if (this.settings.statementTimeoutMs > 0) await connection.setStatementTimeout(this.settings.statementTimeoutMs);
    return connection;
  }

  /**
   * A connection to a node that takes work: with Galera, one that says `wsrep_ready = ON` and
   * `Synced` (a node that is joining, donating or cut off from the primary component refuses
   * statements); a server without wsrep is usable as it is. Each connection starts at the next node.
   */
  private async openUsableNode(hosts: Node[]): Promise<{ raw: RawConnection; node: Node }> {
    const start = this.nextNode++ % hosts.length;
    const refusals: string[] = [];
    let lastError: unknown;
    for (let k = 0; k < hosts.length; k++) {
      const node = hosts[(start + k) % hosts.length];
      let raw: RawConnection;
      try {
        raw = await this.open(node);
      } catch (error) {
        lastError = error;
        refusals.push(`${node.host}:${node.port ?? ''} ${(error as Error).message}`);
        continue;
      }
      const why = await galeraRefusal(raw).catch((error: unknown) => `its status could not be read (${(error as Error)?.message})`);
      if (why === undefined) return { raw, node };
      raw.destroy();
      refusals.push(`${node.host}:${node.port ?? ''} ${why}`);
    }
    // No node takes work right now: the same as a server that is gone, so the reconnect loop goes on.
    throw new DatabaseError(`no node is usable: ${refusals.join('; ')}`, {
      code: ErrorCode.ConnectionLost,
      dialect: 'mysql',
      database: this.settings.name,
      cause: lastError,
    });
  }

  /** `KILL QUERY` on a separate session to the same server: MySQL has no out-of-band cancel. */
  async killQuery(threadId: number, node?: Node): Promise<void> {
    const raw = await this.open(node);
    try {
      await new Promise<void>((resolve) => raw.query(`KILL QUERY ${Number(threadId)}`, () => resolve()));
    } finally {
      raw.destroy();
    }
  }

  translateError(error: unknown, query?: string, hadValues = false): DatabaseError {
    if (error instanceof DatabaseError) return error;
    const e = error as { code?: string; errno?: number; sqlState?: string; message?: string; sqlMessage?: string; sql?: string; stack?: string };
    // The driver's error stays reachable as `cause` (util.inspect prints it): scrub it as our own message.
    redactError(error, this.settings.password);
    let message = redact(e?.sqlMessage ?? e?.message ?? String(error), this.settings.password);
    // The text protocol inlines values client-side, so "near '...'" can quote a parameter value, and `sql` holds them all.
    if (hadValues) {
      const near = (text: string) => text.replace(/near '[\s\S]*' at line (\d+)/, "near '…' at line $1");
      message = near(message);
      if (e && typeof e === 'object') {
        for (const key of ['message', 'sqlMessage', 'stack'] as const) if (typeof e[key] === 'string') e[key] = near(e[key]);
        if (typeof e.sql === 'string') e.sql = query ?? '';
      }
    }
    if (e?.code === 'HANDSHAKE_SSL_ERROR') message = `TLS handshake failed: ${message} (check ssl.ca / sslrootcert, the host name and sslmode)`;
    const fields: DatabaseErrorFields = { dialect: 'mysql', query, cause: error, code: e?.code ?? ErrorCode.DatabaseError, database: this.settings.name };
    if (typeof e?.errno === 'number') fields.errno = e.errno;
    if (typeof e?.sqlState === 'string') fields.sqlState = e.sqlState;
    if (e?.errno === 1969 || e?.errno === 3024 || e?.code === 'ER_QUERY_TIMEOUT') {
      return new QueryTimeout(message, { ...fields, code: ErrorCode.QueryTimeout });
    }
    if (e?.errno === 1317) return new QueryCanceled(message, { ...fields, code: ErrorCode.QueryCanceled });
    const constraint = typeof e?.errno === 'number' ? mysqlConstraint(e.errno, message) : undefined;
    if (constraint) return constraintViolation(constraint.kind, message, { ...fields, ...constraint.where });
    if (e?.code === 'ETIMEDOUT' && !query) {
      return new DatabaseError(`connect timeout: ${message}`, { ...fields, code: ErrorCode.ConnectTimeout });
    }
    return new DatabaseError(message, fields);
  }

  beginStatements(options: BeginOptions): string[] {
    const statements: string[] = [];
    // MySQL applies SET TRANSACTION to the next transaction only, so it goes right before START.
    if (options.isolation) statements.push(`SET TRANSACTION ISOLATION LEVEL ${ISOLATION_SQL[options.isolation]}`);
    statements.push(options.readOnly ? 'START TRANSACTION READ ONLY' : 'START TRANSACTION');
    return statements;
  }

  savepointStatement(kind: 'create' | 'release' | 'rollback', name: string): string {
    return savepointSql(kind, name, MYSQL_SYNTAX);
  }

  /** MySQL has no transaction-local variables: settings are user variables (`@\`app.tenant_id\``), cleared after a transaction. */
  readonly localSettings = false;

  settingsStatement(settings: Array<[string, unknown]>): { text: string; values: unknown[] } {
    return { text: `SET ${settings.map(([name]) => `@\`${name}\` = ?`).join(', ')}`, values: settings.map(([, value]) => value) };
  }

  clearSettingsStatement(names: string[]): string {
    return `SET ${names.map((name) => `@\`${name}\` = NULL`).join(', ')}`;
  }

  changesSession(text: string): boolean {
    return MYSQL_SESSION_STATE.test(text);
  }
}

/**
 * Statements whose effect outlives them on the session: SET (variables, user variables), user
 * variables assigned in a query, LOCK TABLES, GET_LOCK(), temporary tables, PREPARE, USE.
 */
const MYSQL_SESSION_STATE = /^\s*(?:SET\s+(?!TRANSACTION\b)|LOCK\b|PREPARE\b|USE\b|HANDLER\b|CREATE\s+TEMPORARY\b)|@[A-Za-z_$][\w$.]*\s*:=|\bGET_LOCK\s*\(/i;

type Reject = (error: DatabaseError) => void;

/** The rejections of the commands in flight: one slot, and a Set only beyond one (a Set that goes 0→1→0 on every call costs about 1 µs). */
class InFlight {
  private one?: Reject;
  private more?: Set<Reject>;

  add(reject: Reject): void {
    if (this.one === undefined) this.one = reject;
    else (this.more ??= new Set()).add(reject);
  }

  delete(reject: Reject): void {
    if (this.one === reject) this.one = undefined;
    else this.more?.delete(reject);
  }

  /** Every pending rejection, and none left. */
  drain(): Reject[] {
    const all = this.one ? [this.one, ...(this.more ?? [])] : [...(this.more ?? [])];
    this.one = undefined;
    this.more?.clear();
    return all;
  }
}

class MysqlConnection implements Connection {
  transactionStatus: Connection['transactionStatus'] = 'idle';
  broken = false;
  private errorHandler: (e: DatabaseError) => void = () => {};
  private endHandlers: Array<() => void> = [];
  /** Rejections of the commands in flight: mysql2 never settles them once the connection is destroyed. */
  private readonly inFlight = new InFlight();

  /** MariaDB's max_statement_time (seconds), or MySQL's max_execution_time (milliseconds, SELECT only). */
  private timeoutVariable: 'max_statement_time' | 'max_execution_time' = 'max_statement_time';

  constructor(
    private readonly raw: RawConnection,
    private readonly driver: MysqlDriver,
    /** The session's statement time limit, as set at connect. */
    private readonly sessionTimeoutMs: number,
    /** The node it is connected to, when the URL lists several. */
    private readonly node?: Node,
  ) {
    raw.removeAllListeners('error');
    raw.on('error', (error: Error & { fatal?: boolean }) => {
      this.broken = true;
      this.errorHandler(driver.translateError(error));
    });
    raw.on('end', () => this.ended());
    (raw as unknown as { stream: NodeJS.EventEmitter }).stream?.on('close', () => this.ended());
  }

  private ended(): void {
    if (this.endHandlers.length === 0 && this.broken) return;
    this.broken = true;
    const handlers = this.endHandlers;
    this.endHandlers = [];
    for (const handler of handlers) handler();
  }

  get serverId(): number {
    return this.raw.threadId ?? 0;
  }

  get otelSystem(): string {
    return (this.raw as unknown as { _isMariaDB?: boolean })._isMariaDB ? 'mariadb' : 'mysql';
  }

  /** MariaDB's `max_statement_time` (seconds), or MySQL's `max_execution_time` (ms, SELECT only). */
  async setStatementTimeout(ms: number): Promise<void> {
    try {
      await this.send(this.timeoutStatement(ms), [], { rowMode: 'array' });
    } catch (error) {
      if ((error as DatabaseError).errno !== ER_UNKNOWN_SYSTEM_VARIABLE) throw error;
      this.timeoutVariable = 'max_execution_time';
      await this.send(this.timeoutStatement(ms), [], { rowMode: 'array' }).catch(() => {});
    }
  }

  private timeoutStatement(ms: number): string {
    const limit = Math.max(0, Math.floor(ms));
    return this.timeoutVariable === 'max_statement_time' ? `SET SESSION max_statement_time = ${limit / 1000}` : `SET SESSION max_execution_time = ${limit}`;
  }

  execute(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet> {
    if (this.broken) {
      return Promise.reject(
        markNotSent(
          new DatabaseError('the connection was already closed; the statement was not sent', { code: ErrorCode.ConnectionLost, dialect: 'mysql', query: text }),
        ),
      );
    }
    const limit = options.statementTimeoutMs;
    if (limit !== undefined && limit !== this.sessionTimeoutMs) return this.withStatementTimeout(limit, () => this.send(text, values, options));
    if (this.driver.warningsAsErrors && WRITES.test(text)) return this.failOnWarnings(text, values, options);
    return this.send(text, values, options);
  }

  /**
   * `warningsAsErrors`: a write that produces warnings (a value cut to fit, IGNORE turning an
   * error into a warning) fails, with the first warning's code and message. Outside a transaction
   * it runs in one of its own, rolled back on a warning, so the failed write leaves nothing behind;
   * inside one, the statement fails and the transaction rolls back unless the interaction catches it.
   */
  private async failOnWarnings(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet> {
    const own = this.transactionStatus === 'idle';
    if (own) await this.send('START TRANSACTION', [], { rowMode: 'array' });
    try {
      const result = await this.send(text, values, options);
      if (result.warningCount) {
        const { rows } = await this.send('SHOW WARNINGS', [], { rowMode: 'object' });
        const first = (rows as Array<{ Code?: number; Message?: string }>)[0];
        throw new DatabaseError(
          `the statement produced ${result.warningCount} warning(s), which warningsAsErrors makes an error: ${first?.Message ?? 'see SHOW WARNINGS'}`,
          {
            code: ErrorCode.MysqlWarning,
            errno: first?.Code,
            query: text,
            dialect: 'mysql',
            database: this.driver.databaseName,
          },
        );
      }
      if (own) await this.send('COMMIT', [], { rowMode: 'array' });
      return result;
    } catch (error) {
      if (own) await this.send('ROLLBACK', [], { rowMode: 'array' }).catch(() => (this.broken = true));
      throw error;
    }
  }

  /** Runs `work` under another statement time limit than the session's: SET before, SET back after, queued in that order. */
  private async withStatementTimeout(ms: number, work: () => Promise<ResultSet>): Promise<ResultSet> {
    await this.setStatementTimeout(ms);
    try {
      return await work();
    } finally {
      this.send(this.timeoutStatement(this.sessionTimeoutMs), [], { rowMode: 'array' }).catch(() => {
        // Nothing would put the session's limit back: the connection is not reused.
        this.broken = true;
      });
    }
  }

  private send(text: string, values: readonly unknown[], options: ExecuteOptions): Promise<ResultSet> {
    return new Promise((resolve, reject) => {
      this.inFlight.add(reject);
      const callback = (error: (Error & { code?: string; fatal?: boolean }) | null, result: unknown) => {
        this.inFlight.delete(reject);
        if (error) {
          if (error.fatal || (error.code && FATAL_CODES.has(error.code))) this.broken = true;
          const translated = this.driver.translateError(error, text, values.length > 0);
          if (isWriteFailure(error) || CLOSED_STATE.test(error.message)) markNotSent(translated);
          // Galera: this node does not take work now (not Synced, or out of the primary component). The statement did not
          // run: another node will take it, on a new connection.
          if (translated.errno === ER_UNKNOWN_COM_ERROR) {
            this.broken = true;
            markNotSent(translated);
          }
          reject(translated);
          return;
        }
        resolve(this.toResultSet(result, text));
      };
      // The positional form unless rows come as arrays: mysql2's options-object path (named placeholders, option spreads)
      // costs about 13 µs more per call.
      const query = options.rowMode === 'array' ? { sql: text, values: values as unknown[], rowsAsArray: true } : undefined;
      const viaText = () => (query ? this.raw.query(query, callback as never) : this.raw.query(text, values as unknown[], callback as never));
      if (options.prepare && !UNPREPARABLE.test(text)) {
        const prepared = ((error: (Error & { errno?: number }) | null, result: unknown) => {
          // 1295: this statement cannot be prepared; nothing ran, so run it on the text protocol.
          if (error?.errno === 1295) viaText();
          else callback(error, result);
        }) as never;
        if (query) this.raw.execute(query, prepared);
        else this.raw.execute(text, values as never, prepared);
      } else viaText();
    });
  }

  private toResultSet(result: unknown, text = ''): ResultSet {
    if (Array.isArray(result)) {
      // A CALL returns [rows, ..., okPacket]: the first result set is the answer.
      const last = result[result.length - 1] as unknown;
      if (result.length >= 2 && Array.isArray(result[0]) && typeof last === 'object' && last !== null && !Array.isArray(last) && 'affectedRows' in last) {
        return { rows: result[0] as unknown[], affectedRows: 0 };
      }
      // MariaDB's INSERT/DELETE … RETURNING answers with rows only: one per row it changed.
      return { rows: result, affectedRows: RETURNING.test(text) && WRITES.test(text) ? result.length : 0 };
    }
    const header = result as {
      affectedRows: number | string;
      insertId: number | string;
      warningStatus: number;
      info: string;
      serverStatus: number;
    };
    if (typeof header.serverStatus === 'number') {
      this.transactionStatus = header.serverStatus & SERVER_STATUS_IN_TRANS ? 'transaction' : 'idle';
    }
    const out: ResultSet = {
      rows: [],
      affectedRows: Number(header.affectedRows),
      warningCount: header.warningStatus,
      message: header.info,
      serverStatus: header.serverStatus,
    };
    // 0 when the statement generated no id (an UPDATE, an INSERT of explicit ids): no insertId then, as elsewhere.
    const insertId = toSafeNumber(header.insertId);
    if (insertId !== undefined && insertId !== 0) out.insertId = insertId;
    // UPDATE: affectedRows counts the rows it matched, as on PostgreSQL and SQLite (MySQL's own
    // count, the rows it changed, is changedRows).
    const matched = /Rows matched: (\d+)\s+Changed: (\d+)/.exec(header.info ?? '');
    if (matched) {
      out.affectedRows = Number(matched[1]);
      out.changedRows = Number(matched[2]);
    }
    return out;
  }

  cursor(text: string, values: readonly unknown[], options: StreamOptions): RowCursor {
    // Rows arrive as events; the socket is paused once a batch is buffered and resumed by read().
    const raw = this.raw as unknown as RawConnection & { pause(): void; resume(): void };
    let buffer: unknown[] = [];
    let ended = false;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const query = raw.query({ sql: text, values: values as unknown[], rowsAsArray: options.rowMode === 'array' });
    query.on('result', (row: unknown) => {
      buffer.push(row);
      if (buffer.length >= options.batchSize) {
        raw.pause();
        wake?.();
      }
    });
    query.on('end', () => {
      ended = true;
      wake?.();
    });
    query.on('error', (error: Error & { fatal?: boolean }) => {
      if (error.fatal) this.broken = true;
      failure = error;
      ended = true;
      wake?.();
    });
    const take = () => {
      const rows = buffer;
      buffer = [];
      if (!ended) raw.resume();
      return rows;
    };
    return {
      read: async () => {
        if (buffer.length < options.batchSize && !ended) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        if (failure) throw this.driver.translateError(failure, text, values.length > 0);
        return take();
      },
      close: async () => {
        if (ended || this.broken) return;
        // Stop the server sending the rest and drain what is on the way, so the session can
        // be reused; one that does not finish within a second is destroyed.
        buffer = [];
        const drained = new Promise<void>((resolve) => (wake = resolve));
        query.removeAllListeners('result');
        query.on('result', () => {});
        await this.driver.killQuery(this.serverId, this.node).catch(() => {});
        raw.resume();
        const timer = setTimeout(() => this.destroy(), 1000);
        await drained;
        clearTimeout(timer);
      },
    };
  }

  cancel(): Promise<void> {
    return this.driver.killQuery(this.serverId, this.node);
  }

  async ping(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.inFlight.add(reject);
      this.raw.ping((err) => {
        this.inFlight.delete(reject);
        if (err) reject(this.driver.translateError(err, 'PING'));
        else resolve();
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.destroy();
        resolve();
      }, 1000);
      this.raw.end(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /**
   * Closes the socket at once. mysql2's own `destroy()` only half-closes it and never settles
   * the command in flight, so a statement waiting on a silent server would hang forever: the
   * socket is destroyed outright and the pending commands reject with `CONNECTION_LOST`.
   */
  destroy(): void {
    this.broken = true;
    this.raw.destroy();
    (this.raw as unknown as { stream?: { destroy?(): void } }).stream?.destroy?.();
    for (const reject of this.inFlight.drain()) reject(this.lostError());
  }

  private lostError(): DatabaseError {
    return new DatabaseError('connection destroyed by the client while a statement was in flight (timeout or cancel)', {
      dialect: 'mysql',
      code: ErrorCode.ConnectionLost,
    });
  }

  onError(handler: (error: DatabaseError) => void): void {
    this.errorHandler = handler;
  }

  onEnd(handler: () => void): void {
    this.endHandlers.push(handler);
  }

  native(): unknown {
    return this.raw;
  }

  /**
   * COM_RESET_CONNECTION: rolls back, drops temporary tables, releases locks (LOCK TABLES,
   * GET_LOCK), forgets user variables and prepared statements (mysql2 clears its cache), and
   * resets session variables; the statement time limit is then set again.
   */
  async resetSession(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.inFlight.add(reject);
      (this.raw as unknown as { reset(cb: (err: Error | null) => void): void }).reset((err) => {
        this.inFlight.delete(reject);
        if (err) reject(this.driver.translateError(err, 'RESET CONNECTION'));
        else resolve();
      });
    });
    this.transactionStatus = 'idle';
    if (this.sessionTimeoutMs > 0) await this.setStatementTimeout(this.sessionTimeoutMs);
  }
}

function toSafeNumber(value: number | string | undefined): number | string | undefined {
  if (typeof value !== 'string') return value;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : value;
}
