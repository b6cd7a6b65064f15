import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { ConfigurationError, InvalidParameter, sql } from '../../lib/index.js';
import { checkParameters } from '../../lib/sql/parameters.js';
import { resolveOptions } from '../../lib/config/options.js';
import { syntaxOf } from '../../lib/drivers/registry.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-sec-unit-'));
const caFile = path.join(dir, 'ca.pem');
const keyFile = path.join(dir, 'client.key');
fs.writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n');
fs.writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\nsecret-key-material\n-----END PRIVATE KEY-----\n');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const ssl = (url: string, extra: Record<string, unknown> = {}) => resolveOptions({ url, ...extra }).settings.ssl as Record<string, unknown> | false | undefined;
const rootcert = `sslrootcert=${encodeURIComponent(caFile)}`;

function configError(fn: () => unknown): ConfigurationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    return error as ConfigurationError;
  }
  throw new Error('expected a ConfigurationError');
}

describe('TLS options from URLs and the ssl option', () => {
  it('maps sslmode as libpq does, reading sslrootcert at bootstrap', () => {
    expect(ssl('postgres://h/d?sslmode=disable')).toBe(false);
    expect(ssl('postgres://h/d?sslmode=require')).toEqual({ rejectUnauthorized: false });
    expect(ssl('postgres://h/d?sslmode=prefer')).toEqual({ rejectUnauthorized: false });
    expect(ssl(`postgres://h/d?sslmode=verify-full&${rootcert}`)).toEqual({ rejectUnauthorized: true, ca: fs.readFileSync(caFile) });
    const verifyCa = ssl(`postgres://h/d?sslmode=verify-ca&${rootcert}`) as Record<string, unknown>;
    expect(verifyCa.rejectUnauthorized).toBe(true);
    expect(typeof verifyCa.checkServerIdentity).toBe('function');
    // require + a root certificate checks the chain (verify-ca), as libpq does.
    const required = ssl(`postgres://h/d?sslmode=require&${rootcert}`) as Record<string, unknown>;
    expect(required.rejectUnauthorized).toBe(true);
    expect(typeof required.checkServerIdentity).toBe('function');
    // sslrootcert alone: verified, host name included.
    expect(ssl(`postgres://h/d?${rootcert}`)).toEqual({ rejectUnauthorized: true, ca: fs.readFileSync(caFile) });
    expect(ssl('postgres://h/d?sslrootcert=system')).toEqual({ rejectUnauthorized: true });
  });

  it('turns on the host name check for MySQL (mysql2 skips it by default), where mysql2 can do it', () => {
    expect(ssl('mysql://db.internal/d', { ssl: { ca: 'x' } })).toMatchObject({ ca: 'x', verifyIdentity: true });
    expect(ssl('mysql://10.0.0.5/d', { ssl: { ca: 'x' } })).toMatchObject({ ca: 'x', verifyIdentity: false });
    expect(ssl(`mysql://db.internal/d?sslmode=verify-ca&${rootcert}`)).toMatchObject({ rejectUnauthorized: true, verifyIdentity: false });
    expect(ssl(`mysql://db.internal/d?sslmode=verify-full&${rootcert}`)).toMatchObject({ rejectUnauthorized: true, verifyIdentity: true });
    const error = configError(() => resolveOptions({ url: `mysql://10.0.0.5/d?sslmode=verify-full&${rootcert}` }));
    expect(error.option).toBe('ssl');
    expect(error.message).toMatch(/IP address/);
  });

  it("gives mysql2 an object for ssl: true, and copies the caller's object", () => {
    expect(ssl('mysql://h/d', { ssl: true })).toEqual({ verifyIdentity: true });
    const mine = { ca: 'x' };
    const resolved = ssl('postgres://h/d', { ssl: mine });
    expect(resolved).toEqual(mine);
    expect(resolved).not.toBe(mine);
  });

  it('refuses a CA whose check is switched off, and an unreadable certificate file', () => {
    expect(configError(() => resolveOptions({ url: 'postgres://h/d', ssl: { ca: 'x', rejectUnauthorized: false } })).option).toBe('ssl');
    expect(configError(() => resolveOptions({ url: `postgres://h/d?sslmode=no-verify&${rootcert}` })).option).toBe('url');
    const missing = configError(() => resolveOptions({ url: `postgres://u:hunter22@h/d?sslrootcert=${encodeURIComponent(path.join(dir, 'nope.pem'))}` }));
    expect(missing.message).toMatch(/sslrootcert=".*nope\.pem", which cannot be read \(ENOENT\)/);
    expect(missing.message).not.toContain('hunter22');
  });

  it('keeps a client key (sslkey) and the password out of JSON.stringify and util.inspect, even with showHidden', () => {
    const o = resolveOptions({ url: `postgres://u:hunter22@h/d?sslcert=${encodeURIComponent(caFile)}&sslkey=${encodeURIComponent(keyFile)}` });
    const tls = o.settings.ssl as Record<string, Buffer>;
    expect(tls.key.toString()).toContain('secret-key-material');
    expect(o.settings.password).toBe('hunter22');
    for (const text of [JSON.stringify(o), inspect(o, { depth: 10 }), inspect(o, { depth: 10, showHidden: true })]) {
      expect(text).not.toContain('hunter22');
      expect(text).not.toContain('secret-key-material');
      // A Buffer prints as bytes: look for those too.
      expect(text).not.toContain(JSON.stringify([...fs.readFileSync(keyFile)]).slice(1, 60));
      expect(text).not.toContain(inspect(fs.readFileSync(keyFile)).slice(8, 60));
    }
  });

  it('refuses a malformed %-escape with a ConfigurationError rather than a URIError', () => {
    const error = configError(() => resolveOptions({ url: 'postgres://u:%E0%A4%A@h/d' }));
    expect(error.option).toBe('url');
    expect(error.message).toMatch(/%-escape in its password/);
  });
});

describe('parameters and identifiers that a driver would silently alter', () => {
  it('refuses lone surrogates in values and statement text, and NUL in statement text', () => {
    expect(() => checkParameters(['ok', 'a\ud800'], syntaxOf('postgres'))).toThrow(/parameter 2 contains a lone UTF-16 surrogate/);
    expect(() => checkParameters(['😀'], syntaxOf('postgres'))).not.toThrow();
    expect(() => checkParameters([], syntaxOf('sqlite'), 'SELECT 1\0; DROP TABLE t')).toThrow(/statement text contains a NUL/);
    expect(() => checkParameters([], syntaxOf('sqlite'), 'SELECT "\udc00"')).toThrow(InvalidParameter);
  });

  it('refuses arrays and plain objects on MySQL only, where mysql2 would splice them into the SQL', () => {
    expect(() => checkParameters([[1, 2]], syntaxOf('mysql'))).toThrow(/parameter 1 is an array/);
    expect(() => checkParameters([{ a: 1 }], syntaxOf('mysql'))).toThrow(/JSON\.stringify/);
    expect(() => checkParameters([Buffer.from('x'), new Date(), null, new Uint8Array(2)], syntaxOf('mysql'))).not.toThrow();
    expect(() => checkParameters([[1, 2], { a: 1 }], syntaxOf('postgres'))).not.toThrow();
  });

  it('refuses identifiers the dialect would truncate or strip', () => {
    expect(sql`${sql.identifier('a'.repeat(63))}`.compile(syntaxOf('postgres')).text).toBe(`"${'a'.repeat(63)}"`);
    expect(() => sql`${sql.identifier('a'.repeat(64))}`.compile(syntaxOf('postgres'))).toThrow(/63 bytes/);
    expect(() => sql`${sql.identifier('ä'.repeat(32))}`.compile(syntaxOf('postgres'))).toThrow(/63 bytes \(got 64\)/);
    expect(sql`${sql.identifier('a'.repeat(64))}`.compile(syntaxOf('mysql')).text).toBe(`\`${'a'.repeat(64)}\``);
    expect(() => sql`${sql.identifier('a'.repeat(65))}`.compile(syntaxOf('mysql'))).toThrow(/64 characters/);
    expect(() => sql`${sql.identifier('😀')}`.compile(syntaxOf('mysql'))).toThrow(/U\+FFFF/);
    expect(() => sql`${sql.identifier(' a')}`.compile(syntaxOf('mysql'))).toThrow(/start with a space/);
    expect(() => sql`${sql.identifier('\u0001a')}`.compile(syntaxOf('mysql'))).toThrow(/control character/);
    expect(() => sql`${sql.identifier('a ')}`.compile(syntaxOf('mysql'))).toThrow(/end with a space/);
    expect(sql`${sql.identifier(' a😀 ')}`.compile(syntaxOf('sqlite')).text).toBe('" a😀 "');
    expect(() => sql.identifier()).toThrow(InvalidParameter);
    expect(() => sql.identifier('\ud800')).toThrow(/surrogate/);
  });
});
