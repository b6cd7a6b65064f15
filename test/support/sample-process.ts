/** The sample app as a real process (`dist/sample/main.js`) on a fresh SQLite file and a free port, its output collected. */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { root } from './child.js';
import { freePort } from './http.js';

export interface SampleProcess {
  proc: ChildProcess;
  port: number;
  /** The folder of its SQLite file (the test removes it). */
  dir: string;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

export async function startSample(env: Record<string, string>): Promise<SampleProcess> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ndbp-sample-'));
  const proc = spawn(process.execPath, [path.join(root, 'dist/sample/main.js')], {
    cwd: root,
    env: { ...process.env, NODE_OPTIONS: '', PORT: String(port), DATABASE_URL: `sqlite:${path.join(dir, 'app.db')}`, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout!.on('data', (d) => (output += d));
  proc.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { proc, port, dir, output: () => output, exited };
}
