/** The boot's check that the server answers (verifyOnStartup, migrations at boot). */
import { DatabaseError, ErrorCode } from '../core/errors.js';
import type { Engine } from './engine.js';

function bootNeedsServer(engine: Engine): string {
  return engine.options.verifyOnStartup ? 'verifyOnStartup' : 'migrations.runOnBoot';
}

/**
 * verifyOnStartup: one connection must open and answer. A server that cannot be reached is
 * waited for (the detector reconnects with the `reconnect` backoff) until `startupTimeoutMs`;
 * any other failure (credentials, unknown database, TLS) ends the boot at once, saying which.
 */
export async function verifyReachable(engine: Engine): Promise<void> {
  const { startupTimeoutMs } = engine.options;
  const deadline = Date.now() + startupTimeoutMs;
  for (let attempt = 0; attempt < 1_000_000; attempt++) {
    let e: DatabaseError;
    try {
      await engine.pool.verify();
      return;
    } catch (error) {
      e = engine.driver.translateError(error);
    }
    const where = `database "${engine.name}" (${engine.driver.describe()})`;
    if (!engine.detector.isDeathError(e)) {
      const refused = engine.driver.classify(e).refused;
      const why =
        refused === 'auth'
          ? 'authentication failed: check user and password'
          : refused === 'unknown-database'
            ? 'the server has no such database: check the database name'
            : 'the server refused the connection';
      throw new DatabaseError(`${where}: ${why} (${e.message}). ${bootNeedsServer(engine)} stops the boot; retrying would not help`, {
        code: ErrorCode.StartupFailed,
        cause: e,
        dialect: engine.dialect,
        database: engine.name,
      });
    }
    const left = deadline - Date.now();
    if (left <= 0 || !(await engine.detector.waitForRecovery(left))) {
      throw new DatabaseError(
        `${where} could not be reached within startupTimeoutMs (${startupTimeoutMs} ms) at startup (${bootNeedsServer(engine)}): ${e.message}. ` +
          (engine.options.verifyOnStartup
            ? 'Check the server and the connection options, raise startupTimeoutMs, or set verifyOnStartup: false to start without it and connect lazily'
            : 'Check the server and the connection options, raise startupTimeoutMs, or set migrations.runOnBoot: false and run them with the nestjs-dbpool command'),
        { code: ErrorCode.StartupFailed, cause: e, dialect: engine.dialect, database: engine.name },
      );
    }
  }
}
