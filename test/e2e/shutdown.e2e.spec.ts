/**
 * A Kubernetes-style shutdown of the sample, as a real process: SIGTERM, then readiness answers
 * 503 while requests are still served (SHUTDOWN_DELAY_MS), then the server stops accepting, the
 * request still in flight finishes, the pool closes and the process ends (by the re-raised SIGTERM). Every probe and
 * request answer during the shutdown is recorded and checked.
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { get } from '../support/http.js';
import { startSample } from '../support/sample-process.js';
const DELAY_MS = 1500;

interface Answer {
  at: number;
  path: string;
  status: number | 'refused' | 'reset';
}

describe('graceful shutdown of the sample over HTTP (SIGTERM)', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
  });

  it('readiness 503 while still serving for SHUTDOWN_DELAY_MS, then stops accepting, finishes the request in flight, closes, exits', async () => {
    const started = Date.now();
    const sample = await startSample({ SHUTDOWN_DELAY_MS: String(DELAY_MS) });
    const { proc, port, dir, exited } = sample;
    child = proc;

    // Up: wait for the first 200 from readiness (bounded).
    let up = false;
    for (let i = 0; i < 300 && !up && Date.now() - started < 30_000; i++) {
      up = (await get(port, '/health/ready')).status === 200;
      if (!up) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(up).toBe(true);

    // A slow streaming request (3 users, 700 ms apart) that will still be running when the server stops accepting.
    const inFlight = get(port, `/users?throttleMs=${Math.ceil((DELAY_MS + 600) / 3)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));

    const answers: Answer[] = [];
    const sigtermAt = Date.now();
    proc.kill('SIGTERM');
    let done = false;
    void exited.then(() => (done = true));
    const poll = async (urlPath: string) => {
      for (let i = 0; i < 2000 && !done && Date.now() - sigtermAt < DELAY_MS + 10_000; i++) {
        const { status } = await get(port, urlPath, 2000);
        answers.push({ at: Date.now() - sigtermAt, path: urlPath, status });
        if (status === 'refused') return;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    };
    await Promise.all([poll('/health/ready'), poll('/users/yoen')]);
    const streamed = await inFlight;
    const exit = await exited;

    // Every answer other than 200, 503 and refused, with its time: printed before the checks, so a failure can be read.
    const odd = answers.filter((a) => a.status !== 200 && a.status !== 503 && a.status !== 'refused');
    if (odd.length > 0) console.log(`shutdown: unexpected answers ${JSON.stringify(odd)} of ${JSON.stringify(answers.slice(-8))}`);
    const during = (p: string) => answers.filter((a) => a.path === p && a.at < DELAY_MS - 200);
    // Readiness goes down at once and stays down; the app keeps serving meanwhile.
    expect(during('/health/ready').length).toBeGreaterThan(3);
    expect(during('/health/ready').every((a) => a.status === 503)).toBe(true);
    expect(during('/users/yoen').length).toBeGreaterThan(3);
    expect(during('/users/yoen').every((a) => a.status === 200)).toBe(true);
    // Then it stops accepting: nothing but 200/503 before, only refusals after, never a 5xx from the app. A reset is
    // tolerated only as the answer just before the first refusal: a connection the kernel had already queued when the
    // listening socket closed is reset, not refused, and no server can prevent that race.
    const byPath = (p: string) => answers.filter((a) => a.path === p).map((a) => a.status);
    for (const p of ['/health/ready', '/users/yoen']) {
      const statuses = byPath(p);
      expect(statuses.at(-1)).toBe('refused');
      const atTheClose = (s: Answer['status'], i: number) => s === 'reset' && statuses[i + 1] === 'refused';
      expect(statuses.filter((s, i) => s !== 'refused' && s !== 200 && s !== 503 && !atTheClose(s, i))).toEqual([]);
    }
    const firstRefusal = Math.min(...answers.filter((a) => a.status === 'refused').map((a) => a.at));
    expect(firstRefusal).toBeGreaterThanOrEqual(DELAY_MS - 100);
    // The request in flight when the server stopped accepting finished with all its rows.
    expect(streamed.status).toBe(200);
    expect(
      streamed.body
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line).login),
    ).toEqual(['esteban', 'mohamed', 'yoen']);
    // Nest's shutdown hooks end by raising the signal again, as a process without handlers would die of it.
    expect(exit.code === 0 || exit.signal === 'SIGTERM').toBe(true);
    expect(exit.at - sigtermAt).toBeLessThan(DELAY_MS + 8000);
    console.log(
      `shutdown: readiness 503 from ${Math.min(...answers.filter((a) => a.path === '/health/ready' && a.status === 503).map((a) => a.at))} ms, ` +
        `served until ${Math.max(...answers.filter((a) => a.path === '/users/yoen' && a.status === 200).map((a) => a.at))} ms, ` +
        `refused from ${firstRefusal} ms, exited at ${exit.at - sigtermAt} ms; ${answers.length} answers recorded`,
    );
    fs.rmSync(dir, { recursive: true, force: true });
    expect(sample.output()).not.toMatch(/Error|ERROR/);
  }, 60_000);
});
