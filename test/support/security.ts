/**
 * Helpers of the security suites: riding out a restart of the shared servers (fault tests of
 * other suites restart them briefly), and capturing every Nest log line for a secret search.
 */
import 'reflect-metadata';
import { Module, type DynamicModule, type INestApplicationContext, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { format } from 'node:util';
import { defaultDeathChecker, ConnectionDead, type DatabaseModuleOptions } from '../../lib/index.js';
import { openDatabase } from './app.js';

/** True for the errors a server restart causes (refused, reset, marked dead). */
export function isRestartError(error: unknown): boolean {
  return error instanceof ConnectionDead || defaultDeathChecker(error);
}

/** Waits (at most `timeoutMs`) until a server answers a query. */
export async function waitForServer(options: DatabaseModuleOptions, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const opened = await openDatabase({ connectTimeoutMs: 2000, ...options }).catch(() => undefined);
    try {
      if (opened) {
        await opened.db.runQuery('SELECT 1');
        return;
      }
    } catch (error) {
      if (Date.now() > deadline) throw error;
    } finally {
      await opened?.close().catch(() => {});
    }
    if (Date.now() > deadline) throw new Error('server did not answer within ' + timeoutMs + ' ms');
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Runs `attempt`, and again (up to 5 times, after the server answers again) when it failed
 * because the shared server was being restarted meanwhile.
 */
export async function ridingOutRestarts<T>(
  options: DatabaseModuleOptions,
  attempt: () => Promise<T>,
  isRestart: (value: T) => boolean = () => false,
): Promise<T> {
  for (let i = 0; ; i++) {
    let value: T;
    try {
      value = await attempt();
    } catch (error) {
      if (i >= 5 || !isRestartError(error)) throw error;
      await waitForServer(options);
      continue;
    }
    if (i >= 5 || !isRestart(value)) return value;
    await waitForServer(options);
  }
}

/** A Nest logger that keeps every line (message and extra arguments, formatted). */
export class CapturingLogger implements LoggerService {
  readonly lines: string[] = [];
  private push(level: string, message: unknown, rest: unknown[]): void {
    this.lines.push(`${level} ${format(message, ...rest)}`);
  }
  log(message: unknown, ...rest: unknown[]) {
    this.push('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]) {
    this.push('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]) {
    this.push('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]) {
    this.push('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]) {
    this.push('verbose', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]) {
    this.push('fatal', message, rest);
  }
}

/** An app context whose Nest logger is `logger`. */
export async function bootWithLogger(imports: DynamicModule[], logger: LoggerService): Promise<INestApplicationContext> {
  @Module({ imports })
  class SecretsTestModule {}
  return NestFactory.createApplicationContext(SecretsTestModule, { logger, abortOnError: false });
}
