import { Database } from '../database/database.js';
import { DEFAULT_DATABASE, namedDatabaseToken } from '../core/names.js';

export { DEFAULT_DATABASE };

/**
 * The DI token of the `Database` named `name`. For the default database it is the `Database`
 * class itself (as @nestjs/typeorm does with `DataSource`), so `constructor(db: Database)`,
 * `@InjectDatabase()` and `overrideProvider(Database)` all mean the same provider; a named
 * database has a string token.
 */
export function getDatabaseToken(name: string = DEFAULT_DATABASE): string | typeof Database {
  return name === DEFAULT_DATABASE ? Database : namedDatabaseToken(name);
}

/** The DI token of the request-scoped `DatabaseSession` of the database named `name` (`@InjectConnection(name)`). */
export function getConnectionToken(name: string = DEFAULT_DATABASE): string {
  return `nestjs-dbpool:connection:${name}`;
}

/** The provider that owns the `Database` object itself (created, started, closed by the module), whatever overrides the public token. */
export function databaseInstanceToken(name: string): string {
  return `nestjs-dbpool:instance:${name}`;
}

/** Metadata key of `@OnNotify`. */
export const ON_NOTIFY_METADATA = 'nestjs-dbpool:on-notify';
