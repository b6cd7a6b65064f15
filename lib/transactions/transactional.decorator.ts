/**
 * `@Transactional(options?)`: runs the decorated provider method in a transaction
 * (`Database.runInteraction`). Every query on the same `Database` made inside it, and inside
 * everything it awaits, uses the transaction's connection. The class needs no extra
 * injection: the `Database` is found by `options.connection` in the registry of open databases.
 *
 * @example
 * @Transactional({ isolation: 'serializable', retry: 3 })
 * async transfer(from: number, to: number, amount: number) {
 *   await this.accounts.withdraw(from, amount);   // same transaction
 *   await this.accounts.deposit(to, amount);
 * }
 */
import 'reflect-metadata';
import { DEFAULT_DATABASE } from '../module/database.constants.js';
import { findDatabase } from '../module/database.registry.js';
import type { TransactionOptions } from './transaction.js';

export function Transactional(options: TransactionOptions = {}): MethodDecorator {
  return (_target, _key, descriptor: PropertyDescriptor) => {
    const original = descriptor.value as (...args: unknown[]) => Promise<unknown>;
    if (typeof original !== 'function') throw new TypeError('@Transactional() goes on a method');
    const name = options.connection ?? DEFAULT_DATABASE;
    const wrapped = function (this: unknown, ...args: unknown[]) {
      let db;
      try {
        db = findDatabase(name);
      } catch (error) {
        return Promise.reject(error);
      }
      return db.runInteraction(() => original.apply(this, args), options);
    };
    // Keep Nest's (and anyone's) metadata on the method, and its name for stack traces.
    for (const key of Reflect.getMetadataKeys?.(original) ?? []) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, original), wrapped);
    }
    Object.defineProperty(wrapped, 'name', { value: original.name });
    descriptor.value = wrapped;
    return descriptor;
  };
}
