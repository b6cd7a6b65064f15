/** Statements of the SQL standard that the shipped dialects write the same way, once names are quoted their way. */
import type { ErrorClass } from '../core/errors.js';
import type { SqlSyntax } from '../sql/syntax.js';

export function savepointSql(kind: 'create' | 'release' | 'rollback', name: string, syntax: SqlSyntax): string {
  const quoted = syntax.quoteIdentifier(name);
  return kind === 'create' ? `SAVEPOINT ${quoted}` : kind === 'release' ? `RELEASE SAVEPOINT ${quoted}` : `ROLLBACK TO SAVEPOINT ${quoted}`;
}

/** COMMIT and ROLLBACK. */
export const STANDARD_END = { commit: 'COMMIT', rollback: 'ROLLBACK' } as const;

/** An error and its causes (at most 4 deep), as records: where a driver looks for codes. */
export function* causes(error: unknown): Generator<{ code?: unknown; errno?: unknown; sqlState?: unknown; message?: unknown }> {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    yield e;
  }
}

/**
 * What the SQL standard's own codes mean, for every dialect: SQLSTATE 40001 (serialization
 * failure) is worth retrying the transaction, whoever raised it (a server, or the app itself);
 * class 08 (connection exception, as MySQL's 08S01 for a packet over max_allowed_packet, after
 * which the server closes the session) means the connection is gone.
 */
export function classifyStandard(error: unknown): ErrorClass {
  const out: ErrorClass = {};
  for (const e of causes(error)) {
    const state = typeof e.sqlState === 'string' ? e.sqlState : typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
    if (state === '40001') out.retry ??= 'serialization';
    if (state?.startsWith('08')) out.lost = true;
  }
  return out;
}
