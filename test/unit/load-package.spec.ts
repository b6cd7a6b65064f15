import { ConfigurationError } from '../../lib/index.js';
import { loadPackage } from '../../lib/drivers/load-package.js';

describe('loading a driver package', () => {
  it('a missing package is a ConfigurationError naming it and the install command', async () => {
    const missing = Object.assign(new Error("Cannot find package 'mysql2' imported from /app/x.js"), { code: 'ERR_MODULE_NOT_FOUND' });
    const error = await loadPackage('mysql2', 'mysql', () => Promise.reject(missing)).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toBe('the mysql driver needs the "mysql2" package, which is not installed: npm install mysql2');
    expect(error.option).toBe('driver');
  });

  it('a native binding that fails to load says so, with the rebuild command', async () => {
    const binding = new Error('Could not locate the bindings file. Tried: → /app/node_modules/better-sqlite3/build/better_sqlite3.node');
    const error = await loadPackage('better-sqlite3', 'sqlite', () => Promise.reject(binding)).catch((e) => e);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/needs the "better-sqlite3" package, which is installed but failed to load \(Could not locate the bindings file/);
    expect(error.message).toMatch(/npm rebuild better-sqlite3/);
  });
});
