/**
 * Loads a driver's client package (an optional peer dependency the app installs itself). A
 * missing package, or one whose native binding fails to load, becomes a `ConfigurationError`
 * at bootstrap that names the package and the command that fixes it, instead of a bare error
 * on the first query.
 */
import { ConfigurationError, type Dialect } from '../core/errors.js';

export async function loadPackage<T>(pkg: string, dialect: Dialect, importer: () => Promise<T>, purpose = `the ${dialect} driver`): Promise<T> {
  try {
    return await importer();
  } catch (error) {
    const code = (error as { code?: string } | undefined)?.code;
    const missing = (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') && String((error as Error).message).includes(pkg);
    throw new ConfigurationError(
      missing
        ? `${purpose} needs the "${pkg}" package, which is not installed: npm install ${pkg}`
        : `${purpose} needs the "${pkg}" package, which is installed but failed to load (${(error as Error)?.message ?? error}); ` +
            `reinstall it for this Node version and platform: npm rebuild ${pkg} (or npm install ${pkg})`,
      { option: 'driver', dialect, cause: error },
    );
  }
}
