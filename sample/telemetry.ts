/**
 * `TRACING=console npm start`: the module's spans and metrics printed by OpenTelemetry's console
 * exporters, with a span per HTTP request as the parent of the database spans made while serving
 * it. In an app of yours, the OpenTelemetry Node SDK and its HTTP instrumentation do this part
 * (see the README's "Observability"); nothing here is needed by the module itself.
 */
import type { INestApplication } from '@nestjs/common';

export async function startConsoleTelemetry(): Promise<boolean> {
  if (process.env.TRACING !== 'console') return false;
  const { context, metrics, trace } = await import('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  const { BasicTracerProvider, ConsoleSpanExporter, SimpleSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { ConsoleMetricExporter, MeterProvider, PeriodicExportingMetricReader } = await import('@opentelemetry/sdk-metrics');
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(new ConsoleSpanExporter())] }));
  const exportIntervalMillis = Number(process.env.METRICS_INTERVAL_MS ?? 60_000);
  metrics.setGlobalMeterProvider(
    new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter: new ConsoleMetricExporter(), exportIntervalMillis })] }),
  );
  return true;
}

/** A SERVER span per request (what the SDK's HTTP instrumentation would make), active while it is served. */
export async function traceRequests(app: INestApplication): Promise<void> {
  const { SpanKind, trace } = await import('@opentelemetry/api');
  const tracer = trace.getTracer('sample-http');
  app.use((req: { method: string; url: string }, res: { on(event: 'finish', fn: () => void): void; statusCode: number }, next: () => void) => {
    tracer.startActiveSpan(`${req.method} ${req.url.split('?')[0]}`, { kind: SpanKind.SERVER }, (span) => {
      res.on('finish', () => {
        span.setAttribute('http.response.status_code', res.statusCode);
        span.end();
      });
      next();
    });
  });
}
