// @ts-check
'use strict';
/**
 * One SQLite connection in its own process: the child that `SqliteDriver` starts for each
 * pooled connection. better-sqlite3 is synchronous, so it runs here, off the application's event
 * loop; and because a process, unlike a thread, can be stopped in the middle of a statement, a
 * cancel or timeout stops exactly this connection's statement at once (the parent kills this
 * process): its locks are released by the kernel and its uncommitted writes are discarded, and
 * no other connection or data is touched.
 *
 * Plain JavaScript (checked by TypeScript with `// @ts-check`), so that Node runs it as it is,
 * from `lib/` under the tests and from `dist/` in the package.
 *
 * Protocol over the IPC channel (JSON; one request at a time, in order):
 *   child → parent  { ready }                                  better-sqlite3 is loaded
 *   { id, op: 'open', filename, pragmas, busyTimeoutMs, databaseOptions } → { id, ok }
 *   { id, op: 'execute', text, values, array }                 → { id, ok, rows, affectedRows, insertId?, tagged? }
 *   { id, op: 'streamOpen', text, values, array, batchSize }   → { id, ok, rows, done, tagged? }
 *   { id, op: 'streamNext' } / { id, op: 'streamClose' }       → the same / { id, ok }
 *   { id, op: 'ping' } / { id, op: 'close' }                   → { id, ok } (close then exits)
 * Every reply also says `inTransaction`. A failure is { id, ok: false, error: { message, code, name } }.
 * A write outside a transaction runs inside BEGIN … COMMIT, and before the COMMIT the child asks
 * { id, gate: true } and waits for { id, op: 'grant' }: the parent answers only if the statement
 * was not canceled meanwhile, so a canceled write is never committed.
 * Values JSON cannot carry travel tagged: bigint { $t: 'big' }, blobs { $t: 'bin' } (base64),
 * NaN, ±Infinity and -0 { $t: 'num' }, instants { $t: 'date' } (epoch ms), JSON text to parse
 * { $t: 'json' }; a reply with tagged values says `tagged: true`. Every object in a reply's rows
 * is a tag (JSON columns travel as text), so no value can be mistaken for one.
 *
 * Values are converted by the column's declared type, so that the same value comes back with
 * the same type as on PostgreSQL and MySQL: BOOLEAN → true/false, DATE → 'YYYY-MM-DD',
 * DATETIME/TIMESTAMP → an instant (text read as UTC), JSON → parsed, DECIMAL/NUMERIC → exact
 * text, BIGINT/INT8 and expressions → `types.int64`, other integers → a number (an exact string
 * beyond ±2^53).
 */

/** @typedef {{ $t: 'big' | 'bin' | 'num' | 'date' | 'json', v: string }} Tagged */
/** @typedef {'bool' | 'date' | 'datetime' | 'json' | 'decimal' | 'int64' | 'int' | `decimal:${number}` | null} Kind */
/** @typedef {{ byIndex: Kind[], byName: Record<string, Kind> } | null} Converters */
/** @typedef {{ id: number, op: string, [key: string]: unknown }} Request */

const NOT_WRAPPED = /^(?:BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|VACUUM|ATTACH|DETACH|PRAGMA)$/;
const STATEMENT_CACHE_SIZE = 200;
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** @type {any} */
let Database;
/** @type {any} */
let db;
/** @type {{ begin: any, commit: any, rollback: any } | undefined} */
let control;
/** @type {Map<string, any>} */
const cache = new Map();
/** @type {{ iterator: Iterator<unknown>, array: boolean, batchSize: number, conv: Converters, tagged: boolean } | undefined} */
let cursor;
/** How 64-bit integers come back: 'number' (exact string beyond ±2^53), 'string' or 'bigint'. */
let int64 = 'number';
/** @type {Map<number, () => void>} */
const grants = new Map();
/** @type {Request[]} */
const queue = [];
let busy = false;

/** @param {unknown} message */
function send(message) {
  if (process.send && process.connected) process.send(message);
}

// The parent decides when this connection ends: its going away ends it; a signal to the whole
// process group (Ctrl-C) does not, so the parent's own graceful shutdown stays in control.
process.on('disconnect', () => process.exit(0));
const unlessParentGone = () => {
  if (!process.connected) process.exit(0);
};
process.on('SIGINT', unlessParentGone);
process.on('SIGTERM', unlessParentGone);
process.on('SIGHUP', unlessParentGone);
process.on('uncaughtException', (error) => {
  send({ fatal: String((error && error.message) || error) });
  process.exit(70);
});

/** The first keyword of a statement, past leading blanks and comments. @param {string} text */
function keyword(text) {
  const m = /^(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*([A-Za-z]+)/.exec(text);
  return m ? m[1].toUpperCase() : '';
}

/** @param {bigint} v */
const fromBigInt = (v) => (v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : String(v));

/** @param {unknown} v @returns {boolean} */
const special = (v) => typeof v === 'number' && (!Number.isFinite(v) || Object.is(v, -0));

/** @param {Uint8Array | number} v @returns {Tagged} */
function tag(v) {
  if (v instanceof Uint8Array) return { $t: 'bin', v: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  return { $t: 'num', v: Object.is(v, -0) ? '-0' : String(v) };
}

/** @param {unknown} v */
function untag(v) {
  if (v === null || typeof v !== 'object' || !('$t' in v)) return v;
  const t = /** @type {Tagged} */ (v);
  return t.$t === 'big' ? BigInt(t.v) : t.$t === 'bin' ? Buffer.from(t.v, 'base64') : Number(t.v);
}

/** The kind of a column by its declared type (SQLite keeps the declaration, not a type); null for an expression. @param {string | null} declared @returns {Kind} */
function kindOf(declared) {
  if (!declared) return null;
  const t = declared.toUpperCase();
  if (/^BOOL(EAN)?\b/.test(t)) return 'bool';
  if (/^DATE$/.test(t)) return 'date';
  if (/^(DATETIME|TIMESTAMP)/.test(t)) return 'datetime';
  if (/^JSONB?$/.test(t)) return 'json';
  const decimal = /^(?:DECIMAL|NUMERIC)\s*(?:\(\s*\d+\s*(?:,\s*(\d+)\s*)?\))?/.exec(t);
  if (decimal) return decimal[1] !== undefined ? `decimal:${Number(decimal[1])}` : 'decimal';
  if (/^(BIGINT|INT8|UNSIGNED BIG INT)/.test(t)) return 'int64';
  return 'int';
}

/** @param {any} stmt @returns {Converters} */
function converters(stmt) {
  if (stmt.ndbpConverters !== undefined) return stmt.ndbpConverters;
  /** @type {Array<{ name: string, type: string | null }>} */
  let columns = [];
  try {
    columns = stmt.columns();
  } catch {
    // not a statement that returns rows
  }
  const byIndex = columns.map((c) => kindOf(c.type));
  /** @type {Record<string, Kind>} */
  const byName = {};
  columns.forEach((c, i) => (byName[c.name] = byIndex[i]));
  stmt.ndbpConverters = { byIndex, byName };
  return stmt.ndbpConverters;
}

/** 'YYYY-MM-DD HH:MM:SS[.SSS]' (SQLite's own format, UTC) or ISO 8601 → epoch ms. @param {string} text */
function parseInstant(text) {
  const iso = text.includes('T') ? text : text.replace(' ', 'T');
  return Date.parse(/(?:Z|[+-]\d\d:?\d\d)$/.test(iso) ? iso : iso + 'Z');
}

/** @param {bigint} v @param {boolean} wide */
function integer(v, wide) {
  if (!wide || int64 === 'number') return fromBigInt(v);
  if (int64 === 'string') return String(v);
  return { $t: 'big', v: String(v) };
}

/** @param {unknown} v @param {Kind} kind @returns {unknown} */
function convert(v, kind) {
  if (v === null) return null;
  switch (kind) {
    case 'bool':
      return typeof v === 'bigint' ? v !== 0n : typeof v === 'number' ? v !== 0 : v;
    case 'date':
      if (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}/.test(v)) return v.slice(0, 10);
      break;
    case 'datetime':
      if (typeof v === 'string') {
        const ms = parseInstant(v);
        return Number.isNaN(ms) ? v : { $t: 'date', v: String(ms) };
      }
      break;
    case 'json':
      if (typeof v === 'string') return { $t: 'json', v };
      break;
    case 'decimal':
      if (typeof v === 'bigint' || typeof v === 'number') return String(v);
      break;
    default:
      // DECIMAL(p, s): the text with its s decimals, as PostgreSQL and MySQL give it.
      if (kind?.startsWith('decimal:') && (typeof v === 'bigint' || typeof v === 'number')) return Number(v).toFixed(Number(kind.slice(8)));
  }
  if (typeof v === 'bigint') return integer(v, kind === null || kind === 'int64');
  if (v instanceof Uint8Array || special(v)) return tag(/** @type {Uint8Array | number} */ (v));
  return v;
}

/** In place, by the columns' declared types; tells whether a value was tagged. @param {unknown[]} rows @param {boolean} array @param {Converters} conv */
function convertRows(rows, array, conv) {
  let tagged = false;
  for (const row of rows) {
    const r = /** @type {Record<string | number, unknown>} */ (row);
    const keys = array ? Array.from(/** @type {unknown[]} */ (row).keys()) : Object.keys(r);
    for (const k of keys) {
      const kind = conv ? ((array ? conv.byIndex[/** @type {number} */ (k)] : conv.byName[/** @type {string} */ (k)]) ?? null) : null;
      const v = r[k];
      const out = convert(v, kind);
      if (out !== v) {
        r[k] = out;
        if (out !== null && typeof out === 'object' && !(out instanceof Date)) tagged = true;
      }
    }
  }
  return tagged;
}

/** @param {string} text */
function prepare(text) {
  let stmt = cache.get(text);
  if (stmt) cache.delete(text);
  else {
    stmt = db.prepare(text);
    if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(/** @type {string} */ (cache.keys().next().value));
  }
  cache.set(text, stmt);
  return stmt;
}

function closeCursor() {
  const c = cursor;
  cursor = undefined;
  try {
    c?.iterator.return?.();
  } catch {
    // already finished or failed: nothing to close
  }
}

/** @param {number} id */
const gate = (id) =>
  new Promise((resolve) => {
    grants.set(id, () => resolve(undefined));
    send({ id, gate: true });
  });

/** @param {any} stmt @param {unknown[]} values @param {boolean} array @param {string} text */
function run(stmt, values, array, text) {
  if (stmt.reader) {
    stmt.raw(array);
    const rows = stmt.all(...values);
    const tagged = convertRows(rows, array, converters(stmt));
    // INSERT/UPDATE/DELETE ... RETURNING return one row per row changed.
    const changes = !stmt.readonly && /^(?:INSERT|REPLACE|UPDATE|DELETE|WITH)$/.test(keyword(text));
    return { rows, affectedRows: changes ? rows.length : 0, tagged };
  }
  const info = stmt.run(...values);
  /** @type {{ rows: unknown[], affectedRows: number, insertId?: number | string }} */
  const out = { rows: [], affectedRows: info.changes };
  const kw = keyword(text);
  const inserts = kw === 'INSERT' || kw === 'REPLACE' || (kw === 'WITH' && /\b(?:INSERT|REPLACE)\b/i.test(text));
  // The first row's id, as MySQL reports it: a multi-row INSERT's rowids are consecutive, the last one is known.
  if (inserts && info.changes > 0) out.insertId = fromBigInt(BigInt(info.lastInsertRowid) - BigInt(info.changes) + 1n);
  return out;
}

/** @param {Request} req */
async function execute(req) {
  closeCursor();
  const text = /** @type {string} */ (req.text);
  const values = /** @type {unknown[]} */ (req.values);
  const array = req.array === true;
  let stmt;
  try {
    stmt = prepare(text);
  } catch (error) {
    // Several statements without parameters (a schema script): db.exec(), not wrapped, as written.
    if (values.length === 0 && /more than one statement/.test(String(/** @type {Error} */ (error).message))) {
      const before = db.prepare('SELECT total_changes()').pluck().get();
      db.exec(text);
      return { rows: [], affectedRows: Number(db.prepare('SELECT total_changes()').pluck().get() - before) };
    }
    throw error;
  }
  // A canceled write must not commit: alone, it runs in a transaction whose COMMIT waits for the parent's grant.
  const wrap = !stmt.readonly && !db.inTransaction && !NOT_WRAPPED.test(keyword(text));
  if (wrap) control?.begin.run();
  try {
    const result = run(stmt, values, array, text);
    if (wrap) {
      await gate(req.id); // never granted when canceled: the parent stops this process instead
      control?.commit.run();
    }
    return result;
  } catch (error) {
    if (wrap && db.inTransaction) control?.rollback.run();
    throw error;
  }
}

/** @param {boolean} array @param {number} batchSize */
function batch(array, batchSize) {
  const conv = cursor?.conv ?? null;
  const alreadyTagged = cursor?.tagged === true;
  const c = cursor;
  if (!c) throw Object.assign(new Error('the cursor was closed: another statement ran on this connection during the stream'), { code: 'SQLITE_MISUSE' });
  const rows = [];
  let done = false;
  try {
    while (rows.length < batchSize) {
      const r = c.iterator.next();
      if (r.done) {
        done = true;
        break;
      }
      rows.push(r.value);
    }
  } catch (error) {
    closeCursor();
    throw error;
  }
  if (done) cursor = undefined;
  const tagged = convertRows(rows, array, conv) || alreadyTagged;
  return { rows, done, tagged };
}

/** @param {Request} req */
async function streamOpen(req) {
  closeCursor();
  const text = /** @type {string} */ (req.text);
  const array = req.array === true;
  const batchSize = Math.max(1, Number(req.batchSize) || 100);
  const stmt = prepare(text);
  /** @type {Iterator<unknown>} */
  let iterator;
  /** @type {Converters} */
  let conv = null;
  let tagged = false;
  if (stmt.reader && stmt.readonly) {
    stmt.raw(array);
    conv = converters(stmt);
    iterator = stmt.iterate(.../** @type {unknown[]} */ (req.values));
  } else {
    // A statement that writes (... RETURNING) runs whole, as execute() runs it (rows converted there); they then go in batches.
    const result = await execute(req);
    iterator = result.rows[Symbol.iterator]();
    tagged = 'tagged' in result && result.tagged === true;
  }
  cursor = { iterator, array, batchSize, conv, tagged };
  return batch(array, batchSize);
}

/** @param {Request} req */
function open(req) {
  const options = Object.assign({}, req.databaseOptions, { timeout: req.busyTimeoutMs });
  db = new Database(req.filename, options);
  // Integers come back as bigint and are turned into numbers, or exact strings beyond 2^53.
  db.defaultSafeIntegers(true);
  int64 = /** @type {{ int64?: string } | undefined} */ (req.types)?.int64 ?? 'number';
  for (const pragma of /** @type {string[]} */ (req.pragmas)) db.pragma(pragma);
  control = { begin: db.prepare('BEGIN'), commit: db.prepare('COMMIT'), rollback: db.prepare('ROLLBACK') };
  return {};
}

/** @param {Request} req */
async function handle(req) {
  switch (req.op) {
    case 'open':
      return open(req);
    case 'execute':
      return execute(req);
    case 'streamOpen':
      return streamOpen(req);
    case 'streamNext':
      return batch(cursor?.array ?? false, cursor?.batchSize ?? 100);
    case 'streamClose':
      closeCursor();
      return {};
    case 'ping':
      closeCursor();
      prepare('SELECT 1').get();
      return {};
    default:
      throw new Error('unknown request ' + req.op);
  }
}

async function drain() {
  if (busy) return;
  busy = true;
  for (let req = queue.shift(); req; req = queue.shift()) {
    if (req.op === 'close') {
      closeCursor();
      if (db) db.close();
      if (process.send) process.send({ id: req.id, ok: true, inTransaction: false }, () => process.exit(0));
      else process.exit(0);
      return;
    }
    /** @type {Record<string, unknown>} */
    let reply;
    try {
      if (req.tagged) req.values = /** @type {unknown[]} */ (req.values).map(untag);
      const result = await handle(req);
      reply = Object.assign({ id: req.id, ok: true, inTransaction: db ? db.inTransaction : false }, result);
    } catch (error) {
      const e = /** @type {{ message?: unknown, code?: unknown, name?: unknown }} */ (error);
      reply = {
        id: req.id,
        ok: false,
        inTransaction: db ? db.inTransaction : false,
        error: {
          message: String(e?.message ?? error),
          code: typeof e?.code === 'string' ? e.code : undefined,
          name: typeof e?.name === 'string' ? e.name : undefined,
        },
      };
    }
    send(reply);
  }
  busy = false;
}

process.on('message', (/** @type {Request} */ req) => {
  if (req.op === 'grant') {
    grants.get(req.id)?.();
    grants.delete(req.id);
    return;
  }
  queue.push(req);
  void drain();
});

// Loaded now, so that a spare process is ready to open a database at once.
Database = require(/** @type {string} */ (process.env.NDBP_SQLITE_MODULE));
send({ ready: true });
