/**
 * The options of `DatabaseModule.forRoot` and their checking. Every option is validated once,
 * at bootstrap; a bad one is a `ConfigurationError` that names the option and what it accepts.
 * No message ever contains the password or the URL it came in.
 */
import { readFileSync } from 'node:fs';
import { ConfigurationError } from '../core/errors.js';
import { DIALECT_NAMES, dialectOfScheme, dialectsWith, profileOf } from '../drivers/registry.js';
import type { Dialect } from '../core/errors.js';
import { TARGET_SESSION_ATTRS, type ConnectionSettings, type Driver, type TargetSessionAttrs } from '../drivers/driver.js';
import type { PoolOptions } from '../pool/pool.js';
import type { BackoffOptions } from '../resilience/backoff.js';
import type { DeathChecker } from '../resilience/death-checker.js';
import type { MigrationOptions } from './migration.options.js';
import { resolveMigrationOptions, type ResolvedMigrationOptions } from './migration.options.js';

import { DEFAULT_DATABASE } from '../core/names.js';

export { DEFAULT_DATABASE };

export interface PoolSettings {
  /** Connections kept open even when idle. Default: 0 (lazy: nothing connects before the first query). */
  min?: number;
  /** Most connections open at once. Default: 10 (4 for SQLite, where each connection is a process). */
  max?: number;
  /** An idle connection above `min` is closed after this. Default: 30 000. 0: never. */
  idleTimeoutMs?: number;
  /** Wait at most this for a free connection, then `AcquireTimeout`. Default: 10 000. */
  acquireTimeoutMs?: number;
  /** A connection is closed (and replaced) once this old. Default: 1 800 000 (30 min). 0: no limit. */
  maxLifetimeMs?: number;
  /** Log once, with the stack that took it, a connection held longer than this. Default: 0 (off). */
  leakDetectionMs?: number;
  /** A connection idle longer than this is pinged before it is handed out. Default: 30 000. */
  validateAfterIdleMs?: number;
}

export interface TypeOptions {
  /**
   * 64-bit integers (PostgreSQL int8 and `COUNT(*)`, MySQL BIGINT, SQLite integers of columns
   * declared BIGINT and of expressions): `'number'` while exact, an exact string beyond ±2^53;
   * `'string'` always; `'bigint'` always. Default: `'number'`.
   */
  int64?: 'number' | 'string' | 'bigint';
  /** MySQL: TINYINT(1), which is what BOOLEAN is there, as `true`/`false`. Default: false (0/1). */
  tinyint1AsBoolean?: boolean;
}

export interface DatabaseModuleOptions {
  /** The name of this database, for `@InjectDatabase(name)` and `@Transactional({ connection })`. Default: `'default'`. */
  name?: string;
  /**
   * `postgres://user:password@host:5432/db`, `mysql://user:password@host:3306/db`,
   * `sqlite:./data/app.db` or `sqlite::memory:`. Fields given beside it override its parts.
   */
  url?: string;
  /** The dialect, or a `Driver` of your own. Default: taken from `url`. */
  driver?: Dialect | Driver;
  host?: string;
  port?: number;
  user?: string;
  /** A string, or a function called for every new connection (rotating credentials, IAM tokens). Never logged. */
  password?: string | (() => string | Promise<string>);
  database?: string;
  /** SQLite: the database file, or `:memory:`. */
  filename?: string;
  /**
   * TLS: `true` (verified against the system's CAs), or Node `tls.connect` options such as
   * `ca`, `cert`, `key`, `rejectUnauthorized`, `servername`. The server certificate and host
   * name are verified unless `rejectUnauthorized: false`; giving a `ca` with
   * `rejectUnauthorized: false` is refused, since the CA would be ignored. MySQL: `verifyIdentity`
   * (the host name check) defaults to true for a host name; mysql2 cannot check an IP address,
   * so for an IP host only the CA is verified, and `verifyIdentity: true` is refused.
   * In a URL: `?sslmode=disable|prefer|require|verify-ca|verify-full` and `sslrootcert=<file>`
   * (`sslcert`, `sslkey` for a client certificate), read at bootstrap. Default: no TLS.
   */
  ssl?: boolean | Record<string, unknown>;
  pool?: PoolSettings;
  /** Give up opening a connection after this. Default: 10 000. */
  connectTimeoutMs?: number;
  /** Deadline of every query (client side, plus the server's statement timeout where it has one). Default: 0 (none). */
  queryTimeoutMs?: number;
  /** Delays between reconnection attempts while the database is dead. Default: first at once, then from 100 ms doubling with ±20 % jitter, capped at 10 000, forever. */
  reconnect?: BackoffOptions;
  /** Extra error codes, errnos or message fragments that mean "the connection is dead". Default: none. */
  transientErrors?: Array<string | number>;
  /** Replaces `defaultDeathChecker` (after `transientErrors` are added to it). */
  deathChecker?: DeathChecker;
  /**
   * While the database is marked dead, calls fail at once with `ConnectionDead` (fail fast). Set
   * this to let them wait up to this long for the reconnect instead (also per call, in
   * `QueryOptions`). Default: 0.
   */
  waitForRecoveryMs?: number;
  /**
   * Fail the boot unless the database answers. A server that cannot be reached is tried again
   * with the `reconnect` backoff until `startupTimeoutMs` has passed (a database that starts
   * after the app, as in a pod or docker-compose); an error that retrying cannot cure (wrong
   * password, unknown database, TLS refused) fails the boot at once. Default: false (connect lazily).
   */
  verifyOnStartup?: boolean;
  /** With `verifyOnStartup`: how long to keep trying before the boot fails. Default: 30 000. */
  startupTimeoutMs?: number;
  /** On shutdown, wait this long for in-flight work before closing connections. Default: 10 000. */
  shutdownTimeoutMs?: number;
  /**
   * On shutdown (SIGTERM with `app.enableShutdownHooks()`), the health indicator reports down
   * for this long while the app still serves requests, so that Kubernetes takes the pod out of
   * its Service before the server stops accepting connections. Default: 0.
   */
  shutdownDelayMs?: number;
  /**
   * Log through Nest's `Logger` (context `nestjs-dbpool:<name>`): `true` for everything, or some
   * of `'query'` (each statement's text, never its values), `'error'` (failed statements),
   * `'slow'` (statements slower than `slowQueryMs`). Default: false.
   */
  logging?: boolean | Array<'query' | 'error' | 'slow'>;
  /**
   * When a connection is reset (session state undone) before the pool hands it out again:
   * `'auto'` after a `session()`, a native loan, or a statement that may leave state on the
   * session (SET, set_config, advisory locks, temporary tables, user variables, LISTEN…);
   * `'always'` after every use (one round trip more per call); `'never'` for apps that set no
   * session state (a session then only undoes its own `settings`). Default: `'auto'`.
   */
  sessionReset?: 'auto' | 'always' | 'never';
  /**
   * The settings of the request-scoped session `@InjectConnection()` gives, from the request
   * (Express's, or the one your adapter gives `@Inject(REQUEST)`). Default: none.
   *
   * @example
   * requestSettings: (req) => ({ 'app.tenant_id': (req as Request).header('x-tenant-id') ?? null })
   */
  requestSettings?: (
    request: unknown,
  ) => Record<string, string | number | boolean | null> | undefined | Promise<Record<string, string | number | boolean | null> | undefined>;
  /** How values come back, the same on every dialect (README, Types). */
  types?: TypeOptions;
  /**
   * MySQL/MariaDB: a write that produces warnings fails with code `MYSQL_WARNING` instead of
   * succeeding quietly (a value cut to fit the column, `INSERT IGNORE` turning an error into a
   * warning, even in strict mode). Outside a transaction the write runs in its own, rolled back
   * on a warning (two round trips more per write). Default: false.
   */
  warningsAsErrors?: boolean;
  /**
   * Server-side prepared statements for every query: PostgreSQL named statements, mysql2
   * `execute`, each cached per connection. Measured faster for repeated statements (README,
   * Performance). Set `false` behind PgBouncer in transaction mode, or to get MySQL's text
   * protocol. A query can still ask with `QueryOptions.prepare`. Default: true.
   */
  prepare?: boolean;
  /** Emit a `slowQuery` event for queries slower than this. Default: 0 (off). */
  slowQueryMs?: number;
  /**
   * Migrations of this database: a folder of ordered files (SQL, or JS/TS modules given the
   * `Database`), recorded with a checksum in a table, applied at bootstrap under a database lock
   * so that pods booting at once apply each exactly once (README, Migrations). Needs the
   * `umzug` package. Default: none.
   */
  migrations?: MigrationOptions;
  /**
   * Read replicas beside the primary (`url`): URLs of the same dialect (PostgreSQL streaming
   * standbys, MariaDB GTID replicas). Reads outside a transaction (`runQuery` and `stream` of a SELECT, WITH, VALUES,
   * TABLE or SHOW) and `readOnly` transactions go to a replica in turn; everything else, and a
   * call with `target: 'primary'`, to the primary. A user, password or database the URL leaves
   * out is the primary's. Default: none.
   */
  replicas?: string[];
  /**
   * Whether a read on a replica must see the writes committed before it (README, Scaling out):
   * `'context'` (default) waits for the writes of its own context (`db.readContext()`, each
   * HTTP request under the module), and for every write of this process outside any context;
   * `'always'` for every write of this process; `'off'` reads whatever the replica has.
   */
  readYourWrites?: 'context' | 'always' | 'off';
  /** A replica further behind than this leaves the rotation until it catches up. Default: 10 000. */
  maxReplicaLagMs?: number;
  /** How long a read waits for its replica to replay the writes it must see, before it goes to the primary. Default: 100. */
  replicaWaitMs?: number;
  /** How often each replica's state and lag are checked. Default: 1 000. */
  replicaCheckIntervalMs?: number;
  /**
   * PostgreSQL behind PgBouncer: its `pool_mode`. `'transaction'` turns named prepared statements
   * off (PgBouncer 1.18 does not keep them across server connections), refuses `db.session()`
   * and `@InjectConnection()` (session state does not survive a transaction there) and
   * `listen()` unless `listenUrl` is given. Default: none (a direct connection, or session mode).
   */
  pgbouncer?: 'session' | 'transaction';
  /** PostgreSQL: a direct URL to the server for LISTEN (behind a transaction-mode PgBouncer); the rest is the `url`'s. */
  listenUrl?: string;
  /**
   * OpenTelemetry spans (with `@opentelemetry/api` installed and an SDK registered): `false`
   * turns them off; `queryText: false` leaves the statement text out of `db.query.text`.
   * Default: on, with the text (never parameter values).
   */
  tracing?: false | { queryText?: boolean };
  /**
   * OpenTelemetry metrics (`db.client.operation.duration`, `db.client.connection.*`, and the
   * module's `nestjs_dbpool.*`), with `@opentelemetry/api` installed and a meter provider
   * registered before the database opens. Default: true.
   */
  metrics?: boolean;
  /** Options handed to the underlying client as they are (`pg.Client`, `mysql2.createConnection`). */
  driverOptions?: Record<string, unknown>;
}

export interface ResolvedOptions {
  name: string;
  dialect: Dialect;
  driver?: Driver;
  settings: ConnectionSettings;
  pool: PoolOptions;
  queryTimeoutMs: number;
  reconnect: BackoffOptions;
  transientErrors: Array<string | number>;
  deathChecker?: DeathChecker;
  verifyOnStartup: boolean;
  shutdownTimeoutMs: number;
  shutdownDelayMs: number;
  startupTimeoutMs: number;
  prepare: boolean;
  slowQueryMs: number;
  waitForRecoveryMs: number;
  logging: { query: boolean; error: boolean; slow: boolean };
  sessionReset: 'auto' | 'always' | 'never';
  migrations?: ResolvedMigrationOptions;
  replication: ResolvedReplication;
  /** PgBouncer's pool mode in front of the server, when given. */
  pgbouncer?: 'session' | 'transaction';
  /** The listener's own server (`listenUrl`), when given. */
  listenSettings?: ConnectionSettings;
  /** OpenTelemetry spans: off, or on with or without the statement text. */
  tracing: false | { queryText: boolean };
  metrics: boolean;
  requestSettings?: DatabaseModuleOptions['requestSettings'];
  types: Required<TypeOptions>;
}

const DIALECTS = DIALECT_NAMES;

function fail(option: string, message: string): never {
  throw new ConfigurationError(`DatabaseModule option "${option}" ${message}`, { option });
}

function checkNumber(option: string, value: unknown, fallback: number, min = 0): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || !Number.isInteger(value)) {
    fail(option, `must be an integer >= ${min} (got ${describeValue(value)})`);
  }
  return value;
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return typeof value;
}

interface UrlParts {
  dialect: Dialect;
  hosts?: Array<{ host: string; port?: number }>;
  targetSessionAttrs?: TargetSessionAttrs;
  host?: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  filename?: string;
  ssl?: ConnectionSettings['ssl'];
}

type SslMode = 'disable' | 'prefer' | 'require' | 'no-verify' | 'verify-ca' | 'verify-full';
/** The URL's sslmode of the TLS options it produced, until the dialect completes them (never passed to a client). */
const sslModes = new WeakMap<object, string>();
const SSL_MODES: readonly string[] = ['disable', 'allow', 'prefer', 'require', 'no-verify', 'verify-ca', 'verify-full'];

/** Parses a connection URL. Error messages show the scheme only: the URL may hold a password. */
export function parseUrl(url: string): UrlParts {
  if (typeof url !== 'string' || url.length === 0) fail('url', 'must be a non-empty string such as postgres://user@host/db');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  const dialect = scheme ? dialectOfScheme(scheme) : undefined;
  if (!dialect) {
    const accepted = DIALECTS.flatMap((d) => profileOf(d).schemes.map((s) => (profileOf(d).embedded ? `${s}:` : `${s}://`)));
    fail('url', `has an unknown scheme "${scheme ?? ''}"; accepted: ${accepted.join(', ')}`);
  }
  if (profileOf(dialect).embedded) {
    let filename = url.slice(scheme!.length + 1);
    if (filename.startsWith('//')) filename = filename.slice(2);
    if (filename === '') fail('url', 'needs a file after "sqlite:" (sqlite:./data/app.db) or sqlite::memory:');
    return { dialect, filename };
  }
  // Several hosts (libpq's postgres://h1:5432,h2:5433/db): the URL parser takes one, so the list is read here.
  const authority = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?([^/?#]*)/i.exec(url);
  let hosts: Array<{ host: string; port?: number }> | undefined;
  if (authority && authority[1].includes(',')) {
    if (!dialectsWith('multiple hosts').includes(dialect)) {
      fail('url', `lists several hosts, which ${profileOf(dialect).title} connections do not take here (${dialectsWith('multiple hosts').join(', ')} does)`);
    }
    hosts = authority[1].split(',').map((entry) => {
      const m = /^(\[[^\]]+\]|[^:]*)(?::(\d+))?$/.exec(entry);
      if (!m || m[1] === '') fail('url', 'has an empty or malformed entry in its host list (expected host1:port1,host2:port2)');
      return { host: decodeURIComponent(m[1]).replace(/^\[(.*)\]$/, '$1'), ...(m[2] ? { port: Number(m[2]) } : {}) };
    });
    const start = authority.index + authority[0].length - authority[1].length;
    url = url.slice(0, start) + authority[1].split(',')[0] + url.slice(start + authority[1].length);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    fail('url', `is not a valid ${scheme}:// URL (expected ${scheme}://user:password@host:port/database)`);
  }
  const decode = (text: string, part: string): string => {
    try {
      return decodeURIComponent(text);
    } catch {
      return fail('url', `has a malformed %-escape in its ${part}`);
    }
  };
  const parts: UrlParts = { dialect };
  if (hosts) parts.hosts = hosts;
  const params = parsed.searchParams;
  const attrs = params.get('target_session_attrs');
  if (attrs !== null) {
    if (!dialectsWith('target_session_attrs').includes(dialect)) fail('url', `has target_session_attrs, which ${profileOf(dialect).title} does not take`);
    if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(attrs)) {
      const shown = /^[a-z-]{1,20}$/i.test(attrs) ? ` "${attrs}"` : '';
      fail('url', `has an unknown target_session_attrs${shown}; accepted: ${TARGET_SESSION_ATTRS.join(', ')}`);
    }
    parts.targetSessionAttrs = attrs as TargetSessionAttrs;
  }
  const host = params.get('host') ?? decode(parsed.hostname, 'host');
  if (host) parts.host = host.replace(/^\[(.*)\]$/, '$1');
  if (parsed.port) parts.port = Number(parsed.port);
  if (parsed.username) parts.user = decode(parsed.username, 'user name');
  if (parsed.password) parts.password = decode(parsed.password, 'password');
  const database = decode(parsed.pathname.replace(/^\//, ''), 'database name');
  if (database) parts.database = database;
  const sslmode = params.get('sslmode');
  if (sslmode !== null && !SSL_MODES.includes(sslmode)) {
    // The value is echoed only when it looks like a mode name: a URL may hold a secret anywhere.
    const shown = /^[a-z-]{1,20}$/i.test(sslmode) ? ` "${sslmode}"` : '';
    fail('url', `has an unknown sslmode${shown}; accepted: disable, prefer, require, verify-ca, verify-full`);
  }
  const rootCert = params.get('sslrootcert');
  const cert = params.get('sslcert');
  const key = params.get('sslkey');
  const ssl = params.get('ssl');
  const wantsTls = ssl === 'true' || ssl === '1' || rootCert !== null || cert !== null;
  const mode = (sslmode === 'allow' ? 'prefer' : sslmode) as SslMode | null;
  if (mode === 'disable') {
    parts.ssl = false;
  } else if (mode !== null || wantsTls) {
    parts.ssl = urlTls(dialect, mode, { rootCert, cert, key });
  }
  return parts;
}

/**
 * The TLS options of a URL, as libpq reads them: `require` (and `prefer`) encrypt without
 * checking the certificate, unless `sslrootcert` is given, when they check it as `verify-ca`
 * does; `verify-ca` checks the chain, `verify-full` the chain and the host name. With only
 * `sslrootcert`, the mode is `verify-full`. `sslrootcert=system` uses the system's CAs.
 * node-postgres cannot fall back to plain text, so `prefer` and `allow` mean `require`.
 */
function urlTls(dialect: Dialect, mode: SslMode | null, files: { rootCert: string | null; cert: string | null; key: string | null }): Record<string, unknown> {
  const ca = files.rootCert !== null && files.rootCert !== 'system' ? readTlsFile('sslrootcert', files.rootCert) : undefined;
  if (mode === 'no-verify' && ca !== undefined) {
    fail('url', 'has sslmode=no-verify and an sslrootcert: the CA would be ignored; use sslmode=verify-full (or verify-ca), or drop sslrootcert');
  }
  let effective: SslMode | 'verify' = mode ?? 'verify';
  if ((effective === 'require' || effective === 'prefer') && files.rootCert !== null) effective = 'verify-ca';
  const options: Record<string, unknown> = {};
  if (ca !== undefined) options.ca = ca;
  if (files.cert !== null) options.cert = readTlsFile('sslcert', files.cert);
  if (files.key !== null) {
    hideKey(options, readTlsFile('sslkey', files.key));
  }
  switch (effective) {
    case 'prefer':
    case 'require':
    case 'no-verify':
      options.rejectUnauthorized = false;
      break;
    case 'verify-ca':
      options.rejectUnauthorized = true;
      sslModes.set(options, 'verify-ca');
      break;
    case 'verify-full':
      options.rejectUnauthorized = true;
      sslModes.set(options, 'verify-full');
      break;
    default:
      // No sslmode: verified, with the host name check of the `ssl` option's defaults.
      options.rejectUnauthorized = true;
  }
  return options;
}

/**
 * A private key, kept out of JSON.stringify and util.inspect like the password: a hidden
 * accessor, which even `showHidden` prints as `[Getter/Setter]`. pg and mysql2 read it by name.
 */
function hideKey(tls: Record<string, unknown>, key: unknown): void {
  let value = key;
  Object.defineProperty(tls, 'key', {
    get: () => value,
    set: (next: unknown) => {
      value = next;
    },
    enumerable: false,
    configurable: true,
  });
}

/** Reads a certificate or key named in the URL, at bootstrap, so that a wrong path fails the boot rather than the first query. */
function readTlsFile(param: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as { code?: string }).code ?? 'unreadable';
    return fail('url', `has ${param}="${file}", which cannot be read (${code})`);
  }
}

/**
 * The `ssl` option as the drivers take it: `true` becomes `{}` (mysql2 takes only objects),
 * and an object is copied, so that a driver may add to it (mysql2 does) without touching the
 * caller's. Verification stays on whenever a CA is given.
 */
function resolveSsl(ssl: unknown, dialect: Dialect, host: string | undefined): ConnectionSettings['ssl'] {
  if (ssl === undefined || ssl === false) return ssl;
  if (ssl === true) ssl = {};
  if (typeof ssl !== 'object' || ssl === null || Array.isArray(ssl)) {
    fail('ssl', 'must be true, false or an object of TLS options ({ ca, rejectUnauthorized, ... })');
  }
  const source = ssl as Record<string, unknown>;
  const out: Record<string, unknown> = { ...source };
  if (Object.prototype.hasOwnProperty.call(source, 'key')) hideKey(out, source.key);
  if (source.ca !== undefined && source.rejectUnauthorized === false) {
    fail('ssl', 'has a ca and rejectUnauthorized: false: the certificate would not be checked against the ca; remove rejectUnauthorized, or the ca');
  }
  const sslmode = sslModes.get(source);
  const refusal = profileOf(dialect).completeTls?.(out, host, sslmode);
  if (refusal) fail('ssl', refusal);
  return out;
}

const LOG_KINDS = ['query', 'error', 'slow'] as const;

function resolveLogging(logging: unknown): ResolvedOptions['logging'] {
  if (logging === undefined || logging === false) return { query: false, error: false, slow: false };
  if (logging === true) return { query: true, error: true, slow: true };
  if (!Array.isArray(logging) || logging.some((k) => !(LOG_KINDS as readonly unknown[]).includes(k))) {
    fail('logging', `must be true, false or an array of ${LOG_KINDS.map((k) => `'${k}'`).join(', ')}`);
  }
  return { query: logging.includes('query'), error: logging.includes('error'), slow: logging.includes('slow') };
}

/** Every option, nested ones as `pool.max`, for refusing misspelt keys with the nearest valid one. */
const KNOWN_OPTIONS: Record<string, readonly string[]> = {
  '': [
    'name',
    'isGlobal',
    'url',
    'driver',
    'host',
    'port',
    'user',
    'password',
    'database',
    'filename',
    'ssl',
    'pool',
    'connectTimeoutMs',
    'queryTimeoutMs',
    'reconnect',
    'transientErrors',
    'deathChecker',
    'waitForRecoveryMs',
    'verifyOnStartup',
    'startupTimeoutMs',
    'shutdownTimeoutMs',
    'shutdownDelayMs',
    'logging',
    'sessionReset',
    'requestSettings',
    'types',
    'warningsAsErrors',
    'prepare',
    'slowQueryMs',
    'migrations',
    'replicas',
    'readYourWrites',
    'maxReplicaLagMs',
    'replicaWaitMs',
    'replicaCheckIntervalMs',
    'pgbouncer',
    'listenUrl',
    'tracing',
    'metrics',
    'driverOptions',
  ],
  pool: ['min', 'max', 'idleTimeoutMs', 'acquireTimeoutMs', 'maxLifetimeMs', 'leakDetectionMs', 'validateAfterIdleMs'],
  reconnect: ['initialDelayMs', 'baseDelayMs', 'maxDelayMs', 'factor', 'jitter', 'maxRetries', 'random'],
  types: ['int64', 'tinyint1AsBoolean'],
  tracing: ['queryText'],
  migrations: ['directory', 'list', 'runOnBoot', 'table', 'lockTimeoutMs', 'statementTimeoutMs', 'validateChecksums'],
};

/** Names users bring from other libraries, and what they are called here. */
const SYNONYMS: Record<string, string> = {
  poolsize: 'pool.max',
  connectionlimit: 'pool.max',
  maxconnections: 'pool.max',
  minconnections: 'pool.min',
  username: 'user',
  db: 'database',
  dbname: 'database',
  schema: 'database',
  connectionstring: 'url',
  uri: 'url',
  type: 'driver',
  dialect: 'driver',
  client: 'driver',
  timeout: 'queryTimeoutMs',
  statementtimeout: 'queryTimeoutMs',
  querytimeout: 'queryTimeoutMs',
  connecttimeout: 'connectTimeoutMs',
  connectiontimeoutmillis: 'connectTimeoutMs',
  idletimeoutmillis: 'pool.idleTimeoutMs',
  retryattempts: 'reconnect.maxRetries',
  retrydelay: 'reconnect.initialDelayMs',
  tls: 'ssl',
};

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length];
}

/** The valid option closest to `key` (found under `section`), if any is close enough to be meant. */
function nearestOption(section: string, key: string): string | undefined {
  const lower = key.toLowerCase().replace(/[_-]/g, '');
  const synonym = SYNONYMS[lower];
  if (synonym) return synonym;
  const all = Object.entries(KNOWN_OPTIONS).flatMap(([s, keys]) => keys.map((k) => (s ? `${s}.${k}` : k)));
  // A nested option given one level too high (`max` for `pool.max`) or low.
  const sameLeaf = all.find((path) => path.split('.').pop()!.toLowerCase() === lower);
  if (sameLeaf) return sameLeaf;
  // `maxSize` for `max`, `idleTimeout` for `idleTimeoutMs`: one is the other plus a suffix.
  const inSection = KNOWN_OPTIONS[section].filter((k) => k.length >= 3 && (lower.startsWith(k.toLowerCase()) || k.toLowerCase().startsWith(lower)));
  if (inSection.length > 0) return (section ? `${section}.` : '') + inSection.sort((a, b) => b.length - a.length)[0];
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const path of all) {
    const leaf = path.split('.').pop()!;
    const d = Math.min(distance(lower, leaf.toLowerCase()), distance(lower, path.toLowerCase().replace('.', '')));
    const preferred = path.startsWith(section ? `${section}.` : '') ? -0.5 : 0;
    if (d + preferred < bestDistance) {
      bestDistance = d + preferred;
      best = path;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** Refuses keys no option has: a misspelt one would otherwise be ignored in silence. */
function checkKnownKeys(section: string, value: object): void {
  const known = KNOWN_OPTIONS[section];
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const path = section ? `${section}.${key}` : key;
    const nearest = nearestOption(section, key);
    throw new ConfigurationError(
      `DatabaseModule has no option "${path}"${nearest ? `; did you mean ${nearest}?` : ''} (every option is in the README's Configuration table)`,
      { option: path },
    );
  }
}

/** Checks and completes the options; throws `ConfigurationError` on the first bad one. */
export function resolveOptions(options: DatabaseModuleOptions | undefined): ResolvedOptions {
  if (!options || typeof options !== 'object') fail('options', 'must be an object such as { url: "sqlite::memory:" }');
  checkKnownKeys('', options);
  if (options.pool && typeof options.pool === 'object') checkKnownKeys('pool', options.pool);
  if (options.reconnect && typeof options.reconnect === 'object') checkKnownKeys('reconnect', options.reconnect);
  if (options.types && typeof options.types === 'object') checkKnownKeys('types', options.types);
  if (options.migrations && typeof options.migrations === 'object') checkKnownKeys('migrations', options.migrations);
  const name = options.name ?? DEFAULT_DATABASE;
  if (typeof name !== 'string' || name.length === 0) fail('name', 'must be a non-empty string');

  const fromUrl = options.url !== undefined ? parseUrl(options.url) : undefined;
  let dialect: Dialect | undefined = fromUrl?.dialect;
  let driver: Driver | undefined;
  if (options.driver !== undefined) {
    if (typeof options.driver === 'string') {
      if (!(DIALECTS as readonly string[]).includes(options.driver)) {
        fail('driver', `is "${describeValue(options.driver).replace(/"/g, '')}"; accepted: ${DIALECTS.join(', ')}, or a Driver object`);
      }
      if (dialect && dialect !== options.driver) fail('driver', `("${options.driver}") does not match the url's scheme ("${dialect}")`);
      dialect = options.driver;
    } else if (typeof options.driver === 'object' && typeof options.driver.connect === 'function') {
      driver = options.driver;
      dialect = driver.dialect;
    } else {
      fail('driver', `must be one of ${DIALECTS.join(', ')}, or a Driver object`);
    }
  }
  if (!dialect) fail('url', 'or "driver" is required: give url (postgres://…, mysql://…, sqlite:…) or driver: postgres | mysql | sqlite');

  for (const key of ['host', 'user', 'database', 'filename'] as const) {
    const value = options[key];
    if (value !== undefined && typeof value !== 'string') fail(key, `must be a string (got ${typeof value})`);
  }
  const password = options.password ?? fromUrl?.password;
  if (password !== undefined && typeof password !== 'string' && typeof password !== 'function') {
    fail('password', 'must be a string or a function returning one');
  }
  const profile = profileOf(dialect);
  const port = options.port ?? fromUrl?.port ?? profile.defaultPort;
  if (port !== undefined) checkNumber('port', port, 0, 1);
  if (port !== undefined && port > 65535) fail('port', `must be between 1 and 65535 (got ${port})`);

  const filename = options.filename ?? fromUrl?.filename;
  if (profile.embedded && !filename && !driver)
    fail('filename', `is required for ${dialect} (a file path, or ":memory:"), or use url: "${profile.exampleUrl}"`);

  const connectTimeoutMs = checkNumber('connectTimeoutMs', options.connectTimeoutMs, 10_000, 1);
  const queryTimeoutMs = checkNumber('queryTimeoutMs', options.queryTimeoutMs, 0);
  const shutdownTimeoutMs = checkNumber('shutdownTimeoutMs', options.shutdownTimeoutMs, 10_000);
  const slowQueryMs = checkNumber('slowQueryMs', options.slowQueryMs, 0);
  const waitForRecoveryMs = checkNumber('waitForRecoveryMs', options.waitForRecoveryMs, 0);
  const shutdownDelayMs = checkNumber('shutdownDelayMs', options.shutdownDelayMs, 0);
  const startupTimeoutMs = checkNumber('startupTimeoutMs', options.startupTimeoutMs, 30_000, 1);
  const logging = resolveLogging(options.logging);
  const types: Required<TypeOptions> = { int64: options.types?.int64 ?? 'number', tinyint1AsBoolean: options.types?.tinyint1AsBoolean ?? false };
  if (!['number', 'string', 'bigint'].includes(types.int64)) fail('types.int64', `must be 'number', 'string' or 'bigint' (got ${describeValue(types.int64)})`);
  if (typeof types.tinyint1AsBoolean !== 'boolean') fail('types.tinyint1AsBoolean', 'must be true or false');
  const sessionReset = options.sessionReset ?? 'auto';
  if (options.requestSettings !== undefined && typeof options.requestSettings !== 'function')
    fail('requestSettings', 'must be a function (request) => settings');
  if (!['auto', 'always', 'never'].includes(sessionReset)) fail('sessionReset', `must be 'auto', 'always' or 'never' (got ${describeValue(sessionReset)})`);

  const p = options.pool ?? {};
  if (typeof p !== 'object') fail('pool', 'must be an object such as { max: 10 }');
  const pool: PoolOptions = {
    min: checkNumber('pool.min', p.min, 0),
    // SQLite: one process per connection and one writer at a time; a few serve concurrent readers.
    max: checkNumber('pool.max', p.max, profile.defaultPoolMax, 1),
    idleTimeoutMs: checkNumber('pool.idleTimeoutMs', p.idleTimeoutMs, 30_000),
    acquireTimeoutMs: checkNumber('pool.acquireTimeoutMs', p.acquireTimeoutMs, 10_000, 1),
    maxLifetimeMs: checkNumber('pool.maxLifetimeMs', p.maxLifetimeMs, 1_800_000),
    leakDetectionMs: checkNumber('pool.leakDetectionMs', p.leakDetectionMs, 0),
    validateAfterIdleMs: checkNumber('pool.validateAfterIdleMs', p.validateAfterIdleMs, 30_000),
  };
  if (pool.min > pool.max) fail('pool.min', `(${pool.min}) must not exceed pool.max (${pool.max})`);

  const reconnect = options.reconnect ?? {};
  if (typeof reconnect !== 'object') fail('reconnect', 'must be an object such as { maxDelayMs: 10000 }');
  for (const key of ['initialDelayMs', 'maxDelayMs'] as const) checkNumber(`reconnect.${key}`, reconnect[key], 0);
  if (reconnect.maxRetries !== undefined && reconnect.maxRetries !== Infinity) checkNumber('reconnect.maxRetries', reconnect.maxRetries, 0);
  for (const key of ['factor', 'jitter'] as const) {
    const v = reconnect[key];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) fail(`reconnect.${key}`, `must be a number >= 0 (got ${describeValue(v)})`);
  }
  const transientErrors = options.transientErrors ?? [];
  if (!Array.isArray(transientErrors) || transientErrors.some((t) => typeof t !== 'string' && typeof t !== 'number')) {
    fail('transientErrors', 'must be an array of error codes, errnos or message fragments');
  }
  if (options.deathChecker !== undefined && typeof options.deathChecker !== 'function') fail('deathChecker', 'must be a function (error) => boolean');
  for (const own of ['warningsAsErrors', 'pgbouncer', 'listenUrl'] as const) {
    if (options[own] !== undefined && !profile.ownOptions.includes(own)) {
      const owners = DIALECTS.filter((d) => profileOf(d).ownOptions.includes(own)).map((d) => profileOf(d).title);
      fail(own, `is an option of ${owners.join(', ')}; this database is ${profile.title}`);
    }
  }
  const pgbouncer = options.pgbouncer;
  if (pgbouncer !== undefined && pgbouncer !== 'session' && pgbouncer !== 'transaction') {
    fail('pgbouncer', `must be 'session' or 'transaction', PgBouncer's pool_mode (got ${describeValue(pgbouncer)})`);
  }
  if (pgbouncer === 'transaction' && options.prepare === true) {
    fail(
      'prepare',
      "cannot be true with pgbouncer: 'transaction': PgBouncer (before 1.21, with max_prepared_statements) hands each transaction to any server connection, which does not have the statement prepared",
    );
  }
  let listenSettings: ConnectionSettings | undefined;
  for (const key of ['verifyOnStartup', 'prepare', 'warningsAsErrors'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') fail(key, 'must be true or false');
  }
  const host = options.host ?? fromUrl?.host ?? (profile.embedded ? undefined : '127.0.0.1');
  const ssl = profile.embedded ? undefined : resolveSsl(options.ssl ?? fromUrl?.ssl, dialect, host);

  const settings: ConnectionSettings = {
    name,
    host,
    port,
    user: options.user ?? fromUrl?.user,
    database: options.database ?? fromUrl?.database,
    filename,
    ssl,
    connectTimeoutMs,
    statementTimeoutMs: queryTimeoutMs,
    driverOptions: options.driverOptions,
    types,
    warningsAsErrors: options.warningsAsErrors === true,
    ...(fromUrl?.hosts && options.host === undefined ? { hosts: fromUrl.hosts.map((h) => ({ host: h.host, port: h.port ?? profile.defaultPort })) } : {}),
    ...(fromUrl?.targetSessionAttrs ? { targetSessionAttrs: fromUrl.targetSessionAttrs } : {}),
  };
  // Kept out of JSON.stringify, util.inspect and object spreads; a getter, so that even
  // util.inspect(…, { showHidden: true }) shows `[Getter]` rather than the value.
  Object.defineProperty(settings, 'password', { get: () => password, enumerable: false });
  if (options.listenUrl !== undefined) listenSettings = directSettings('listenUrl', options.listenUrl, dialect, settings, password);

  return {
    name,
    dialect,
    driver,
    settings,
    pool,
    queryTimeoutMs,
    reconnect,
    transientErrors,
    deathChecker: options.deathChecker,
    verifyOnStartup: options.verifyOnStartup ?? false,
    shutdownTimeoutMs,
    prepare: options.prepare ?? pgbouncer !== 'transaction',
    pgbouncer,
    listenSettings,
    slowQueryMs,
    waitForRecoveryMs,
    shutdownDelayMs,
    startupTimeoutMs,
    logging,
    sessionReset,
    requestSettings: options.requestSettings,
    types,
    migrations: options.migrations === undefined ? undefined : resolveMigrationOptions(options.migrations),
    replication: resolveReplication(options, dialect, settings, password),
    tracing: resolveTracing(options.tracing),
    metrics: resolveMetrics(options.metrics),
  };
}

/**
 * The settings of one other server (a replica, the listener's direct URL): the primary's, with
 * the host, port and whatever else this URL gives. One host: a host list is the primary's.
 */
function directSettings(
  option: string,
  url: unknown,
  dialect: Dialect,
  primary: ConnectionSettings,
  primaryPassword: DatabaseModuleOptions['password'],
): ConnectionSettings {
  if (typeof url !== 'string') fail(option, 'must be a connection URL string');
  let parts: UrlParts;
  try {
    parts = parseUrl(url);
  } catch (error) {
    fail(option, (error as Error).message.replace(/^.*?option "url" /, ''));
  }
  if (parts.dialect !== dialect) fail(option, `is a ${parts.dialect} URL; the database is ${dialect}`);
  const host = parts.host ?? '127.0.0.1';
  const port = parts.port ?? profileOf(dialect).defaultPort;
  const { hosts: _hosts, targetSessionAttrs: _attrs, ...single } = primary;
  const settings: ConnectionSettings = {
    ...single,
    host,
    port,
    user: parts.user ?? primary.user,
    database: parts.database ?? primary.database,
    ssl: parts.ssl !== undefined ? resolveSsl(parts.ssl, dialect, host) : primary.ssl,
  };
  const password = parts.password ?? primaryPassword;
  Object.defineProperty(settings, 'password', { get: () => password, enumerable: false });
  return settings;
}

function resolveMetrics(metrics: unknown): boolean {
  if (metrics !== undefined && typeof metrics !== 'boolean') fail('metrics', 'must be true or false');
  return metrics !== false;
}

function resolveTracing(tracing: DatabaseModuleOptions['tracing']): false | { queryText: boolean } {
  if (tracing === false) return false;
  if (tracing !== undefined && (typeof tracing !== 'object' || tracing === null)) fail('tracing', 'must be false or { queryText?: boolean }');
  const queryText = tracing?.queryText ?? true;
  if (typeof queryText !== 'boolean') fail('tracing.queryText', 'must be true or false');
  return { queryText };
}

/** The replicas' options, resolved. */
export interface ResolvedReplication {
  /** Each replica's connection settings (the primary's, with the replica's host, port and what its URL gives) and a label without credentials. */
  replicas: Array<{ label: string; settings: ConnectionSettings }>;
  readYourWrites: 'context' | 'always' | 'off';
  maxReplicaLagMs: number;
  replicaWaitMs: number;
  replicaCheckIntervalMs: number;
}

function resolveReplication(
  options: DatabaseModuleOptions,
  dialect: Dialect,
  primary: ConnectionSettings,
  primaryPassword: DatabaseModuleOptions['password'],
): ResolvedReplication {
  const urls = options.replicas ?? [];
  if (!Array.isArray(urls)) fail('replicas', 'must be an array of connection URLs');
  if (urls.length > 0 && !dialectsWith('read replicas').includes(dialect)) {
    fail('replicas', `are not supported on ${profileOf(dialect).title} (${dialectsWith('read replicas').join(', ')} has them)`);
  }
  const replicas = urls.map((url, i) => {
    const settings = directSettings(`replicas[${i}]`, url, dialect, primary, primaryPassword);
    return { label: `${settings.host}:${settings.port}`, settings };
  });
  const readYourWrites = options.readYourWrites ?? 'context';
  if (!['context', 'always', 'off'].includes(readYourWrites))
    fail('readYourWrites', `must be 'context', 'always' or 'off' (got ${describeValue(readYourWrites)})`);
  return {
    replicas,
    readYourWrites,
    maxReplicaLagMs: checkNumber('maxReplicaLagMs', options.maxReplicaLagMs, 10_000, 0),
    replicaWaitMs: checkNumber('replicaWaitMs', options.replicaWaitMs, 100, 0),
    replicaCheckIntervalMs: checkNumber('replicaCheckIntervalMs', options.replicaCheckIntervalMs, 1_000, 10),
  };
}
