/**
 * Refuses, before anything is sent, statements and parameter values that a driver would
 * silently corrupt: raw `pg` sends 2^53+1 as 9007199254740992, an invalid Date as
 * `0NaN-NaN-…`, undefined as NULL; every driver encodes a lone UTF-16 surrogate as U+FFFD;
 * SQLite runs a statement only up to a NUL character; mysql2's text protocol (used for CALL,
 * SET and with `prepare: false`) expands an array into a list of values and an object into
 * `'[object Object]'`. Cheap enough for every call: one typeof per value, one scan per string.
 */
import { InvalidParameter, type Dialect } from '../core/errors.js';
import type { SqlSyntax } from './syntax.js';

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;

/** True when `text` holds no lone surrogate, so that it survives UTF-8 encoding unchanged. */
export const isWellFormed = (text: string): boolean => (text as unknown as { isWellFormed(): boolean }).isWellFormed();

export function checkParameters(values: readonly unknown[], syntax: SqlSyntax, query?: string): void {
  const { dialect, maxParameters } = syntax;
  if (query !== undefined && typeof query === 'string') checkStatementText(query, dialect);
  if (values.length > maxParameters) {
    throw new InvalidParameter(
      `${values.length} parameters exceed the ${maxParameters} that ${dialect ?? 'this database'} allows in one statement; split the statement or pass an array parameter`,
      { dialect, query },
    );
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    switch (typeof v) {
      case 'number':
        if (Number.isInteger(v) ? !Number.isSafeInteger(v) : !Number.isFinite(v)) {
          throw bad(
            i,
            Number.isFinite(v)
              ? `the number ${v} is outside the safe integer range and has already lost precision; pass a bigint or a string`
              : `${v} cannot be stored exactly by every dialect; pass null, or the string '${v}' for a PostgreSQL float column`,
            dialect,
            query,
          );
        }
        break;
      case 'undefined':
        throw bad(i, 'is undefined; pass null for SQL NULL', dialect, query);
      case 'string':
        if (v.includes('\0')) throw bad(i, 'contains a NUL character, which text columns cannot hold; pass a Buffer for binary data', dialect, query);
        if (!isWellFormed(v)) {
          throw bad(
            i,
            'contains a lone UTF-16 surrogate, which UTF-8 cannot encode (it would be stored as U+FFFD); pass a well-formed string, or a Buffer',
            dialect,
            query,
          );
        }
        break;
      case 'bigint':
        if (v < INT8_MIN || v > INT8_MAX) throw bad(i, 'is a bigint outside the 64-bit integer range; pass a string for a numeric column', dialect, query);
        break;
      case 'object':
        if (v instanceof Date) {
          if (Number.isNaN(v.getTime())) throw bad(i, 'is an invalid Date; pass a valid Date or null', dialect, query);
        } else if (!syntax.objectParameters && v !== null && !ArrayBuffer.isView(v)) {
          throw bad(
            i,
            `is ${Array.isArray(v) ? 'an array' : 'an object'}, which mysql2 would expand into SQL text or send as '[object Object]'; ` +
              'pass JSON.stringify(value) for a JSON column, or a list with IN ${sql.in(list)}',
            dialect,
            query,
          );
        }
        break;
      case 'function':
      case 'symbol':
        throw bad(i, `is a ${typeof v}, which is not a SQL value`, dialect, query);
    }
  }
}

/** The statement itself: SQLite would run it only up to a NUL, PostgreSQL's protocol cannot carry one. */
function checkStatementText(text: string, dialect: Dialect | undefined): void {
  if (text.includes('\0')) {
    throw new InvalidParameter(
      `the statement text contains a NUL character (at offset ${text.indexOf('\0')}), which ${dialect ?? 'the server'} would reject or cut the statement at; ` +
        'pass values as parameters and names through sql.identifier',
      { dialect },
    );
  }
  if (!isWellFormed(text)) {
    throw new InvalidParameter('the statement text contains a lone UTF-16 surrogate, which UTF-8 cannot encode', { dialect });
  }
}

function bad(index: number, what: string, dialect: Dialect | undefined, query?: string): InvalidParameter {
  return new InvalidParameter(`parameter ${index + 1} ${what.startsWith('is') || what.startsWith('contains') ? what : `(${what})`}`, {
    position: index + 1,
    dialect,
    query,
  });
}
