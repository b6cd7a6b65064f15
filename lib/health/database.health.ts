/**
 * The @nestjs/terminus indicator for every named database. Import it from
 * `nestjs-dbpool/health`; `DatabaseModule` provides it, the app imports `TerminusModule`.
 * This file does not load @nestjs/terminus, which stays an optional peer: the results have
 * Terminus's own shape (`{ [key]: { status, ...details } }`).
 *
 * @example
 * @Get('ready') @HealthCheck()
 * ready() { return this.health.check([() => this.database.pingCheckAll('database')]); }
 */
import { Injectable } from '@nestjs/common';
import { DiscoveryService, ModuleRef } from '@nestjs/core';
import { Database } from '../database/database.js';
import { DEFAULT_DATABASE, isNamedDatabaseToken, namedDatabaseToken } from '../core/names.js';

export interface PingCheckOptions {
  /** The named database. Default: `'default'`. */
  connection?: string;
  /** Report down if the ping takes longer. Default: 1000. */
  timeoutMs?: number;
}

export type HealthStatus = 'up' | 'down';
export type HealthIndicatorResult<Key extends string = string> = Record<Key, { status: HealthStatus; [detail: string]: unknown }>;

/** `timeout of ${ms}ms exceeded`, as Terminus words it. */
export const timeoutMessage = (ms: number): string => `timeout of ${ms}ms exceeded`;

@Injectable()
export class DatabaseHealthIndicator {
  constructor(
    private readonly moduleRef: ModuleRef,
    private readonly discovery: DiscoveryService,
  ) {}

  /**
   * Up with `{ dialect, state, latencyMs, pool }`, or down with the reason. Down at once,
   * without touching the network, while the detector says dead or the app shuts down.
   * Never waits past `timeoutMs`; concurrent checks share one ping; the ping does not need a
   * free pool connection.
   */
  async pingCheck<Key extends string = 'database'>(key: Key = 'database' as Key, options: PingCheckOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const name = options.connection ?? DEFAULT_DATABASE;
    let db: unknown;
    try {
      db = this.moduleRef.get(name === DEFAULT_DATABASE ? Database : namedDatabaseToken(name), { strict: false });
    } catch {
      return compose(key, 'down', {
        message: `no database named "${name}" in this application; import DatabaseModule.forRoot(${name === DEFAULT_DATABASE ? '' : `{ name: '${name}', … }`})`,
      });
    }
    if (!(db instanceof Database)) return compose(key, 'up', { state: 'not a Database (overridden provider): not checked' });
    return compose(key, ...(await checkOne(db, options.timeoutMs ?? 1000)));
  }

  /** One result for every database of this application, each under its name: for a single readiness endpoint. */
  async pingCheckAll<Key extends string = 'database'>(
    key: Key = 'database' as Key,
    options: Omit<PingCheckOptions, 'connection'> = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const dbs = this.databases();
    const results = await Promise.all(dbs.map((db) => checkOne(db, options.timeoutMs ?? 1000)));
    const details: Record<string, unknown> = {};
    let status: HealthStatus = dbs.length > 0 ? 'up' : 'down';
    results.forEach(([s, d], i) => {
      details[dbs[i].name] = { status: s, ...d };
      if (s === 'down') status = 'down';
    });
    if (dbs.length === 0) details.message = 'no database in this application';
    return compose(key, status, details);
  }

  /** The databases the application injects (overridden providers are not databases, and are left out). */
  private databases(): Database[] {
    const found = new Set<Database>();
    for (const wrapper of this.discovery.getProviders()) {
      const token = wrapper.token;
      const isPublic = token === Database || isNamedDatabaseToken(token);
      if (isPublic && wrapper.instance instanceof Database) found.add(wrapper.instance);
    }
    return [...found];
  }
}

async function checkOne(db: Database, timeoutMs: number): Promise<[HealthStatus, Record<string, unknown>]> {
  const base = { dialect: db.dialect };
  if (db.isClosed || db.shuttingDown) return ['down', { ...base, state: 'shutting_down', message: 'the application is shutting down' }];
  const detector = db.detector;
  if (detector.isDead) {
    const last: unknown = detector.lastError;
    return [
      'down',
      {
        ...base,
        state: 'dead',
        deadSince: detector.deadSince?.toISOString(),
        lastError: last instanceof Error ? last.message : typeof last === 'string' ? last : '',
        nextAttemptAt: detector.nextAttemptAt?.toISOString(),
      },
    ];
  }
  try {
    const latencyMs = await db.probe(timeoutMs);
    const replicas = db.replicaStatus();
    // A replica that is down or behind leaves the rotation (the primary answers its reads): reported, not a failure.
    return [
      'up',
      {
        ...base,
        state: 'alive',
        latencyMs: Math.round(latencyMs * 100) / 100,
        pool: db.stats(),
        ...(replicas.length > 0 ? { role: 'primary', replicas } : {}),
      },
    ];
  } catch (error) {
    return ['down', { ...base, state: detector.state, message: (error as Error)?.message ?? String(error) }];
  }
}

function compose<Key extends string>(key: Key, status: HealthStatus, details: Record<string, unknown>): HealthIndicatorResult<Key> {
  return { [key]: { ...details, status } } as HealthIndicatorResult<Key>;
}
