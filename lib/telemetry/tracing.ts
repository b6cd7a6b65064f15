/**
 * OpenTelemetry traces by the database semantic conventions, when `@opentelemetry/api` is
 * installed (an optional peer): a CLIENT span per statement (`db.system.name`, `db.namespace`,
 * `db.operation.name`, `db.query.text` — the text only, never a value —, `server.address`,
 * `server.port`, and `error.type` / `db.response.status_code` on failure) and one per transaction,
 * the parent of its statements, with its outcome. What the call waited for before its statement
 * (a pool connection, the reconnect) and a replay are attributes of the statement's span.
 * Without the package, or with tracing off, nothing is created. Spans go to whatever tracer
 * provider the app registered (the Node SDK); without one, the API's no-op tracer.
 */
import { redactLiterals } from './query-text.js';
import { errorAttributes, operationOf, otel, type Attributes, type TelemetryTarget, type TraceSpan, type Tracer } from './otel.js';

export type { TraceSpan } from './otel.js';

export interface TracingTarget extends TelemetryTarget {
  /** Put the statement text in `db.query.text` (literals redacted). */
  queryText: boolean;
  /** MySQL's quoting: `"…"` is a string, a backslash escapes in every string, `#` starts a comment. */
  mysqlQuoting: boolean;
}

/** Redacted texts kept per tracer: statements repeat, the redaction need not. */
const REDACTED_CACHE_MAX = 500;

const OTEL_GLOBAL = Symbol.for('opentelemetry.js.api.1');

/** What a call went through before its statement ran, as its handle records it (milliseconds). */
export interface CallWaits {
  poolWaitMs?: number;
  recoveryWaitMs?: number;
  /** 1 for the first try; more when the statement was replayed on a fresh connection. */
  attempt?: number;
}

export class DatabaseTracer {
  constructor(readonly target: TracingTarget) {}

  private cached?: Tracer;
  private readonly redacted = new Map<string, string>();

  /** `db.query.text`: the statement with its literals replaced by `?` (placeholders stay). */
  private queryText(text: string): string {
    let out = this.redacted.get(text);
    if (out === undefined) {
      if (this.redacted.size >= REDACTED_CACHE_MAX) this.redacted.clear();
      out = redactLiterals(text, this.target.mysqlQuoting);
      this.redacted.set(text, out);
    }
    return out;
  }

  /**
   * The SDK's tracer, once a tracer provider is registered (looked up again until then, so that
   * one registered after the database opened is found); undefined before: without an SDK a
   * statement builds no span at all, not even the API's no-op one.
   */
  tracer(): Tracer | undefined {
    if (this.cached) return this.cached;
    const api = otel();
    // Where the API keeps what was registered (its global for major version 1): nothing there, no provider; one property
    // read instead of the API's lookup, on every statement of an app that has the API and no SDK.
    if (!api || !(globalThis as { [OTEL_GLOBAL]?: { trace?: unknown } })[OTEL_GLOBAL]?.trace) return undefined;
    const provider = api.trace.getTracerProvider();
    this.cached = provider.getDelegateTracer ? provider.getDelegateTracer('nestjs-dbpool') : provider.getTracer('nestjs-dbpool');
    return this.cached;
  }

  /** A statement's span, child of the active one (the request's, the transaction's). Undefined when tracing is off. */
  statement(text: string, server?: { address?: string; port?: number }, waits?: CallWaits): TraceSpan | undefined {
    if (!this.tracer()) return undefined;
    return this.operation(operationOf(text), text, server, waits);
  }

  /** A span for a call that sends no statement text (`PING`), or for `text` under its operation's name. */
  operation(operation: string, text?: string, server?: { address?: string; port?: number }, waits?: CallWaits): TraceSpan | undefined {
    const tracer = this.tracer();
    if (!tracer) return undefined;
    const t = this.target;
    const attributes: Attributes = { 'db.system.name': t.system, 'db.operation.name': operation };
    if (t.namespace) attributes['db.namespace'] = t.namespace;
    if (t.queryText && text !== undefined) attributes['db.query.text'] = this.queryText(text);
    const address = server?.address ?? t.address;
    const port = server?.port ?? t.port;
    if (address) attributes['server.address'] = address;
    if (port) attributes['server.port'] = port;
    if (waits) addWaits(attributes, waits);
    return tracer.startSpan(t.namespace ? `${operation} ${t.namespace}` : operation, { kind: otel()!.SpanKind.CLIENT, attributes });
  }

  /** A transaction's span: its statements are made children by `within`. */
  transaction(waits?: CallWaits): TraceSpan | undefined {
    const tracer = this.tracer();
    if (!tracer) return undefined;
    const t = this.target;
    const attributes: Attributes = { 'db.system.name': t.system };
    if (t.namespace) attributes['db.namespace'] = t.namespace;
    if (waits) addWaits(attributes, waits);
    return tracer.startSpan(t.namespace ? `transaction ${t.namespace}` : 'transaction', { kind: otel()!.SpanKind.INTERNAL, attributes });
  }

  /** Adds what a call waited for to a span started before the wait (a transaction's). */
  waited(span: TraceSpan | undefined, waits: CallWaits): void {
    if (!span) return;
    const attributes: Attributes = {};
    addWaits(attributes, waits);
    for (const [key, value] of Object.entries(attributes)) span.setAttribute(key, value);
  }

  /** Runs `fn` with `span` as the active span, so that what it starts is its child. */
  within<R>(span: TraceSpan | undefined, fn: () => R): R {
    const api = otel();
    if (!span || !api) return fn();
    return api.context.with(api.trace.setSpan(api.context.active(), span), fn);
  }

  /** Ends a span; with an error, marks it failed with `error.type` and the server's code (no message). */
  end(span: TraceSpan | undefined, error?: unknown): void {
    if (!span) return;
    const api = otel();
    if (error !== undefined && api) {
      for (const [key, value] of Object.entries(errorAttributes(error, {}))) span.setAttribute(key, value);
      span.setStatus({ code: api.SpanStatusCode.ERROR });
    }
    span.end();
  }
}

/** `nestjs_dbpool.pool.wait_ms`, `nestjs_dbpool.recovery.wait_ms`, `nestjs_dbpool.attempt`: only what happened. */
function addWaits(attributes: Attributes, waits: CallWaits): void {
  if (waits.poolWaitMs !== undefined) attributes['nestjs_dbpool.pool.wait_ms'] = Math.round(waits.poolWaitMs * 100) / 100;
  if (waits.recoveryWaitMs) attributes['nestjs_dbpool.recovery.wait_ms'] = Math.round(waits.recoveryWaitMs);
  if (waits.attempt && waits.attempt > 1) attributes['nestjs_dbpool.attempt'] = waits.attempt;
}
