import net, { type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** How the proxy treats traffic; see {@link FaultProxy.setMode}. */
export type FaultMode = 'pass' | 'refuse' | 'reset' | 'blackhole' | 'latency';

export interface ModeOptions {
  /** Required for 'latency': delay applied to every chunk, in each direction. */
  latencyMs?: number;
}

export interface DropOptions {
  /** Delay between the matching client chunk and the RST of that connection (default 200 ms). */
  resetAfterMs?: number;
  /** Fire on the first match only, then disarm (default false: every match, every connection). */
  once?: boolean;
}

/** One direction of a proxied connection. `null` in the queue is a deferred end-of-stream. */
interface Pipe {
  src: net.Socket;
  dst: net.Socket;
  queue: Array<{ due: number; chunk: Buffer | null }>;
  timer?: NodeJS.Timeout;
  muted: boolean;
  ended: boolean;
  paused: boolean;
}

interface Link {
  client: net.Socket;
  server: net.Socket;
  c2s: Pipe;
  s2c: Pipe;
  closes: number;
  resetTimer?: NodeJS.Timeout;
}

interface DropHook {
  predicate: (clientChunk: Buffer) => boolean;
  resetAfterMs: number;
  once: boolean;
}

const noop = (): void => {};
const isLoopback = (host: string): boolean => /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === '::1';

/** Abort a socket with a TCP RST (plain destroy while still connecting, where RST is impossible). */
function rst(socket: net.Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

/**
 * Fault-injection TCP proxy for tests: listens on 127.0.0.1 (ephemeral port) and forwards to a
 * loopback target, with switchable failure modes. Only ever connects to loopback addresses.
 */
export class FaultProxy {
  /** Client connections accepted so far (including ones reset on arrival). */
  connectionsAccepted = 0;
  private _port = 0;
  private server?: net.Server;
  private mode: FaultMode = 'pass';
  private latencyMs = 0;
  private closed = false;
  private readonly links = new Set<Link>();
  /** Every socket and listening server ever opened, so close() leaves no handle behind. */
  private readonly handles = new Set<net.Socket | net.Server>();
  private readonly hooks = new Set<DropHook>();

  private constructor(
    readonly targetPort: number,
    readonly targetHost: string,
  ) {}

  /** Start a proxy in 'pass' mode forwarding to targetHost:targetPort (loopback only). */
  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<FaultProxy> {
    if (!isLoopback(targetHost)) throw new Error(`FaultProxy only connects to loopback, got ${targetHost}`);
    const proxy = new FaultProxy(targetPort, targetHost);
    await proxy.listen(0);
    return proxy;
  }

  /** The proxy's listening port on 127.0.0.1 (stable across 'refuse' cycles). */
  get port(): number {
    return this._port;
  }

  /** Current mode. */
  get currentMode(): FaultMode {
    return this.mode;
  }

  /** Proxied connections currently open (client side and server side not both closed yet). */
  get activeConnections(): number {
    return this.links.size;
  }

  /** Rewrite a postgres://… or mysql://… URL to point at the proxy (host 127.0.0.1, proxy port). */
  url(base: string): string {
    const u = new URL(base);
    u.hostname = '127.0.0.1';
    u.port = String(this._port);
    return u.toString();
  }

  /**
   * Switch mode. 'refuse' closes the listening socket (new clients get ECONNREFUSED; existing
   * connections keep working); leaving 'refuse' re-listens on the same port, hence async.
   * 'reset' RSTs all current connections and every new one; 'blackhole' drops all bytes in both
   * directions on all connections (queued latency chunks too); 'latency' delays every chunk.
   */
  async setMode(mode: FaultMode, opts: ModeOptions = {}): Promise<void> {
    if (this.closed) throw new Error('FaultProxy is closed');
    if (mode === 'latency') {
      if (!(typeof opts.latencyMs === 'number' && opts.latencyMs >= 0)) throw new Error('latency mode needs { latencyMs >= 0 }');
      this.latencyMs = opts.latencyMs;
    }
    this.mode = mode;
    if (mode === 'refuse') {
      this.server?.close();
      this.server = undefined;
    } else if (!this.server) {
      await this.listen(this._port);
    }
    if (mode === 'reset') this.resetAll();
    if (mode === 'blackhole') for (const l of this.links) l.c2s.queue.length = l.s2c.queue.length = 0;
  }

  /** RST every current connection (both sides) once; the mode is unchanged. */
  resetAll(): void {
    for (const l of this.links) {
      rst(l.client);
      rst(l.server);
    }
  }

  /**
   * "Lost COMMIT reply": when a forwarded client→server chunk matches `predicate`, stop forwarding
   * server→client bytes on that connection and RST it after `resetAfterMs`. Returns a disposer.
   */
  dropServerToClientAfter(predicate: (clientChunk: Buffer) => boolean, opts: DropOptions = {}): () => void {
    const hook: DropHook = { predicate, resetAfterMs: opts.resetAfterMs ?? 200, once: opts.once ?? false };
    this.hooks.add(hook);
    return () => void this.hooks.delete(hook);
  }

  /** Close the listener and destroy every connection and timer; leaves no handles behind. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.hooks.clear();
    for (const l of [...this.links]) {
      l.client.destroy();
      l.server.destroy();
      this.teardown(l);
    }
    this.server = undefined;
    const servers: net.Server[] = [];
    for (const h of [...this.handles]) {
      if (h instanceof net.Socket) h.destroy();
      else servers.push(h);
    }
    await Promise.all(servers.map((srv) => new Promise<void>((resolve) => (srv.listening ? srv.close(() => resolve()) : resolve()))));
    this.handles.clear();
  }

  private track(socket: net.Socket): void {
    this.handles.add(socket);
    socket.on('close', () => this.handles.delete(socket));
  }

  /** Listen on 127.0.0.1:port, retrying EADDRINUSE briefly (bounded to ~1 s) when re-listening. */
  private async listen(port: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const srv = net.createServer((socket) => this.onConnection(socket));
      this.handles.add(srv);
      srv.on('close', () => this.handles.delete(srv));
      try {
        await new Promise<void>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(port, '127.0.0.1', () => {
            srv.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || port === 0 || attempt >= 40) throw err;
        await sleep(25);
        continue;
      }
      srv.on('error', noop);
      if (this.closed || this.mode === 'refuse') {
        srv.close(); // closed or switched back to 'refuse' while we were re-listening
        return;
      }
      this.server = srv;
      this._port = (srv.address() as AddressInfo).port;
      return;
    }
  }

  private onConnection(client: net.Socket): void {
    this.connectionsAccepted++;
    client.on('error', noop);
    this.track(client);
    if (this.closed || this.mode === 'reset' || this.mode === 'refuse') return rst(client);
    const server = net.connect({ host: this.targetHost, port: this.targetPort });
    server.on('error', noop);
    this.track(server);
    const pipe = (src: net.Socket, dst: net.Socket): Pipe => ({ src, dst, queue: [], muted: false, ended: false, paused: false });
    const link: Link = { client, server, c2s: pipe(client, server), s2c: pipe(server, client), closes: 0 };
    this.links.add(link);
    client.on('data', (chunk: Buffer) => this.onClientData(link, chunk));
    server.on('data', (chunk: Buffer) => this.forward(link.s2c, chunk));
    for (const p of [link.c2s, link.s2c]) {
      p.src.on('end', () => {
        p.ended = true;
        this.forward(p, null);
      });
      // A clean FIN is relayed (in order) through the pipe; anything else kills the peer now.
      p.src.on('close', (hadError: boolean) => {
        if (hadError || !p.ended) p.dst.destroy();
        if (++link.closes === 2) this.teardown(link);
      });
    }
  }

  private onClientData(link: Link, chunk: Buffer): void {
    const dropped = link.c2s.muted || this.mode === 'blackhole';
    this.forward(link.c2s, chunk);
    if (dropped) return;
    for (const hook of this.hooks) {
      if (!hook.predicate(chunk)) continue;
      if (hook.once) this.hooks.delete(hook);
      link.s2c.muted = true;
      link.s2c.queue.length = 0;
      link.resetTimer ??= setTimeout(() => {
        rst(link.client);
        rst(link.server);
      }, hook.resetAfterMs);
      return;
    }
  }

  /** Send a chunk (or end-of-stream when null) along a pipe, honouring blackhole/mute/latency. */
  private forward(p: Pipe, chunk: Buffer | null): void {
    if (p.muted || this.mode === 'blackhole') {
      if (chunk === null) p.dst.destroy(); // swallowed FIN: don't leave the peer dangling
      return;
    }
    const delay = this.mode === 'latency' ? this.latencyMs : 0;
    if (delay === 0 && p.queue.length === 0) return this.deliver(p, chunk);
    p.queue.push({ due: Date.now() + delay, chunk });
    if (!p.timer) this.schedule(p);
  }

  private schedule(p: Pipe): void {
    p.timer = setTimeout(
      () => {
        p.timer = undefined;
        const now = Date.now();
        while (p.queue.length > 0 && p.queue[0].due <= now) this.deliver(p, p.queue.shift()!.chunk);
        if (p.queue.length > 0) this.schedule(p);
      },
      Math.max(0, p.queue[0].due - Date.now()),
    );
  }

  private deliver(p: Pipe, chunk: Buffer | null): void {
    if (p.dst.destroyed) return;
    if (chunk === null) return void p.dst.end();
    if (!p.dst.write(chunk) && !p.paused) {
      p.paused = true;
      p.src.pause();
      p.dst.once('drain', () => {
        p.paused = false;
        p.src.resume();
      });
    }
  }

  private teardown(link: Link): void {
    clearTimeout(link.c2s.timer);
    clearTimeout(link.s2c.timer);
    clearTimeout(link.resetTimer);
    link.c2s.queue.length = link.s2c.queue.length = 0;
    this.links.delete(link);
  }
}
