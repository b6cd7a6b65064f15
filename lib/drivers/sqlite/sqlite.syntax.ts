/** How SQLite writes parameters, identifiers, empty lists and scripts. */
import type { ScriptSyntax, SqlSyntax } from '../../sql/syntax.js';
import { questionMarksInLists } from '../mysql/mysql.syntax.js';

export const SQLITE_SYNTAX: SqlSyntax = {
  dialect: 'sqlite',
  maxParameters: 32766,
  objectParameters: true,
  placeholder: () => '?',
  parametersInLists: questionMarksInLists,
  quoteIdentifier: (name) => '"' + name.replace(/"/g, '""') + '"',
  emptyList: () => ({ set: 'SELECT NULL WHERE 0' }),
};

export const SQLITE_SCRIPT_SYNTAX: ScriptSyntax = {
  backslashEscapes: false,
  hashComments: false,
  dollarQuotes: false,
  delimiterCommand: false,
  triggerBodies: true,
};
