/** `nestjs-dbpool/health`: the Terminus indicator, kept apart so that @nestjs/terminus stays optional. */
export { DatabaseHealthIndicator, timeoutMessage } from './database.health.js';
export type { PingCheckOptions, HealthIndicatorResult, HealthStatus } from './database.health.js';
