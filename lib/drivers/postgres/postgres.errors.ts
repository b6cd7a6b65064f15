/** What PostgreSQL's errors mean: SQLSTATE classes and pg's own messages. */
import type { ErrorClass } from '../../core/errors.js';
import { causes, classifyStandard } from '../standard.js';

/** Class 08 (connection exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now. */
const LOST_STATE = /^(08...|57P0[123])$/;
/** pg's words for a client whose connection ended. */
const LOST_MESSAGES = [/connection terminated/i, /not queryable/i];

export function classifyPostgresError(error: unknown): ErrorClass {
  const out: ErrorClass = classifyStandard(error);
  for (const e of causes(error)) {
    const state = typeof e.sqlState === 'string' ? e.sqlState : typeof e.code === 'string' ? e.code : undefined;
    if (state !== undefined && LOST_STATE.test(state)) out.lost = true;
    if (typeof e.message === 'string' && LOST_MESSAGES.some((m) => m.test(e.message as string))) out.lost = true;
    if (state === '40001') out.retry ??= 'serialization';
    if (state === '40P01') out.retry ??= 'deadlock';
    if (state === '28P01' || state === '28000') out.refused ??= 'auth';
    if (state === '3D000') out.refused ??= 'unknown-database';
    if (state === '25006') out.wrongHost = true;
  }
  return out;
}
