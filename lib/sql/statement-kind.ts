/**
 * Whether a statement only reads, from its text: what may go to a read replica. Conservative:
 * a statement that names a write anywhere (INSERT, UPDATE, DELETE, MERGE, SELECT … INTO, a
 * locking clause) is not a read. A read that calls a function which writes is refused by the
 * replica (it is read-only) and answered by the primary instead.
 */
const READ_START = /^[\s(]*(?:SELECT|WITH|VALUES|TABLE|SHOW)\b/i;
const WRITES = /\b(?:INSERT|UPDATE|DELETE|MERGE|INTO|COPY|CALL|LOCK|SHARE)\b/i;

export function isReadStatement(text: string): boolean {
  return READ_START.test(text) && !WRITES.test(text.replace(/--[^\n]*|\/\*[\s\S]*?\*\/|'(?:[^']|'')*'/g, ' '));
}
