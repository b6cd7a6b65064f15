/**
 * `TRACING=console` on the sample, as a real process: the request's span is the parent of the
 * database span made while serving it, and the pool metrics are exported, with no setup beyond
 * the environment variable.
 */
import type { ChildProcess } from 'node:child_process';
import { get } from '../support/http.js';
import { startSample } from '../support/sample-process.js';

describe('the sample with TRACING=console', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
  });

  it("prints the request's span as the parent of its database spans, and the db.client.* metrics", async () => {
    const sample = await startSample({ TRACING: 'console', METRICS_INTERVAL_MS: '300' });
    child = sample.proc;
    const { port } = sample;

    const started = Date.now();
    let answer = await get(port, '/users/yoen');
    for (let i = 0; i < 300 && answer.status !== 200 && Date.now() - started < 30_000; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50)); // poll until the sample listens
      answer = await get(port, '/users/yoen');
    }
    expect(answer.status).toBe(200);

    const requestSpan = () => /name: 'GET \/users\/yoen',\s+id: '([0-9a-f]+)'/.exec(sample.output())?.[1];
    for (let i = 0; i < 200 && (!requestSpan() || !sample.output().includes("name: 'db.client.operation.duration'")) && Date.now() - started < 30_000; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50)); // poll the output until both were printed
    }
    const requestId = requestSpan();
    expect(requestId).toBeDefined();
    // A SELECT span whose parent is the request's span.
    const children = sample
      .output()
      .split(/\n\{\n/)
      .filter((block) => block.includes(`spanId: '${requestId}'`) && /name: 'SELECT /.test(block));
    expect(children.length).toBeGreaterThanOrEqual(1);
    expect(children[0]).toContain("'db.system.name': 'sqlite'");
    expect(children[0]).toContain("'db.query.text': 'SELECT login, name, forname FROM users WHERE login = ?'");
    expect(sample.output()).toContain("name: 'db.client.operation.duration'");
    expect(sample.output()).toContain("'db.client.connection.count'");
  });
});
