/**
 * Which Debian packages the throwaway servers need, and a check that tells which are missing.
 * It never installs anything: CI installs them with {@link CI_INSTALL_LINES} (see README.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { firstExisting } from './process.js';

export type ClusterFeature = 'postgres' | 'pgbouncer' | 'mariadb' | 'galera';

export const ALL_FEATURES: ClusterFeature[] = ['postgres', 'pgbouncer', 'mariadb', 'galera'];

export interface MissingPackage {
  /** The Debian package that provides it. */
  package: string;
  /** What was looked for. */
  lookedFor: string;
  feature: ClusterFeature;
}

interface Requirement {
  package: string;
  lookedFor: string;
  present: () => boolean;
}

const binDirs = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const onPath = (name: string): boolean => binDirs.some((d) => fs.existsSync(path.join(d, name)));

/** The bin directory of the newest PostgreSQL server installed (or $PG_BIN). */
export function postgresBinDir(): string | undefined {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!fs.existsSync(root)) return undefined;
  const versions = fs
    .readdirSync(root)
    .filter((v) => fs.existsSync(path.join(root, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? path.join(root, versions[0]!, 'bin') : undefined;
}

export const GALERA_PROVIDER_CANDIDATES = ['/usr/lib/galera/libgalera_smm.so', '/usr/lib/libgalera_smm.so', '/usr/lib64/galera-4/libgalera_smm.so'];

const userExists = (user: string): boolean =>
  fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .some((l) => l.startsWith(`${user}:`));

const requirements: Record<ClusterFeature, Requirement[]> = {
  postgres: [
    {
      package: 'postgresql-15',
      lookedFor: 'initdb, pg_ctl, pg_basebackup, postgres in /usr/lib/postgresql/*/bin',
      present: () => {
        const bin = postgresBinDir();
        return !!bin && ['initdb', 'pg_ctl', 'pg_basebackup', 'postgres'].every((b) => fs.existsSync(path.join(bin, b)));
      },
    },
    { package: 'postgresql-common', lookedFor: "user 'postgres'", present: () => userExists('postgres') },
  ],
  pgbouncer: [
    { package: 'pgbouncer', lookedFor: 'pgbouncer', present: () => onPath('pgbouncer') },
    { package: 'postgresql-common', lookedFor: "user 'postgres' (pgbouncer refuses to run as root)", present: () => userExists('postgres') },
  ],
  mariadb: [{ package: 'mariadb-server', lookedFor: 'mariadbd, mariadb-install-db', present: () => onPath('mariadbd') && onPath('mariadb-install-db') }],
  galera: [
    {
      package: 'mariadb-server',
      lookedFor: 'mariadbd, mariadb-install-db, wsrep_sst_rsync',
      present: () => onPath('mariadbd') && onPath('mariadb-install-db') && onPath('wsrep_sst_rsync'),
    },
    { package: 'galera-4', lookedFor: 'libgalera_smm.so', present: () => !!firstExisting(GALERA_PROVIDER_CANDIDATES) },
    { package: 'rsync', lookedFor: 'rsync (Galera SST)', present: () => onPath('rsync') },
    { package: 'iproute2', lookedFor: 'ss or lsof (the SST script checks its listener with one of them)', present: () => onPath('ss') || onPath('lsof') },
  ],
};

/** Packages missing for the given features (all features by default); empty when all is there. */
export function missingPackages(features: ClusterFeature[] = ALL_FEATURES): MissingPackage[] {
  const missing: MissingPackage[] = [];
  for (const feature of features) {
    for (const r of requirements[feature]) {
      if (!r.present() && !missing.some((m) => m.package === r.package)) missing.push({ package: r.package, lookedFor: r.lookedFor, feature });
    }
  }
  return missing;
}

/**
 * Throws, naming each missing package and the command that installs them, when something the
 * features need is not installed. Does not install anything.
 */
export function ensurePackages(features: ClusterFeature[] = ALL_FEATURES): void {
  const missing = missingPackages(features);
  if (missing.length === 0) return;
  const lines = missing.map((m) => `  - ${m.package} (for ${m.feature}: ${m.lookedFor} not found)`);
  const names = [...new Set(missing.map((m) => m.package))].join(' ');
  throw new Error(
    `Packages missing for the cluster tests:\n${lines.join('\n')}\n` +
      `Install them with:\n  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${names}\n` +
      `(.ci/run does this; see test/support/cluster/README.md)`,
  );
}

/** Every package the cluster helpers use (what .ci/run installs). */
export const CLUSTER_APT_PACKAGES = ['postgresql-15', 'pgbouncer', 'mariadb-server', 'galera-4', 'rsync', 'iproute2'] as const;

/** The shell lines for .ci/run (runs as root on Debian 12): installs only what is missing. */
export const CI_INSTALL_LINES = `# Packages for the throwaway clusters of the scale-out tests (test/support/cluster).
need_pkgs=""
for p in pgbouncer galera-4 rsync iproute2; do
  dpkg-query -W -f='\${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs="$need_pkgs $p"
done
if [ -n "$need_pkgs" ]; then
  echo "== installing$need_pkgs"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need_pkgs
fi`;
