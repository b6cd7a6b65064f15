import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { DatabaseHealthIndicator } from '../../lib/health/index.js';

/** The probes of k8s/deployment.yaml. */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: DatabaseHealthIndicator,
  ) {}

  /**
   * Liveness: the process answers HTTP. No database check on purpose: a database outage must
   * take the pod out of traffic (readiness), not restart it, which would not fix the database.
   */
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Readiness: every database answers a ping within 1 s (503 otherwise, and while shutting down). */
  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.database.pingCheckAll('database')]);
  }
}
