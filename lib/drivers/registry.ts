/**
 * The dialects this package ships: one line each. A dialect is a folder under drivers/ with a
 * `Driver`; nothing above drivers/ names one.
 */
import type { Dialect } from '../core/errors.js';
import type { ConnectionSettings, Driver } from './driver.js';
import { MysqlDriver } from './mysql/mysql.driver.js';
import { PostgresDriver } from './postgres/postgres.driver.js';
import { SqliteDriver } from './sqlite/sqlite.driver.js';

const DRIVERS: Record<Dialect, new (settings: ConnectionSettings) => Driver> = {
  postgres: PostgresDriver,
  mysql: MysqlDriver,
  sqlite: SqliteDriver,
};

/** The driver of `dialect` for these settings, or the app's own `Driver` object. */
export function createDriver(dialect: Dialect, settings: ConnectionSettings, custom?: Driver): Driver {
  return custom ?? new DRIVERS[dialect](settings);
}
