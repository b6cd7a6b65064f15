/**
 * The `sql` tagged template: values become parameters, never text, and the same query
 * compiles to each dialect's placeholders (`$1` on PostgreSQL, `?` on MySQL and SQLite).
 *
 * @example
 * await db.runQuery(sql`SELECT * FROM ${sql.identifier('users')} WHERE login = ${login}`);
 * await db.runQuery(sql`SELECT * FROM t WHERE id IN (${sql.join(ids.map((id) => sql`${id}`), sql`, `)})`);
 */
import { InvalidParameter, type Dialect } from './errors.js';

const kind = Symbol('nestjs-dbpool.sql');

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

/** A compiled statement: `text` with placeholders and the `values` that fill them. */
export interface CompiledQuery {
  text: string;
  values: unknown[];
}

/** A query built with the `sql` template. Compile it with `compile(dialect)`. */
export class SqlQuery {
  readonly [kind] = 'query';
  private readonly cache = new Map<Dialect, string>();

  constructor(
    readonly strings: readonly string[],
    readonly values: readonly unknown[],
  ) {}

  /** Compiles to the dialect's placeholders. The text is cached per dialect, so a query held in a constant is built once. */
  compile(dialect: Dialect): CompiledQuery {
    const values: unknown[] = [];
    const cached = this.cache.get(dialect);
    if (cached !== undefined) {
      collectValues(this, values);
      return { text: cached, values };
    }
    const text = build(this, dialect, values);
    this.cache.set(dialect, text);
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
    else if (!(value instanceof RawFragment) && !(value instanceof IdentifierFragment)) out.push(value);
  }
}

function build(query: SqlQuery, dialect: Dialect, values: unknown[]): string {
  let text = query.strings[0];
  for (let i = 0; i < query.values.length; i++) {
    const value = query.values[i];
    if (value instanceof SqlQuery) text += build(value, dialect, values);
    else if (value instanceof RawFragment) text += value.text;
    else if (value instanceof IdentifierFragment) text += value.names.map((n) => quoteIdentifier(n, dialect)).join('.');
    else {
      values.push(value);
      text += dialect === 'postgres' ? `$${values.length}` : '?';
    }
    text += query.strings[i + 1];
  }
  return text;
}

/**
 * Quotes an identifier for the dialect: `"a""b"` on PostgreSQL and SQLite, `` `a``b` `` on MySQL.
 * Rejects empty names and NUL characters, which no dialect can quote.
 */
export function quoteIdentifier(name: string, dialect: Dialect): string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new InvalidParameter('sql.identifier needs a non-empty string');
  }
  if (name.includes('\0')) {
    throw new InvalidParameter('sql.identifier: an identifier cannot contain a NUL character');
  }
  return dialect === 'mysql' ? '`' + name.replace(/`/g, '``') + '`' : '"' + name.replace(/"/g, '""') + '"';
}

type Sql = {
  (strings: TemplateStringsArray, ...values: unknown[]): SqlQuery;
  /** An identifier (table, column, schema), quoted per dialect. `sql.identifier('public', 'users')` gives `"public"."users"`. */
  identifier(...names: string[]): IdentifierFragment;
  /** Joins fragments or values with a separator (default `, `). */
  join(parts: readonly unknown[], separator?: SqlQuery): SqlQuery;
  /**
   * UNSAFE: text spliced into the statement as it is. Never pass user input; use it only for
   * SQL you wrote yourself (a sort direction picked from a fixed list, say).
   */
  raw(text: string): SqlQuery;
};

export const sql: Sql = Object.assign(
  (strings: TemplateStringsArray, ...values: unknown[]) => new SqlQuery(strings, values),
  {
    identifier: (...names: string[]) => {
      for (const n of names) quoteIdentifier(n, 'postgres');
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
  },
);

export function isSqlQuery(value: unknown): value is SqlQuery {
  return value instanceof SqlQuery;
}
