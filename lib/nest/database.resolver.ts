/**
 * How `@Transactional()` finds its `Database`: through the Nest container the decorated object
 * was created in, never through a process-wide registry. The decorator gives the class a
 * hidden property injection of `ModuleRef`; Nest fills it for every instance it creates (any
 * scope), and the `Database` is looked up by token in that application, so that two
 * applications in one process never share a database and `overrideProvider` is honoured.
 */
import { Inject } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { ConfigurationError } from '../core/errors.js';
import type { Database } from '../database/database.js';
import { getDatabaseToken } from './database.constants.js';

const MODULE_REF = Symbol('nestjs-dbpool.moduleRef');
const prepared = new WeakSet<object>();
const resolved = new WeakMap<object, Map<string, Database>>();

/** Makes Nest inject `ModuleRef` into instances of the class whose prototype is `prototype` (once per class). */
export function injectModuleRef(prototype: object): void {
  if (prepared.has(prototype)) return;
  prepared.add(prototype);
  Inject(ModuleRef)(prototype, MODULE_REF);
}

/** The `Database` named `name` in the application that created `instance`. */
export function databaseOf(instance: unknown, name: string, where: string): Database {
  const moduleRef = (instance as Record<symbol, ModuleRef | undefined> | undefined)?.[MODULE_REF];
  if (!moduleRef) {
    throw new ConfigurationError(
      `${where} was called on an object Nest did not create (made with new, or a method called without its object), ` +
        "so it cannot tell which application's database to use. Get the instance from Nest (inject it), " +
        'or call db.runInteraction() yourself',
      { option: 'Transactional', database: name },
    );
  }
  let byName = resolved.get(moduleRef);
  if (!byName) resolved.set(moduleRef, (byName = new Map<string, Database>()));
  let db = byName.get(name);
  if (!db) {
    let found: unknown;
    try {
      found = moduleRef.get(getDatabaseToken(name), { strict: false });
    } catch {
      throw new ConfigurationError(
        `${where} uses database "${name}", and this application has none by that name: import DatabaseModule.forRoot(${name === 'default' ? '' : `{ name: '${name}', … }`}) ` +
          '(or set TransactionOptions.connection to the name you registered)',
        { option: 'connection', database: name },
      );
    }
    if (typeof (found as Database | undefined)?.runInteraction !== 'function') {
      throw new ConfigurationError(
        `${where} uses database "${name}", but its provider (overridden?) has no runInteraction(): a test double for a Database must implement it`,
        { option: 'connection', database: name },
      );
    }
    db = found as Database;
    byName.set(name, db);
  }
  return db;
}
