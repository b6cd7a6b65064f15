/**
 * Splits a SQL script (a migration file) into statements, so that each runs on its own on every
 * dialect (MySQL refuses several statements in one query, PostgreSQL's extended protocol too) and
 * a failure names the statement. Semicolons inside quotes, identifiers, comments and
 * PostgreSQL dollar-quoted bodies do not split; MySQL's `DELIMITER //` lines (as in scripts for
 * the mysql client) change the separator, for procedure and trigger bodies.
 */
import type { ScriptSyntax } from './syntax.js';

export interface ScriptStatement {
  text: string;
  /** 1-based line of the script where the statement starts. */
  line: number;
}

/** Per dialect (its driver's `scriptSyntax`): backslash escapes, `#` comments, `DELIMITER`, `$tag$` bodies, trigger bodies. */
export function splitStatements(script: string, syntax: ScriptSyntax): ScriptStatement[] {
  const statements: ScriptStatement[] = [];
  let delimiter = ';';
  let current = '';
  let start = 0;
  let i = 0;
  const push = () => {
    const text = current.trim();
    if (text.length > 0 && !/^(?:--[^\n]*\n?|#[^\n]*\n?|\/\*[\s\S]*?\*\/|\s)*$/.test(text)) {
      const offset = start + (current.length - current.trimStart().length);
      statements.push({ text, line: script.slice(0, offset).split('\n').length });
    }
    current = '';
    start = i;
  };
  while (i < script.length) {
    // DELIMITER at the start of a line (mysql client syntax).
    if (syntax.delimiterCommand && (i === 0 || script[i - 1] === '\n') && /^DELIMITER\s/i.test(script.slice(i, i + 10))) {
      const end = script.indexOf('\n', i);
      const line = script.slice(i, end === -1 ? script.length : end);
      push();
      delimiter = line.replace(/^DELIMITER\s+/i, '').trim() || ';';
      i = end === -1 ? script.length : end + 1;
      start = i;
      continue;
    }
    const ch = script[i];
    const two = script.slice(i, i + 2);
    if (two === '--' || (syntax.hashComments && ch === '#')) {
      const end = script.indexOf('\n', i);
      const stop = end === -1 ? script.length : end + 1;
      current += script.slice(i, stop);
      i = stop;
      continue;
    }
    if (two === '/*') {
      const end = script.indexOf('*/', i + 2);
      const stop = end === -1 ? script.length : end + 2;
      current += script.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === "'" || ch === '"' || ch === '`') {
      const escapes = ch !== '`' && (syntax.backslashEscapes || (ch === "'" && /[Ee]$/.test(current) && !/\w[Ee]$/.test(current)));
      let j = i + 1;
      while (j < script.length) {
        if (script[j] === '\\' && escapes) j += 2;
        else if (script[j] === ch && script[j + 1] === ch) j += 2;
        else if (script[j] === ch) break;
        else j++;
      }
      current += script.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    if (ch === '$' && syntax.dollarQuotes) {
      const tag = /^\$[A-Za-z_]*\$/.exec(script.slice(i))?.[0];
      if (tag) {
        const end = script.indexOf(tag, i + tag.length);
        const stop = end === -1 ? script.length : end + tag.length;
        current += script.slice(i, stop);
        i = stop;
        continue;
      }
    }
    if (script.startsWith(delimiter, i) && !(syntax.triggerBodies && insideTriggerBody(current))) {
      i += delimiter.length;
      push();
      continue;
    }
    current += ch;
    i++;
  }
  push();
  return statements;
}

/**
 * SQLite's `CREATE TRIGGER … BEGIN …; …; END` holds semicolons: the statement ends at the END
 * that closes its BEGIN (CASE … END counted too).
 */
function insideTriggerBody(current: string): boolean {
  const code = current.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' ').replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]/g, ' ');
  if (!/^\s*CREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TRIGGER\b/i.test(code)) return false;
  let depth = 0;
  for (const [word] of code.matchAll(/\b(?:BEGIN|CASE|END)\b/gi)) depth += word.toUpperCase() === 'END' ? -1 : 1;
  return depth > 0;
}
