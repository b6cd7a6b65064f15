/** How PostgreSQL is configured. */
import type { DialectProfile } from '../driver.js';

export const POSTGRES_PROFILE: DialectProfile = {
  title: 'PostgreSQL',
  otelSystem: 'postgresql',
  schemes: ['postgres', 'postgresql'],
  exampleUrl: 'postgres://user:password@host:5432/db',
  defaultPort: 5432,
  embedded: false,
  defaultPoolMax: 10,
  ownOptions: ['pgbouncer', 'listenUrl'],
  completeTls(tls, _host, sslmode) {
    // verify-ca: the chain, not the host name.
    if (sslmode === 'verify-ca') tls.checkServerIdentity = () => undefined;
    return undefined;
  },
};
