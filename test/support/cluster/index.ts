/**
 * Throwaway database topologies for the scale-out tests (see README.md in this folder):
 * PostgreSQL primary + streaming standbys, PgBouncer, MariaDB primary + GTID replica, and a
 * MariaDB Galera cluster. Each `start*` returns a handle whose `stop()` / `dispose()` removes
 * every process and file it made.
 */
export { ensurePackages, missingPackages, CI_INSTALL_LINES, CLUSTER_APT_PACKAGES, type ClusterFeature, type MissingPackage } from './packages.js';
export { startPostgresCluster, type PgCluster, type PgClusterOptions, type PgNode, type PgStopMode } from './postgres-cluster.js';
export { startPgBouncer, type PgBouncer, type PgBouncerOptions, type PoolMode } from './pgbouncer.js';
export { startMariadbReplication, type MariadbReplication, type MariadbReplicationOptions, type ReplicaStatus } from './mariadb-replica.js';
export { startGaleraCluster, type GaleraCluster, type GaleraOptions, type GaleraStatus, type SstMethod } from './galera.js';
export type { MariadbNode } from './mariadb.js';
export { pgQuery, mysqlQuery } from './clients.js';
export { PORT_RANGES } from './ports.js';
export { processesUnder, sweepStaleWorkspaces, treeMemory, type MemoryUsage } from './process.js';
