/**
 * The `sql` tagged template: values become parameters, never text, and the same query
 * compiles to each dialect's placeholders (`$1` on PostgreSQL, `?` on MySQL and SQLite).
 *
 * @example
 * await db.runQuery(sql`SELECT * FROM ${sql.identifier('users')} WHERE login = ${login}`);
 * await db.runQuery(sql`SELECT * FROM t WHERE id IN (${sql.join(ids.map((id) => sql`${id}`), sql`, `)})`);
 */
import { InvalidParameter } from '../core/errors.js';
import { DISPLAY_SYNTAX, type SqlSyntax } from './syntax.js';

export type { SqlSyntax };

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
const templateTexts = new WeakMap<readonly string[], Map<SqlSyntax, string>>();

/** A query built with the `sql` template. Compile it with `compile(dialect)`. */
export class SqlQuery {
  readonly [kind] = 'query';
  private cache?: Map<SqlSyntax, string>;

  constructor(
    readonly strings: readonly string[],
    readonly values: readonly unknown[],
  ) {}

  /**
   * Compiles to a dialect's placeholders and quoting (its driver's `syntax`). The text is cached
   * per syntax (per template when it has no fragments).
   */
  compile(syntax: SqlSyntax): CompiledQuery {
    if (this.cache === undefined) {
      const flat = this.values.every((v) => !isFragment(v));
      if (flat) {
        let texts = templateTexts.get(this.strings);
        if (texts === undefined) templateTexts.set(this.strings, (texts = new Map<SqlSyntax, string>()));
        this.cache = texts;
      } else this.cache = new Map();
    }
    const values: unknown[] = [];
    const cached = this.cache.get(syntax);
    if (cached !== undefined) {
      collectValues(this, values);
      return { text: cached, values };
    }
    const text = build(this, syntax, values);
    this.cache.set(syntax, text);
    return { text, values };
  }

  /** The statement with `$n` placeholders; for logs. */
  toString(): string {
    return this.compile(DISPLAY_SYNTAX).text;
  }
}

function collectValues(query: SqlQuery, out: unknown[]): void {
  for (const value of query.values) {
    if (value instanceof SqlQuery) collectValues(value, out);
    else if (!isFragment(value)) out.push(value);
  }
}

function build(query: SqlQuery, syntax: SqlSyntax, values: unknown[]): string {
  const dialect = syntax.dialect;
  let text = query.strings[0];
  for (let i = 0; i < query.values.length; i++) {
    const value = query.values[i];
    let next = query.strings[i + 1];
    if (value instanceof SqlQuery) text += build(value, syntax, values);
    else if (value instanceof RawFragment) text += value.text;
    else if (value instanceof IdentifierFragment) text += value.names.map((n) => syntax.quoteIdentifier(n)).join('.');
    else if (value instanceof ListFragment) {
      const before = BEFORE_LIST.exec(text);
      if (!before) throw new InvalidParameter('sql.in(list) goes right after IN or NOT IN: `WHERE id IN ${sql.in(ids)}`', { dialect });
      // The caller may have written the parentheses (`IN (${sql.in(ids)})`); they are then not added again.
      const parens = before[2] !== undefined && /^\s*\)/.test(next);
      if (value.items.length > 0) {
        const marks = value.items.map((item) => {
          values.push(item);
          return syntax.placeholder(values.length);
        });
        text += parens ? marks.join(', ') : `(${marks.join(', ')})`;
      } else {
        // IN (no rows) matches nothing, NOT IN (no rows) everything, NULLs included.
        const empty = syntax.emptyList(before[1] !== undefined);
        if ('operator' in empty) {
          text = text.slice(0, before.index) + empty.operator;
          if (parens) next = next.replace(/^\s*\)/, '');
        } else text += parens ? empty.set : `(${empty.set})`;
      }
    } else {
      if (Array.isArray(value) && IN_PAREN.test(text)) throw arrayInList(syntax);
      values.push(value);
      text += syntax.placeholder(values.length);
    }
    text += next;
  }
  return text;
}

function arrayInList(syntax: SqlSyntax): InvalidParameter {
  return new InvalidParameter(
    'an array after IN ( is one value (an array, or JSON text), not a list of values: it would match nothing. Use IN ${sql.in(list)}, ' +
      'one placeholder per element' +
      (syntax.arrayHint ?? ''),
    { dialect: syntax.dialect },
  );
}

/**
 * Refuses, in a plain-string statement, an array parameter right inside `IN (…)`: PostgreSQL and
 * SQLite would compare with the array (or its JSON text) and match nothing, silently. Only looked
 * at when some parameter is an array.
 */
export function checkArraysInLists(text: string, values: readonly unknown[], syntax: SqlSyntax): void {
  if (!values.some(Array.isArray)) return;
  for (const position of syntax.parametersInLists(text)) if (Array.isArray(values[position])) throw arrayInList(syntax);
}

/** The checks every dialect shares; done when `sql.identifier()` is called, so a bad name fails where it is written. */
export function checkIdentifier(name: string): void {
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

export const sql: Sql = Object.assign((strings: TemplateStringsArray, ...values: unknown[]) => new SqlQuery(strings, values), {
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
});

export function isSqlQuery(value: unknown): value is SqlQuery {
  if (value instanceof SqlQuery) return true;
  return typeof value === 'object' && value !== null && (value as { [kind]?: unknown })[kind] === 'query' && typeof (value as SqlQuery).compile === 'function';
}
