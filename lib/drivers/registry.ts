/**
 * The dialects this package ships: one line each. A dialect is a folder under drivers/ with a
 * `Driver`; nothing above drivers/ names one.
 */
import type { Dialect, ErrorClass } from '../core/errors.js';
import { anyDeath, socketDeathChecker, type DeathChecker } from '../resilience/death-checker.js';
import type { SqlSyntax } from '../sql/syntax.js';
import type { ConnectionSettings, DialectProfile, Driver } from './driver.js';
import { MYSQL_PROFILE } from './mysql/mysql.profile.js';
import { POSTGRES_PROFILE } from './postgres/postgres.profile.js';
import { SQLITE_PROFILE } from './sqlite/sqlite.profile.js';
import { classifyMysqlError } from './mysql/mysql.errors.js';
import { classifyStandard } from './standard.js';
import { MysqlDriver } from './mysql/mysql.driver.js';
import { MYSQL_SYNTAX } from './mysql/mysql.syntax.js';
import { classifyPostgresError } from './postgres/postgres.errors.js';
import { PostgresDriver } from './postgres/postgres.driver.js';
import { POSTGRES_SYNTAX } from './postgres/postgres.syntax.js';
import { SqliteDriver } from './sqlite/sqlite.driver.js';
import { SQLITE_SYNTAX } from './sqlite/sqlite.syntax.js';

/** What a dialect has beyond statements and transactions (for messages that say where it is). */
export type DialectFeature = 'notifications' | 'stored procedures' | 'read replicas' | 'multiple hosts' | 'target_session_attrs';

interface Registration {
  driver: new (settings: ConnectionSettings) => Driver;
  profile: DialectProfile;
  syntax: SqlSyntax;
  classify(error: unknown): ErrorClass;
  features: readonly DialectFeature[];
}

const DIALECTS: Record<Dialect, Registration> = {
  postgres: {
    driver: PostgresDriver,
    profile: POSTGRES_PROFILE,
    syntax: POSTGRES_SYNTAX,
    classify: classifyPostgresError,
    features: ['notifications', 'stored procedures', 'read replicas', 'multiple hosts', 'target_session_attrs'],
  },
  mysql: {
    driver: MysqlDriver,
    profile: MYSQL_PROFILE,
    syntax: MYSQL_SYNTAX,
    classify: classifyMysqlError,
    features: ['stored procedures', 'read replicas', 'multiple hosts'],
  },
  sqlite: { driver: SqliteDriver, profile: SQLITE_PROFILE, syntax: SQLITE_SYNTAX, classify: classifyStandard, features: [] },
};

const CLASSIFIERS = Object.fromEntries(Object.entries(DIALECTS).map(([name, r]) => [name, (error: unknown) => r.classify(error)])) as Record<
  Dialect,
  (error: unknown) => ErrorClass
>;

/** The shipped dialects' names. */
export const DIALECT_NAMES: readonly Dialect[] = Object.keys(DIALECTS) as Dialect[];

/** How a shipped dialect is configured. */
export function profileOf(dialect: Dialect): DialectProfile {
  return DIALECTS[dialect].profile;
}

/** The dialect a URL scheme names (`postgresql` → postgres), if any. */
export function dialectOfScheme(scheme: string): Dialect | undefined {
  return DIALECT_NAMES.find((name) => DIALECTS[name].profile.schemes.includes(scheme));
}

/** The shipped dialects that have `feature`. */
export function dialectsWith(feature: DialectFeature): Dialect[] {
  return DIALECT_NAMES.filter((name) => DIALECTS[name].features.includes(feature));
}

/** The placeholders and quoting of a shipped dialect (what its driver's `syntax` is). */
export function syntaxOf(dialect: Dialect): SqlSyntax {
  return DIALECTS[dialect].syntax;
}

/** The driver of `dialect` for these settings, or the app's own `Driver` object. */
export function createDriver(dialect: Dialect, settings: ConnectionSettings, custom?: Driver): Driver {
  return custom ?? new DIALECTS[dialect].driver(settings);
}

/**
 * True when an error means "the connection (or the server) is gone", for any shipped dialect:
 * socket errors, and each dialect's own codes (PostgreSQL class 08 and 57P01–03, MySQL's
 * `PROTOCOL_CONNECTION_LOST`, 2006, 2013…). Authentication and TLS certificate failures, and
 * ordinary SQL errors, are not death.
 *
 * @example
 * defaultDeathChecker(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })); // true
 */
export const defaultDeathChecker: DeathChecker = anyDeath(
  socketDeathChecker,
  ...Object.values(CLASSIFIERS).map((classify) => (e: unknown) => classify(e).lost === true),
);
