import 'reflect-metadata';
import { ON_NOTIFY_METADATA } from './database.constants.js';
import { ConfigurationError } from '../core/errors.js';

export interface OnNotifyOptions {
  /** The named database. Default: `'default'`. */
  connection?: string;
}

export interface OnNotifyMetadata {
  channel: string;
  connection?: string;
}

/**
 * Calls the decorated provider method with each PostgreSQL NOTIFY on `channel`. Discovered
 * when the application boots; LISTEN is issued then. A method may carry several `@OnNotify`.
 * A method that returns a promise gets the channel's next notification once it settled; one
 * that throws or rejects is logged and the next notification still comes. Delivery is at most
 * once: see `Database.onResubscribe` to catch up after a reconnect.
 *
 * @example
 * @OnNotify('orders')
 * onOrder(n: Notification) { this.logger.log(`order ${n.payload}`); }
 *
 * @OnNotify('audit', { connection: 'analytics' })
 * async onAudit(n: Notification) { await this.audit.record(JSON.parse(n.payload)); }
 */
export const OnNotify =
  (channel: string, options: OnNotifyOptions = {}): MethodDecorator =>
  (_target, _key, descriptor) => {
    const handler = descriptor.value as object | undefined;
    if (typeof handler !== 'function') throw new ConfigurationError('@OnNotify() decorates methods only');
    const entries = (Reflect.getMetadata(ON_NOTIFY_METADATA, handler) as OnNotifyMetadata[] | undefined) ?? [];
    Reflect.defineMetadata(ON_NOTIFY_METADATA, [...entries, { channel, connection: options.connection }], handler);
    return descriptor;
  };
