/**
 * Throwaway database servers for the security suites: a CA and a server certificate made with
 * openssl, a PostgreSQL cluster (initdb + pg_ctl) and a MariaDB instance (mariadb-install-db +
 * mariadbd), each in its own temp directory, on its own port, never touching the shared
 * servers or their configuration. Every wait is bounded; `stop()` removes everything.
 *
 * The servers refuse to run as root, so under root they run as the `postgres` / `mysql` users.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as dns from 'node:dns/promises';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;

/** Runs a command, as `user` when we are root; bounded by `timeoutMs`. */
async function sh(command: string, args: string[], options: { user?: string; timeoutMs?: number; cwd?: string } = {}): Promise<string> {
  const [file, argv] = isRoot && options.user ? ['runuser', ['-u', options.user, '--', command, ...args]] : [command, args];
  try {
    const { stdout } = await run(file, argv, { timeout: options.timeoutMs ?? 30_000, cwd: options.cwd, killSignal: 'SIGKILL' });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}${e.stdout ?? ''}`);
  }
}

function chown(target: string, user: string): void {
  if (!isRoot) return;
  const { uid, gid } = userIds(user);
  const walk = (p: string) => {
    fs.chownSync(p, uid, gid);
    if (fs.statSync(p).isDirectory()) for (const entry of fs.readdirSync(p)) walk(path.join(p, entry));
  };
  walk(target);
}

function userIds(user: string): { uid: number; gid: number } {
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`user ${user} not found: the database servers cannot run as root without it`);
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** `preferred` when nothing listens on it, else a port the kernel picks. */
export async function freePort(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => {
        const address = server.address() as net.AddressInfo;
        server.close(() => resolve(address.port));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0))!;
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export interface Certificates {
  dir: string;
  /** The CA that signed the server certificate. */
  caFile: string;
  ca: Buffer;
  /** Another CA, which signed nothing the servers present. */
  otherCaFile: string;
  otherCa: Buffer;
  serverCertFile: string;
  serverKeyFile: string;
}

/** A CA, a second unrelated CA, and a server certificate for CN=localhost, SAN DNS:localhost and IP:127.0.0.1. */
export async function makeCertificates(dir: string): Promise<Certificates> {
  fs.mkdirSync(dir, { recursive: true });
  const f = (name: string) => path.join(dir, name);
  const days = ['-days', '2'];
  await sh('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
    ...days,
    '-subj',
    '/CN=nestjs-dbpool test CA',
  ]);
  await sh('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    f('other-ca.key'),
    '-out',
    f('other-ca.crt'),
    ...days,
    '-subj',
    '/CN=nestjs-dbpool unrelated CA',
  ]);
  await sh('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost']);
  fs.writeFileSync(
    f('server.ext'),
    'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n',
  );
  await sh('openssl', [
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.crt'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.crt'),
    ...days,
    '-extfile',
    f('server.ext'),
  ]);
  return {
    dir,
    caFile: f('ca.crt'),
    ca: fs.readFileSync(f('ca.crt')),
    otherCaFile: f('other-ca.crt'),
    otherCa: fs.readFileSync(f('other-ca.crt')),
    serverCertFile: f('server.crt'),
    serverKeyFile: f('server.key'),
  };
}

/**
 * A host name that is not in the server certificate yet reaches this machine (the machine's
 * own name, usually in /etc/hosts), with its address, so a server can listen there too.
 */
export async function foreignHostName(): Promise<{ name: string; address: string } | undefined> {
  const local = new Set<string>(['127.0.0.1']);
  for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) if (i.family === 'IPv4') local.add(i.address);
  for (const name of [os.hostname(), 'vm', 'runsc']) {
    if (!name || name === 'localhost') continue;
    try {
      const { address, family } = await dns.lookup(name, { family: 4 });
      if (family === 4 && (local.has(address) || address.startsWith('127.'))) return { name, address };
    } catch {
      // not resolvable here: try the next
    }
  }
  return undefined;
}

function findBinary(candidates: string[]): string | undefined {
  return candidates.find((c) => fs.existsSync(c));
}

/** The bin directory of the newest PostgreSQL installed (or $PG_BIN). */
export function postgresBin(): string | undefined {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return undefined;
  const versions = fs
    .readdirSync(root)
    .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? path.join(root, versions[0], 'bin') : undefined;
}

export interface PostgresServer {
  port: number;
  /** The superuser's password (scram-sha-256 auth). */
  superPassword: string;
  url(options?: { user?: string; password?: string; host?: string; query?: string }): string;
  /** Runs SQL as the superuser through psql over the cluster's socket. */
  psql(sqlText: string): Promise<string>;
  stop(): Promise<void>;
}

export interface PostgresServerOptions {
  /** TLS with this server certificate; none when omitted. */
  certificates?: Certificates;
  /** Addresses to listen on besides 127.0.0.1. */
  extraAddresses?: string[];
  preferredPort: number;
}

/** initdb + pg_ctl start in a temp directory, scram-sha-256 for every TCP login. */
export async function startPostgres(options: PostgresServerOptions): Promise<PostgresServer> {
  const bin = postgresBin();
  if (!bin) throw new Error('PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql, or set PG_BIN');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-pg-'));
  const data = path.join(dir, 'data');
  const superPassword = `super-${Math.random().toString(36).slice(2)}`;
  fs.writeFileSync(path.join(dir, 'pwfile'), superPassword + '\n');
  chown(dir, 'postgres');
  fs.chmodSync(dir, 0o700);
  let started = false;
  const port = await freePort(options.preferredPort);
  const stop = async () => {
    if (started)
      await sh(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'immediate', '-w', '-t', '20', 'stop'], { user: 'postgres', timeoutMs: 30_000 }).catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await sh(
      path.join(bin, 'initdb'),
      ['-D', data, '-A', 'scram-sha-256', '-U', 'postgres', `--pwfile=${path.join(dir, 'pwfile')}`, '--no-sync', '-E', 'UTF8', '--locale=C'],
      {
        user: 'postgres',
        timeoutMs: 60_000,
      },
    );
    const addresses = ['127.0.0.1', ...(options.extraAddresses ?? [])];
    const lines = [
      `listen_addresses = '${addresses.join(',')}'`,
      `port = ${port}`,
      `unix_socket_directories = '${dir}'`,
      'fsync = off',
      'max_connections = 40',
      'shared_buffers = 16MB',
    ];
    const c = options.certificates;
    if (c) {
      for (const name of ['server.crt', 'server.key']) fs.copyFileSync(path.join(c.dir, name), path.join(dir, name));
      chown(path.join(dir, 'server.key'), 'postgres');
      fs.chmodSync(path.join(dir, 'server.key'), 0o600);
      lines.push('ssl = on', `ssl_cert_file = '${path.join(dir, 'server.crt')}'`, `ssl_key_file = '${path.join(dir, 'server.key')}'`);
    } else {
      lines.push('ssl = off');
    }
    fs.appendFileSync(path.join(data, 'postgresql.conf'), '\n' + lines.join('\n') + '\n');
    const hba = ['local all all trust', ...addresses.map((a) => `host all all ${a}/32 scram-sha-256`)];
    fs.writeFileSync(path.join(data, 'pg_hba.conf'), hba.join('\n') + '\n');
    chown(dir, 'postgres');
    await sh(path.join(bin, 'pg_ctl'), ['-D', data, '-l', path.join(dir, 'log'), '-w', '-t', '30', 'start'], { user: 'postgres', timeoutMs: 40_000 });
    started = true;
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    port,
    superPassword,
    url: ({ user = 'postgres', password = superPassword, host = '127.0.0.1', query = '' } = {}) =>
      `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}/postgres${query ? `?${query}` : ''}`,
    psql: (sqlText) =>
      sh(path.join(bin, 'psql'), ['-h', dir, '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-v', 'ON_ERROR_STOP=1', '-Atc', sqlText], {
        user: 'postgres',
      }),
    stop,
  };
}

export interface MariadbServer {
  port: number;
  /** Runs SQL as root through the instance's socket. */
  sql(sqlText: string): Promise<string>;
  stop(): Promise<void>;
}

/** mariadb-install-db + mariadbd with TLS, in a temp directory; root logs in through the socket only. */
export async function startMariadb(options: { certificates: Certificates; extraAddresses?: string[]; preferredPort: number }): Promise<MariadbServer> {
  const installDb = findBinary(['/usr/bin/mariadb-install-db', '/usr/bin/mysql_install_db', '/usr/local/bin/mariadb-install-db']);
  const daemon = findBinary(['/usr/sbin/mariadbd', '/usr/sbin/mysqld', '/usr/local/bin/mariadbd']);
  const client = findBinary(['/usr/bin/mariadb', '/usr/bin/mysql']);
  if (!installDb || !daemon || !client) throw new Error('MariaDB server binaries (mariadb-install-db, mariadbd, mariadb) not found');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-my-'));
  const data = path.join(dir, 'data');
  const socket = path.join(dir, 'sock');
  const c = options.certificates;
  for (const name of ['ca.crt', 'server.crt', 'server.key']) fs.copyFileSync(path.join(c.dir, name), path.join(dir, name));
  fs.chmodSync(path.join(dir, 'server.key'), 0o600);
  chown(dir, 'mysql');
  const port = await freePort(options.preferredPort);
  let child: ChildProcess | undefined;
  const stop = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child?.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const common = ['--no-defaults', `--datadir=${data}`, '--innodb-log-file-size=4M', '--skip-name-resolve'];
  const asUser = isRoot ? ['--user=mysql'] : [];
  try {
    await sh(installDb, [...common, ...asUser, '--auth-root-authentication-method=normal', '--skip-test-db'], { timeoutMs: 90_000, cwd: dir });
    child = spawn(
      daemon,
      [
        ...common,
        ...asUser,
        `--port=${port}`,
        `--bind-address=${['127.0.0.1', ...(options.extraAddresses ?? [])].join(',')}`,
        `--socket=${socket}`,
        `--pid-file=${path.join(dir, 'pid')}`,
        `--log-error=${path.join(dir, 'error.log')}`,
        `--ssl-ca=${path.join(dir, 'ca.crt')}`,
        `--ssl-cert=${path.join(dir, 'server.crt')}`,
        `--ssl-key=${path.join(dir, 'server.key')}`,
        '--skip-log-bin',
        '--innodb-buffer-pool-size=16M',
        '--max-connections=60',
      ],
      { stdio: 'ignore' },
    );
    await waitFor('mariadbd', 60_000, async () => {
      if (child!.exitCode !== null) throw new Error(`mariadbd exited: ${fs.readFileSync(path.join(dir, 'error.log'), 'utf8').slice(-2000)}`);
      return fs.existsSync(socket) && (await canConnect(port));
    });
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    port,
    sql: (sqlText) => sh(client, ['--no-defaults', `--socket=${socket}`, '-uroot', '-N', '-B', '-e', sqlText], { timeoutMs: 30_000 }),
    stop,
  };
}
