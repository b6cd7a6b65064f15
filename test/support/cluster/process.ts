/**
 * Shared plumbing for the throwaway servers of the scale-out tests: a workspace (one temp
 * directory that owns every process, port and file of one setup), tracked child processes
 * (each in its own process group, logs to a file), bounded waits whose errors carry the log
 * tail, commands run as another user, and memory probes.
 *
 * Cleanup is layered so nothing survives a test run:
 *  1. `Workspace.destroy()` stops every tracked process (its own signal first, then SIGKILL to
 *     the process group), then SIGKILLs any process whose cwd or command line lies inside the
 *     workspace directory (postgres backends, SST scripts, rsync daemons), then removes it.
 *  2. When Node exits (also under Jest, whose `process` is a copy: see outerGlobal), or gets
 *     SIGTERM/SIGINT/SIGHUP, every live workspace is SIGKILLed synchronously.
 *  3. A new workspace first removes workspaces whose owning Node process is gone (a run that
 *     was killed with SIGKILL), killing what still runs inside them.
 *
 * NDBP_CLUSTER_KEEP=1 keeps the directories (logs, data) after the processes are stopped.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import nodeProcess from 'node:process';
import { setTimeout as sleep } from 'node:timers/promises';

export const isRoot = nodeProcess.getuid?.() === 0;

const WORKSPACE_PREFIX = 'ndbp-cluster-';

// ---------------------------------------------------------------- users and files

export interface UserIds {
  uid: number;
  gid: number;
  home: string;
}

/** uid/gid of a local user, from /etc/passwd. */
export function userIds(user: string): UserIds {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`user '${user}' not found in /etc/passwd (the server refuses to run as root without it)`);
  const parts = line.split(':');
  return { uid: Number(parts[2]), gid: Number(parts[3]), home: parts[5] ?? '/' };
}

/** The ids to run a server as: `user` when we are root, ourselves otherwise. */
export function runAs(user: string | undefined): UserIds | undefined {
  return isRoot && user ? userIds(user) : undefined;
}

/** chown -R, when root (no-op otherwise). */
export function chownTree(target: string, user: string | undefined): void {
  const ids = runAs(user);
  if (!ids) return;
  const walk = (p: string): void => {
    fs.lchownSync(p, ids.uid, ids.gid);
    if (fs.lstatSync(p).isDirectory()) for (const entry of fs.readdirSync(p)) walk(path.join(p, entry));
  };
  walk(target);
}

/** mkdir -p, owned by `user` (when root) with `mode`. */
export function makeDir(dir: string, user?: string, mode = 0o700): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.chmodSync(dir, mode);
  const ids = runAs(user);
  if (ids) fs.chownSync(dir, ids.uid, ids.gid);
  return dir;
}

/** The last `lines` lines of a (log) file, or a note that it does not exist. */
export function tailFile(file: string, lines = 40): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    const all = text.trimEnd().split('\n');
    return all.slice(-lines).join('\n');
  } catch {
    return `(no ${file})`;
  }
}

/** First existing path among candidates. */
export function firstExisting(candidates: string[]): string | undefined {
  return candidates.find((c) => fs.existsSync(c));
}

// ---------------------------------------------------------------- one-shot commands

export interface RunOptions {
  /** Run as this user when we are root. */
  user?: string;
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to completion (bounded, SIGKILL on timeout); rejects with its output on failure. */
export function runCommand(command: string, args: string[], options: RunOptions = {}): Promise<string> {
  const ids = runAs(options.user);
  const timeout = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    execFile(
      command,
      args,
      {
        timeout,
        killSignal: 'SIGKILL',
        cwd: options.cwd,
        uid: ids?.uid,
        gid: ids?.gid,
        env: { ...baseEnv(ids), ...options.env },
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        const e = error as NodeJS.ErrnoException & { killed?: boolean; signal?: string };
        const why = e.killed ? `timed out after ${timeout} ms` : e.message.split('\n')[0];
        reject(new Error(`${command} ${args.join(' ')} failed: ${why}\n${String(stderr).trim()}\n${String(stdout).trim()}`.trim()));
      },
    );
  });
}

function baseEnv(ids: UserIds | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: nodeProcess.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TZ: nodeProcess.env.TZ ?? 'UTC',
  };
  if (ids) env.HOME = ids.home;
  else if (nodeProcess.env.HOME) env.HOME = nodeProcess.env.HOME;
  return env;
}

// ---------------------------------------------------------------- bounded waits

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** When this process exits during the wait, fail at once. */
  process?: ManagedProcess;
  /** Log to quote in the error. */
  logTail?: () => string;
  /** Checked before each attempt: a returned reason fails the wait at once (e.g. a node died). */
  abort?: () => string | undefined;
}

/**
 * Polls `check` until it returns a truthy value (which is returned). A check that throws
 * counts as "not yet"; its last error is quoted when the wait times out.
 */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, options: WaitOptions): Promise<T> {
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    const p = options.process;
    if (p && !p.running) {
      throw new Error(`${what}: ${p.name} exited (${p.exitDescription()}) while waiting${tailSuffix(options)}`);
    }
    const reason = options.abort?.();
    if (reason) throw new Error(`${what}: ${reason}${tailSuffix(options)}`);
    try {
      const value = await check();
      if (value) return value as T;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const last = lastError ? `; last error: ${(lastError as Error).message ?? String(lastError)}` : '';
      throw new Error(`${what}: not reached within ${options.timeoutMs} ms${last}${tailSuffix(options)}`);
    }
    await sleep(options.intervalMs ?? 150);
  }
}

function tailSuffix(options: WaitOptions): string {
  const tail = options.logTail?.() ?? options.process?.logTail();
  return tail ? `\n--- log tail ---\n${tail}\n--- end of log ---` : '';
}

/** Runs `fn`, and returns [result, elapsed ms]. */
export async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = Date.now();
  const value = await fn();
  return [value, Date.now() - t];
}

// ---------------------------------------------------------------- tracked processes

export interface SpawnSpec {
  /** Human name used in errors, e.g. 'postgres standby1'. */
  name: string;
  command: string;
  args: string[];
  /** Run as this user when we are root. */
  user?: string;
  cwd: string;
  /** stdout and stderr are appended here. */
  outputFile: string;
  /** The file quoted in errors (the server's own log); `outputFile` by default. */
  logFile?: string;
  env?: NodeJS.ProcessEnv;
}

export interface StopOptions {
  /** First signal, sent to the leader only (default SIGTERM). */
  signal?: NodeJS.Signals;
  /** Then SIGKILL to the whole process group after this long (default 20 s). */
  timeoutMs?: number;
}

/**
 * A server process we spawned: detached into its own process group (so a SIGKILL reaches its
 * helpers too), unref'ed (a forgotten server does not keep Node alive; the exit hook kills it).
 * `start()` may be called again after it exited (restart).
 */
export class ManagedProcess {
  private child: ChildProcess | undefined;
  private exitPromise: Promise<void> = Promise.resolve();
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Process groups this object ever led (pgid -> leader start time), for the final sweep. */
  readonly groups = new Map<number, string | undefined>();

  constructor(readonly spec: SpawnSpec) {}

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.exitInfo === undefined;
  }

  exitDescription(): string {
    if (!this.exitInfo) return this.child ? 'running' : 'never started';
    return this.exitInfo.signal ? `signal ${this.exitInfo.signal}` : `code ${this.exitInfo.code}`;
  }

  logTail(lines = 40): string {
    const files = [this.spec.logFile, this.spec.outputFile].filter((f, i, all): f is string => !!f && all.indexOf(f) === i);
    return files.map((f) => `[${path.basename(f)}]\n${tailFile(f, lines)}`).join('\n');
  }

  /** Spawns the process; `extraArgs` are appended for this start only. */
  start(extraArgs: string[] = []): void {
    if (this.running) throw new Error(`${this.name} is already running (pid ${this.child?.pid})`);
    const ids = runAs(this.spec.user);
    const out = fs.openSync(this.spec.outputFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.spec.command, [...this.spec.args, ...extraArgs], {
        cwd: this.spec.cwd,
        detached: true,
        stdio: ['ignore', out, out],
        uid: ids?.uid,
        gid: ids?.gid,
        env: { ...baseEnv(ids), ...this.spec.env },
      });
    } finally {
      fs.closeSync(out);
    }
    this.child = child;
    this.exitInfo = undefined;
    if (child.pid !== undefined) this.groups.set(child.pid, processStartTime(child.pid));
    this.exitPromise = new Promise<void>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (!this.exitInfo) this.exitInfo = { code, signal };
        resolve();
      };
      child.once('exit', done);
      child.once('error', (error) => {
        fs.appendFileSync(this.spec.outputFile, `\n[spawn error] ${error.message}\n`);
        done(-1, null);
      });
    });
    child.unref();
  }

  /** Resolves when the current process has exited. */
  exited(): Promise<void> {
    return this.exitPromise;
  }

  /** Sends a signal to the leader (or to the whole group). */
  signal(signal: NodeJS.Signals, group = false): void {
    const pid = this.child?.pid;
    if (pid === undefined || !this.running) return;
    try {
      nodeProcess.kill(group ? -pid : pid, signal);
    } catch {
      // already gone
    }
  }

  /** Graceful stop with a bounded wait, then SIGKILL to the group. Safe when not running. */
  async stop(options: StopOptions = {}): Promise<void> {
    if (!this.running) return;
    this.signal(options.signal ?? 'SIGTERM');
    const timedOut = await exitOrTimeout(this.exited(), options.timeoutMs ?? 20_000);
    if (timedOut) await this.kill();
  }

  /** SIGKILL to the whole process group, and wait for the leader. */
  async kill(): Promise<void> {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    if (this.running) {
      killGroup(pid, this.groups.get(pid));
      await exitOrTimeout(this.exited(), 10_000);
    }
    killGroup(pid, this.groups.get(pid)); // members the leader left behind
  }

  /** Synchronous SIGKILL of every group this process ever led (exit hook, final sweep). */
  killSync(): void {
    for (const [pgid, start] of this.groups) killGroup(pgid, start);
  }
}

/**
 * SIGKILL to a process group we created. While any member lives the kernel does not reuse the
 * id; if a process with that pid runs but started at another time, the id was reused: skip.
 */
/**
 * true when `ms` passed before `exited` resolved. The timer is cleared on exit, and it is what
 * keeps Node alive meanwhile: the child itself is unref'ed.
 */
function exitOrTimeout(exited: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(true), ms);
    void exited.then(() => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

function killGroup(pgid: number, leaderStart: string | undefined): void {
  const now = processStartTime(pgid);
  if (now !== undefined && leaderStart !== undefined && now !== leaderStart) return;
  try {
    nodeProcess.kill(-pgid, 'SIGKILL');
  } catch {
    // no such group
  }
}

// ---------------------------------------------------------------- /proc helpers

/** The start time of a process (clock ticks since boot), which tells a pid from a reused one. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

/** `pid:starttime` of this Node process. */
export function ownerToken(): string {
  return `${nodeProcess.pid}:${processStartTime(nodeProcess.pid) ?? '?'}`;
}

/** Whether the process named by an owner token still runs. */
export function ownerAlive(token: string): boolean {
  const [pid, start] = token.trim().split(':');
  const n = Number(pid);
  if (!Number.isInteger(n) || n <= 0) return false;
  const now = processStartTime(n);
  return now !== undefined && (start === '?' || now === start) && !isGone(n);
}

function allPids(): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number);
}

function readlinkSafe(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

export interface ProcessInfo {
  pid: number;
  cmd: string;
  cwd?: string;
}

/** Processes whose working directory or command line lies inside `dir`. */
export function processesUnder(dir: string): ProcessInfo[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const found: ProcessInfo[] = [];
  for (const pid of allPids()) {
    if (pid === nodeProcess.pid) continue;
    const cwd = readlinkSafe(`/proc/${pid}/cwd`);
    const cmd = cmdline(pid);
    if ((cwd && (cwd === dir || cwd.startsWith(prefix))) || cmd.includes(prefix) || cmd.includes(`=${dir} `) || cmd.endsWith(`=${dir}`)) {
      found.push({ pid, cmd, cwd });
    }
  }
  return found;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Exited (or a zombie nobody reaped yet). */
function isGone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/**
 * SIGKILLs every process inside `dir` (see {@link processesUnder}); returns how many. With
 * `gentleMs`, PostgreSQL postmasters first get SIGQUIT (immediate shutdown) and up to that long
 * to end their backends and remove their System V shared memory segment, which a SIGKILL leaks.
 */
export function killProcessesUnder(dir: string, gentleMs = 0): number {
  const found = processesUnder(dir);
  if (gentleMs > 0) {
    const postmasters = found.filter((p) => /(^|\/)postgres -D /.test(p.cmd));
    for (const p of postmasters) {
      try {
        nodeProcess.kill(p.pid, 'SIGQUIT');
      } catch {
        // gone
      }
    }
    const deadline = Date.now() + gentleMs;
    while (postmasters.some((p) => !isGone(p.pid)) && Date.now() < deadline) sleepSync(20);
  }
  let killed = 0;
  for (const p of gentleMs > 0 ? processesUnder(dir) : found) {
    try {
      nodeProcess.kill(p.pid, 'SIGKILL');
      killed++;
    } catch {
      // gone
    }
  }
  return killed;
}

export interface MemoryUsage {
  /** Sum of RSS over the process and its descendants, in KiB (shared pages counted per process). */
  rssKb: number;
  /** Sum of PSS (shared pages split between sharers), in KiB: the honest total. */
  pssKb: number;
  processes: number;
}

/** RSS and PSS of a process tree (a postmaster and its backends, mariadbd and its SST scripts). */
export function treeMemory(rootPid: number | undefined): MemoryUsage {
  const usage: MemoryUsage = { rssKb: 0, pssKb: 0, processes: 0 };
  if (rootPid === undefined) return usage;
  const children = new Map<number, number[]>();
  for (const pid of allPids()) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(pid);
      children.set(ppid, list);
    } catch {
      // exited meanwhile
    }
  }
  const queue = [rootPid];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    try {
      const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      usage.rssKb += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      usage.pssKb += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      usage.processes++;
    } catch {
      // exited or not readable
    }
    queue.push(...(children.get(pid) ?? []));
  }
  return usage;
}

// ---------------------------------------------------------------- workspace

/**
 * Node's own realm (its real `globalThis`). Under Jest, `process` (and `import 'node:process'`)
 * is a copy whose events never fire, so an 'exit' listener there would never run; and each test
 * file gets its own instance of this module. A function made by the Function constructor of a
 * core module's function belongs to Node's realm, where `process` is the real one.
 */
function outerGlobal(): typeof globalThis {
  try {
    const outerFunction = (fs.readFileSync as unknown as { constructor: FunctionConstructor }).constructor;
    const g = outerFunction('return globalThis')() as typeof globalThis;
    if (g && typeof g.process?.once === 'function' && g.process.pid === nodeProcess.pid) return g;
  } catch {
    // fall back to our own realm
  }
  return globalThis;
}

interface Disposable {
  destroySync(): void;
}

/** State shared by every instance of this module in the process (one per Jest test file). */
interface SharedState {
  live: Set<Disposable>;
  handlers: Map<NodeJS.Signals, () => void>;
  proc: NodeJS.Process;
}

const SHARED_KEY = Symbol.for('nestjs-dbpool.test.cluster.workspaces');
const EXIT_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];

/**
 * Installed once per process: kills live workspaces when Node exits ('exit'), and on
 * SIGTERM/SIGINT/SIGHUP (how Jest ends its workers, or Ctrl-C), after which the signal is raised
 * again with its default action unless someone else handles it. The signal handlers are armed
 * only while a workspace is alive, so otherwise the default action stays untouched.
 */
function shared(): SharedState {
  const g = outerGlobal() as unknown as Record<symbol, SharedState | undefined>;
  let state = g[SHARED_KEY];
  if (state) return state;
  const proc = (g as unknown as typeof globalThis).process ?? nodeProcess;
  const created: SharedState = { live: new Set(), handlers: new Map(), proc };
  proc.once('exit', () => {
    for (const ws of [...created.live]) ws.destroySync();
  });
  for (const signal of EXIT_SIGNALS) {
    const onSignal = (): void => {
      for (const ws of [...created.live]) ws.destroySync();
      proc.removeListener(signal, onSignal);
      if (proc.listenerCount(signal) === 0) proc.kill(proc.pid, signal);
    };
    created.handlers.set(signal, onSignal);
  }
  state = created;
  g[SHARED_KEY] = state;
  return state;
}

function track(ws: Disposable): void {
  const state = shared();
  state.live.add(ws);
  for (const [signal, handler] of state.handlers) if (!state.proc.listeners(signal).includes(handler)) state.proc.on(signal, handler);
}

function untrack(ws: Disposable): void {
  const state = shared();
  state.live.delete(ws);
  if (state.live.size === 0) for (const [signal, handler] of state.handlers) state.proc.removeListener(signal, handler);
}

/**
 * One temp directory that owns the processes, ports and files of one setup. Everything the
 * setup starts goes through {@link Workspace.spawn} so {@link Workspace.destroy} can end it.
 */
export class Workspace {
  readonly processes: ManagedProcess[] = [];
  private readonly releases: Array<() => void> = [];
  private destroying: Promise<void> | undefined;

  private constructor(readonly root: string) {}

  /** A fresh workspace under the temp dir (traversable by the server users). */
  static create(label: string): Workspace {
    sweepStaleWorkspaces();
    const root = fs.mkdtempSync(path.join(os.tmpdir(), `${WORKSPACE_PREFIX}${label}-`));
    fs.chmodSync(root, 0o755);
    fs.writeFileSync(path.join(root, 'owner'), ownerToken() + '\n');
    const ws = new Workspace(root);
    track(ws);
    return ws;
  }

  get destroyed(): boolean {
    return this.destroying !== undefined;
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** Tracks a process (not started yet: call `start()`). */
  spawn(spec: SpawnSpec): ManagedProcess {
    if (this.destroying) throw new Error(`workspace ${this.root} was stopped`);
    const p = new ManagedProcess(spec);
    this.processes.push(p);
    return p;
  }

  /** Registers something to release on destroy (a port reservation). */
  onDestroy(release: () => void): void {
    this.releases.push(release);
  }

  /**
   * Stops everything: each running process gets `stopOptions(p)` (default: SIGKILL at once),
   * then every process group and every process inside the directory is SIGKILLed, ports are
   * released and the directory removed. Idempotent; concurrent calls share one run.
   */
  destroy(stopOptions?: (p: ManagedProcess) => StopOptions | 'kill'): Promise<void> {
    this.destroying ??= (async () => {
      await Promise.all(
        this.processes.map(async (p) => {
          const how = stopOptions?.(p) ?? 'kill';
          try {
            if (how === 'kill') await p.kill();
            else await p.stop(how);
          } catch {
            // continue with the sweep
          }
        }),
      );
      for (const p of this.processes) p.killSync();
      // Helpers that left the process group (or were started by pg_ctl): anything running inside the dir.
      for (let i = 0; i < 20 && killProcessesUnder(this.root) > 0; i++) await sleep(100);
      await this.finish();
    })();
    return this.destroying;
  }

  /** Synchronous last resort for the exit hook. */
  destroySync(): void {
    killProcessesUnder(this.root, 3_000);
    for (const p of this.processes) p.killSync();
    killProcessesUnder(this.root);
    this.releaseAll();
    if (!nodeProcess.env.NDBP_CLUSTER_KEEP) {
      try {
        fs.rmSync(this.root, { recursive: true, force: true });
      } catch {
        // the stale sweep of the next run removes it
      }
    }
    this.forget();
  }

  /** Removing ~100 MB of datadirs takes ~1 s here (ext4 mounted with `discard`): done without blocking the event loop. */
  private async finish(): Promise<void> {
    this.releaseAll();
    if (nodeProcess.env.NDBP_CLUSTER_KEEP) {
      // debugging: keep the logs and data (and exempt them from the stale sweep)
      fs.writeFileSync(path.join(this.root, 'owner'), 'keep\n');
      nodeProcess.stderr.write(`[cluster] NDBP_CLUSTER_KEEP: kept ${this.root}\n`);
    } else {
      try {
        await fs.promises.rm(this.root, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // a process we could not kill still writes there; leave it for the stale sweep
      }
    }
    this.forget();
  }

  private forget(): void {
    untrack(this);
  }

  private releaseAll(): void {
    for (const release of this.releases.splice(0)) {
      try {
        release();
      } catch {
        // ignore
      }
    }
  }
}

/** Removes workspaces (and their processes) whose owning Node process is gone. */
export function sweepStaleWorkspaces(): string[] {
  const removed: string[] = [];
  const tmp = os.tmpdir();
  let entries: string[] = [];
  try {
    // only workspace directories: `ndbp-cluster-<label>-XXXXXX`
    entries = fs.readdirSync(tmp).filter((e) => e.startsWith(WORKSPACE_PREFIX) && /-[A-Za-z0-9]{6}$/.test(e));
  } catch {
    return removed;
  }
  for (const entry of entries) {
    const dir = path.join(tmp, entry);
    let token: string;
    try {
      token = fs.readFileSync(path.join(dir, 'owner'), 'utf8');
    } catch {
      // being created right now, or not ours: judge by age
      try {
        if (Date.now() - fs.statSync(dir).mtimeMs < 60_000) continue;
      } catch {
        continue;
      }
      token = '0:0';
    }
    if (token.trim() === 'keep' || ownerAlive(token)) continue;
    killProcessesUnder(dir, 3_000);
    try {
      fs.rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      // leave it
    }
  }
  return removed;
}
