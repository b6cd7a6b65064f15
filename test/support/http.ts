/** A free local port, and a GET that reports refused and reset connections as answers: for tests that run the sample as a real process. */
import * as http from 'node:http';
import * as net from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** One GET on a fresh connection (no keep-alive), so a closed server shows as refused. */
export function get(port: number, urlPath: string, timeoutMs = 10_000): Promise<{ status: number | 'refused' | 'reset'; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 'reset', body }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ status: error.code === 'ECONNREFUSED' ? 'refused' : 'reset', body: '' }));
    req.on('timeout', () => req.destroy());
  });
}
