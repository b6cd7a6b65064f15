/**
 * The SQLite worker thread: the code that runs better-sqlite3 off the event loop, and the
 * message protocol between it and `SqliteDriver` (sqlite.driver.ts).
 *
 * The worker's code is a string run with `new Worker(source, { eval: true })`, not a file
 * next to this module: a worker file would be a `.js` file in `dist/` but only a `.ts` file
 * when the sources run under ts-jest, and plain Node cannot start a worker from TypeScript.
 * A string runs the same from both, survives bundlers and coverage instrumentation, and
 * needs no path lookup at run time. The price is that the code below is not type-checked,
 * so it is kept small and every message kind is covered by test/integration/sqlite.driver.spec.ts.
 * An eval'd worker is a CommonJS script: it loads better-sqlite3 with `require` from the
 * absolute path the driver resolved next to itself (`workerData.modulePath`).
 *
 * One worker serves every session of one database. A session is one better-sqlite3 handle
 * (its own transaction state), except on `:memory:`, where every handle would be a separate
 * empty database, so all sessions share one handle that lives as long as the worker.
 */

/**
 * Where a request stands, kept in a SharedArrayBuffer slot per request so that the main
 * thread can decide a cancel with one compare-and-swap, even while the worker is stuck
 * inside SQLite and cannot read messages:
 * QUEUED → RUNNING (worker starts it) → DONE (its effect is final: result on the way);
 * QUEUED → CANCELED (main: the worker will skip it); RUNNING → CANCELED (main: restarts the worker).
 */
export const PHASE = { FREE: 0, QUEUED: 1, RUNNING: 2, DONE: 3, CANCELED: 4 } as const;

/** Request slots per worker; a request beyond that many outstanding ones gets none and is canceled by a restart. */
export const SLOT_COUNT = 1024;

/** Prepared statements kept per session (least recently used evicted). */
export const STATEMENT_CACHE_SIZE = 200;

export interface WorkerData {
  /** Absolute path of better-sqlite3's entry point. */
  modulePath: string;
  /** Absolute path, or `:memory:`. */
  filename: string;
  /** True when every session must share one handle (`:memory:`, or `''`: a private temporary database). */
  memory: boolean;
  /** How long a statement waits for another writer's lock before failing with SQLITE_BUSY. */
  busyTimeoutMs: number;
  /** Extra `PRAGMA name = value` run on each new handle, after the defaults. */
  pragmas: Array<[string, string]>;
  /** better-sqlite3 constructor options (`readonly`, `fileMustExist`, `nativeBinding`, ...). */
  databaseOptions: Record<string, unknown>;
  /** One Int32 per request slot, holding a `PHASE`. */
  phases: Int32Array;
}

interface RequestHead {
  id: number;
  /** Index in `phases`, or -1 for a request that is not cancelable. */
  slot: number;
  session: number;
}

export type RequestBody =
  | { op: 'open' }
  | { op: 'execute'; text: string; values: unknown[]; array: boolean }
  | { op: 'streamOpen'; text: string; values: unknown[]; array: boolean; batchSize: number }
  | { op: 'streamNext'; cursor: number }
  | { op: 'streamClose'; cursor: number }
  | { op: 'ping' }
  | { op: 'close' };

export type WorkerRequest = RequestHead & RequestBody;

export interface OkReply {
  id: number;
  ok: true;
  inTransaction: boolean;
  rows?: unknown[];
  affectedRows?: number;
  /** A number while it is a safe integer, a string beyond. */
  insertId?: number | string;
  /** Some value in `rows` is a blob (it crossed as a Uint8Array and must become a Buffer again). */
  blobs?: boolean;
  /** Streams: the cursor id and whether it is exhausted. */
  cursor?: number;
  done?: boolean;
}

export interface ErrorReply {
  id: number;
  ok: false;
  inTransaction: boolean;
  error: { message: string; code?: string; name?: string };
}

/** The worker did not run the request: it was canceled before it started. */
export interface SkippedReply {
  id: number;
  skipped: true;
}

export type WorkerReply = OkReply | ErrorReply | SkippedReply;

// Plain CommonJS run inside the worker. Kept free of backticks and dollar-brace so that it
// can sit in String.raw unchanged.
const WORKER_BODY = String.raw`
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
const Database = require(workerData.modulePath);

const phases = workerData.phases;
// The delays SQLite's own busy handler uses, in milliseconds.
const BUSY_DELAYS = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const CANCELED = Symbol('canceled');
const NOT_WRAPPED = /^(?:BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|VACUUM|ATTACH|DETACH|PRAGMA)$/;

const sessions = new Map();
let sharedHandle;

function lost(message) {
  return Object.assign(new Error(message), { code: 'CONNECTION_LOST' });
}

// The first keyword of a statement, past leading blanks and comments.
function keyword(text) {
  const m = /^(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*([A-Za-z]+)/.exec(text);
  return m ? m[1].toUpperCase() : '';
}

function newHandle() {
  const options = Object.assign({}, workerData.databaseOptions, { timeout: 0 });
  const db = new Database(workerData.filename, options);
  try {
    // Integers come back as bigint and are turned into numbers, or strings beyond 2^53,
    // so that no value is ever rounded (see convertRows).
    db.defaultSafeIntegers(true);
    // WAL: a writer appends pages to the -wal file while each reader keeps reading the
    // snapshot that was current when its read began, so readers never block the writer and
    // the writer never blocks readers. There is still a single write lock per database:
    // while one session (or another process) holds it, a second writer gets SQLITE_BUSY.
    // SQLite's busy_timeout would wait for it by sleeping inside sqlite3_step(), on this one
    // thread, where the session holding the lock could then never reach its COMMIT. So the
    // native busy_timeout is 0 and the worker waits instead: a statement that got
    // SQLITE_BUSY goes back in the queue on a timer (attempt()) while other sessions are
    // served, until busyTimeoutMs has passed, and only then does the caller get SQLITE_BUSY.
    if (!workerData.memory && !options.readonly) db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    for (const [name, value] of workerData.pragmas) db.pragma(name + ' = ' + value);
    return {
      db,
      shared: workerData.memory,
      begin: db.prepare('BEGIN'),
      commit: db.prepare('COMMIT'),
      rollback: db.prepare('ROLLBACK'),
      totalChanges: db.prepare('SELECT total_changes()').pluck(),
    };
  } catch (error) {
    db.close();
    throw error;
  }
}

function open(req) {
  let handle;
  if (workerData.memory) {
    handle = sharedHandle = sharedHandle || newHandle();
  } else {
    fs.mkdirSync(path.dirname(workerData.filename), { recursive: true });
    handle = newHandle();
  }
  sessions.set(req.session, { handle, cache: new Map(), cursors: new Map() });
  return {};
}

function close(req) {
  const s = sessions.get(req.session);
  if (!s) return {};
  closeCursors(s);
  sessions.delete(req.session);
  if (!s.handle.shared) {
    s.handle.db.close();
  } else if (s.handle.db.inTransaction && !Array.from(sessions.values()).some((o) => o.handle === s.handle)) {
    // The last session of a shared handle leaves: do not hand its transaction to the next one.
    rollback(s);
  }
  return {};
}

function prepare(s, text) {
  let stmt = s.cache.get(text);
  if (stmt) {
    s.cache.delete(text);
  } else {
    stmt = s.handle.db.prepare(text);
    if (s.cache.size >= CACHE_SIZE) s.cache.delete(s.cache.keys().next().value);
  }
  s.cache.set(text, stmt);
  return stmt;
}

function closeCursors(s) {
  for (const c of s.cursors.values()) closeCursor(c);
  s.cursors.clear();
}

function closeCursor(c) {
  try {
    if (c.iterator.return) c.iterator.return();
  } catch (error) {
    // already finished or failed: nothing to close
  }
}

function rollback(s) {
  if (!s.handle.db.inTransaction) return;
  try {
    s.handle.rollback.run();
  } catch (error) {
    // SQLite may have rolled back already (some errors end the transaction themselves)
  }
}

function fromBigInt(v) {
  return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : String(v);
}

// In place: bigint → number or string; tells whether a blob is present.
function convertRows(rows, array) {
  let blobs = false;
  for (const row of rows) {
    if (array) {
      for (let i = 0; i < row.length; i++) {
        const v = row[i];
        if (typeof v === 'bigint') row[i] = fromBigInt(v);
        else if (v instanceof Uint8Array) blobs = true;
      }
    } else {
      for (const key in row) {
        const v = row[key];
        if (typeof v === 'bigint') row[key] = fromBigInt(v);
        else if (v instanceof Uint8Array) blobs = true;
      }
    }
  }
  return blobs;
}

// Marks the request's effect as final (RUNNING → DONE). False when the main thread canceled it
// first: it is then restarting this worker, and nothing may be committed.
function pass(req) {
  if (req.passed || req.slot < 0) return true;
  req.passed = Atomics.compareExchange(phases, req.slot, PHASE.RUNNING, PHASE.DONE) === PHASE.RUNNING;
  return req.passed;
}

function run(req, s, stmt) {
  if (stmt.reader) {
    stmt.raw(req.array);
    const rows = stmt.all(...req.values);
    const blobs = convertRows(rows, req.array);
    // INSERT/UPDATE/DELETE ... RETURNING return one row per row changed.
    const changes = !stmt.readonly && /^(?:INSERT|REPLACE|UPDATE|DELETE|WITH)$/.test(keyword(req.text));
    return { rows, affectedRows: changes ? rows.length : 0, blobs };
  }
  const info = stmt.run(...req.values);
  const out = { rows: [], affectedRows: info.changes };
  const kw = keyword(req.text);
  const inserts = kw === 'INSERT' || kw === 'REPLACE' || (kw === 'WITH' && /\b(?:INSERT|REPLACE)\b/i.test(req.text));
  if (inserts && info.changes > 0) out.insertId = fromBigInt(BigInt(info.lastInsertRowid));
  return out;
}

// Several statements in one text without parameters (a schema script): db.exec().
// Not wrapped in a transaction (the script may have its own), so a canceled script may
// have taken effect in part.
function script(req, s) {
  const before = s.handle.totalChanges.get();
  s.handle.db.exec(req.text);
  if (!pass(req)) return CANCELED;
  return { rows: [], affectedRows: Number(s.handle.totalChanges.get() - before) };
}

function execute(req, s) {
  closeCursors(s);
  const db = s.handle.db;
  let stmt;
  try {
    stmt = prepare(s, req.text);
  } catch (error) {
    if (req.values.length === 0 && /more than one statement/.test(String(error && error.message))) return script(req, s);
    throw error;
  }
  const kw = keyword(req.text);
  // A COMMIT cannot be undone once it ran, so it stops being cancelable before it runs.
  if (db.inTransaction && (kw === 'COMMIT' || kw === 'END' || kw === 'RELEASE') && !pass(req)) return CANCELED;
  // SQLite cannot be interrupted: a statement canceled while it runs is finished by this
  // thread before the thread stops, and a write outside a transaction would then commit.
  // So such a write runs inside BEGIN ... COMMIT, and the COMMIT only happens once pass()
  // made the result final; a canceled (terminated) worker never reaches it, and closing
  // the handle on exit rolls the write back. Left alone: transaction control (BEGIN
  // IMMEDIATE counts as a write for SQLite), and VACUUM, ATTACH, DETACH and PRAGMA, which
  // cannot run inside a transaction.
  const wrap = !stmt.readonly && !db.inTransaction && !NOT_WRAPPED.test(kw);
  if (wrap) s.handle.begin.run();
  try {
    const result = run(req, s, stmt);
    if (!pass(req)) {
      if (wrap) rollback(s);
      return CANCELED;
    }
    if (wrap) s.handle.commit.run();
    return result;
  } catch (error) {
    if (wrap) rollback(s);
    throw error;
  }
}

function streamOpen(req, s) {
  closeCursors(s);
  const stmt = prepare(s, req.text);
  let iterator;
  if (stmt.reader && stmt.readonly) {
    stmt.raw(req.array);
    iterator = stmt.iterate(...req.values);
  } else {
    // A statement that writes runs whole (and safely, as execute() does); its rows are then
    // handed out in batches like any others.
    const result = execute(req, s);
    if (result === CANCELED) return CANCELED;
    iterator = result.rows[Symbol.iterator]();
  }
  s.cursors.set(req.id, { iterator, array: req.array, batchSize: req.batchSize });
  return batch(req, s, req.id);
}

function batch(req, s, cursor) {
  const c = s.cursors.get(cursor);
  if (!c) {
    throw Object.assign(new Error('the cursor was closed: another statement ran on this connection during the stream'), {
      code: 'SQLITE_MISUSE',
    });
  }
  const rows = [];
  let done = false;
  try {
    while (rows.length < c.batchSize) {
      const r = c.iterator.next();
      if (r.done) {
        done = true;
        break;
      }
      rows.push(r.value);
    }
  } catch (error) {
    s.cursors.delete(cursor);
    closeCursor(c);
    throw error;
  }
  if (done) s.cursors.delete(cursor);
  const blobs = convertRows(rows, c.array);
  if (!pass(req)) return CANCELED;
  return { rows, blobs, done, cursor };
}

function streamClose(req, s) {
  const c = s.cursors.get(req.cursor);
  if (c) {
    s.cursors.delete(req.cursor);
    closeCursor(c);
  }
  return {};
}

function handle(req) {
  if (req.op === 'open') return open(req);
  if (req.op === 'close') return close(req);
  const s = sessions.get(req.session);
  if (!s) throw lost('this SQLite connection is closed');
  switch (req.op) {
    case 'execute':
      return execute(req, s);
    case 'streamOpen':
      return streamOpen(req, s);
    case 'streamNext':
      return batch(req, s, req.cursor);
    case 'streamClose':
      return streamClose(req, s);
    case 'ping':
      closeCursors(s);
      prepare(s, 'SELECT 1').get();
      return {};
    default:
      throw new Error('unknown request ' + req.op);
  }
}

function inTransaction(session) {
  const s = sessions.get(session);
  return s ? s.handle.db.inTransaction : false;
}

function isBusy(error) {
  // Not SQLITE_BUSY_SNAPSHOT: that transaction read a snapshot another writer has since
  // replaced, and waiting cannot help; it must start over.
  return error && (error.code === 'SQLITE_BUSY' || error.code === 'SQLITE_BUSY_RECOVERY');
}

function attempt(req, deadline, tries) {
  if (req.slot >= 0 && Atomics.compareExchange(phases, req.slot, PHASE.QUEUED, PHASE.RUNNING) !== PHASE.QUEUED) {
    parentPort.postMessage({ id: req.id, skipped: true });
    return;
  }
  let reply;
  try {
    const result = handle(req);
    if (result === CANCELED) {
      parentPort.postMessage({ id: req.id, skipped: true });
      return;
    }
    pass(req);
    reply = Object.assign({ id: req.id, ok: true, inTransaction: inTransaction(req.session) }, result);
  } catch (error) {
    if (isBusy(error) && !req.passed && Date.now() < deadline) {
      // Back in the queue (RUNNING → QUEUED): cancelable again while it waits.
      if (req.slot < 0 || Atomics.compareExchange(phases, req.slot, PHASE.RUNNING, PHASE.QUEUED) === PHASE.RUNNING) {
        setTimeout(attempt, BUSY_DELAYS[Math.min(tries, BUSY_DELAYS.length - 1)], req, deadline, tries + 1);
      } else {
        parentPort.postMessage({ id: req.id, skipped: true });
      }
      return;
    }
    pass(req);
    reply = {
      id: req.id,
      ok: false,
      inTransaction: inTransaction(req.session),
      error: {
        message: String((error && error.message) || error),
        code: error && typeof error.code === 'string' ? error.code : undefined,
        name: error && typeof error.name === 'string' ? error.name : undefined,
      },
    };
  }
  parentPort.postMessage(reply);
}

parentPort.on('message', (req) => attempt(req, Date.now() + workerData.busyTimeoutMs, 0));
`;

/** The worker's complete source, for `new Worker(SQLITE_WORKER_SOURCE, { eval: true, workerData })`. */
export const SQLITE_WORKER_SOURCE =
  `'use strict';\nconst PHASE = ${JSON.stringify(PHASE)};\nconst CACHE_SIZE = ${STATEMENT_CACHE_SIZE};\n` + WORKER_BODY;
