/** PostgreSQL's notifications, stored functions and migration lock. */
import { InvalidParameter } from '../../core/errors.js';
import { sql, type SqlQuery } from '../../sql/template.js';
import type { MigrationSupport, NotificationStatements } from '../driver.js';

/** PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes: a longer channel would LISTEN to another name. */
const MAX_CHANNEL_BYTES = 63;

export const POSTGRES_NOTIFICATIONS: NotificationStatements = {
  quoteChannel(channel) {
    if (typeof channel !== 'string' || channel.length === 0) throw new InvalidParameter('a channel name must be a non-empty string');
    if (channel.includes('\0')) throw new InvalidParameter('a channel name cannot contain a NUL character');
    if (Buffer.byteLength(channel) > MAX_CHANNEL_BYTES) {
      throw new InvalidParameter(`a channel name is at most ${MAX_CHANNEL_BYTES} bytes (PostgreSQL would truncate it): "${channel.slice(0, 20)}…"`);
    }
    return '"' + channel.replace(/"/g, '""') + '"';
  },
  listen: (quoted) => `LISTEN ${quoted}`,
  unlisten: (quoted) => `UNLISTEN ${quoted}`,
  notify: (channel, payload) => sql`SELECT pg_notify(${channel}, ${payload})`,
};

/** A set-returning function: `SELECT * FROM f(…)`. */
export const postgresProcedureCall = (callee: SqlQuery, args: SqlQuery): SqlQuery => sql`SELECT * FROM ${callee}(${args})`;

/** The advisory lock's 64-bit key, from the lock's name (a table name, so stable across versions of the app). */
const key = (name: string) => sql`('x' || substr(md5(${name}), 1, 16))::bit(64)::bigint`;

export const POSTGRES_MIGRATIONS: MigrationSupport = {
  tableStatement: (t) =>
    `CREATE TABLE IF NOT EXISTS ${t} (name VARCHAR(255) PRIMARY KEY, checksum CHAR(64), applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), duration_ms INTEGER NOT NULL)`,
  transactionalDdl: true,
  lock: {
    kind: 'session',
    attempt: (name) => sql`SELECT pg_try_advisory_lock(${key(name)}) AS got`,
    wait: (name) => sql`SELECT true AS got FROM (SELECT pg_advisory_lock(${key(name)})) AS locked`,
    release: (name) => sql`SELECT pg_advisory_unlock(${key(name)})`,
    holder: 'pg_locks (locktype advisory) shows its holder',
  },
  isMissingTable: (error) => (error as { sqlState?: string })?.sqlState === '42P01',
};
