/** How MySQL and MariaDB write parameters, identifiers, empty lists and scripts. */
import { InvalidParameter } from '../../core/errors.js';
import type { ScriptSyntax, SqlSyntax } from '../../sql/syntax.js';

/** MySQL's limit for table and column names (characters); it silently cuts column aliases at 255 bytes. */
const MAX_IDENTIFIER_CHARS = 64;
/** MariaDB/MySQL strip control characters and spaces from the start of an alias without an error (measured: U+0001–U+0020, U+007F). */
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const LEADING_STRIPPED = /^[\u0001-\u0020\u007f]/;
/** …and refuse spaces at the end of a table or column name. */
const TRAILING_SPACE = /[ \t\n\r\v\f]$/;

export const MYSQL_SYNTAX: SqlSyntax = {
  dialect: 'mysql',
  maxParameters: 65535,
  // mysql2's text protocol (CALL, SET, prepare: false) expands an array into a list and an object into '[object Object]'.
  objectParameters: false,
  placeholder: () => '?',
  parametersInLists: questionMarksInLists,
  quoteIdentifier(name) {
    const chars = [...name];
    if (chars.length > MAX_IDENTIFIER_CHARS) {
      throw new InvalidParameter(`sql.identifier: MySQL identifiers are at most ${MAX_IDENTIFIER_CHARS} characters (got ${chars.length})`, {
        dialect: 'mysql',
      });
    }
    if (chars.some((c) => c.length > 1)) {
      throw new InvalidParameter('sql.identifier: MySQL identifiers cannot hold characters beyond U+FFFF (emoji, say): they are stored as utf8mb3', {
        dialect: 'mysql',
      });
    }
    if (LEADING_STRIPPED.test(name) || TRAILING_SPACE.test(name)) {
      throw new InvalidParameter(
        'sql.identifier: MySQL identifiers cannot start with a space or control character, nor end with a space (it strips or refuses them)',
        { dialect: 'mysql' },
      );
    }
    return '`' + name.replace(/`/g, '``') + '`';
  },
  emptyList: () => ({ set: 'SELECT NULL FROM DUAL WHERE FALSE' }),
};

export const MYSQL_SCRIPT_SYNTAX: ScriptSyntax = {
  backslashEscapes: true,
  hashComments: true,
  dollarQuotes: false,
  delimiterCommand: true,
  triggerBodies: false,
};

/** The 0-based positions of the `?` written alone inside `IN (…)`. */
export function questionMarksInLists(text: string): number[] {
  const out: number[] = [];
  for (const m of text.matchAll(/\bIN\s*\(\s*\?\s*\)/gi)) out.push((text.slice(0, m.index).match(/\?/g) ?? []).length);
  return out;
}
