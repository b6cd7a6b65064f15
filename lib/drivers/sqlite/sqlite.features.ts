/** SQLite's migration lock: its one write lock, taken by BEGIN IMMEDIATE. */
import type { MigrationSupport } from '../driver.js';

export const SQLITE_MIGRATIONS: MigrationSupport = {
  tableStatement: (t) =>
    `CREATE TABLE IF NOT EXISTS ${t} (name VARCHAR(255) PRIMARY KEY, checksum CHAR(64), applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP, duration_ms INTEGER NOT NULL)`,
  transactionalDdl: true,
  lock: {
    kind: 'write-transaction',
    busy: (error) => {
      const code = (error as { code?: string })?.code ?? '';
      return code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED';
    },
  },
  isMissingTable: (error) => /no such table/i.test((error as { message?: string })?.message ?? ''),
};
