/**
 * OpenTelemetry spans, on every dialect, with the SDK's in-memory exporter: a CLIENT span per
 * statement with the database semantic conventions' attributes, a transaction span that is the
 * parent of its statements (also across @Transactional services), the caller's span as parent,
 * error spans, the statement text only (never a value), and the two ways to say less.
 */
import 'reflect-metadata';
import { Injectable } from '@nestjs/common';
import { context, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { Database, DatabaseModule, getDatabaseToken, InjectDatabase, Transactional, UniqueViolation } from '../../lib/index.js';
import { bootContext, openDatabase } from '../support/app.js';
import { until } from '../support/wait.js';
import { allCases, describeEachDialect, uniqueTable, type DialectCase } from '../support/databases.js';

const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager();

beforeAll(() => {
  context.setGlobalContextManager(contextManager.enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
});

afterAll(() => {
  // The rest of the suite runs in this process: no tracer provider left behind.
  trace.disable();
  context.disable();
});

/** `mysql` is the dialect; the span names the product the server turned out to be. */
const SYSTEM = { postgres: 'postgresql', mysql: expect.stringMatching(/^(mysql|mariadb)$/), sqlite: 'sqlite' } as const;

/** Runs `fn` inside a span of the test's own (the request's, in an app), returning that span's id and the spans that ended. */
async function underParent(fn: () => Promise<unknown>): Promise<{ parentId: string; spans: ReadableSpan[] }> {
  exporter.reset();
  const tracer = trace.getTracer('test');
  let parentId = '';
  await tracer.startActiveSpan('request', async (span: Span) => {
    parentId = span.spanContext().spanId;
    try {
      await fn().catch(() => {});
    } finally {
      span.end();
    }
  });
  return { parentId, spans: exporter.getFinishedSpans().filter((s) => s.name !== 'request') };
}

const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describeEachDialect(allCases, 'OpenTelemetry spans', (c: DialectCase) => {
  let db: Database;
  let close: () => Promise<void>;
  let table: string;

  beforeAll(async () => {
    ({ db, close } = await openDatabase({ url: c.url() }));
    table = uniqueTable('traced');
    await db.runOperation(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, secret VARCHAR(40))`);
  });
  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`);
    await close();
  });

  it("a statement: one CLIENT span, child of the caller's, with the conventions' attributes and the text without its values", async () => {
    const { parentId, spans } = await underParent(() => db.runQuery(`SELECT id FROM ${table} WHERE secret = ${c.p(1)}`, ['hunter2-value']));
    expect(spans).toHaveLength(1);
    const [span] = spans;
    expect(parentOf(span)).toBe(parentId);
    expect(span.kind).toBe(2); // CLIENT
    expect(span.attributes).toMatchObject({
      'db.system.name': SYSTEM[c.dialect],
      'db.operation.name': 'SELECT',
      'db.query.text': `SELECT id FROM ${table} WHERE secret = ${c.p(1)}`,
    });
    expect(span.attributes['db.namespace']).toEqual(expect.any(String));
    expect(span.name).toBe(`SELECT ${span.attributes['db.namespace']}`);
    if (c.dialect !== 'sqlite') expect(span.attributes).toMatchObject({ 'server.address': '127.0.0.1', 'server.port': expect.any(Number) });
    expect(JSON.stringify(spans.map((s) => s.attributes))).not.toContain('hunter2-value');
  });

  it('a transaction: its span is the parent of its statements, and says how it ended', async () => {
    const committed = await underParent(() =>
      db.runInteraction(async (tx) => {
        await tx.runOperation(`INSERT INTO ${table} (id, secret) VALUES (1, ${c.p(1)})`, ['v1']);
        await tx.runQuery(`SELECT secret FROM ${table} WHERE id = 1`);
      }),
    );
    const txSpan = committed.spans.find((s) => s.name.startsWith('transaction'))!;
    expect(txSpan).toBeDefined();
    expect(parentOf(txSpan)).toBe(committed.parentId);
    expect(txSpan.attributes['nestjs_dbpool.transaction.outcome']).toBe('committed');
    const statements = committed.spans.filter((s) => s !== txSpan);
    expect(statements.map((s) => s.attributes['db.operation.name'])).toEqual(['INSERT', 'SELECT']);
    for (const s of statements) expect(parentOf(s)).toBe(txSpan.spanContext().spanId);

    const rolledBack = await underParent(() =>
      db.runInteraction(async (tx) => {
        await tx.runOperation(`INSERT INTO ${table} (id, secret) VALUES (2, 'x')`);
        throw new Error('the caller changes its mind');
      }),
    );
    expect(rolledBack.spans.find((s) => s.name.startsWith('transaction'))!.attributes['nestjs_dbpool.transaction.outcome']).toBe('rolled_back');
  });

  it('a failed statement: an error span with error.type and the server code, and no value in it', async () => {
    const { spans } = await underParent(() => db.runOperation(`INSERT INTO ${table} (id, secret) VALUES (1, ${c.p(1)})`, ['dup-secret-value']));
    expect(spans).toHaveLength(1);
    expect(spans[0].status.code).toBe(2); // ERROR
    expect(spans[0].attributes['error.type']).toBe('UniqueViolation');
    expect(spans[0].attributes['db.response.status_code']).toEqual(expect.any(String));
    const { attributes, events, status, name } = spans[0];
    expect(JSON.stringify({ attributes, events, status, name })).not.toContain('dup-secret-value');
    await expect(db.runOperation(`INSERT INTO ${table} (id, secret) VALUES (1, 'y')`)).rejects.toBeInstanceOf(UniqueViolation);
  });

  it("a stream and a ping by the user: a span each, child of the caller's; a failed stream's span is an error; a transaction's span shows its wait for a connection", async () => {
    let rows = 0;
    const { parentId, spans } = await underParent(async () => {
      for await (const _row of db.stream(`SELECT id FROM ${table}`)) rows++;
      await db.ping();
      await db.runInteraction(async (tx) => tx.runQuery('SELECT 1 AS one'));
      for await (const _row of db.stream('SELECT id FROM no_such_table_traced')) rows++;
    });
    const stream = spans.find((s) => s.attributes['db.query.text'] === `SELECT id FROM ${table}`)!;
    expect(parentOf(stream)).toBe(parentId);
    expect(stream.status.code).toBe(0);
    const ping = spans.find((s) => s.attributes['db.operation.name'] === 'PING')!;
    expect(parentOf(ping)).toBe(parentId);
    expect(ping.attributes['db.query.text']).toBeUndefined();
    const transaction = spans.find((s) => s.name.startsWith('transaction'))!;
    expect(transaction.attributes['nestjs_dbpool.pool.wait_ms']).toEqual(expect.any(Number));
    const failed = spans.find((s) => s.attributes['db.query.text'] === 'SELECT id FROM no_such_table_traced')!;
    expect(failed.status.code).toBe(2); // ERROR
    expect(failed.attributes['error.type']).toEqual(expect.any(String));
  });

  it('the wait for a pool connection is on the statement span (nestjs_dbpool.pool.wait_ms)', async () => {
    const small = await openDatabase({ url: c.url(), name: 'small', pool: { max: 1 } });
    try {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const holder = small.db.runInteraction(async (tx) => {
        await tx.runQuery('SELECT 1 AS one');
        await gate;
      });
      await until(() => small.db.stats().busy === 1, 'the only connection taken');
      const traced = underParent(() => small.db.runQuery('SELECT 2 AS two'));
      await until(() => small.db.stats().waiting === 1, 'the call waiting for it');
      const waitStarted = performance.now();
      await new Promise((r) => setTimeout(r, 30)); // the wait the span must show
      // The call waited from before waitStarted until after the release.
      const waitedAtLeast = performance.now() - waitStarted;
      release();
      await holder;
      const { spans } = await traced;
      const [statement] = spans.filter((s) => s.attributes['db.query.text'] === 'SELECT ? AS two'); // its literal redacted
      expect(statement.attributes['nestjs_dbpool.pool.wait_ms']).toBeGreaterThanOrEqual(Math.floor(waitedAtLeast) - 1);
    } finally {
      await small.close();
    }
  });

  it('tracing: { queryText: false } leaves the text out; tracing: false makes no span', async () => {
    const quiet = await openDatabase({ url: c.url(), name: 'quiet', tracing: { queryText: false } });
    const off = await openDatabase({ url: c.url(), name: 'off', tracing: false });
    try {
      const withoutText = await underParent(() => quiet.db.runQuery('SELECT 1 AS one'));
      expect(withoutText.spans).toHaveLength(1);
      expect(withoutText.spans[0].attributes['db.query.text']).toBeUndefined();
      expect((await underParent(() => off.db.runQuery('SELECT 1 AS one'))).spans).toHaveLength(0);
    } finally {
      await quiet.close();
      await off.close();
    }
  });
});

@Injectable()
class Ledger {
  constructor(@InjectDatabase() readonly db: Database) {}
  async write(id: number): Promise<void> {
    await this.db.runOperation(`INSERT INTO traced_ledger (id) VALUES (${id})`);
  }
}

@Injectable()
class Orders {
  constructor(
    @InjectDatabase() readonly db: Database,
    readonly ledger: Ledger,
  ) {}
  @Transactional()
  async place(id: number): Promise<void> {
    await this.db.runQuery('SELECT 1 AS one');
    await this.ledger.write(id);
  }
}

describe('OpenTelemetry spans across @Transactional services [sqlite]', () => {
  it("the @Transactional method's transaction span is the parent of the statements of both services", async () => {
    const app = await bootContext([DatabaseModule.forRoot({ url: allCases.find((x) => x.dialect === 'sqlite')!.url() })], [Ledger, Orders]);
    try {
      await app.get<Database>(getDatabaseToken()).runOperation('CREATE TABLE traced_ledger (id INTEGER PRIMARY KEY)');
      const { parentId, spans } = await underParent(() => app.get(Orders).place(7));
      const txSpan = spans.find((s) => s.name.startsWith('transaction'))!;
      expect(parentOf(txSpan)).toBe(parentId);
      const statements = spans.filter((s) => s !== txSpan);
      expect(statements.map((s) => s.attributes['db.operation.name'])).toEqual(['SELECT', 'INSERT']);
      for (const s of statements) expect(parentOf(s)).toBe(txSpan.spanContext().spanId);
    } finally {
      await app.close();
    }
  });
});
