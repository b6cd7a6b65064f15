/**
 * OpenTelemetry traces by the database semantic conventions, when `@opentelemetry/api` is
 * installed (an optional peer): a CLIENT span per statement (`db.system.name`, `db.namespace`,
 * `db.operation.name`, `db.query.text` — the text only, never a value —, `server.address`,
 * `server.port`, and `error.type` / `db.response.status_code` on failure) and one per transaction,
 * the parent of its statements, with its outcome. Without the package, or with tracing off,
 * nothing is created. Spans go to whatever tracer provider the app registered (the Node SDK);
 * without one, the API's no-op tracer.
 */

/**
 * The part of `@opentelemetry/api` used here, written out so that the package's types do not
 * name a package its users may not have installed.
 */
type Attributes = Record<string, string | number | boolean>;
export interface TraceSpan {
  setAttribute(key: string, value: string | number | boolean): unknown;
  setStatus(status: { code: number }): unknown;
  end(): void;
}
interface OtelApi {
  trace: {
    getTracer(name: string): { startSpan(name: string, options: { kind: number; attributes: Attributes }): TraceSpan };
    setSpan(context: unknown, span: TraceSpan): unknown;
  };
  context: { active(): unknown; with<R>(context: unknown, fn: () => R): R };
  SpanKind: { CLIENT: number; INTERNAL: number };
  SpanStatusCode: { ERROR: number };
}

let api: OtelApi | null | undefined;

/** Loads `@opentelemetry/api` once, if it is installed; tracing stays off otherwise. */
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

export interface TracingTarget {
  /** `db.system.name`: postgresql, mysql, sqlite. */
  system: string;
  /** `db.namespace`: the database (or the SQLite file). */
  namespace?: string;
  address?: string;
  port?: number;
  /** Put the statement text in `db.query.text`. */
  queryText: boolean;
}

/** The first keyword of a statement, upper case: `db.operation.name`. */
function operationOf(text: string): string {
  const match = /^[\s(]*([A-Za-z]+)/.exec(text);
  return match ? match[1].toUpperCase() : 'QUERY';
}

export class DatabaseTracer {
  constructor(private readonly target: TracingTarget) {}

  private cached?: ReturnType<OtelApi['trace']['getTracer']>;

  /** Looked up once (the API's tracer follows a provider registered later): not on every statement. */
  private tracer(): ReturnType<OtelApi['trace']['getTracer']> | undefined {
    if (!api) return undefined;
    return (this.cached ??= api.trace.getTracer('nestjs-dbpool'));
  }

  /** A statement's span, child of the active one (the request's, the transaction's). Undefined when tracing is off. */
  statement(text: string, server?: { address?: string; port?: number }): TraceSpan | undefined {
    const tracer = this.tracer();
    if (!tracer || !api) return undefined;
    const operation = operationOf(text);
    const t = this.target;
    const attributes: Attributes = { 'db.system.name': t.system, 'db.operation.name': operation };
    if (t.namespace) attributes['db.namespace'] = t.namespace;
    if (t.queryText) attributes['db.query.text'] = text;
    const address = server?.address ?? t.address;
    const port = server?.port ?? t.port;
    if (address) attributes['server.address'] = address;
    if (port) attributes['server.port'] = port;
    return tracer.startSpan(t.namespace ? `${operation} ${t.namespace}` : operation, { kind: api.SpanKind.CLIENT, attributes });
  }

  /** A transaction's span: its statements are made children by `within`. */
  transaction(): TraceSpan | undefined {
    const tracer = this.tracer();
    if (!tracer || !api) return undefined;
    const t = this.target;
    const attributes: Attributes = { 'db.system.name': t.system };
    if (t.namespace) attributes['db.namespace'] = t.namespace;
    return tracer.startSpan(t.namespace ? `transaction ${t.namespace}` : 'transaction', { kind: api.SpanKind.INTERNAL, attributes });
  }

  /** Runs `fn` with `span` as the active span, so that what it starts is its child. */
  within<R>(span: TraceSpan | undefined, fn: () => R): R {
    if (!span || !api) return fn();
    return api.context.with(api.trace.setSpan(api.context.active(), span), fn);
  }

  /** Ends a span; with an error, marks it failed with `error.type` and the server's code. */
  end(span: TraceSpan | undefined, error?: unknown): void {
    if (!span) return;
    if (error !== undefined && api) {
      const e = error as { name?: string; code?: string; sqlState?: string; errno?: number; message?: string };
      span.setAttribute('error.type', e.name && e.name !== 'Error' ? e.name : (e.code ?? 'Error'));
      const status = e.sqlState ?? (e.errno !== undefined ? String(e.errno) : e.code);
      if (status) span.setAttribute('db.response.status_code', status);
      // No message: a server's message can quote a value (MySQL's "Duplicate entry 'x'").
      span.setStatus({ code: api.SpanStatusCode.ERROR });
    }
    span.end();
  }
}
