/** MySQL's and MariaDB's stored procedures and migration lock. */
import { sql, type SqlQuery } from '../../sql/template.js';
import type { MigrationSupport } from '../driver.js';

export const mysqlProcedureCall = (callee: SqlQuery, args: SqlQuery): SqlQuery => sql`CALL ${callee}(${args})`;

/** GET_LOCK names are server-wide and at most 64 characters: the database's name and the lock's, hashed. */
const lockName = (name: string) => sql`CONCAT('nestjs-dbpool:', LEFT(SHA2(CONCAT(IFNULL(DATABASE(), ''), ':', ${name}), 256), 40))`;

const ER_NO_SUCH_TABLE = 1146;

export const MYSQL_MIGRATIONS: MigrationSupport = {
  lockPerServer: true,
  tableStatement: (t) =>
    `CREATE TABLE IF NOT EXISTS ${t} (name VARCHAR(255) PRIMARY KEY, checksum CHAR(64), applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), duration_ms INTEGER NOT NULL) DEFAULT CHARSET=utf8mb4`,
  transactionalDdl: false,
  lock: {
    kind: 'session',
    attempt: (name) => sql`SELECT GET_LOCK(${lockName(name)}, 0) AS got`,
    wait: (name, seconds) => sql`SELECT GET_LOCK(${lockName(name)}, ${seconds}) AS got`,
    release: (name) => sql`SELECT RELEASE_LOCK(${lockName(name)})`,
    holder: "SELECT * FROM information_schema.PROCESSLIST WHERE STATE = 'User lock' shows who waits; IS_USED_LOCK gives the holder",
  },
  isMissingTable: (error) => (error as { errno?: number })?.errno === ER_NO_SUCH_TABLE,
};
