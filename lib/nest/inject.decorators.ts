import { Inject } from '@nestjs/common';
import { DEFAULT_DATABASE, getConnectionToken, getDatabaseToken } from './database.constants.js';

/**
 * Injects the `Database` named `name` (default `'default'`).
 *
 * @example
 * constructor(@InjectDatabase() private readonly db: Database,
 *             @InjectDatabase('analytics') private readonly analytics: Database) {}
 */
export const InjectDatabase = (name: string = DEFAULT_DATABASE): ParameterDecorator & PropertyDecorator => Inject(getDatabaseToken(name));

/**
 * Injects a `DatabaseSession` of the database named `name` for the current HTTP request: one
 * pooled connection, taken at its first call and pinned until the response is sent, with the
 * module's `requestSettings` applied (say, the tenant id for row-level security). The class it
 * goes in becomes request-scoped, as everything that injects a request-scoped provider does.
 * The connection is reset before the pool hands it to anyone else.
 *
 * @example
 * @Injectable({ scope: Scope.REQUEST })
 * export class OrdersRepository {
 *   constructor(@InjectConnection() private readonly session: DatabaseSession) {}
 *   list() { return this.session.runQuery('SELECT * FROM orders'); }  // filtered by the tenant's RLS policy
 * }
 */
export const InjectConnection = (name: string = DEFAULT_DATABASE): ParameterDecorator & PropertyDecorator => Inject(getConnectionToken(name));
