import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import {
  ConfigurationError,
  Database,
  DatabaseClosed,
  DatabaseModule,
  getDatabaseToken,
  InjectDatabase,
  type DatabaseModuleOptions,
  type DatabaseOptionsFactory,
} from '../../lib/index.js';
import { bootContext } from '../support/app.js';
import { MYSQL_URL, PG_URL, serverCases, describeEachDialect, tempSqliteUrl, freshDatabase } from '../support/databases.js';
import { serverSessions } from '../support/sessions.js';
import { statementRunning, until } from '../support/wait.js';

@Injectable()
class UsesBoth {
  constructor(
    @InjectDatabase() readonly main: Database,
    @InjectDatabase('analytics') readonly analytics: Database,
  ) {}
}

@Injectable()
class OptionsFromClass implements DatabaseOptionsFactory {
  createDatabaseOptions(): DatabaseModuleOptions {
    return { url: PG_URL };
  }
}

@Module({ providers: [OptionsFromClass], exports: [OptionsFromClass] })
class OptionsModule {}

@Injectable()
class ConfigService {
  get(key: string): string {
    return key === 'MYSQL_URL' ? MYSQL_URL : PG_URL;
  }
}

@Module({ providers: [ConfigService], exports: [ConfigService] })
class ConfigModule {}

describe('DatabaseModule', () => {
  it('forRoot registers an injectable Database under getDatabaseToken() and the Database class', async () => {
    const app = await bootContext([DatabaseModule.forRoot({ url: PG_URL })]);
    try {
      const db = app.get<Database>(getDatabaseToken());
      expect(db).toBeInstanceOf(Database);
      expect(app.get(Database)).toBe(db);
      expect(db.dialect).toBe('postgres');
      expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await app.close();
    }
  });

  it('forRootAsync with useFactory, imports and inject', async () => {
    const app = await bootContext([
      DatabaseModule.forRootAsync({
        imports: [ConfigModule],
        inject: [ConfigService],
        useFactory: (config: ConfigService) => ({ url: config.get('MYSQL_URL') }),
      }),
    ]);
    try {
      const db = app.get<Database>(getDatabaseToken());
      expect(db.dialect).toBe('mysql');
      expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await app.close();
    }
  });

  it('forRootAsync with useClass', async () => {
    const app = await bootContext([DatabaseModule.forRootAsync({ useClass: OptionsFromClass })]);
    try {
      expect(await app.get<Database>(getDatabaseToken()).runQuery('SELECT 2 AS two')).toEqual([{ two: 2 }]);
    } finally {
      await app.close();
    }
  });

  it('forRootAsync with useExisting', async () => {
    const app = await bootContext([DatabaseModule.forRootAsync({ imports: [OptionsModule], useExisting: OptionsFromClass })]);
    try {
      expect(await app.get<Database>(getDatabaseToken()).runQuery('SELECT 3 AS three')).toEqual([{ three: 3 }]);
    } finally {
      await app.close();
    }
  });

  it('two named databases in one app, injected with @InjectDatabase(name)', async () => {
    const app = await bootContext(
      [DatabaseModule.forRoot({ url: PG_URL }), DatabaseModule.forRootAsync({ name: 'analytics', useFactory: () => ({ url: MYSQL_URL }) })],
      [UsesBoth],
    );
    try {
      const both = app.get(UsesBoth);
      expect(both.main.name).toBe('default');
      expect(both.main.dialect).toBe('postgres');
      expect(both.analytics.name).toBe('analytics');
      expect(both.analytics.dialect).toBe('mysql');
      expect(both.main).not.toBe(both.analytics);
      expect(app.get(getDatabaseToken('analytics'))).toBe(both.analytics);
    } finally {
      await app.close();
    }
  });

  it('isGlobal makes the Database injectable in modules that do not import DatabaseModule', async () => {
    @Module({ providers: [UsesGlobal], exports: [UsesGlobal] })
    class FeatureModule {}
    const app = await bootContext([DatabaseModule.forRoot({ url: tempSqliteUrl(), isGlobal: true }), FeatureModule]);
    try {
      expect(app.get(UsesGlobal).db.dialect).toBe('sqlite');
    } finally {
      await app.close();
    }
  });

  it('fails the boot with a ConfigurationError naming the option', async () => {
    await expect(bootContext([DatabaseModule.forRoot({ url: PG_URL, pool: { max: 0 } })])).rejects.toThrow(ConfigurationError);
    await expect(bootContext([DatabaseModule.forRoot({ url: PG_URL, pool: { max: 0 } })])).rejects.toThrow(/"pool\.max"/);
  });

  it('closes on app.close(): later calls get DatabaseClosed', async () => {
    const app = await bootContext([DatabaseModule.forRoot({ url: PG_URL })]);
    const db = app.get<Database>(getDatabaseToken());
    await db.runQuery('SELECT 1');
    await app.close();
    await expect(db.runQuery('SELECT 1')).rejects.toThrow(DatabaseClosed);
    expect(db.stats().total).toBe(0);
  });

  it('waits for in-flight work on shutdown', async () => {
    const app = await bootContext([DatabaseModule.forRoot({ url: PG_URL })]);
    const db = app.get<Database>(getDatabaseToken());
    const marker = `shutdown_waits_${process.pid}_${Date.now()}`;
    const slow = db.runQuery<Record<string, unknown>>(`SELECT pg_sleep(1), 1 AS ${marker}`);
    // In flight on the server, not merely asked for (1 s leaves the check time to see it on a busy machine).
    await until(() => statementRunning(db, marker), 'the slow statement to run on the server');
    await app.close();
    expect((await slow)[0]).toMatchObject({ [marker]: 1 });
  });
});

@Injectable()
class UsesGlobal {
  constructor(@InjectDatabase() readonly db: Database) {}
}

describeEachDialect(serverCases, 'lazy connection', (c) => {
  it('opens no connection at bootstrap, and one on the first query', async () => {
    // Counted by application name on PostgreSQL and by a database of its own on MySQL, so that
    // test files running beside this one do not change the count.
    const appName = `lazy-${process.pid}-${Date.now()}`;
    const fresh = c.dialect === 'mysql' ? await freshDatabase(c) : undefined;
    const scope = c.dialect === 'postgres' ? appName : new URL(fresh!.url).pathname.slice(1);
    try {
      const before = await serverSessions(c.dialect, scope);
      const app = await bootContext([
        DatabaseModule.forRoot({
          url: fresh?.url ?? c.url(),
          ...(c.dialect === 'postgres' ? { driverOptions: { application_name: appName } } : {}),
        }),
      ]);
      try {
        const db = app.get<Database>(getDatabaseToken());
        expect(db.stats().total).toBe(0);
        expect(await serverSessions(c.dialect, scope)).toBe(before);
        await db.runQuery('SELECT 1');
        expect(db.stats().total).toBe(1);
        expect(await serverSessions(c.dialect, scope)).toBe(before + 1);
      } finally {
        await app.close();
      }
      // The server drops a closed session from its list a moment after the client's goodbye.
      await until(async () => (await serverSessions(c.dialect, scope)) === before, 'the session to be gone from the server');
    } finally {
      await fresh?.drop();
    }
  });

  it('opens pool.min connections at bootstrap', async () => {
    const app = await bootContext([DatabaseModule.forRoot({ url: c.url(), pool: { min: 2 } })]);
    try {
      const db = app.get<Database>(getDatabaseToken());
      const deadline = Date.now() + 3000;
      while (db.stats().idle < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20)); // poll interval
      expect(db.stats().idle).toBe(2);
    } finally {
      await app.close();
    }
  });

  it('verifyOnStartup fails the boot with a clear error when the server cannot be reached', async () => {
    const url = c.dialect === 'postgres' ? 'postgres://postgres@127.0.0.1:1/test' : 'mysql://root@127.0.0.1:1/test';
    const error = await bootContext([DatabaseModule.forRoot({ url, verifyOnStartup: true, connectTimeoutMs: 1000, startupTimeoutMs: 300 })]).catch((e) => e);
    expect(error.message).toMatch(/could not be reached within startupTimeoutMs \(300 ms\) at startup \(verifyOnStartup\)/);
    expect(error.message).toMatch(/ECONNREFUSED|refused/i);
  });

  it('boots without the server by default (lazy), and the first call fails clearly', async () => {
    const url = c.dialect === 'postgres' ? 'postgres://postgres@127.0.0.1:1/test' : 'mysql://root@127.0.0.1:1/test';
    const app = await bootContext([DatabaseModule.forRoot({ url, pool: { acquireTimeoutMs: 300 }, reconnect: { maxRetries: 0 } })]);
    try {
      const db = app.get<Database>(getDatabaseToken());
      await expect(db.runQuery('SELECT 1')).rejects.toThrow(/ECONNREFUSED|refused|unreachable/i);
    } finally {
      await app.close();
    }
  });
});
