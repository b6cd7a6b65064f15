/**
 * Scenario 8: the COMMIT reply is lost. Every 2 s the proxy arms a one-shot fault: the next
 * connection that sends a COMMIT gets no more bytes back and is reset 200 ms later, so the
 * server has committed (or not) and the client cannot know. Every other fault hits the INSERT
 * instead (the connection dies before COMMIT was sent: a definite rollback, which the caller
 * must hear as such). 20 writers with unique keys, 30 s.
 */
import { CommitOutcomeUnknown } from '../../lib/index.js';
import { describeEachDialect, serverCases, uniqueTable } from '../support/databases.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { useFaultsLock, openAdmin, openFaultDb, recordProcessErrors, report, settleWithin, sleep, waitFor, type Admin, type FaultDb } from './harness.js';

const WRITERS = 20;
const DURATION_MS = 30_000;
const FAULT_EVERY_MS = 2000;

useFaultsLock();

describeEachDialect(serverCases, 'faults: lost COMMIT reply', (c) => {
  let processErrors: ReturnType<typeof recordProcessErrors>;
  let admin: Admin;
  let proxy: FaultProxy;
  let f: FaultDb | undefined;
  const table = uniqueTable('f8');

  beforeAll(async () => {
    processErrors = recordProcessErrors();
    admin = await openAdmin(c);
    await admin.query(`CREATE TABLE ${table} (k VARCHAR(40) NOT NULL, w INT NOT NULL)`);
    proxy = await FaultProxy.start(c.dialect === 'postgres' ? 5432 : 3306);
  });
  afterAll(async () => {
    await f?.close();
    await proxy.close();
    await admin.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
    await admin.close();
    processErrors.dispose();
    expect(processErrors.list).toEqual([]);
  });

  it(
    '8. every acknowledged key is stored, rows <= acknowledged + CommitOutcomeUnknown, no key reported rolled back is present, nothing pending',
    async () => {
      f = await openFaultDb(c, 'commit', { pool: { max: 10 }, queryTimeoutMs: 5000, reconnect: { maxDelayMs: 1000 } }, proxy);
      const { db } = f;
      const insert = `INSERT INTO ${table} (k, w) VALUES (${c.p(1)}, ${c.p(2)})`;
      const acked = new Set<string>();
      const unknown = new Set<string>();
      const rolledBack = new Set<string>();
      const rolledBackKinds = new Map<string, number>();
      const stopAt = Date.now() + DURATION_MS;

      const writer = async (w: number): Promise<void> => {
        for (let i = 0; i < 1_000_000 && Date.now() < stopAt; i++) {
          const key = `key-${w}:${i}`; // the 'key-' prefix lets the proxy spot the INSERT (its parameter) on the wire
          try {
            await db.runInteraction(async (tx) => {
              await tx.runOperation(insert, [key, w]);
            });
            acked.add(key);
          } catch (error) {
            if (error instanceof CommitOutcomeUnknown) unknown.add(key);
            else {
              rolledBack.add(key);
              const kind = (error as Error).constructor.name;
              rolledBackKinds.set(kind, (rolledBackKinds.get(kind) ?? 0) + 1);
              await sleep(5); // pacing: do not spin while the database reconnects
            }
          }
        }
      };
      const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));

      let armed = 0;
      let firedOnCommit = 0;
      let firedOnInsert = 0;
      for (let i = 0; i < 100 && Date.now() + FAULT_EVERY_MS < stopAt; i++) {
        await sleep(FAULT_EVERY_MS); // pacing: one fault every FAULT_EVERY_MS
        armed++;
        const onCommit = i % 2 === 0;
        proxy.dropServerToClientAfter(
          (chunk) => {
            const hit = onCommit ? chunk.includes('COMMIT') : chunk.includes('key-') && !chunk.includes('COMMIT');
            if (hit && onCommit) firedOnCommit++;
            else if (hit) firedOnInsert++;
            return hit;
          },
          { once: true, resetAfterMs: 200 },
        );
      }

      const outcome = await settleWithin(Promise.all(writers), DURATION_MS + 15_000);
      expect(outcome.status).toBe('fulfilled'); // nothing pending
      // Connections go back to the pool as their interactions end (a rollback or a destroy may still be on its way).
      expect(await waitFor(() => db.stats().busy === 0, 3000)).toBe(true);

      const rows = await admin.query<{ k: string }>(`SELECT k FROM ${table}`);
      const stored = new Set(rows.map((r) => r.k));
      const lost = [...acked].filter((k) => !stored.has(k));
      const resurrected = [...rolledBack].filter((k) => stored.has(k));
      const unknownCommitted = [...unknown].filter((k) => stored.has(k)).length;
      expect(lost).toEqual([]);
      expect(resurrected).toEqual([]);
      expect(rows.length).toBe(stored.size); // no key twice
      expect(rows.length).toBeLessThanOrEqual(acked.size + unknown.size);
      expect(firedOnCommit).toBeGreaterThan(0);
      expect(firedOnInsert).toBeGreaterThan(0);
      expect(unknown.size).toBeGreaterThanOrEqual(firedOnCommit);
      expect(rolledBack.size).toBeGreaterThanOrEqual(firedOnInsert);
      report('8-lost-commit', c.dialect, {
        writers: WRITERS,
        durationS: DURATION_MS / 1000,
        faultsArmed: armed,
        lostCommitReplies: firedOnCommit,
        lostInsertReplies: firedOnInsert,
        acked: acked.size,
        rows: rows.length,
        commitOutcomeUnknown: unknown.size,
        unknownActuallyCommitted: unknownCommitted,
        reportedRolledBack: rolledBack.size,
        rolledBackPresent: resurrected.length,
        lost: lost.length,
        rolledBackKinds: [...rolledBackKinds].map(([k, n]) => `${k}:${n}`).join(',') || 'none',
        deadEvents: f.deadEvents,
      });
    },
    DURATION_MS + 30_000,
  );
});
