import { SetMetadata } from '@nestjs/common';
import { ON_NOTIFY_METADATA } from '../module/database.constants.js';

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
 * when the application boots; LISTEN is issued then.
 *
 * @example
 * @OnNotify('orders')
 * onOrder(n: Notification) { this.logger.log(`order ${n.payload}`); }
 */
export const OnNotify = (channel: string, options: OnNotifyOptions = {}): MethodDecorator =>
  SetMetadata<string, OnNotifyMetadata[]>(ON_NOTIFY_METADATA, [{ channel, connection: options.connection }]);
