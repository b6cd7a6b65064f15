/**
 * The sample app: the users example of Twisted's adbapi tutorial, an accounts transfer under
 * `@Transactional()`, PostgreSQL notifications in the spirit of txpostgres, and health probes.
 * In your own app, import from 'nestjs-dbpool' (and 'nestjs-dbpool/health') instead of ../lib.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseModule } from '../lib/index.js';
import { AccountsModule } from './accounts/accounts.module.js';
import { HealthModule } from './health/health.module.js';
import { NotificationsModule } from './notifications/notifications.module.js';
import { UsersModule } from './users/users.module.js';

/** The schema and the seed: SQL files (one of them MySQL's own) and a migration in TypeScript. */
export const MIGRATIONS = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

/** Embedded, zero setup: the file and its folder are created on first start. */
export const DEFAULT_DATABASE_URL = 'sqlite:./data/app.db';

export interface AppOptions {
  /** Default: the DATABASE_URL environment variable, else {@link DEFAULT_DATABASE_URL}. */
  databaseUrl?: string;
}

@Module({})
export class AppModule {
  /**
   * @example
   * const app = await NestFactory.create(AppModule.forRoot());                          // DATABASE_URL
   * const app = await NestFactory.create(AppModule.forRoot({ databaseUrl: 'sqlite::memory:' }));
   */
  static forRoot(options: AppOptions = {}): DynamicModule {
    const url = options.databaseUrl ?? process.env.DATABASE_URL ?? DEFAULT_DATABASE_URL;
    // LISTEN/NOTIFY is PostgreSQL's: @OnNotify on MySQL or SQLite would fail the boot, so the
    // notifications feature is only imported there.
    const postgres = /^postgres(ql)?:/i.test(url);
    return {
      module: AppModule,
      imports: [
        // Global, so every feature module can @InjectDatabase() and the health indicator.
        // SHUTDOWN_DELAY_MS: after SIGTERM, readiness answers 503 for this long while requests are
        // still served, so that Kubernetes stops routing to the pod before it stops accepting.
        // The migrations run at boot, before the app serves; pods booting at once take turns.
        DatabaseModule.forRoot({
          url,
          isGlobal: true,
          migrations: { directory: MIGRATIONS },
          shutdownDelayMs: Number(process.env.SHUTDOWN_DELAY_MS ?? 0),
        }),
        UsersModule,
        AccountsModule,
        HealthModule,
        ...(postgres ? [NotificationsModule] : []),
      ],
    };
  }
}
