/**
 * Decides whether an error means "the connection (or the server) is gone", as txpostgres's
 * `defaultDeathChecker`. True makes the `DeadConnectionDetector` mark the database dead and
 * reconnect; false leaves it an ordinary query error.
 *
 * Not death: authentication and TLS certificate failures (reconnecting would only repeat
 * them), and every ordinary SQL error.
 *
 * @example
 * defaultDeathChecker(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })); // true
 */
export type DeathChecker = (error: unknown) => boolean;

const SOCKET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN',
  'ECONNABORTED', 'ENOTFOUND', 'EAI_AGAIN', 'ERR_SOCKET_CLOSED', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END',
  'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC', 'EPROTO',
  // ours, from the drivers
  'CONNECTION_LOST', 'CONNECT_TIMEOUT',
]);

const MYSQL_CODES = new Set([
  'PROTOCOL_CONNECTION_LOST', 'PROTOCOL_SEQUENCE_TIMEOUT', 'PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR',
  'PROTOCOL_ENQUEUE_AFTER_QUIT', 'PROTOCOL_ENQUEUE_HANDSHAKE_TWICE',
  'ER_SERVER_SHUTDOWN', 'ER_SERVER_GONE_ERROR', 'CR_SERVER_GONE_ERROR', 'CR_SERVER_LOST', 'CR_CONNECTION_ERROR',
  'CR_CONN_HOST_ERROR', 'ER_CONNECTION_KILLED', 'ER_NET_READ_ERROR', 'ER_NET_READ_INTERRUPTED',
  'ER_NET_ERROR_ON_WRITE', 'ER_NET_WRITE_INTERRUPTED', 'ER_CLIENT_INTERACTION_TIMEOUT',
]);

/** 1053 shutdown, 1927 connection killed, 2002/2003/2006/2013 client-side "server gone", 4031 inactivity disconnect. */
const MYSQL_ERRNOS = new Set([1053, 1927, 2002, 2003, 2006, 2013, 4031]);

/** Class 08 (connection exception), 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now. */
const PG_DEAD = /^(08...|57P0[123])$/;

const MESSAGES = [
  /connection terminated/i,
  /not queryable/i,
  /can't add new command when connection is in closed state/i,
  /connection (?:is )?closed/i,
  /server has gone away/i,
  /lost connection to (?:mysql )?server/i,
  /socket hang up/i,
  /client network socket disconnected before secure tls connection/i,
];

export const defaultDeathChecker: DeathChecker = (error) => {
  for (let e = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, errno, sqlState, message } = e as { code?: unknown; errno?: unknown; sqlState?: unknown; message?: unknown };
    if (typeof code === 'string') {
      if (SOCKET_CODES.has(code) || MYSQL_CODES.has(code) || PG_DEAD.test(code)) return true;
    }
    if (typeof sqlState === 'string' && PG_DEAD.test(sqlState)) return true;
    if (typeof errno === 'number' && MYSQL_ERRNOS.has(errno)) return true;
    if (typeof message === 'string' && MESSAGES.some((m) => m.test(message))) return true;
  }
  return false;
};

/**
 * Extends a checker with extra codes or message fragments (`transientErrors`, like txMySQL's
 * `temporary_error_strings`).
 */
export function withTransientErrors(base: DeathChecker, transient: readonly (string | number)[]): DeathChecker {
  if (transient.length === 0) return base;
  return (error) => {
    if (base(error)) return true;
    for (let e = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
      const { code, errno, sqlState, message } = e as Record<string, unknown>;
      for (const t of transient) {
        if (t === code || t === errno || t === sqlState) return true;
        if (typeof t === 'string' && typeof message === 'string' && message.includes(t)) return true;
      }
    }
    return false;
  };
}
