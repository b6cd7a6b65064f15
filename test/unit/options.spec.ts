import { ConfigurationError } from '../../lib/index.js';
import { parseUrl, resolveOptions, type DatabaseModuleOptions } from '../../lib/config/options.js';
import { inspect } from 'node:util';

const PASSWORD = 's3cr3t-pa55word';

function configError(options: unknown): ConfigurationError {
  try {
    resolveOptions(options as DatabaseModuleOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    const e = error as ConfigurationError;
    expect(e.message).not.toContain(PASSWORD);
    expect(JSON.stringify(e)).not.toContain(PASSWORD);
    expect(inspect(e)).not.toContain(PASSWORD);
    return e;
  }
  throw new Error('expected a ConfigurationError');
}

describe('resolveOptions', () => {
  it('parses postgres, mysql and sqlite URLs', () => {
    const pg = resolveOptions({ url: `postgres://bob:${PASSWORD}@db.internal:6543/app?sslmode=require` });
    expect(pg.dialect).toBe('postgres');
    expect(pg.settings).toMatchObject({ host: 'db.internal', port: 6543, user: 'bob', database: 'app', ssl: { rejectUnauthorized: false } });
    expect(pg.settings.password).toBe(PASSWORD);
    const my = resolveOptions({ url: 'mariadb://root@127.0.0.1/test' });
    expect(my.dialect).toBe('mysql');
    expect(my.settings.port).toBe(3306);
    expect(resolveOptions({ url: 'sqlite::memory:' }).settings.filename).toBe(':memory:');
    expect(resolveOptions({ url: 'sqlite:./data/app.db' }).settings.filename).toBe('./data/app.db');
    expect(resolveOptions({ url: 'sqlite::memory:' }).pool.max).toBe(4);
  });

  it('lets discrete fields override the url and accepts driver without url', () => {
    const o = resolveOptions({ url: 'postgres://a@h1/d1', host: 'h2', database: 'd2' });
    expect(o.settings).toMatchObject({ host: 'h2', database: 'd2', user: 'a' });
    expect(resolveOptions({ driver: 'mysql', host: 'x', user: 'u' }).dialect).toBe('mysql');
  });

  it('applies the documented defaults', () => {
    const o = resolveOptions({ url: 'postgres://a@h/d' });
    expect(o.pool).toEqual({
      min: 0,
      max: 10,
      idleTimeoutMs: 30000,
      acquireTimeoutMs: 10000,
      maxLifetimeMs: 1800000,
      leakDetectionMs: 0,
      validateAfterIdleMs: 30000,
    });
    expect(o.settings.connectTimeoutMs).toBe(10000);
    expect(o.queryTimeoutMs).toBe(0);
    expect(o.shutdownTimeoutMs).toBe(10000);
    expect(o.verifyOnStartup).toBe(false);
    expect(o.name).toBe('default');
  });

  it('hides the password from JSON and inspect', () => {
    const o = resolveOptions({ url: `postgres://bob:${PASSWORD}@h/d` });
    expect(JSON.stringify(o)).not.toContain(PASSWORD);
    expect(inspect(o, { depth: 10 })).not.toContain(PASSWORD);
    expect({ ...o.settings }).not.toHaveProperty('password');
  });

  it.each([
    [{}, 'url'],
    [undefined, 'options'],
    [{ url: '' }, 'url'],
    [{ url: `oracle://u:${PASSWORD}@h/d` }, 'url'],
    [{ url: `postgres://u:${PASSWORD}@[bad/d` }, 'url'],
    [{ url: `postgres://u:${PASSWORD}@h/d?sslmode=sometimes` }, 'url'],
    [{ url: 'sqlite:' }, 'url'],
    [{ driver: 'oracle' }, 'driver'],
    [{ driver: 42 }, 'driver'],
    [{ url: 'postgres://h/d', driver: 'mysql' }, 'driver'],
    [{ driver: 'sqlite' }, 'filename'],
    [{ url: 'postgres://h/d', port: 70000 }, 'port'],
    [{ url: 'postgres://h/d', port: 'x' }, 'port'],
    [{ url: 'postgres://h/d', host: 5 }, 'host'],
    [{ url: 'postgres://h/d', password: 5 }, 'password'],
    [{ url: 'postgres://h/d', pool: { max: 0 } }, 'pool.max'],
    [{ url: 'postgres://h/d', pool: { max: -3 } }, 'pool.max'],
    [{ url: 'postgres://h/d', pool: { max: 'ten' } }, 'pool.max'],
    [{ url: 'postgres://h/d', pool: { min: 5, max: 2 } }, 'pool.min'],
    [{ url: 'postgres://h/d', pool: { min: -1 } }, 'pool.min'],
    [{ url: 'postgres://h/d', pool: { idleTimeoutMs: -1 } }, 'pool.idleTimeoutMs'],
    [{ url: 'postgres://h/d', pool: { acquireTimeoutMs: 0 } }, 'pool.acquireTimeoutMs'],
    [{ url: 'postgres://h/d', pool: { maxLifetimeMs: 1.5 } }, 'pool.maxLifetimeMs'],
    [{ url: 'postgres://h/d', pool: 'big' }, 'pool'],
    [{ url: 'postgres://h/d', connectTimeoutMs: NaN }, 'connectTimeoutMs'],
    [{ url: 'postgres://h/d', queryTimeoutMs: -5 }, 'queryTimeoutMs'],
    [{ url: 'postgres://h/d', shutdownTimeoutMs: 'soon' }, 'shutdownTimeoutMs'],
    [{ url: 'postgres://h/d', reconnect: { maxDelayMs: -1 } }, 'reconnect.maxDelayMs'],
    [{ url: 'postgres://h/d', reconnect: { factor: 'x' } }, 'reconnect.factor'],
    [{ url: 'postgres://h/d', transientErrors: 'ECONNRESET' }, 'transientErrors'],
    [{ url: 'postgres://h/d', verifyOnStartup: 'yes' }, 'verifyOnStartup'],
    [{ url: 'postgres://h/d', ssl: 'on' }, 'ssl'],
    [{ url: 'postgres://h/d', name: '' }, 'name'],
  ])('rejects %j naming option %s', (options, option) => {
    const e = configError(options);
    expect(e.option).toBe(option);
    expect(e.message).toContain(`"${option}"`);
  });

  it('names the accepted values', () => {
    expect(configError({ driver: 'oracle' }).message).toMatch(/postgres, mysql, sqlite/);
    expect(configError({ url: 'oracle://h/d' }).message).toMatch(/postgres:\/\/.*mysql:\/\/.*sqlite:/);
    expect(configError({ url: 'postgres://h/d', pool: { max: 0 } }).message).toMatch(/integer >= 1/);
  });

  it('never echoes a malformed URL, which may hold a password', () => {
    expect(() => parseUrl(`mysql://root:${PASSWORD}@host:notaport/db`)).toThrow(ConfigurationError);
    configError({ url: `mysql://root:${PASSWORD}@host:notaport/db` });
  });
});

describe('replicas', () => {
  const base = { url: 'postgres://app:secret@db-primary:5432/shop' };

  it('takes each replica URL, filling in what it leaves out from the primary, with a label without credentials', () => {
    const o = resolveOptions({ ...base, replicas: ['postgres://db-r1:5433', 'postgres://other:pw@db-r2/reports?sslmode=disable'] });
    const [r1, r2] = o.replication.replicas;
    expect(r1.label).toBe('db-r1:5433');
    expect(r1.settings).toMatchObject({ host: 'db-r1', port: 5433, user: 'app', database: 'shop' });
    expect(r1.settings.password).toBe('secret');
    expect(r2.label).toBe('db-r2:5432');
    expect(r2.settings).toMatchObject({ host: 'db-r2', user: 'other', database: 'reports' });
    expect(r2.settings.password).toBe('pw');
    expect(JSON.stringify(o.replication)).not.toMatch(/secret|pw/);
    expect(o.replication).toMatchObject({ readYourWrites: 'context', maxReplicaLagMs: 10_000, replicaWaitMs: 100, replicaCheckIntervalMs: 1000 });
  });

  it('refuses replicas of another dialect, on a dialect without them, and bad values, naming the option', () => {
    const refused = (options: DatabaseModuleOptions, option: string, message: RegExp) => {
      let error: unknown;
      try {
        resolveOptions(options);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error).toMatchObject({ option });
      expect((error as Error).message).toMatch(message);
    };
    refused({ ...base, replicas: ['mysql://r1/db'] }, 'replicas[0]', /is a mysql URL; the database is postgres/);
    refused({ ...base, replicas: 'postgres://r1' as never }, 'replicas', /array/);
    refused({ url: 'sqlite::memory:', replicas: ['sqlite:other.db'] }, 'replicas', /not supported on SQLite/);
    refused({ ...base, readYourWrites: 'sometimes' as never }, 'readYourWrites', /'context', 'always' or 'off'/);
    refused({ ...base, maxReplicaLagMs: -1 }, 'maxReplicaLagMs', /integer >= 0/);
  });
});

describe('several hosts (libpq URL)', () => {
  it('reads a host list and target_session_attrs, with the default port where an entry has none', () => {
    const o = resolveOptions({ url: 'postgres://app:pw@h1:5432,h2,[::1]:5434/shop?target_session_attrs=read-write' });
    expect(o.settings.hosts).toEqual([
      { host: 'h1', port: 5432 },
      { host: 'h2', port: 5432 },
      { host: '::1', port: 5434 },
    ]);
    expect(o.settings).toMatchObject({ host: 'h1', port: 5432, user: 'app', database: 'shop', targetSessionAttrs: 'read-write' });
    expect(o.settings.password).toBe('pw');
    expect(resolveOptions({ url: 'postgres://h1/db?target_session_attrs=prefer-standby' }).settings.targetSessionAttrs).toBe('prefer-standby');
  });

  it('refuses an unknown target_session_attrs, an empty host entry, and target_session_attrs on MySQL', () => {
    expect(() => resolveOptions({ url: 'postgres://h1,h2/db?target_session_attrs=writable' })).toThrow(
      /unknown target_session_attrs "writable"; accepted: any, read-write/,
    );
    expect(() => resolveOptions({ url: 'postgres://h1,,h2/db' })).toThrow(/empty or malformed entry in its host list/);
    expect(() => resolveOptions({ url: 'mysql://root@h1,h2/db?target_session_attrs=read-write' })).toThrow(/target_session_attrs, which MySQL does not take/);
    // A node list is MySQL's too (a Galera cluster).
    expect(resolveOptions({ url: 'mysql://root@n1,n2:3307,n3/db' }).settings.hosts).toEqual([
      { host: 'n1', port: 3306 },
      { host: 'n2', port: 3307 },
      { host: 'n3', port: 3306 },
    ]);
  });
});
