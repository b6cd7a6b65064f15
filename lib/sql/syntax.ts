/**
 * What the SQL layer asks of a dialect: how to write a parameter, an identifier, an empty list,
 * which parameter values its driver would corrupt, and how its scripts are written. Each driver
 * gives one (`Driver.syntax`, `Driver.scriptSyntax`); nothing here knows a dialect by name.
 */
import type { Dialect } from '../core/errors.js';

export interface SqlSyntax {
  /** The dialect, for messages and `DatabaseError.dialect`. */
  readonly dialect?: Dialect;
  /** Most bound parameters one statement may have. */
  readonly maxParameters: number;
  /**
   * True when an array or plain object is a value of its own for the driver (a PostgreSQL array,
   * JSON); false when the driver would expand it into SQL text (mysql2's text protocol).
   */
  readonly objectParameters: boolean;
  /** The placeholder of the n-th parameter, 1-based: `$1`, `?`. */
  placeholder(n: number): string;
  /**
   * The 0-based positions of the parameters written alone right inside `IN (…)` in a plain-string
   * statement (`IN ($2)`, `IN (?)`): an array there would be one value, not a list.
   */
  parametersInLists(text: string): number[];
  /**
   * Quotes an identifier, refusing with `InvalidParameter` what this server would silently
   * change (truncate, strip). NUL and lone surrogates are refused before, for every dialect.
   */
  quoteIdentifier(name: string): string;
  /**
   * `IN ${sql.in([])}`: either a set with no rows that replaces the list (`set`), or an operator
   * that replaces `IN`/`NOT IN` and the list both (`operator`, such as `= ANY('{}')`).
   */
  emptyList(negated: boolean): { set: string } | { operator: string };
  /** Added to the message refusing an array after `IN (`: how this dialect takes an array as one value. */
  readonly arrayHint?: string;
}

/** How a dialect's scripts (migration files) are written, for splitting them into statements. */
export interface ScriptSyntax {
  /** A backslash escapes the next character in every string (MySQL); otherwise only in `E'…'` strings. */
  readonly backslashEscapes: boolean;
  /** `# comment` lines (MySQL). */
  readonly hashComments: boolean;
  /** `$tag$ … $tag$` bodies (PostgreSQL). */
  readonly dollarQuotes: boolean;
  /** `DELIMITER //` lines change the separator (the mysql client's syntax). */
  readonly delimiterCommand: boolean;
  /** `CREATE TRIGGER … BEGIN …; END` holds semicolons (SQLite). */
  readonly triggerBodies: boolean;
}

/** For `SqlQuery.toString()` (logs): `$n` placeholders and double-quoted identifiers. */
export const DISPLAY_SYNTAX: SqlSyntax = {
  maxParameters: Infinity,
  objectParameters: true,
  placeholder: (n) => `$${n}`,
  parametersInLists: () => [],
  quoteIdentifier: (name) => '"' + name.replace(/"/g, '""') + '"',
  emptyList: () => ({ set: 'SELECT NULL WHERE 1 = 0' }),
};
