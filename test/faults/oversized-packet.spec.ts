/**
 * Scenario 10: one caller's statement ends its session. MariaDB: a parameter larger than
 * `max_allowed_packet` (the server answers ER_NET_PACKET_TOO_LARGE and closes the connection).
 * `max_allowed_packet` is global only, and a session copies it when it connects: it is lowered
 * just long enough for the pool to open its connections, then put back.
 * PostgreSQL has no packet limit within reach (1 GB), so its counterpart is a statement whose
 * session the server ends (FATAL 57P01, by terminating its own backend): the same "one caller's
 * connection is gone" path.
 */
import { ConnectionDead, DatabaseError } from '../../lib/index.js';
import { describeEachDialect, serverCases } from '../support/databases.js';
import { useFaultsLock, openAdmin, openFaultDb, recordProcessErrors, report, settleWithin, type FaultDb } from './harness.js';

const PACKET = 65_536;

useFaultsLock();

describeEachDialect(serverCases, 'faults: a fatal error for one caller', (c) => {
  let processErrors: ReturnType<typeof recordProcessErrors>;
  let f: FaultDb | undefined;

  beforeAll(() => {
    processErrors = recordProcessErrors();
  });
  afterAll(async () => {
    await f?.close();
    processErrors.dispose();
    expect(processErrors.list).toEqual([]);
  });

  const title =
    c.dialect === 'mysql'
      ? '10. a parameter over max_allowed_packet: only that caller gets the error, the next caller on the pool succeeds'
      : '10. (PostgreSQL counterpart) a statement whose session the server ends: only that caller gets the error, the next caller on the pool succeeds';

  it(
    title,
    async () => {
      const idSql = c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id';
      const sleepSql = c.dialect === 'postgres' ? 'pg_sleep(0.05)' : 'SLEEP(0.05)';
      // MariaDB: one round, while every pool session still has the lowered limit (the one that replaces the doomed
      // session, opened after the limit was put back, has the normal one and would be handed out next).
      const rounds = c.dialect === 'mysql' ? 1 : 5;
      const max = 3;
      const open = async () => {
        f = await openFaultDb(c, 'packet', { pool: { max } });
        await Promise.all(Array.from({ length: max }, () => f!.db.runQuery(`${idSql}, ${sleepSql}`)));
      };
      if (c.dialect === 'mysql') {
        const admin = await openAdmin(c);
        const [{ v: original }] = await admin.query<{ v: number }>('SELECT @@GLOBAL.max_allowed_packet AS v');
        try {
          await admin.query(`SET GLOBAL max_allowed_packet = ${PACKET}`);
          await open();
        } finally {
          await admin.query(`SET GLOBAL max_allowed_packet = ${Number(original)}`);
          const [{ v: now }] = await admin.query<{ v: number }>('SELECT @@GLOBAL.max_allowed_packet AS v');
          await admin.close();
          expect(Number(now)).toBe(Number(original));
        }
        const [{ m }] = await f!.db.runQuery<{ m: number }>('SELECT @@SESSION.max_allowed_packet AS m');
        expect(Number(m)).toBe(PACKET);
      } else {
        await open();
      }
      const { db } = f!;
      const opened = f!.everOpened.length;
      const closedBefore = f!.closed.length;

      const errors: string[] = [];
      let nextOk = 0;
      let concurrentOk = 0;
      for (let round = 0; round < rounds; round++) {
        // A neighbour in flight on the other connection at the same moment.
        const neighbour = db.runQuery(`${idSql}, ${sleepSql}`);
        const doomed =
          c.dialect === 'mysql' ? db.runQuery('SELECT LENGTH(?) AS n', ['x'.repeat(PACKET * 3)]) : db.runQuery('SELECT pg_terminate_backend(pg_backend_pid())');
        // The next caller goes the moment the doomed one fails.
        const next = doomed.then(
          () => {
            throw new Error('the oversized statement succeeded');
          },
          (error: unknown) => {
            // The session was lost under the call: ConnectionDead, with what the server said kept as its cause.
            expect(error).toBeInstanceOf(ConnectionDead);
            errors.push(((error as DatabaseError).cause as DatabaseError).code);
            return db.runQuery<{ n: number }>('SELECT 2 AS n');
          },
        );
        const [n, nb] = await Promise.all([settleWithin(next, 5000), settleWithin(neighbour, 5000)]);
        if (n.status === 'fulfilled' && Number(n.value[0].n) === 2) nextOk++;
        if (nb.status === 'fulfilled') concurrentOk++;
      }
      expect(errors).toHaveLength(rounds);
      expect(new Set(errors)).toEqual(new Set([c.dialect === 'mysql' ? 'ER_NET_PACKET_TOO_LARGE' : '57P01']));
      expect(nextOk).toBe(rounds);
      expect(concurrentOk).toBe(rounds);
      expect(f!.deadEvents).toBe(0);
      // Each doomed session was destroyed, never handed out again (the pool opens a new one when it needs one: how many is
      // a matter of timing, and reported).
      const replaced = f!.everOpened.length - opened;
      expect(f!.closed.length - closedBefore).toBeGreaterThanOrEqual(rounds);
      report('10-fatal-for-one', c.dialect, {
        how: c.dialect === 'mysql' ? 'oversized-param' : 'self-terminate-57P01',
        ...(c.dialect === 'mysql' ? { paramBytes: PACKET * 3, maxAllowedPacket: PACKET } : {}),
        rounds,
        errorCode: errors[0],
        nextCallerOk: nextOk,
        concurrentCallerOk: concurrentOk,
        connectionsReplaced: replaced,
        deadEvents: f!.deadEvents,
      });
    },
    30_000,
  );
});
