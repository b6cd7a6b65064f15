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
import {
  ConfigurableModuleBuilder,
  Logger,
  Module,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  type Provider,
} from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { Database } from '../database/database.js';
import { DatabaseHealthIndicator } from '../health/database.health.js';
import { NotifyExplorer } from '../notify/notify.explorer.js';
import { getDatabaseToken } from './database.constants.js';
import { resolveOptions, DEFAULT_DATABASE, type DatabaseModuleOptions } from './database.options.js';
import { registerDatabase, unregisterDatabase } from './database.registry.js';

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

/** Closes its database on shutdown, after readiness went down; one per imported DatabaseModule. */
class DatabaseLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  constructor(
    private readonly db: Database,
    private readonly explorer: NotifyExplorer,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.explorer.subscribeAll(this.db);
  }

  beforeApplicationShutdown(): void {
    // Readiness reports "down" from here on, before the pool drains.
    this.db.shuttingDown = true;
  }

  async onApplicationShutdown(): Promise<void> {
    try {
      await this.db.close();
    } finally {
      unregisterDatabase(this.db);
    }
  }
}

function withDatabase(definition: DynamicModule, extras: DatabaseModuleExtras): DynamicModule {
  const name = extras.name ?? DEFAULT_DATABASE;
  const token = getDatabaseToken(name);
  const providers: Provider[] = [
    {
      provide: token,
      inject: [MODULE_OPTIONS_TOKEN],
      useFactory: async (options: DatabaseModuleOptions) => {
        const resolved = resolveOptions({ ...options, name });
        const db = new Database(resolved, new Logger(`nestjs-dbpool:${name}`));
        await db.start();
        registerDatabase(db);
        return db;
      },
    },
    {
      provide: `${token}:lifecycle`,
      inject: [token, NotifyExplorer],
      useFactory: (db: Database, explorer: NotifyExplorer) => new DatabaseLifecycle(db, explorer),
    },
    NotifyExplorer,
    DatabaseHealthIndicator,
  ];
  const exports: DynamicModule['exports'] = [token, DatabaseHealthIndicator];
  if (name === DEFAULT_DATABASE) {
    // The default database is also injectable by its class, for `constructor(private db: Database)`.
    providers.push({ provide: Database, useExisting: token });
    exports.push(Database);
  }
  return {
    ...definition,
    global: extras.isGlobal,
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [...(definition.providers ?? []), ...providers],
    exports: [...(definition.exports ?? []), ...exports],
  };
}

/**
 * Registers one `Database` per call, under `getDatabaseToken(name)`.
 * `forRoot(options)`, or `forRootAsync({ name?, isGlobal?, imports?, inject?, useFactory | useClass | useExisting })`.
 */
@Module({})
export class DatabaseModule extends ConfigurableModuleClass {}

export type DatabaseModuleAsyncOptions = Parameters<typeof DatabaseModule.forRootAsync>[0];
