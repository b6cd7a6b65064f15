/**
 * The health check's ping: on a dedicated connection outside the pool (a busy pool cannot make
 * readiness fail), shared by concurrent callers, bounded by the caller's timeout.
 */
import { inBackground } from '../core/background.js';
import { QueryTimeout } from '../core/errors.js';
import type { Connection } from '../drivers/driver.js';
import type { Engine } from './engine.js';

export class Probe {
  private probeConnection?: Connection;
  private probing?: Promise<number>;

  constructor(private readonly engine: Engine) {}

  /** Drops the probe's connection (shutdown). */
  close(): void {
    this.probeConnection?.destroy();
    this.probeConnection = undefined;
  }

  /**
   * A ping of the server, on the probe's own connection, bounded by `timeoutMs`.
   */
  probe(timeoutMs: number): Promise<number> {
    this.probing ??= inBackground(() => this.runProbe().finally(() => (this.probing = undefined)));
    const probing = this.probing;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A ping that does not answer in time: drop its connection, so the next probe starts afresh.
        this.probeConnection?.destroy();
        this.probeConnection = undefined;
        reject(new QueryTimeout(`ping of database "${this.engine.name}": timeout of ${timeoutMs}ms exceeded`, { timeoutMs, database: this.engine.name }));
      }, timeoutMs);
      probing.then(
        (ms) => {
          clearTimeout(timer);
          resolve(ms);
        },
        (error) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  private async runProbe(): Promise<number> {
    const started = performance.now();
    try {
      if (!this.probeConnection || this.probeConnection.broken) {
        const connection = await this.engine.connectDriver();
        if (this.engine.state !== 'open') {
          connection.destroy();
          throw this.engine.closedError();
        }
        this.probeConnection = connection;
      }
      await this.probeConnection.ping();
    } catch (error) {
      this.probeConnection?.destroy();
      this.probeConnection = undefined;
      throw this.engine.failed(error);
    }
    return performance.now() - started;
  }
}
