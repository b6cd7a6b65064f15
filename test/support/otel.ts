/** OpenTelemetry metrics for tests: a meter provider whose reader the test collects on demand. */
import { metrics } from '@opentelemetry/api';
import { AggregationTemporality, MeterProvider, MetricReader, type DataPoint, type Histogram, type MetricData } from '@opentelemetry/sdk-metrics';

/** A reader that exports nothing on its own: the test collects when it wants to look. */
class OnDemandReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

export type Point = DataPoint<number | Histogram>;

export interface TestMeter {
  /** Every metric this module reported (scope `nestjs-dbpool`), collected now. */
  collect(): Promise<MetricData[]>;
  /** The data points of one metric whose attributes include `match`. */
  points(name: string, match?: Record<string, unknown>): Promise<Point[]>;
  /** One gauge or counter value (the single matching point), undefined when none. */
  value(name: string, match?: Record<string, unknown>): Promise<number | undefined>;
}

/**
 * Registers a global meter provider in `beforeAll` (databases opened after it report to it) and
 * removes it in `afterAll`: the rest of the suite runs in the same process.
 */
export function useTestMeter(): TestMeter {
  const reader = new OnDemandReader();
  const provider = new MeterProvider({ readers: [reader] });
  beforeAll(() => {
    metrics.setGlobalMeterProvider(provider);
  });
  afterAll(async () => {
    metrics.disable();
    await provider.shutdown();
  });
  const collect = async () => {
    const { resourceMetrics } = await reader.collect();
    return resourceMetrics.scopeMetrics.filter((s) => s.scope.name === 'nestjs-dbpool').flatMap((s) => s.metrics);
  };
  const points = async (name: string, match: Record<string, unknown> = {}) => {
    const metric = (await collect()).find((m) => m.descriptor.name === name);
    return ((metric?.dataPoints ?? []) as Point[]).filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v));
  };
  const value = async (name: string, match: Record<string, unknown> = {}) => {
    const found = await points(name, match);
    if (found.length > 1) throw new Error(`${found.length} points of ${name} match ${JSON.stringify(match)}`);
    return found[0]?.value as number | undefined;
  };
  return { collect, points, value };
}
