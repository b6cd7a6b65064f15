/** How SQLite is configured: a file, one process per connection. */
import type { DialectProfile } from '../driver.js';

export const SQLITE_PROFILE: DialectProfile = {
  title: 'SQLite',
  otelSystem: 'sqlite',
  schemes: ['sqlite'],
  exampleUrl: 'sqlite:./data/app.db',
  embedded: true,
  // One process per connection and one writer at a time; a few serve concurrent readers.
  defaultPoolMax: 4,
  ownOptions: [],
};
