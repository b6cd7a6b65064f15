/**
 * The `sql` tagged template: values become parameters, never text, and the same query
 * compiles to each dialect's placeholders (`$1` on PostgreSQL, `?` on MySQL and SQLite).
 *
 * @example
 * await db.runQuery(sql`SELECT * FROM ${sql.identifier('users')} WHERE login = ${login}`);
 * await db.runQuery(sql`SELECT * FROM t WHERE id IN (${sql.join(ids.map((id) => sql`${id}`), sql`, `)})`);
 */
import { InvalidParameter, type Dialect } from '../core/errors.js';

/** A registered symbol: a template from another copy of this package (a CommonJS and an ES module build side by side) is still recognised. */
const kind = Symbol.for('nestjs-dbpool.sql');

/** Text that is spliced into the statement verbatim. */
class RawFragment {
  readonly [kind] = 'raw';
  constructor(readonly text: string) {}
}

/** An identifier, quoted per dialect when compiled. */
class IdentifierFragment {
  readonly [kind] = 'identifier';
  constructor(readonly names: readonly string[]) {}
}

/** The list of `IN ${sql.in(list)}`: one placeholder per element. */
class ListFragment {
  readonly [kind] = 'list';
  constructor(readonly items: readonly unknown[]) {}
}

const isFragment = (v: unknown): boolean => v instanceof SqlQuery || v instanceof RawFragment || v instanceof IdentifierFragment || v instanceof ListFragment;

/** Text ending with `IN` or `NOT IN` (and maybe the opening parenthesis the caller wrote). */
const BEFORE_LIST = /\b(NOT\s+)?IN\s*(\(\s*)?$/i;
/** Text ending with `IN (`: a plain value here would be one value, not a list. */
const IN_PAREN = /\bIN\s*\(\s*$/i;
/** An empty set of rows, whatever the type of the left-hand side (PostgreSQL is rewritten to ANY/ALL instead). */
const EMPTY_SET: Record<Dialect, string> = { postgres: '', mysql: 'SELECT NULL FROM DUAL WHERE FALSE', sqlite: 'SELECT NULL WHERE 0' };

/** A compiled statement: `text` with placeholders and the `values` that fill them. */
export interface CompiledQuery {
  text: string;
  values: unknown[];
}

/**
 * Compiled texts of templates with no nested fragments, keyed by the template's strings array,
 * which JavaScript keeps the same for every evaluation of one template literal: an inline
 * sql`...` in a hot path is built once per dialect, not once per call.
 */
const templateTexts = new WeakMap<readonly string[], Partial<Record<Dialect, string>>>();

/** A query built with the `sql` template. Compile it with `compile(dialect)`. */
export class SqlQuery {
  readonly [kind] = 'query';
  private cache?: Partial<Record<Dialect, string>>;

  constructor(
    readonly strings: readonly string[],
    readonly values: readonly unknown[],
  ) {}

  /** Compiles to the dialect's placeholders. The text is cached per dialect (per template when it has no fragments). */
  compile(dialect: Dialect): CompiledQuery {
    if (this.cache === undefined) {
      const flat = this.values.every((v) => !isFragment(v));
      if (flat) {
        let texts = templateTexts.get(this.strings);
        if (texts === undefined) templateTexts.set(this.strings, (texts = {}));
        this.cache = texts;
      } else this.cache = {};
    }
    const values: unknown[] = [];
    const cached = this.cache[dialect];
    if (cached !== undefined) {
      collectValues(this, values);
      return { text: cached, values };
    }
    const text = build(this, dialect, values);
    this.cache[dialect] = text;
    return { text, values };
  }

  /** The statement as PostgreSQL would see it; for logs. */
  toString(): string {
    return this.compile('postgres').text;
  }
}

function collectValues(query: SqlQuery, out: unknown[]): void {
  for (const value of query.values) {
    if (value instanceof SqlQuery) collectValues(value, out);
    else if (!isFragment(value)) out.push(value);
  }
}

function build(query: SqlQuery, dialect: Dialect, values: unknown[]): string {
  let text = query.strings[0];
  for (let i = 0; i < query.values.length; i++) {
    const value = query.values[i];
    let next = query.strings[i + 1];
    if (value instanceof SqlQuery) text += build(value, dialect, values);
    else if (value instanceof RawFragment) text += value.text;
    else if (value instanceof IdentifierFragment) text += value.names.map((n) => quoteIdentifier(n, dialect)).join('.');
    else if (value instanceof ListFragment) {
      const before = BEFORE_LIST.exec(text);
      if (!before) throw new InvalidParameter('sql.in(list) goes right after IN or NOT IN: `WHERE id IN ${sql.in(ids)}`', { dialect });
      // The caller may have written the parentheses (`IN (${sql.in(ids)})`); they are then not added again.
      const parens = before[2] !== undefined && /^\s*\)/.test(next);
      if (value.items.length > 0) {
        const marks = value.items.map((item) => {
          values.push(item);
          return dialect === 'postgres' ? `$${values.length}` : '?';
        });
        text += parens ? marks.join(', ') : `(${marks.join(', ')})`;
      } else if (dialect === 'postgres') {
        // No typeless empty list in PostgreSQL: `= ANY('{}')` is false and `<> ALL('{}')` true, whatever the column's type.
        text = text.slice(0, before.index) + (before[1] ? "<> ALL('{}')" : "= ANY('{}')");
        if (parens) next = next.replace(/^\s*\)/, '');
      } else {
        // IN (no rows) matches nothing, NOT IN (no rows) everything, NULLs included.
        text += parens ? EMPTY_SET[dialect] : `(${EMPTY_SET[dialect]})`;
      }
    } else {
      if (Array.isArray(value) && IN_PAREN.test(text)) throw arrayInList(dialect);
      values.push(value);
      text += dialect === 'postgres' ? `$${values.length}` : '?';
    }
    text += next;
  }
  return text;
}

function arrayInList(dialect: Dialect): InvalidParameter {
  return new InvalidParameter(
    'an array after IN ( is one value (an array, or JSON text), not a list of values: it would match nothing. Use IN ${sql.in(list)}, ' +
      'one placeholder per element' +
      (dialect === 'postgres' ? ', or = ANY(${array}) to send the array itself' : ''),
    { dialect },
  );
}

/**
 * Refuses, in a plain-string statement, an array parameter right inside `IN (…)`: PostgreSQL and
 * SQLite would compare with the array (or its JSON text) and match nothing, silently. Only looked
 * at when some parameter is an array.
 */
export function checkArraysInLists(text: string, values: readonly unknown[], dialect: Dialect): void {
  if (!values.some(Array.isArray)) return;
  if (dialect === 'postgres') {
    for (const m of text.matchAll(/\bIN\s*\(\s*\$(\d+)\s*\)/gi)) if (Array.isArray(values[Number(m[1]) - 1])) throw arrayInList(dialect);
    return;
  }
  for (const m of text.matchAll(/\bIN\s*\(\s*\?\s*\)/gi)) {
    const position = (text.slice(0, m.index).match(/\?/g) ?? []).length;
    if (Array.isArray(values[position])) throw arrayInList(dialect);
  }
}

/** The longest identifier PostgreSQL keeps (NAMEDATALEN - 1, in bytes); it silently cuts longer ones. */
const POSTGRES_MAX_IDENTIFIER_BYTES = 63;
/** MySQL's limit for table and column names (characters); it silently cuts column aliases at 255 bytes. */
const MYSQL_MAX_IDENTIFIER_CHARS = 64;
/** MariaDB/MySQL strip control characters and spaces from the start of an alias without an error (measured: U+0001–U+0020, U+007F). */
const MYSQL_LEADING_STRIPPED = /^[\u0001-\u0020\u007f]/;
/** …and refuse spaces at the end of a table or column name. */
const MYSQL_TRAILING_SPACE = /[ \t\n\r\v\f]$/;

/** The checks every dialect shares; done when `sql.identifier()` is called, so a bad name fails where it is written. */
function checkIdentifier(name: string): void {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidParameter(`sql.identifier needs a non-empty string (got ${typeof name === 'string' ? 'an empty string' : typeof name})`);
  }
  if (name.includes('\0')) {
    throw new InvalidParameter('sql.identifier: an identifier cannot contain a NUL character');
  }
  if (!(name as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new InvalidParameter('sql.identifier: an identifier cannot contain a lone UTF-16 surrogate (UTF-8 cannot encode it)');
  }
}

/**
 * Quotes an identifier for the dialect: `"a""b"` on PostgreSQL and SQLite, `` `a``b` `` on MySQL.
 * Any character can be quoted; what the server would silently change is refused instead, with
 * `InvalidParameter`: NUL and lone surrogates everywhere, more than 63 bytes on PostgreSQL
 * (it truncates), and on MySQL more than 64 characters, characters beyond U+FFFF (identifiers
 * are utf8mb3), a leading space or control character (an alias silently loses it) and a
 * trailing space.
 */
export function quoteIdentifier(name: string, dialect: Dialect): string {
  checkIdentifier(name);
  if (dialect === 'postgres') {
    const bytes = Buffer.byteLength(name, 'utf8');
    if (bytes > POSTGRES_MAX_IDENTIFIER_BYTES) {
      throw new InvalidParameter(
        `sql.identifier: PostgreSQL identifiers are at most ${POSTGRES_MAX_IDENTIFIER_BYTES} bytes (got ${bytes}); a longer one would be silently truncated`,
        { dialect },
      );
    }
    return '"' + name.replace(/"/g, '""') + '"';
  }
  if (dialect === 'mysql') {
    const chars = [...name];
    if (chars.length > MYSQL_MAX_IDENTIFIER_CHARS) {
      throw new InvalidParameter(`sql.identifier: MySQL identifiers are at most ${MYSQL_MAX_IDENTIFIER_CHARS} characters (got ${chars.length})`, { dialect });
    }
    if (chars.some((c) => c.length > 1)) {
      throw new InvalidParameter('sql.identifier: MySQL identifiers cannot hold characters beyond U+FFFF (emoji, say): they are stored as utf8mb3', { dialect });
    }
    if (MYSQL_LEADING_STRIPPED.test(name) || MYSQL_TRAILING_SPACE.test(name)) {
      throw new InvalidParameter(
        'sql.identifier: MySQL identifiers cannot start with a space or control character, nor end with a space (it strips or refuses them)',
        { dialect },
      );
    }
    return '`' + name.replace(/`/g, '``') + '`';
  }
  return '"' + name.replace(/"/g, '""') + '"';
}

type Sql = {
  (strings: TemplateStringsArray, ...values: unknown[]): SqlQuery;
  /**
   * An identifier (table, column, schema), quoted per dialect: `sql.identifier('public', 'users')`
   * gives `"public"."users"`. Any name is safe to pass; one the server would silently alter
   * (truncate, strip) is refused with `InvalidParameter` (see `quoteIdentifier`).
   */
  identifier(...names: string[]): IdentifierFragment;
  /** Joins fragments or values with a separator (default `, `). */
  join(parts: readonly unknown[], separator?: SqlQuery): SqlQuery;
  /**
   * A list for `IN` / `NOT IN`, one placeholder per element, on every dialect: write
   * `id IN ${sql.in(ids)}` (or `id IN (${sql.in(ids)})`). An empty list matches nothing after
   * `IN` and everything after `NOT IN`. (A plain array after `IN (` is refused: it would be one
   * value, and match nothing.)
   *
   * @example
   * await db.runQuery(sql`SELECT * FROM users WHERE login IN ${sql.in(logins)}`);
   */
  in(list: readonly unknown[]): ListFragment;
  /**
   * UNSAFE: text spliced into the statement as it is, with no quoting and no check. Anything
   * in it is SQL: never pass user input, not even "cleaned" input; use it only for SQL you
   * wrote yourself, such as a keyword picked from a fixed list. Values go in `${value}`,
   * names in `sql.identifier(name)`.
   *
   * @example
   * const direction = req.query.desc ? sql.raw('DESC') : sql.raw('ASC'); // chosen, never copied from the request
   * await db.runQuery(sql`SELECT * FROM users ORDER BY ${sql.identifier(column)} ${direction}`);
   */
  raw(text: string): SqlQuery;
};

export const sql: Sql = Object.assign(
  (strings: TemplateStringsArray, ...values: unknown[]) => new SqlQuery(strings, values),
  {
    identifier: (...names: string[]) => {
      if (names.length === 0) throw new InvalidParameter('sql.identifier needs at least one name');
      for (const n of names) checkIdentifier(n);
      return new IdentifierFragment(names);
    },
    join: (parts: readonly unknown[], separator: SqlQuery = new SqlQuery([', '], [])) => {
      if (parts.length === 0) return new SqlQuery([''], []);
      const strings = [''];
      const values: unknown[] = [];
      parts.forEach((part, i) => {
        if (i > 0) {
          values.push(separator);
          strings.push('');
        }
        values.push(part);
        strings.push('');
      });
      return new SqlQuery(strings, values);
    },
    raw: (text: string) => new SqlQuery([String(text)], []),
    in: (list: readonly unknown[]) => {
      if (!Array.isArray(list)) throw new InvalidParameter(`sql.in() needs an array of values (got ${typeof list})`);
      return new ListFragment(list);
    },
  },
);

export function isSqlQuery(value: unknown): value is SqlQuery {
  if (value instanceof SqlQuery) return true;
  return typeof value === 'object' && value !== null && (value as { [kind]?: unknown })[kind] === 'query' && typeof (value as SqlQuery).compile === 'function';
}
