/**
 * Refuses, before anything is sent, parameter values that a driver would silently corrupt
 * (raw `pg` sends 2^53+1 as 9007199254740992, an invalid Date as `0NaN-NaN-…`, undefined
 * as NULL). Cheap enough for every call: one typeof per value.
 */
import { InvalidParameter, type Dialect } from '../errors.js';

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;

export function checkParameters(values: readonly unknown[], dialect: Dialect, maxParameters: number, query?: string): void {
  if (values.length > maxParameters) {
    throw new InvalidParameter(
      `${values.length} parameters exceed the ${maxParameters} that ${dialect} allows in one statement; split the statement or pass an array parameter`,
      { dialect, query },
    );
  }
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    switch (typeof v) {
      case 'number':
        if (Number.isInteger(v) ? !Number.isSafeInteger(v) : !Number.isFinite(v)) {
          throw bad(i, Number.isFinite(v)
            ? `the number ${v} is outside the safe integer range and has already lost precision; pass a bigint or a string`
            : `${v} cannot be stored exactly by every dialect; pass null, or the string '${v}' for a PostgreSQL float column`, dialect, query);
        }
        break;
      case 'undefined':
        throw bad(i, 'is undefined; pass null for SQL NULL', dialect, query);
      case 'string':
        if (v.includes('\0')) throw bad(i, 'contains a NUL character, which text columns cannot hold; pass a Buffer for binary data', dialect, query);
        break;
      case 'bigint':
        if (v < INT8_MIN || v > INT8_MAX) throw bad(i, 'is a bigint outside the 64-bit integer range; pass a string for a numeric column', dialect, query);
        break;
      case 'object':
        if (v instanceof Date && Number.isNaN(v.getTime())) throw bad(i, 'is an invalid Date; pass a valid Date or null', dialect, query);
        break;
      case 'function':
      case 'symbol':
        throw bad(i, `is a ${typeof v}, which is not a SQL value`, dialect, query);
    }
  }
}

function bad(index: number, what: string, dialect: Dialect, query?: string): InvalidParameter {
  return new InvalidParameter(`parameter ${index + 1} ${what.startsWith('is') || what.startsWith('contains') ? what : `(${what})`}`, {
    position: index + 1,
    dialect,
    query,
  });
}
