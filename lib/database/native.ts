/** `withNativeConnection`'s loan of the driver's own client, bounded by a timeout after which the client is destroyed. */
import { NotSupported, QueryTimeout } from '../core/errors.js';
import type { Connection } from '../drivers/driver.js';
import type { Engine } from './engine.js';

export async function lendNative<C, R>(engine: Engine, connection: Connection, fn: (client: C) => Promise<R> | R, timeoutMs: number, onTimeout: () => void): Promise<R> {
  const native = connection.native?.() as C | undefined;
  if (native === undefined) {
    throw new NotSupported(`withNativeConnection() has no native client to lend on ${engine.dialect} (database "${engine.name}")`, {
      dialect: engine.dialect,
      database: engine.name,
    });
  }
  if (!(timeoutMs > 0)) return await fn(native);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      connection.destroy();
      reject(new QueryTimeout(`withNativeConnection() on database "${engine.name}" ran past its timeout of ${timeoutMs} ms; the client was destroyed`, {
        timeoutMs,
        database: engine.name,
        dialect: engine.dialect,
      }));
    }, timeoutMs);
  });
  const work = Promise.resolve().then(() => fn(native));
  work.catch(() => {}); // it may lose the race and fail later, on the destroyed client
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}
