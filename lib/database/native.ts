/** `withNativeConnection`'s loan of the driver's own client, bounded by a timeout after which the client is destroyed. */
import { NotSupported, QueryTimeout } from '../core/errors.js';
import type { Connection } from '../drivers/driver.js';
import type { Engine } from './engine.js';
import { withTimeout } from '../core/timers.js';

export async function lendNative<C, R>(
  engine: Engine,
  connection: Connection,
  fn: (client: C) => Promise<R> | R,
  timeoutMs: number,
  onTimeout: () => void,
): Promise<R> {
  const native = connection.native?.() as C | undefined;
  if (native === undefined) {
    throw new NotSupported(`withNativeConnection() has no native client to lend on ${engine.dialect} (database "${engine.name}")`, {
      dialect: engine.dialect,
      database: engine.name,
    });
  }
  if (!(timeoutMs > 0)) return await fn(native);
  const work = Promise.resolve().then(() => fn(native));
  return await withTimeout(
    work,
    timeoutMs,
    () =>
      new QueryTimeout(`withNativeConnection() on database "${engine.name}" ran past its timeout of ${timeoutMs} ms; the client was destroyed`, {
        timeoutMs,
        database: engine.name,
        dialect: engine.dialect,
      }),
    () => {
      onTimeout();
      connection.destroy();
    },
  );
}
