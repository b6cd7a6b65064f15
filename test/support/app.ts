/** Boots small NestJS apps around DatabaseModule for tests, and closes them. */
import 'reflect-metadata';
import { Module, type DynamicModule, type INestApplicationContext, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DatabaseModule, getDatabaseToken, type Database, type DatabaseModuleOptions } from '../../lib/index.js';

export async function bootContext(imports: Array<DynamicModule | Type>, providers: Type[] = []): Promise<INestApplicationContext> {
  @Module({ imports, providers })
  class TestModule {}
  return NestFactory.createApplicationContext(TestModule, { logger: false, abortOnError: false });
}

/** One database in its own app context; `close()` shuts the app down. */
export async function openDatabase(options: DatabaseModuleOptions): Promise<{ db: Database; app: INestApplicationContext; close(): Promise<void> }> {
  const app = await bootContext([DatabaseModule.forRoot(options)]);
  const db = app.get<Database>(getDatabaseToken(options.name));
  return { db, app, close: () => app.close() };
}
