/**
 * nestjs-dbpool: DI-managed SQL pools for NestJS (PostgreSQL, MySQL/MariaDB, SQLite), with
 * transactions, a dead-connection detector and health checks. The health indicator is in
 * `nestjs-dbpool/health`.
 */
export { DatabaseModule } from './nest/database.module.js';
export type { DatabaseOptionsFactory, DatabaseModuleExtras, DatabaseModuleAsyncOptions } from './nest/database.module.js';
export type { DatabaseModuleOptions, PoolSettings, TypeOptions } from './config/options.js';
export { getDatabaseToken, getConnectionToken, DEFAULT_DATABASE } from './nest/database.constants.js';
export { InjectDatabase, InjectConnection } from './nest/inject.decorators.js';

export { Database } from './database/database.js';
export { withRollback } from './database/testing.js';
export { DatabaseSession } from './database/session.js';
export type { SessionOptions, Settings } from './database/session.js';
export type { DatabaseEvents } from './database/database.js';
export type { QueryOptions, OperationResult, Row, PoolStats, Notification } from './core/types.js';

export { Transactional } from './nest/transactional.decorator.js';
export { Transaction } from './transactions/transaction.js';
export type { TransactionOptions, Propagation, ErrorMatcher } from './transactions/transaction.js';

export { OnNotify } from './nest/on-notify.decorator.js';
export type { OnNotifyOptions } from './nest/on-notify.decorator.js';
export type { ResubscribeInfo, ResubscribeHook, SubscribeOptions, NotificationObserver } from './notify/listener.js';

export { DeadConnectionDetector } from './resilience/detector.js';
export type { DetectorState, DetectorOptions, RecoveryHandler } from './resilience/detector.js';
export { defaultDeathChecker } from './drivers/registry.js';
export { socketDeathChecker } from './resilience/death-checker.js';
export type { DeathChecker } from './resilience/death-checker.js';
export { backoff } from './resilience/backoff.js';
export type { BackoffOptions } from './resilience/backoff.js';
export { RetryingCall } from './resilience/retrying-call.js';
export type { FailureTester } from './resilience/retrying-call.js';
export type { Clock } from './resilience/clock.js';

export { Migrator } from './migrations/migrator.js';
export type { MigrationRun } from './migrations/migrator.js';
export type { Migration, MigrationOptions, MigrationStep, AppliedMigration } from './config/migration.options.js';

export { sql, SqlQuery } from './sql/template.js';
export type { CompiledQuery } from './sql/template.js';

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
  ErrorCode,
} from './core/errors.js';
export type { Dialect } from './core/errors.js';

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
  ReplicationSupport,
  NotificationStatements,
  MigrationSupport,
  TargetSessionAttrs,
} from './drivers/driver.js';
// What a Driver of your own describes: its SQL and script syntax, and what its errors mean.
export type { SqlSyntax, ScriptSyntax } from './sql/syntax.js';
export type { ErrorClass } from './core/errors.js';
export type { ReplicaStatus, ReplicaState } from './database/replicas.js';
