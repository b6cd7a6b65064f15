/** Names every layer agrees on: the default database's name and the DI token strings of named ones. */

/** The name of a database registered without `name`. */
export const DEFAULT_DATABASE = 'default';

const DATABASE_TOKEN_PREFIX = 'nestjs-dbpool:database:';

/** The DI token of a named database (the default one's token is the `Database` class itself). */
export function namedDatabaseToken(name: string): string {
  return `${DATABASE_TOKEN_PREFIX}${name}`;
}

/** True for the DI token of a named database. */
export function isNamedDatabaseToken(token: unknown): boolean {
  return typeof token === 'string' && token.startsWith(DATABASE_TOKEN_PREFIX);
}
