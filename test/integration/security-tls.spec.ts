/**
 * TLS against throwaway servers this file starts itself (the shared ones run without TLS and
 * must not be reconfigured): a CA and a server certificate made with openssl, a PostgreSQL
 * cluster with ssl=on and a MariaDB instance with TLS and a user that REQUIREs it.
 */
import { jest } from '@jest/globals';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigurationError, DatabaseError, type Database, type DatabaseModuleOptions } from '../../lib/index.js';
import { openDatabase } from '../support/app.js';
import { describeEachDialect, serverCases } from '../support/databases.js';
import { isRestartError, ridingOutRestarts, waitForServer } from '../support/security.js';
import {
  foreignHostName,
  makeCertificates,
  startMariadb,
  startPostgres,
  type Certificates,
  type MariadbServer,
  type PostgresServer,
} from '../support/tls-servers.js';

jest.setTimeout(120_000);

let certs: Certificates;
let workDir: string;
/** A name for this machine that the certificate does not list, if it has one. */
let foreign: { name: string; address: string } | undefined;

beforeAll(async () => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-tls-'));
  fs.chmodSync(workDir, 0o755);
  certs = await makeCertificates(path.join(workDir, 'certs'));
  fs.chmodSync(certs.dir, 0o755);
  foreign = await foreignHostName();
});

afterAll(() => {
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
});

/** Opens a Database and runs one query; resolves with the error it failed with, or undefined. */
async function failureOf(options: DatabaseModuleOptions, query = 'SELECT 1'): Promise<unknown> {
  let opened: Awaited<ReturnType<typeof openDatabase>> | undefined;
  try {
    opened = await openDatabase({ connectTimeoutMs: 5000, ...options });
    await opened.db.runQuery(query);
    return undefined;
  } catch (error) {
    if (opened) {
      // A TLS or auth failure says nothing about the server being gone: no reconnect loop.
      expect(opened.db.detector.isDead).toBe(false);
    }
    return error;
  } finally {
    await opened?.close();
  }
}

async function withDatabase<T>(options: DatabaseModuleOptions, body: (db: Database) => Promise<T>): Promise<T> {
  const { db, close } = await openDatabase({ connectTimeoutMs: 5000, ...options });
  try {
    return await body(db);
  } finally {
    await close();
  }
}

describe('TLS [postgres]', () => {
  let server: PostgresServer;
  const extra = ['127.0.0.2'];

  beforeAll(async () => {
    if (foreign && foreign.address !== '127.0.0.1' && !extra.includes(foreign.address)) extra.push(foreign.address);
    server = await startPostgres({ certificates: certs, extraAddresses: extra, preferredPort: 5433 });
  });
  afterAll(async () => {
    await server?.stop();
  });

  const encrypted = (db: Database) => db.runQuery<{ ssl: boolean }>('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').then((rows) => rows[0].ssl);

  it('connects with sslmode=verify-full and sslrootcert when the CA and the host name match', async () => {
    for (const host of ['127.0.0.1', 'localhost']) {
      const url = server.url({ host, query: `sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}` });
      await withDatabase({ url, verifyOnStartup: true }, async (db) => expect(await encrypted(db)).toBe(true));
    }
  });

  it('connects with the ssl option { ca } (verification on by default)', async () => {
    await withDatabase({ url: server.url(), ssl: { ca: certs.ca } }, async (db) => expect(await encrypted(db)).toBe(true));
  });

  it('an sslrootcert alone means verify-full', async () => {
    const url = server.url({ host: '127.0.0.2', query: `sslrootcert=${encodeURIComponent(certs.caFile)}` });
    const error = await failureOf({ url });
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as DatabaseError).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('refuses a server whose certificate another CA signed, with a DatabaseError that says so', async () => {
    const url = server.url({ query: `sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.otherCaFile)}` });
    const error = await failureOf({ url });
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as DatabaseError).code).toMatch(/SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/);
    expect((error as Error).message).toMatch(/certificate/i);
    expect((error as Error).message).not.toContain(server.superPassword);
  });

  it('fails the boot with verifyOnStartup when the CA is wrong, naming the cause', async () => {
    const error = await openDatabase({ url: server.url(), ssl: { ca: certs.otherCa }, verifyOnStartup: true, connectTimeoutMs: 5000 }).catch((e) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error.code).toBe('STARTUP_FAILED');
    expect(error.message).toMatch(/certificate/i);
    expect(error.message).not.toContain(server.superPassword);
  });

  it('refuses a host name the certificate does not list with verify-full, and accepts it with verify-ca', async () => {
    const hosts = ['127.0.0.2', ...(foreign ? [foreign.name] : [])];
    for (const host of hosts) {
      const full = await failureOf({ url: server.url({ host, query: `sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}` }) });
      expect(full).toBeInstanceOf(DatabaseError);
      expect((full as DatabaseError).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
      expect((full as Error).message).toMatch(/does not match certificate/i);
      // verify-ca checks the chain only: the same host name is fine.
      await withDatabase({ url: server.url({ host, query: `sslmode=verify-ca&sslrootcert=${encodeURIComponent(certs.caFile)}` }) }, async (db) =>
        expect(await encrypted(db)).toBe(true),
      );
    }
    // verify-ca still checks the chain.
    const wrongCa = await failureOf({
      url: server.url({ host: '127.0.0.2', query: `sslmode=verify-ca&sslrootcert=${encodeURIComponent(certs.otherCaFile)}` }),
    });
    expect(wrongCa).toBeInstanceOf(DatabaseError);
  });

  it('sslmode=require encrypts without checking, but checks the chain once an sslrootcert is given (as libpq)', async () => {
    await withDatabase({ url: server.url({ host: '127.0.0.2', query: 'sslmode=require' }) }, async (db) => expect(await encrypted(db)).toBe(true));
    const error = await failureOf({ url: server.url({ query: `sslmode=require&sslrootcert=${encodeURIComponent(certs.otherCaFile)}` }) });
    expect(error).toBeInstanceOf(DatabaseError);
  });

  it('sslmode=disable connects in plain text', async () => {
    await withDatabase({ url: server.url({ query: 'sslmode=disable' }) }, async (db) => expect(await encrypted(db)).toBe(false));
  });

  it('fails the boot with a ConfigurationError when sslrootcert cannot be read', async () => {
    const missing = path.join(workDir, 'no-such-ca.crt');
    const error = await openDatabase({ url: server.url({ query: `sslmode=verify-full&sslrootcert=${encodeURIComponent(missing)}` }) }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.option).toBe('url');
    expect(error.message).toContain('sslrootcert');
    expect(error.message).toContain('ENOENT');
    expect(error.message).not.toContain(server.superPassword);
  });

  it('refuses contradictory TLS options at bootstrap', async () => {
    const a = await openDatabase({ url: server.url(), ssl: { ca: certs.ca, rejectUnauthorized: false } }).catch((e) => e);
    expect(a).toBeInstanceOf(ConfigurationError);
    expect(a.option).toBe('ssl');
    const b = await openDatabase({ url: server.url({ query: `sslmode=no-verify&sslrootcert=${encodeURIComponent(certs.caFile)}` }) }).catch((e) => e);
    expect(b).toBeInstanceOf(ConfigurationError);
  });
});

describe('TLS [mysql]', () => {
  let server: MariadbServer;
  const user = 'tls_user';
  const password = `tls-${Math.random().toString(36).slice(2)}`;
  const extra = ['127.0.0.2'];
  const url = (host: string, query = '') => `mysql://${user}:${password}@${host}:${server.port}/test${query ? `?${query}` : ''}`;

  beforeAll(async () => {
    if (foreign && foreign.address !== '127.0.0.1' && !extra.includes(foreign.address)) extra.push(foreign.address);
    server = await startMariadb({ certificates: certs, extraAddresses: extra, preferredPort: 3307 });
    await server.sql(`CREATE DATABASE test; CREATE USER '${user}'@'%' IDENTIFIED BY '${password}' REQUIRE SSL; GRANT ALL ON test.* TO '${user}'@'%';`);
  });
  afterAll(async () => {
    await server?.stop();
  });

  const tlsVersion = (db: Database) => db.runQuery<{ Value: string }>("SHOW SESSION STATUS LIKE 'Ssl_version'").then((rows) => rows[0]?.Value ?? '');

  it('connects with ssl { ca }, verifying the chain and the host name', async () => {
    await withDatabase({ url: url('localhost'), ssl: { ca: certs.ca }, verifyOnStartup: true }, async (db) => {
      expect(await tlsVersion(db)).toMatch(/^TLS/);
    });
    await withDatabase({ url: url('127.0.0.1'), ssl: { ca: certs.ca } }, async (db) => expect(await tlsVersion(db)).toMatch(/^TLS/));
  });

  it('ssl: true verifies against the system CAs, so the test CA is refused with a DatabaseError', async () => {
    const error = await failureOf({ url: url('localhost'), ssl: true });
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as DatabaseError).code).toBe('HANDSHAKE_SSL_ERROR');
    expect((error as Error).message).toMatch(/^TLS handshake failed: .*certificate/);
  });

  it('reads sslrootcert from the URL (sslmode=verify-full)', async () => {
    await withDatabase({ url: url('localhost', `sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}`) }, async (db) =>
      expect(await tlsVersion(db)).toMatch(/^TLS/),
    );
  });

  it('refuses a server whose certificate another CA signed', async () => {
    const error = await failureOf({ url: url('localhost'), ssl: { ca: certs.otherCa } });
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as Error).message).toMatch(/certificate/i);
    expect((error as Error).message).not.toContain(password);
  });

  it('refuses a host name the certificate does not list (verifyIdentity is on by default for a host name)', async () => {
    if (!foreign) {
      // No second name reaches this machine: nothing to connect to under a wrong name.
      console.warn('TLS [mysql]: no host name other than localhost resolves to this machine; the wrong-host-name case was not run');
      return;
    }
    const error = await failureOf({ url: url(foreign.name), ssl: { ca: certs.ca } });
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as Error).message).toMatch(/does not match certificate/i);
    await withDatabase({ url: url(foreign.name, `sslmode=verify-ca&sslrootcert=${encodeURIComponent(certs.caFile)}`) }, async (db) =>
      expect(await tlsVersion(db)).toMatch(/^TLS/),
    );
  });

  it('refuses verify-full towards an IP address, which mysql2 cannot check, at bootstrap', async () => {
    const error = await openDatabase({ url: url('127.0.0.2', `sslmode=verify-full&sslrootcert=${encodeURIComponent(certs.caFile)}`) }).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.option).toBe('ssl');
    expect(error.message).not.toContain(password);
  });

  it('the server refuses a REQUIRE SSL user who comes without TLS', async () => {
    const error = await failureOf({ url: url('127.0.0.1') });
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as DatabaseError).code).toBe('ER_ACCESS_DENIED_ERROR');
    expect((error as Error).message).not.toContain(password);
  });
});

/** `url` with `query` added to its query string. */
const withQuery = (url: string, query: string) => `${url}${url.includes('?') ? '&' : '?'}${query}`;

/** The shared servers, which run without TLS (and must not be reconfigured): a client that requires TLS is refused. */
describeEachDialect(serverCases, 'TLS', (c) => {
  /** Whether the shared server offers TLS, and how the client refuses it when it does not. */
  const shared =
    c.dialect === 'postgres'
      ? {
          offersTls: (db: Database) => db.runQuery<{ ssl: string }>('SHOW ssl').then((rows) => rows[0].ssl !== 'off'),
          refusal: { fields: { code: 'SSL_NOT_SUPPORTED' }, message: /does not support SSL/i },
        }
      : {
          offersTls: (db: Database) => db.runQuery<{ Value: string }>("SHOW VARIABLES LIKE 'have_ssl'").then((rows) => rows[0].Value === 'YES'),
          refusal: { fields: {}, message: /does not support secure connection/i },
        };

  it('sslmode=require refuses a server without TLS', async () => {
    const offersTls = await ridingOutRestarts({ url: c.url() }, () => withDatabase({ url: c.url() }, shared.offersTls));
    // Should one shared server ever have TLS, the other dialect's case still covers the refusal.
    if (offersTls) return;
    await waitForServer({ url: c.url() });
    const url = withQuery(c.url(), 'sslmode=require');
    const error = await ridingOutRestarts({ url: c.url() }, () => failureOf({ url }), isRestartError);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject(shared.refusal.fields);
    expect((error as Error).message).toMatch(shared.refusal.message);
    const boot = await ridingOutRestarts(
      { url: c.url() },
      () => openDatabase({ url, verifyOnStartup: true }).catch((e) => e),
      (e) => isRestartError((e as Error).cause),
    );
    expect(boot).toBeInstanceOf(DatabaseError);
    expect(boot.message).toMatch(shared.refusal.message);
  });
});
