/** How PostgreSQL writes parameters, identifiers, empty lists and scripts. */
import { InvalidParameter } from '../../core/errors.js';
import type { ScriptSyntax, SqlSyntax } from '../../sql/syntax.js';

/** The longest identifier PostgreSQL keeps (NAMEDATALEN - 1, in bytes); it silently cuts longer ones. */
const MAX_IDENTIFIER_BYTES = 63;

export const POSTGRES_SYNTAX: SqlSyntax = {
  dialect: 'postgres',
  maxParameters: 65535,
  objectParameters: true,
  placeholder: (n) => `$${n}`,
  parametersInLists: (text) => [...text.matchAll(/\bIN\s*\(\s*\$(\d+)\s*\)/gi)].map((m) => Number(m[1]) - 1),
  quoteIdentifier(name) {
    const bytes = Buffer.byteLength(name, 'utf8');
    if (bytes > MAX_IDENTIFIER_BYTES) {
      throw new InvalidParameter(
        `sql.identifier: PostgreSQL identifiers are at most ${MAX_IDENTIFIER_BYTES} bytes (got ${bytes}); a longer one would be silently truncated`,
        { dialect: 'postgres' },
      );
    }
    return '"' + name.replace(/"/g, '""') + '"';
  },
  // No typeless empty list in PostgreSQL: `= ANY('{}')` is false and `<> ALL('{}')` true, whatever the column's type.
  emptyList: (negated) => ({ operator: negated ? "<> ALL('{}')" : "= ANY('{}')" }),
  arrayHint: ', or = ANY(${array}) to send the array itself',
};

export const POSTGRES_SCRIPT_SYNTAX: ScriptSyntax = {
  backslashEscapes: false,
  hashComments: false,
  dollarQuotes: true,
  delimiterCommand: false,
  triggerBodies: false,
};
