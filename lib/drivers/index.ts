/** Picks the driver for the resolved options: one file per dialect, nothing dialect-specific elsewhere. */
import type { ResolvedOptions } from '../module/database.options.js';
import type { Driver } from './driver.js';
import { MysqlDriver } from './mysql.driver.js';
import { PostgresDriver } from './postgres.driver.js';
import { SqliteDriver } from './sqlite.driver.js';

export function createDriver(options: ResolvedOptions): Driver {
  if (options.driver) return options.driver;
  switch (options.dialect) {
    case 'postgres':
      return new PostgresDriver(options.settings);
    case 'mysql':
      return new MysqlDriver(options.settings);
    case 'sqlite':
      return new SqliteDriver(options.settings);
  }
}
