/**
 * Finds `@OnNotify` methods on every provider at bootstrap (NestJS `DiscoveryService`) and
 * subscribes each to its channel on its database. Request-scoped providers have no instance
 * at bootstrap and are skipped. A database that cannot be reached does not fail the boot
 * (LISTEN happens once it can, like the pool's lazy connect); anything else that makes LISTEN
 * fail (MySQL or SQLite, a bad channel name, a refused login) fails the bootstrap, naming the method.
 */
import { Injectable } from '@nestjs/common';
import { DiscoveryService, MetadataScanner, Reflector } from '@nestjs/core';
import type { Database } from '../database/database.js';
import { DEFAULT_DATABASE, ON_NOTIFY_METADATA } from './database.constants.js';
import type { OnNotifyMetadata } from './on-notify.decorator.js';

@Injectable()
export class NotifyExplorer {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly reflector: Reflector,
  ) {}

  /** Subscribes every `@OnNotify` method meant for `db`. */
  async subscribeAll(db: Database): Promise<void> {
    for (const wrapper of this.discovery.getProviders()) {
      const instance = wrapper.instance as Record<string, unknown> | undefined;
      if (!instance || typeof instance !== 'object' || !wrapper.isDependencyTreeStatic()) continue;
      const prototype = Object.getPrototypeOf(instance) as object | null;
      if (!prototype) continue;
      for (const method of this.scanner.getAllMethodNames(prototype)) {
        const handler = instance[method];
        if (typeof handler !== 'function') continue;
        const entries = this.reflector.get<OnNotifyMetadata[] | undefined>(ON_NOTIFY_METADATA, handler);
        for (const entry of entries ?? []) {
          if ((entry.connection ?? DEFAULT_DATABASE) !== db.name) continue;
          try {
            await db.listen(entry.channel, (n) => (handler as (n: unknown) => unknown).call(instance, n), { waitForServer: true });
          } catch (error) {
            const owner = (instance.constructor as { name?: string } | undefined)?.name ?? 'provider';
            db.logger.error(
              `@OnNotify('${entry.channel}') on ${owner}.${method} could not LISTEN on database "${db.name}": ${(error as Error)?.message ?? error}`,
            );
            throw error;
          }
        }
      }
    }
  }
}
