import { Inject } from '@nestjs/common';
import { DEFAULT_DATABASE, getDatabaseToken } from './database.constants.js';

/**
 * Injects the `Database` named `name` (default `'default'`).
 *
 * @example
 * constructor(@InjectDatabase() private readonly db: Database,
 *             @InjectDatabase('analytics') private readonly analytics: Database) {}
 */
export const InjectDatabase = (name: string = DEFAULT_DATABASE): ParameterDecorator & PropertyDecorator =>
  Inject(getDatabaseToken(name));
