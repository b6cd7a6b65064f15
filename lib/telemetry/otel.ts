/**
 * `@opentelemetry/api`, loaded once if it is installed (an optional peer). The part of it used
 * here is written out, so that the package's types never name a package its users may not have.
 */
export type Attributes = Record<string, string | number | boolean>;

export interface TraceSpan {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setStatus(status: { code: number }): unknown;
  end(): void;
}

export interface Histogram {
  record(value: number, attributes?: Attributes): void;
}
export interface Counter {
  add(value: number, attributes?: Attributes): void;
}
export type Observable = object;
export interface BatchResult {
  observe(observable: Observable, value: number, attributes?: Attributes): void;
}
type BatchCallback = (result: BatchResult) => void;
interface InstrumentOptions {
  description?: string;
  unit?: string;
  advice?: { explicitBucketBoundaries?: number[] };
}
export interface Meter {
  createHistogram(name: string, options?: InstrumentOptions): Histogram;
  createCounter(name: string, options?: InstrumentOptions): Counter;
  createObservableUpDownCounter(name: string, options?: InstrumentOptions): Observable;
  createObservableCounter(name: string, options?: InstrumentOptions): Observable;
  createObservableGauge(name: string, options?: InstrumentOptions): Observable;
  addBatchObservableCallback(callback: BatchCallback, observables: Observable[]): void;
  removeBatchObservableCallback(callback: BatchCallback, observables: Observable[]): void;
}

export interface Tracer {
  startSpan(name: string, options: { kind: number; attributes: Attributes }): TraceSpan;
}

export interface OtelApi {
  trace: {
    getTracer(name: string): Tracer;
    /** The global provider: the API's proxy, whose delegate is the SDK's provider once one is registered. */
    getTracerProvider(): { getTracer(name: string): Tracer; getDelegateTracer?(name: string): Tracer | undefined };
    setSpan(context: unknown, span: TraceSpan): unknown;
  };
  metrics: { getMeter(name: string): Meter };
  createNoopMeter(): Meter;
  context: { active(): unknown; with<R>(context: unknown, fn: () => R): R };
  SpanKind: { CLIENT: number; INTERNAL: number };
  SpanStatusCode: { ERROR: number };
}

let api: OtelApi | null | undefined;

/** Loads `@opentelemetry/api` once, if it is installed; telemetry stays off otherwise. */
export async function loadTelemetry(): Promise<void> {
  if (api !== undefined) return;
  try {
    const name = '@opentelemetry/api';
    const loaded = (await import(name)) as OtelApi & { default?: OtelApi };
    api = loaded.default ?? loaded;
  } catch {
    api = null;
  }
}

/** The loaded API, or undefined (not installed, or not loaded yet). */
export function otel(): OtelApi | undefined {
  return api ?? undefined;
}

/** What names a database's server in both spans and metrics. */
export interface TelemetryTarget {
  /** `db.system.name`: postgresql, mysql or mariadb (as detected on the first connection), sqlite. */
  system: string;
  /** `db.namespace`: the database (or the SQLite file). */
  namespace?: string;
  address?: string;
  port?: number;
}

/** The first keyword of a statement, upper case: `db.operation.name`. */
export function operationOf(text: string): string {
  const match = /^[\s(]*([A-Za-z]+)/.exec(text);
  return match ? match[1].toUpperCase() : 'QUERY';
}

/** `error.type` and `db.response.status_code` of a failure; never its message (a server's message can quote a value). */
export function errorAttributes(error: unknown, into: Attributes): Attributes {
  const e = error as { name?: string; code?: string; sqlState?: string; errno?: number } | undefined;
  into['error.type'] = e?.name && e.name !== 'Error' ? e.name : (e?.code ?? 'Error');
  const status = e?.sqlState ?? (e?.errno !== undefined ? String(e.errno) : e?.code);
  if (status) into['db.response.status_code'] = status;
  return into;
}
