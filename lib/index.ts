/**
 * nestjs-dbpool: DI-managed SQL pools for NestJS (PostgreSQL, MySQL/MariaDB, SQLite), with
 * transactions, a dead-connection detector and health checks. The health indicator is in
 * `nestjs-dbpool/health`.
 */
export { DatabaseModule } from './module/database.module.js';
export type { DatabaseOptionsFactory, DatabaseModuleExtras, DatabaseModuleAsyncOptions } from './module/database.module.js';
export type { DatabaseModuleOptions, PoolSettings, TypeOptions } from './module/database.options.js';
export { getDatabaseToken, getConnectionToken, DEFAULT_DATABASE } from './module/database.constants.js';
export { InjectDatabase, InjectConnection } from './module/inject.decorators.js';

export { Database } from './database/database.js';
export { withRollback } from './database/testing.js';
export { DatabaseSession } from './database/session.js';
export type { SessionOptions, Settings } from './database/session.js';
export type { DatabaseEvents } from './database/database.js';
export type { QueryOptions, OperationResult, Row, PoolStats, Notification } from './database/database.types.js';

export { Transactional } from './transactions/transactional.decorator.js';
export { Transaction } from './transactions/transaction.js';
export type { TransactionOptions, Propagation, ErrorMatcher } from './transactions/transaction.js';

export { OnNotify } from './notify/on-notify.decorator.js';
export type { OnNotifyOptions } from './notify/on-notify.decorator.js';
export type { ResubscribeInfo, ResubscribeHook, SubscribeOptions, NotificationObserver } from './notify/listener.js';

export { DeadConnectionDetector } from './resilience/detector.js';
export type { DetectorState, DetectorOptions, RecoveryHandler } from './resilience/detector.js';
export { defaultDeathChecker } from './resilience/death-checker.js';
export type { DeathChecker } from './resilience/death-checker.js';
export { backoff } from './resilience/backoff.js';
export type { BackoffOptions } from './resilience/backoff.js';
export { RetryingCall } from './resilience/retrying-call.js';
export type { FailureTester } from './resilience/retrying-call.js';
export type { Clock } from './resilience/clock.js';

export { Migrator } from './migrations/migrator.js';
export type { MigrationRun } from './migrations/migrator.js';
export type { Migration, MigrationOptions, MigrationStep, AppliedMigration } from './migrations/migration.types.js';

export { sql, SqlQuery } from './sql.js';
export type { CompiledQuery } from './sql.js';

export {
  DatabaseError,
  ConnectionDead,
  RollbackFailed,
  CommitOutcomeUnknown,
  QueryTimeout,
  QueryCanceled,
  AcquireTimeout,
  DatabaseClosed,
  ConfigurationError,
  InvalidParameter,
  TransactionError,
  NotSupported,
  ConstraintViolation,
  UniqueViolation,
  ForeignKeyViolation,
  NotNullViolation,
  CheckViolation,
  MigrationFailed,
} from './errors.js';
export type { Dialect } from './errors.js';

export type {
  Driver,
  Connection,
  ConnectionSettings,
  ResultSet,
  RowMode,
  RowCursor,
  ExecuteOptions,
  StreamOptions,
  IsolationLevel,
  BeginOptions,
} from './drivers/driver.js';
