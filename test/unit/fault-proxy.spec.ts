import net, { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { FaultProxy } from '../support/fault-proxy.js';

/** Tiny echo server on 127.0.0.1 that also records what each connection received. */
async function startEcho(): Promise<{ port: number; received: string[]; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const received: string[] = [];
  const srv = net.createServer((s) => {
    const idx = received.push('') - 1;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.on('data', (d) => {
      received[idx] += d.toString();
      s.write(d);
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as AddressInfo).port,
    received,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

/** Connect to 127.0.0.1:port; rejects on error or after timeoutMs. */
function connect(port: number, timeoutMs = 1000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('connect timeout'));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** Resolve with the next `expected.length` bytes read as text, or null after timeoutMs. */
function readExactly(s: net.Socket, length: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    let buf = '';
    const done = (v: string | null): void => {
      clearTimeout(timer);
      s.off('data', onData);
      resolve(v);
    };
    const onData = (d: Buffer): void => {
      buf += d.toString();
      if (buf.length >= length) done(buf);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    s.on('data', onData);
  });
}

async function echo(s: net.Socket, msg: string, timeoutMs = 1000): Promise<string | null> {
  const reply = readExactly(s, msg.length, timeoutMs);
  s.write(msg);
  return reply;
}

/** Resolve true when the socket closes/errors within timeoutMs, false otherwise. */
function closesWithin(s: net.Socket, timeoutMs: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    s.on('error', () => {});
    s.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Poll a condition, bounded in time. */
async function waitFor(cond: () => boolean, timeoutMs = 1000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10)); // poll interval
  }
  return cond();
}

describe('FaultProxy (echo server)', () => {
  let echoSrv: Awaited<ReturnType<typeof startEcho>>;
  let proxy: FaultProxy;
  const clients: net.Socket[] = [];
  const open = async (): Promise<net.Socket> => {
    const s = await connect(proxy.port);
    s.on('error', () => {});
    clients.push(s);
    return s;
  };

  beforeAll(async () => {
    echoSrv = await startEcho();
  });
  afterAll(async () => {
    await echoSrv.close();
  });
  beforeEach(async () => {
    proxy = await FaultProxy.start(echoSrv.port);
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await proxy.close();
  });

  it('refuses non-loopback targets and rewrites URLs', async () => {
    await expect(FaultProxy.start(5432, '10.0.0.1')).rejects.toThrow(/loopback/);
    expect(proxy.url('postgres://root@127.0.0.1:5432/test')).toBe(`postgres://root@127.0.0.1:${proxy.port}/test`);
    expect(proxy.url('mysql://u:p@localhost/db?x=1')).toBe(`mysql://u:p@127.0.0.1:${proxy.port}/db?x=1`);
  });

  it('pass forwards both ways and counts connections', async () => {
    const s = await open();
    expect(await echo(s, 'hello')).toBe('hello');
    expect(proxy.connectionsAccepted).toBe(1);
    expect(proxy.activeConnections).toBe(1);
    s.destroy();
    expect(await waitFor(() => proxy.activeConnections === 0)).toBe(true);
  });

  it('refuse gives a connection error within 100 ms; pass re-listens on the same port', async () => {
    const port = proxy.port;
    const existing = await open();
    for (let cycle = 0; cycle < 5; cycle++) {
      await proxy.setMode('refuse');
      const t0 = performance.now();
      const err = await connect(port, 1000).then(
        (s) => (s.destroy(), null),
        (e: NodeJS.ErrnoException) => e,
      );
      expect(performance.now() - t0).toBeLessThan(500); // well under the 1 s connect timeout
      expect(['ECONNREFUSED', 'ECONNRESET']).toContain(err?.code);
      await proxy.setMode('pass');
      expect(proxy.port).toBe(port);
      const s = await open();
      expect(await echo(s, `again${cycle}`)).toBe(`again${cycle}`);
    }
    expect(await echo(existing, 'still-up')).toBe('still-up'); // existing connections survive refuse
  });

  it('reset kills open connections and new ones', async () => {
    const s = await open();
    expect(await echo(s, 'x')).toBe('x');
    await proxy.setMode('reset');
    expect(await closesWithin(s, 1000)).toBe(true);
    const s2 = await connect(proxy.port).catch(() => null); // may be RST before or after connect
    if (s2) {
      s2.on('error', () => {});
      clients.push(s2);
      expect(await closesWithin(s2, 1000)).toBe(true);
    }
    await proxy.setMode('pass');
    expect(await echo(await open(), 'back')).toBe('back');
  });

  it('resetAll kills current connections once and keeps the mode', async () => {
    const s = await open();
    expect(await echo(s, 'x')).toBe('x');
    let code: string | undefined;
    s.on('error', (e: NodeJS.ErrnoException) => (code = e.code));
    proxy.resetAll();
    expect(await closesWithin(s, 1000)).toBe(true);
    expect(code).toBe('ECONNRESET'); // a real RST, not a FIN
    expect(proxy.currentMode).toBe('pass');
    expect(await echo(await open(), 'y')).toBe('y');
  });

  it('blackhole forwards nothing, for existing and new connections', async () => {
    const existing = await open();
    expect(await echo(existing, 'a')).toBe('a');
    await proxy.setMode('blackhole');
    expect(await echo(existing, 'lost', 300)).toBeNull();
    const fresh = await open(); // accepted, but nothing flows
    expect(await echo(fresh, 'nothing', 300)).toBeNull();
    await proxy.setMode('pass');
    expect(await echo(existing, 'resumed')).toBe('resumed'); // dropped bytes are gone, not buffered
  });

  it('latency delays each chunk and preserves order', async () => {
    const s = await open();
    await proxy.setMode('latency', { latencyMs: 150 });
    const t0 = performance.now();
    expect(await echo(s, 'slow')).toBe('slow');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
    const parts = ['1', '2', '3', '4', '5', '6'];
    const reply = readExactly(s, parts.join('').length, 2000);
    for (const p of parts) {
      s.write(p);
      await new Promise((r) => setTimeout(r, 5)); // pacing: separate writes, so that the proxy sees separate chunks
    }
    expect(await reply).toBe('123456');
    await proxy.setMode('pass');
    const t1 = performance.now();
    expect(await echo(s, 'fast')).toBe('fast');
    expect(performance.now() - t1).toBeLessThan(500); // well under the 1 s connect timeout
  });

  it('dropServerToClientAfter forwards the match, drops replies, then resets', async () => {
    const dispose = proxy.dropServerToClientAfter((c) => c.includes('COMMIT'), { resetAfterMs: 200 });
    const s = await open();
    expect(await echo(s, 'BEGIN;')).toBe('BEGIN;');
    const t0 = performance.now();
    const closed = closesWithin(s, 1000);
    expect(await echo(s, 'COMMIT;', 150)).toBeNull();
    expect(await closed).toBe(true);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    expect(echoSrv.received.at(-1)).toBe('BEGIN;COMMIT;'); // the COMMIT did reach the server
    dispose();
    expect(await echo(await open(), 'COMMIT;')).toBe('COMMIT;');
  });
});

describe('FaultProxy (PostgreSQL 127.0.0.1:5432)', () => {
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await FaultProxy.start(5432);
  });
  afterEach(async () => {
    await proxy.close();
  });

  it('pass: connect + SELECT 1', async () => {
    const client = new pg.Client({ connectionString: proxy.url('postgres://root@127.0.0.1:5432/test') });
    await client.connect();
    const res = await client.query('SELECT 1 AS one');
    expect(res.rows[0].one).toBe(1);
    await client.end();
  });

  it('blackhole: a query gets no answer within 1 s', async () => {
    const client = new pg.Client({ connectionString: proxy.url('postgres://root@127.0.0.1:5432/test') });
    client.on('error', () => {});
    await client.connect();
    await proxy.setMode('blackhole');
    const query = client.query('SELECT 1').then(
      () => 'answered',
      () => 'failed',
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('timeout'), 1000)));
    expect(await Promise.race([query, timeout])).toBe('timeout');
    clearTimeout(timer);
    // Destroy the client's socket: end() would wait for a server that never answers.
    (client as unknown as { connection: { stream: net.Socket } }).connection.stream.destroy();
    expect(await query).toBe('failed');
  });
});
