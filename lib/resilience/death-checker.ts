/**
 * Decides whether an error means "the connection (or the server) is gone", as txpostgres's
 * `defaultDeathChecker` (ours is in drivers/registry.ts: this file's socket errors and each
 * dialect's own). True makes the `DeadConnectionDetector` mark the database dead and
 * reconnect; false leaves it an ordinary query error.
 *
 * Not death: authentication and TLS certificate failures (reconnecting would only repeat
 * them), and every ordinary SQL error.
 *
 * @example
 * socketDeathChecker(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })); // true
 */
import { ErrorCode } from '../core/errors.js';
export type DeathChecker = (error: unknown) => boolean;

const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ECONNABORTED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_SOCKET_CLOSED',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC',
  'ERR_SSL_SSLV3_ALERT_BAD_RECORD_MAC',
  'EPROTO',
  // ours, from the drivers
  ErrorCode.ConnectionLost,
  ErrorCode.ConnectTimeout,
]);

const MESSAGES = [/connection (?:is )?closed/i, /socket hang up/i, /client network socket disconnected before secure tls connection/i];

/**
 * The part of death every dialect shares: socket errors, our own lost-connection codes, a
 * `ConnectionDead`. Each dialect adds its own codes (`Driver.classify`); `defaultDeathChecker`
 * is this plus every shipped dialect's.
 */
export const socketDeathChecker: DeathChecker = (error) => {
  for (let e = error, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string' && SOCKET_CODES.has(code)) return true;
    if (typeof message === 'string' && MESSAGES.some((m) => m.test(message))) return true;
  }
  return false;
};

/** A checker that says death when any of `checkers` does. */
export function anyDeath(...checkers: DeathChecker[]): DeathChecker {
  return (error) => checkers.some((check) => check(error));
}

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
