/**
 * `@Transactional(options?)`: runs the decorated provider method in a transaction
 * (`Database.runInteraction`). Every query on the same `Database` made inside it, and inside
 * everything it awaits, uses the transaction's connection. The `Database` is the one of the
 * application that created the object (found through its Nest container): no extra injection
 * is needed in the class, and test overrides of the database provider are honoured.
 *
 * @example
 * @Transactional({ isolation: 'serializable', retry: 3 })
 * async transfer(from: number, to: number, amount: number) {
 *   await this.accounts.withdraw(from, amount);   // same transaction
 *   await this.accounts.deposit(to, amount);
 * }
 */
import 'reflect-metadata';
import { DEFAULT_DATABASE } from './database.constants.js';
import { databaseOf, injectModuleRef } from './database.resolver.js';
import { ConfigurationError } from '../core/errors.js';
import type { TransactionOptions } from '../transactions/transaction.js';

export function Transactional(options: TransactionOptions = {}): MethodDecorator {
  return (target, key, descriptor: PropertyDescriptor) => {
    const original = descriptor.value as (...args: unknown[]) => Promise<unknown>;
    if (typeof original !== 'function') {
      throw new ConfigurationError(`@Transactional() goes on a method, and ${String(key)} is not one`, { option: 'Transactional' });
    }
    const name = options.connection ?? DEFAULT_DATABASE;
    const where = `@Transactional() ${(typeof target === 'function' ? target.name : target.constructor?.name) ?? 'object'}.${String(key)}`;
    injectModuleRef(target);
    const wrapped = function (this: unknown, ...args: unknown[]) {
      let db;
      try {
        db = databaseOf(this, name, where);
      } catch (error) {
        return Promise.reject(error);
      }
      return db.runInteraction(() => original.apply(this, args), options);
    };
    // Keep Nest's (and anyone's) metadata on the method, and its name for stack traces.
    for (const metadataKey of Reflect.getMetadataKeys?.(original) ?? []) {
      Reflect.defineMetadata(metadataKey, Reflect.getMetadata(metadataKey, original), wrapped);
    }
    Object.defineProperty(wrapped, 'name', { value: original.name });
    descriptor.value = wrapped;
    return descriptor;
  };
}
