import { DEFAULT_DATABASE } from './database.options.js';

export { DEFAULT_DATABASE };

/** The DI token of the `Database` named `name` (default `'default'`). */
export function getDatabaseToken(name: string = DEFAULT_DATABASE): string {
  return `nestjs-dbpool:database:${name}`;
}

/** Metadata key of `@OnNotify`. */
export const ON_NOTIFY_METADATA = 'nestjs-dbpool:on-notify';
