/**
 * `DatabaseModule.forRoot(options)` / `forRootAsync({ useFactory | useClass | useExisting })`:
 * one injectable `Database` per named database. NestJS wiring only: no SQL here.
 *
 * @example
 * @Module({
 *   imports: [
 *     DatabaseModule.forRoot({ url: process.env.DATABASE_URL ?? 'sqlite:./data/app.db' }),
 *     DatabaseModule.forRootAsync({
 *       name: 'analytics',
 *       imports: [ConfigModule],
 *       inject: [ConfigService],
 *       useFactory: (config: ConfigService) => ({ url: config.get('ANALYTICS_URL') }),
 *     }),
 *   ],
 * })
 * export class AppModule {}
 */
import { Migrator } from '../migrations/migrator.js';
import {
  ConfigurableModuleBuilder,
  Logger,
  Module,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type OnModuleInit,
  type Provider,
} from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, REQUEST } from '@nestjs/core';
import { Scope } from '@nestjs/common';
import type { DatabaseSession } from '../database/session.js';
import { Database } from '../database/database.js';
import { ConfigurationError } from '../core/errors.js';
import { DatabaseHealthIndicator } from '../health/database.health.js';
import { NotifyExplorer } from './notify.explorer.js';
import { databaseInstanceToken, getConnectionToken, getDatabaseToken } from './database.constants.js';
import { resolveOptions, DEFAULT_DATABASE, type DatabaseModuleOptions } from '../config/options.js';

/** A class for `forRootAsync({ useClass })`. */
export interface DatabaseOptionsFactory {
  createDatabaseOptions(): DatabaseModuleOptions | Promise<DatabaseModuleOptions>;
}

export interface DatabaseModuleExtras {
  /** The database's name. Default: `'default'`. */
  name: string;
  /** Make the `Database` injectable everywhere without importing the module again. Default: false. */
  isGlobal: boolean;
}

const { ConfigurableModuleClass, MODULE_OPTIONS_TOKEN } = new ConfigurableModuleBuilder<DatabaseModuleOptions>({
  moduleName: 'Database',
})
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createDatabaseOptions')
  .setExtras<DatabaseModuleExtras>({ name: DEFAULT_DATABASE, isGlobal: false }, (definition, extras) => withDatabase(definition, extras))
  .build();

/**
 * The life of one registered database in its application: refuses a second registration of
 * the same name at bootstrap, subscribes its `@OnNotify` methods, reports readiness down for
 * `shutdownDelayMs` when shutdown begins (the HTTP server still serves meanwhile), and closes
 * the database after the server stopped.
 */
class DatabaseLifecycle implements OnModuleInit, OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  /** When readiness went down in this application; shared by its databases so their delays do not add up. */
  shutdownStartedAt?: number;

  constructor(
    /** The Database this module created and owns. */
    readonly db: Database,
    /** What the app injects under the public token: the same Database, or a test override. */
    private readonly provided: unknown,
    private readonly explorer: NotifyExplorer,
    private readonly discovery: DiscoveryService,
  ) {}

  private siblings(): DatabaseLifecycle[] {
    return this.discovery
      .getProviders()
      .map((wrapper) => wrapper.instance as unknown)
      .filter((instance): instance is DatabaseLifecycle => instance instanceof DatabaseLifecycle);
  }

  onModuleInit(): void {
    const twins = this.siblings().filter((other) => other !== this && other.db.name === this.db.name);
    if (twins.length > 0) {
      throw new ConfigurationError(
        `DatabaseModule registers database "${this.db.name}" ${twins.length + 1} times in this application; ` +
          "each forRoot/forRootAsync needs its own name (DatabaseModule.forRoot({ name: 'analytics', … })), or import the module once (isGlobal: true)",
        { option: 'name', database: this.db.name },
      );
    }
  }

  async onApplicationBootstrap(): Promise<void> {
    if (this.provided instanceof Database) await this.explorer.subscribeAll(this.provided);
  }

  async beforeApplicationShutdown(): Promise<void> {
    // Readiness reports "down" from here on, while the app still serves; the delay lets the
    // load balancer see it before the server stops accepting connections.
    const siblings = this.siblings();
    const startedAt = siblings.find((s) => s.shutdownStartedAt !== undefined)?.shutdownStartedAt ?? Date.now();
    for (const sibling of siblings) {
      sibling.shutdownStartedAt = startedAt;
      sibling.db.shuttingDown = true;
    }
    const delayMs = Math.max(...siblings.map((s) => s.db.options.shutdownDelayMs)) - (Date.now() - startedAt);
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  }

  async onApplicationShutdown(): Promise<void> {
    await this.db.close();
  }
}

function withDatabase(definition: DynamicModule, extras: DatabaseModuleExtras): DynamicModule {
  const name = extras.name ?? DEFAULT_DATABASE;
  const token = getDatabaseToken(name);
  const instance = databaseInstanceToken(name);
  const providers: Provider[] = [
    {
      // The Database itself: created here, connected lazily, closed by the lifecycle even when a test overrides the public token.
      provide: instance,
      inject: [MODULE_OPTIONS_TOKEN],
      useFactory: (options: DatabaseModuleOptions) => {
        if (options && typeof options === 'object' && options.name !== undefined && options.name !== name) {
          throw new ConfigurationError(
            `the options of database "${name}" say name: "${String(options.name)}"; the name is fixed before the factory runs: ` +
              `pass it to forRootAsync({ name: '${String(options.name)}', … }) instead of returning it from the factory`,
            { option: 'name', database: name },
          );
        }
        return new Database(resolveOptions({ ...options, name }), new Logger(`nestjs-dbpool:${name}`));
      },
    },
    {
      provide: token,
      inject: [instance],
      useFactory: async (db: Database) => {
        // The migrations run before the provider exists: nothing injects the database, and the app does not listen, until they are done.
        const migrations = db.options.migrations;
        await db.start(migrations?.runOnBoot ? { needsServer: true, run: (started) => new Migrator(started, migrations).up() } : undefined);
        return db;
      },
    },
    {
      provide: `${instance}:lifecycle`,
      inject: [instance, token, NotifyExplorer, DiscoveryService],
      useFactory: (db: Database, provided: unknown, explorer: NotifyExplorer, discovery: DiscoveryService) =>
        new DatabaseLifecycle(db, provided, explorer, discovery),
    },
    {
      // @InjectConnection(): a session per request, released when its response has been sent.
      provide: getConnectionToken(name),
      scope: Scope.REQUEST,
      inject: [REQUEST, token],
      useFactory: async (request: unknown, db: Database) => {
        const settings = db instanceof Database ? await db.options.requestSettings?.(request) : undefined;
        const session: DatabaseSession = db.openSession({ settings: settings ?? undefined });
        onRequestEnd(request, () => void session.release(), name);
        return session;
      },
    },
    NotifyExplorer,
    DatabaseHealthIndicator,
  ];
  const exports: DynamicModule['exports'] = [token, getConnectionToken(name), DatabaseHealthIndicator];
  return {
    ...definition,
    global: extras.isGlobal,
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [...(definition.providers ?? []), ...providers],
    exports: [...(definition.exports ?? []), ...exports],
  };
}

interface Closable {
  once(event: 'close', listener: () => void): unknown;
  writableEnded?: boolean;
  destroyed?: boolean;
}

/** Calls `end` once the response to `request` is sent or its connection closed (Express's `req.res`, or a raw Node request's). */
function onRequestEnd(request: unknown, end: () => void, name: string): void {
  const r = request as { res?: Closable; raw?: { res?: Closable }; req?: { res?: Closable } } | undefined;
  const response = r?.res ?? r?.raw?.res ?? r?.req?.res;
  if (!response || typeof response.once !== 'function') {
    throw new ConfigurationError(
      `@InjectConnection(${name === DEFAULT_DATABASE ? '' : `'${name}'`}) needs an HTTP request whose response it can watch, to give the connection back when the request ends; ` +
        'outside Express requests, use db.session(fn) around the work instead',
      { option: 'InjectConnection', database: name },
    );
  }
  if (response.writableEnded || response.destroyed) end();
  else response.once('close', end);
}

/**
 * Registers one `Database` per call, under `getDatabaseToken(name)`.
 * `forRoot(options)`, or `forRootAsync({ name?, isGlobal?, imports?, inject?, useFactory | useClass | useExisting })`.
 */
@Module({})
export class DatabaseModule extends ConfigurableModuleClass {}

export type DatabaseModuleAsyncOptions = Parameters<typeof DatabaseModule.forRootAsync>[0];
