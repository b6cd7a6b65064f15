/**
 * The module as Nest users expect it: `@Transactional()` bound to its own application's
 * database (several apps in one process, `@nestjs/testing` overrides), one registration per
 * name, misspelt options refused with the nearest name, errors that name their database and
 * their caller, logging through Nest's Logger, the native client on loan, and `withRollback`.
 */
import 'reflect-metadata';
import { Injectable, Module, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import {
  ConfigurationError,
  Database,
  DatabaseError,
  DatabaseModule,
  getDatabaseToken,
  InjectDatabase,
  sql,
  Transactional,
  withRollback,
} from '../../lib/index.js';
import { bootContext } from '../support/app.js';
import { allCases, describeEachDialect, serverCases, tempSqliteUrl, uniqueTable } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';

const TABLE = uniqueTable('nest');

@Injectable()
class NotesService {
  constructor(@InjectDatabase() readonly db: Database) {}

  @Transactional()
  async add(note: string, fail = false): Promise<Database | undefined> {
    await this.db.runOperation(sql`INSERT INTO ${sql.identifier(TABLE)} (note) VALUES (${note})`);
    if (fail) throw new Error(`refused ${note}`);
    return this.db.currentTransaction() ? this.db : undefined;
  }

  notes(): Promise<string[]> {
    return this.db.runQuery<{ note: string }>(sql`SELECT note FROM ${sql.identifier(TABLE)} ORDER BY note`).then((rows) => rows.map((r) => r.note));
  }
}

@Injectable()
class Caller {
  constructor(readonly notes: NotesService) {}
  async findBroken(): Promise<unknown> {
    return await this.notes.db.runQuery('SELECT no_such_column FROM no_such_table_here');
  }
}

async function appOn(url: string) {
  @Module({ imports: [DatabaseModule.forRoot({ url })], providers: [NotesService, Caller] })
  class NotesModule {}
  const app = await NestFactory.createApplicationContext(NotesModule, { logger: false, abortOnError: false });
  await app.get(Database).runOperation(`CREATE TABLE IF NOT EXISTS ${TABLE} (note VARCHAR(40))`);
  return app;
}

describe('@Transactional() is bound to the application that created the object', () => {
  it('two applications in one process: each method runs on its own database, and a rollback in one leaves the other alone', async () => {
    const a = await appOn(tempSqliteUrl());
    const b = await appOn(tempSqliteUrl());
    try {
      const [na, nb] = [a.get(NotesService), b.get(NotesService)];
      expect(await na.add('a1')).toBe(a.get(Database));
      expect(await nb.add('b1')).toBe(b.get(Database));
      await expect(na.add('a2', true)).rejects.toThrow('refused a2');
      expect(await na.notes()).toEqual(['a1']);
      expect(await nb.notes()).toEqual(['b1']);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('an application whose boot failed leaves nothing another one could pick up', async () => {
    @Injectable()
    class Exploding {
      constructor() {
        throw new Error('boot failure');
      }
    }
    @Module({ imports: [DatabaseModule.forRoot({ url: tempSqliteUrl() })], providers: [NotesService, Exploding] })
    class Broken {}
    await expect(NestFactory.createApplicationContext(Broken, { logger: false, abortOnError: false })).rejects.toThrow('boot failure');
    const good = await appOn(tempSqliteUrl());
    try {
      expect(await good.get(NotesService).add('ok')).toBe(good.get(Database));
    } finally {
      await good.close();
    }
  });

  it('@nestjs/testing overrideProvider(Database): @Transactional and @InjectDatabase() both get the fake, and close() is clean', async () => {
    const calls: string[] = [];
    const fake = {
      runInteraction: async (fn: () => Promise<unknown>) => {
        calls.push('runInteraction');
        return fn();
      },
      runOperation: async () => {
        calls.push('runOperation');
        return { affectedRows: 1 };
      },
      currentTransaction: () => undefined,
    };
    const errors: unknown[] = [];
    const logger: LoggerService = { log() {}, warn() {}, error: (...args: unknown[]) => errors.push(args), debug() {}, verbose() {} };
    const moduleRef = await Test.createTestingModule({ imports: [DatabaseModule.forRoot({ url: tempSqliteUrl() })], providers: [NotesService] })
      .overrideProvider(Database)
      .useValue(fake)
      .compile();
    moduleRef.useLogger(logger);
    const app = await moduleRef.init();
    try {
      const notes = app.get(NotesService);
      expect(notes.db).toBe(fake);
      await notes.add('x');
      expect(calls).toEqual(['runInteraction', 'runOperation']);
    } finally {
      await app.close();
    }
    expect(errors).toEqual([]);
  });

  it('a decorated method on an object Nest did not create fails with a clear ConfigurationError', async () => {
    const stray = new NotesService({} as Database);
    await expect(stray.add('x')).rejects.toBeInstanceOf(ConfigurationError);
    await expect(stray.add('x')).rejects.toThrow(/Nest did not create/);
  });

  it('a method whose database name this application does not have says which name and how to register it', async () => {
    @Injectable()
    class Elsewhere {
      @Transactional({ connection: 'reports' })
      async run(): Promise<void> {}
    }
    const app = await bootContext([DatabaseModule.forRoot({ url: tempSqliteUrl() })], [Elsewhere]);
    try {
      await expect(app.get(Elsewhere).run()).rejects.toThrow(/database "reports".*name: 'reports'/);
    } finally {
      await app.close();
    }
  });
});

describe('registration', () => {
  it('two forRoot with the same name are a ConfigurationError at bootstrap', async () => {
    @Module({ imports: [DatabaseModule.forRoot({ url: tempSqliteUrl(), name: 'twice' })] })
    class First {}
    @Module({ imports: [DatabaseModule.forRoot({ url: tempSqliteUrl(), name: 'twice' })] })
    class Second {}
    const error = await bootContext([First, Second]).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/"twice" 2 times/);
  });

  it('a name returned by a forRootAsync factory that differs from the static one is refused', async () => {
    const error = await bootContext([
      DatabaseModule.forRootAsync({ name: 'declared', useFactory: () => ({ url: 'sqlite::memory:', name: 'returned' }) }),
    ]).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/forRootAsync\(\{ name: 'returned'/);
  });

  it.each([
    ['poolSize', 'pool.max'],
    ['max', 'pool.max'],
    ['queryTimeout', 'queryTimeoutMs'],
    ['conectTimeoutMs', 'connectTimeoutMs'],
    ['username', 'user'],
  ])('an unknown option %s is refused, naming %s', async (key, nearest) => {
    const error = await bootContext([DatabaseModule.forRoot({ url: 'sqlite::memory:', [key]: 5 } as never)]).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(`did you mean ${nearest}?`);
    expect(error.option).toBe(key);
  });

  it('an unknown nested option is refused too', async () => {
    const error = await bootContext([DatabaseModule.forRoot({ url: 'sqlite::memory:', pool: { maxSize: 3 } } as never)]).catch((e) => e);
    expect(error.message).toMatch(/"pool.maxSize".*did you mean pool.max\?/);
  });
});

describeEachDialect(allCases, 'errors, stacks and logging', (c) => {
  it('DatabaseError.database names the database, and the stack names the calling function', async () => {
    const app = await appOn(c.url());
    try {
      const error = (await app
        .get(Caller)
        .findBroken()
        .catch((e: unknown) => e)) as DatabaseError;
      expect(error).toBeInstanceOf(DatabaseError);
      expect(error.database).toBe('default');
      expect(
        error.stack
          ?.split('\n')
          .filter((l) => l.includes(' at '))
          .map((l) => l.trim()),
      ).toContainEqual(expect.stringMatching(/^at (async )?Caller\.findBroken/));
    } finally {
      await app
        .get(Database)
        .runOperation(`DROP TABLE ${TABLE}`)
        .catch(() => {});
      await app.close();
    }
  });

  it('logging: statements (never their values), failures and slow statements go to the Nest logger', async () => {
    const lines: string[] = [];
    const logger: LoggerService = {
      log: (m: unknown) => lines.push(`log ${String(m)}`),
      warn: (m: unknown) => lines.push(`warn ${String(m)}`),
      error: (m: unknown) => lines.push(`error ${String(m)}`),
    };
    @Module({ imports: [DatabaseModule.forRoot({ url: c.url(), name: 'logged', logging: true, slowQueryMs: 1 })] })
    class Logged {}
    const app = await NestFactory.createApplicationContext(Logged, { logger, abortOnError: false });
    try {
      const db = app.get<Database>(getDatabaseToken('logged'));
      await db.runQuery(c.dialect === 'postgres' ? 'SELECT $1::text AS secret' : 'SELECT ? AS secret', ['hunter2-value']);
      await db.runQuery('SELECT broken FROM nowhere_at_all').catch(() => {});
      const sleepSql = c.dialect === 'postgres' ? 'SELECT pg_sleep(0.02)' : c.dialect === 'mysql' ? 'SELECT SLEEP(0.02)' : 'SELECT 1';
      await db.runQuery(sleepSql);
    } finally {
      await app.close();
    }
    expect(lines.some((l) => l.startsWith('log query: SELECT') && l.includes('secret'))).toBe(true);
    expect(lines.some((l) => l.startsWith('error query failed') && l.includes('nowhere_at_all'))).toBe(true);
    if (c.dialect !== 'sqlite') expect(lines.some((l) => l.startsWith('warn slow query'))).toBe(true);
    expect(lines.join('\n')).not.toContain('hunter2-value');
  });
});

describeEachDialect(serverCases, 'withNativeConnection', (c) => {
  let db: Database;
  let close: () => Promise<void>;
  beforeAll(async () => {
    const app = await bootContext([DatabaseModule.forRoot({ url: c.url(), pool: { max: 1 } })]);
    db = app.get(Database);
    close = () => app.close();
  });
  afterAll(() => close());

  it("lends the driver's own client, resets what was set on its session, and gives it back", async () => {
    const id = c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id';
    const [{ id: before }] = await db.runQuery<{ id: number }>(id);
    await db.withNativeConnection<{ query(text: string, cb?: unknown): unknown }>(async (client) => {
      if (c.dialect === 'postgres') await (client as unknown as import('pg').Client).query("SET application_name = 'borrowed'");
      else await (client as unknown as import('mysql2').Connection).promise().query("SET @borrowed = 'yes'");
    });
    const [{ id: after }] = await db.runQuery<{ id: number }>(id);
    expect(Number(after)).toBe(Number(before)); // reset, not replaced
    const probe = c.dialect === 'postgres' ? "SELECT current_setting('application_name') AS v" : 'SELECT @borrowed AS v';
    const [{ v }] = await db.runQuery<{ v: string | null }>(probe);
    expect(v).not.toBe(c.dialect === 'postgres' ? 'borrowed' : 'yes');
  });

  it('a loan past its timeout destroys the client and fails with QueryTimeout', async () => {
    const error = (await db.withNativeConnection(() => new Promise(() => {}), { timeoutMs: 100 }).catch((e: unknown) => e)) as DatabaseError;
    expect(error.code).toBe('QUERY_TIMEOUT');
    expect(await db.runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
  });
});

describeEachDialect(allCases, 'withRollback (tests that leave nothing behind)', (c) => {
  it('rolls back everything, while @Transactional code under test keeps its own rollback semantics through savepoints', async () => {
    const app = await appOn(c.url());
    const db = app.get(Database);
    const notes = app.get(NotesService);
    try {
      await db.runOperation(sql`DELETE FROM ${sql.identifier(TABLE)}`);
      await withRollback(db, async () => {
        await notes.add('kept-inside');
        await expect(notes.add('undone', true)).rejects.toThrow('refused undone');
        expect(await notes.notes()).toEqual(['kept-inside']);
        await db.runInteraction(() => notes.add('new'), { propagation: 'requiresNew' });
        expect(await notes.notes()).toEqual(['kept-inside', 'new']);
      });
      expect(await notes.notes()).toEqual([]);
    } finally {
      await db.runOperation(`DROP TABLE ${TABLE}`).catch(() => {});
      await app.close();
    }
  });
});

describeEachDialect(serverCases, 'verifyOnStartup', (c) => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await FaultProxy.start(c.dialect === 'postgres' ? 5432 : 3306);
  });
  afterAll(() => proxy.close());

  it('keeps trying with the reconnect backoff until the server answers, within startupTimeoutMs', async () => {
    await proxy.setMode('refuse');
    const booting = bootContext([
      DatabaseModule.forRoot({ url: proxy.url(c.url()), verifyOnStartup: true, startupTimeoutMs: 10_000, reconnect: { maxDelayMs: 100 } }),
    ]);
    // The proxy is let through once the first attempts were refused, while the boot waits.
    for (let i = 0; i < 500 && proxy.connectionsAccepted < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await proxy.setMode('pass');
    const app = await booting;
    try {
      expect(await app.get(Database).runQuery('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    } finally {
      await app.close();
    }
  });

  it('gives up after startupTimeoutMs, saying the server could not be reached', async () => {
    await proxy.setMode('refuse');
    const started = Date.now();
    const error = await bootContext([
      DatabaseModule.forRoot({ url: proxy.url(c.url()), verifyOnStartup: true, startupTimeoutMs: 500, reconnect: { maxDelayMs: 100 } }),
    ]).catch((e: unknown) => e as DatabaseError);
    await proxy.setMode('pass');
    if (!(error instanceof DatabaseError)) throw new Error('the boot succeeded');
    expect(error.code).toBe('STARTUP_FAILED');
    expect(error.message).toMatch(/could not be reached within startupTimeoutMs \(500 ms\)/);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a wrong password fails the boot at once, saying authentication failed', async () => {
    const url =
      c.dialect === 'postgres'
        ? c.url().replace('postgres://postgres@', `postgres://ndbp_nobody_${process.pid}:x@`)
        : c.url().replace('root@', 'root:wrong-password@');
    const started = Date.now();
    const error = (await bootContext([DatabaseModule.forRoot({ url, verifyOnStartup: true, startupTimeoutMs: 10_000 })]).catch(
      (e: unknown) => e,
    )) as DatabaseError;
    expect(error.code).toBe('STARTUP_FAILED');
    expect(error.message).toMatch(/authentication failed/);
    expect(error.message).not.toContain('wrong-password');
    expect(Date.now() - started).toBeLessThan(3000);
  });
});
