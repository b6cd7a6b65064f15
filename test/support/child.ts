/**
 * Runs a small ES module script in a child Node process against the compiled package
 * (`dist/`, built by `npm test`'s pretest step), for what only a real process shows: exit
 * codes, what keeps a process alive, signals.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const distIndex = path.join(root, 'dist/lib/index.js');

export interface ChildOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** From spawn to exit. */
  ms: number;
  /** True when it had to be killed after `timeoutMs`. */
  killed: boolean;
}

/**
 * Writes `source` (plain JavaScript, ES module; `DIST` is replaced by the compiled package's
 * entry point) next to `dist/` and runs it, killing it after `timeoutMs`.
 */
export async function runScript(name: string, source: string, timeoutMs: number, env: Record<string, string> = {}): Promise<ChildOutcome> {
  if (!fs.existsSync(distIndex)) throw new Error(`${distIndex} is missing: run npm run build first (npm test does)`);
  const file = path.join(root, 'dist', `${name}-${process.pid}-${Date.now().toString(36)}.mjs`);
  fs.writeFileSync(file, source.replaceAll('DIST', JSON.stringify(distIndex)));
  const started = Date.now();
  try {
    return await new Promise<ChildOutcome>((resolve) => {
      const child = spawn(process.execPath, [file], { cwd: root, env: { ...process.env, NODE_OPTIONS: '', ...env } });
      let stdout = '';
      let stderr = '';
      let killed = false;
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const timer = setTimeout(() => {
        killed = true;
        child.kill('SIGKILL');
      }, timeoutMs);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, ms: Date.now() - started, killed });
      });
    });
  } finally {
    fs.rmSync(file, { force: true });
  }
}
