/** SAVEPOINT syntax, the same in the three dialects once the name is quoted their way. */
import type { Dialect } from '../core/errors.js';
import { quoteIdentifier } from '../sql/template.js';

export function savepointSql(kind: 'create' | 'release' | 'rollback', name: string, dialect: Dialect): string {
  const quoted = quoteIdentifier(name, dialect);
  return kind === 'create' ? `SAVEPOINT ${quoted}` : kind === 'release' ? `RELEASE SAVEPOINT ${quoted}` : `ROLLBACK TO SAVEPOINT ${quoted}`;
}
