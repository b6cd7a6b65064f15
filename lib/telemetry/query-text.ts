/**
 * `db.query.text` without literals: the conventions collect the text of a parameterized query,
 * and of any other only with its literal values redacted. A literal can be a secret (`CREATE
 * ROLE … PASSWORD '…'`) or a person's data, so every string and number literal becomes `?`;
 * placeholders (`$1`, `?`, `:name`), identifiers, keywords and comments stay as written.
 */

/**
 * The text as a span shows it: each string, dollar-quoted and numeric literal replaced by `?`.
 * `mysqlQuoting`: `"…"` is a string, a backslash escapes in every string, `#` starts a comment
 * (MySQL, MariaDB); otherwise (PostgreSQL, SQLite) `"…"` is an identifier and a backslash
 * escapes only in `E'…'`, as with `standard_conforming_strings` (PostgreSQL's default).
 */
export function redactLiterals(text: string, mysqlQuoting: boolean): string {
  let out = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const ch = text[i];
    if (ch === "'" || (ch === '"' && mysqlQuoting)) {
      // 'it''s' everywhere; MySQL's 'it\'s' and PostgreSQL's E'it\'s', where a backslash escapes; PostgreSQL's 'C:\' ends at its quote.
      const escapes = mysqlQuoting || (ch === "'" && (text[i - 1] === 'E' || text[i - 1] === 'e') && !isWordChar(text[i - 2]));
      i++;
      while (i < n) {
        if (escapes && text[i] === '\\') i += 2;
        else if (text[i] === ch && text[i + 1] === ch) i += 2;
        else if (text[i] === ch) break;
        else i++;
      }
      i++;
      out += '?';
      continue;
    }
    if (ch === '"' || ch === '`') {
      // An identifier: as written.
      const end = text.indexOf(ch, i + 1);
      const stop = end < 0 ? n : end + 1;
      out += text.slice(i, stop);
      i = stop;
      continue;
    }
    if ((ch === '-' && text[i + 1] === '-') || (ch === '#' && mysqlQuoting)) {
      const end = text.indexOf('\n', i);
      const stop = end < 0 ? n : end;
      out += text.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === '/' && text[i + 1] === '*') {
      const end = text.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      out += text.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === '$') {
      // $1 (a placeholder) stays; $tag$ … $tag$ and $$ … $$ (a dollar-quoted string) is a literal.
      const tag = /^\$[A-Za-z_]?[A-Za-z0-9_]*\$/.exec(text.slice(i, i + 64));
      if (tag) {
        const end = text.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? n : end + tag[0].length;
        out += '?';
        continue;
      }
      out += ch;
      i++;
      while (i < n && text[i] >= '0' && text[i] <= '9') out += text[i++];
      continue;
    }
    if (ch >= '0' && ch <= '9' && !isWordChar(text[i - 1]) && text[i - 1] !== ':') {
      // A number (12, 1.5, 1e3, 0x1F), not a digit inside a name (t1) or a placeholder (:1).
      i++;
      while (
        i < n &&
        (isWordChar(text[i]) || (text[i] === '.' && /[0-9]/.test(text[i + 1] ?? '')) || ((text[i] === '+' || text[i] === '-') && /[eE]/.test(text[i - 1])))
      )
        i++;
      out += '?';
      continue;
    }
    out += ch;
    i++;
  }
  return out;
}

function isWordChar(ch: string | undefined): boolean {
  return ch !== undefined && /[A-Za-z0-9_$]/.test(ch);
}
