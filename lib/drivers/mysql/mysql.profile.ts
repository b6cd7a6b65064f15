/** How MySQL and MariaDB are configured, and mysql2's TLS rules. */
import { isIP } from 'node:net';
import type { DialectProfile } from '../driver.js';

export const MYSQL_PROFILE: DialectProfile = {
  title: 'MySQL',
  otelSystem: 'mysql',
  schemes: ['mysql', 'mariadb'],
  exampleUrl: 'mysql://user:password@host:3306/db',
  defaultPort: 3306,
  embedded: false,
  defaultPoolMax: 10,
  ownOptions: ['warningsAsErrors'],
  completeTls(tls, host, sslmode) {
    if (sslmode === 'verify-ca') tls.verifyIdentity = false;
    if (sslmode === 'verify-full') tls.verifyIdentity = true;
    if (tls.rejectUnauthorized === false) return undefined;
    const ipHost = host !== undefined && isIP(host) !== 0;
    if (tls.verifyIdentity === true && ipHost) {
      return (
        `asks for a host name check (verifyIdentity, sslmode=verify-full) but the host is an IP address (${host}), which mysql2 does not check ` +
        'against the certificate: connect by the host name in the certificate, or use sslmode=verify-ca / verifyIdentity: false'
      );
    }
    // mysql2 checks the chain by default but not the host name: check it, as Node and pg do, where mysql2 can.
    if (tls.verifyIdentity === undefined && tls.checkServerIdentity === undefined) tls.verifyIdentity = !ipHost;
    return undefined;
  },
};
