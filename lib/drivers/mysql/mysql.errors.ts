/** What MySQL's and MariaDB's errors mean: errnos, mysql2's codes and messages. */
import type { ErrorClass } from '../../core/errors.js';
import { causes, classifyStandard } from '../standard.js';

const LOST_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT',
  'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
  'PROTOCOL_ENQUEUE_AFTER_QUIT',
  'PROTOCOL_ENQUEUE_HANDSHAKE_TWICE',
  'ER_SERVER_SHUTDOWN',
  'ER_SERVER_GONE_ERROR',
  'CR_SERVER_GONE_ERROR',
  'CR_SERVER_LOST',
  'CR_CONNECTION_ERROR',
  'CR_CONN_HOST_ERROR',
  'ER_CONNECTION_KILLED',
  'ER_NET_READ_ERROR',
  'ER_NET_READ_INTERRUPTED',
  'ER_NET_ERROR_ON_WRITE',
  'ER_NET_WRITE_INTERRUPTED',
  'ER_CLIENT_INTERACTION_TIMEOUT',
]);
/** 1053 shutdown, 1927 connection killed, 2002/2003/2006/2013 client-side "server gone", 4031 inactivity disconnect. */
const LOST_ERRNOS = new Set([1053, 1927, 2002, 2003, 2006, 2013, 4031]);
const LOST_MESSAGES = [/can't add new command when connection is in closed state/i, /server has gone away/i, /lost connection to (?:mysql )?server/i];

export const ER_LOCK_WAIT_TIMEOUT = 1205;
export const ER_LOCK_DEADLOCK = 1213;
const ER_UNKNOWN_COM_ERROR = 1047;
const ER_ACCESS_DENIED = 1045;
const ER_BAD_DB = 1049;

export function classifyMysqlError(error: unknown): ErrorClass {
  const out: ErrorClass = classifyStandard(error);
  for (const e of causes(error)) {
    if (typeof e.code === 'string' && LOST_CODES.has(e.code)) out.lost = true;
    if (typeof e.errno === 'number' && LOST_ERRNOS.has(e.errno)) out.lost = true;
    if (typeof e.message === 'string' && LOST_MESSAGES.some((m) => m.test(e.message as string))) out.lost = true;
    if (e.errno === ER_LOCK_DEADLOCK) {
      out.retry ??= 'deadlock';
      out.endsTransaction = true;
    }
    if (e.errno === ER_LOCK_WAIT_TIMEOUT) out.retry ??= 'lock-timeout';
    // Galera: the node does not take work now; the statement did not run, and another node may take the transaction.
    if (e.errno === ER_UNKNOWN_COM_ERROR) out.retry ??= 'node-unusable';
    if (e.errno === ER_ACCESS_DENIED || e.code === 'ER_ACCESS_DENIED_ERROR') out.refused ??= 'auth';
    if (e.errno === ER_BAD_DB) out.refused ??= 'unknown-database';
  }
  return out;
}
