/**
 * Finds the migrations of one database for one dialect: the files of `migrations.directory`
 * and the entries of `migrations.list`, merged by name and sorted by name with numbers
 * compared as numbers (`2_x` before `10_x`). A file meant for another dialect is left out; a
 * dialect's own file wins over the plain one of the same name.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigurationError, type Dialect } from '../core/errors.js';
import type { Database } from '../database/database.js';
import type { Migration, MigrationStep } from '../config/migration.options.js';

/** One migration, resolved for this dialect. */
export interface MigrationSource {
  name: string;
  /** SHA-256 (hex) of the `up` SQL; null when `up` is code. */
  checksum: string | null;
  transaction: boolean;
  up: MigrationStep;
  down?: MigrationStep;
  /** Where it came from, for messages: a file path, or `migrations.list`. */
  origin: string;
}

const FILE = /^(\d[^.]*)(?:\.(?!down\.)([A-Za-z0-9]+))?(?:\.(down))?\.(sql|js|mjs|cjs|ts|mts|cts)$/;
/** In a SQL file: run it outside a transaction (PostgreSQL). */
const NO_TRANSACTION = /^\s*--\s*nestjs-dbpool:\s*no-transaction\s*$/m;

export function checksumOf(text: string): string {
  return createHash('sha256').update(text.replace(/\r\n/g, '\n')).digest('hex');
}

export function compareNames(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

interface FileEntry {
  path: string;
  kind: 'sql' | 'code';
  specific: boolean;
}

/** Reads the folder, keeping for each name and direction the file for this dialect. */
function scanDirectory(directory: string, dialect: Dialect, dialects: readonly string[]): Map<string, { up?: FileEntry; down?: FileEntry }> {
  const folder = resolve(directory);
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch (error) {
    const why = statSync(folder, { throwIfNoEntry: false })?.isDirectory() === false ? 'not a directory' : (error as Error).message;
    throw new ConfigurationError(`migrations.directory "${directory}" cannot be read (${why}): give the folder of the migration files`, {
      option: 'migrations.directory',
      cause: error,
    });
  }
  const found = new Map<string, { up?: FileEntry; down?: FileEntry }>();
  for (const file of names.sort()) {
    if (file.endsWith('.d.ts') || file.endsWith('.d.mts') || file.endsWith('.d.cts')) continue;
    const match = FILE.exec(file);
    if (!match) continue;
    const [, name, variant, down, extension] = match as unknown as [string, string, string | undefined, string | undefined, string];
    if (variant !== undefined && !dialects.includes(variant)) {
      throw new ConfigurationError(
        `migration file "${file}": "${variant}" is not a dialect; name a dialect's own file <name>.<dialect>.sql, the dialect one of ${dialects.join(', ')} (mysql for MariaDB too)`,
        { option: 'migrations.directory' },
      );
    }
    if (variant !== undefined && variant !== dialect) continue;
    const entry: FileEntry = { path: join(folder, file), kind: extension === 'sql' ? 'sql' : 'code', specific: variant !== undefined };
    const slot = found.get(name) ?? {};
    const direction = down ? 'down' : 'up';
    const existing = slot[direction];
    if (existing && existing.specific === entry.specific) {
      throw new ConfigurationError(
        `migration "${name}" has two ${direction} files for ${dialect}: ${existing.path} and ${entry.path}; keep one ` +
          '(a compiled .js beside its .ts: point migrations.directory at one of the two folders)',
        { option: 'migrations.directory' },
      );
    }
    if (!existing || entry.specific) slot[direction] = entry;
    found.set(name, slot);
  }
  return found;
}

/** Loads a code migration's module: `up(db)`, optionally `down(db)` and `transaction`. */
async function loadModule(path: string, role: 'up' | 'down'): Promise<{ up?: MigrationStep; down?: MigrationStep; transaction?: boolean }> {
  let loaded: Record<string, unknown>;
  try {
    // A plain absolute path: `import()` in the ES module build, `require()` in the CommonJS one.
    loaded = (await import(path)) as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: string }).code;
    const hint =
      code === 'ERR_UNKNOWN_FILE_EXTENSION' || /\.(ts|mts|cts)$/.test(path)
        ? ': a TypeScript migration needs a TypeScript loader (node --import tsx …), or point migrations.directory at the compiled .js files'
        : '';
    throw new ConfigurationError(`migration file ${path} failed to load (${(error as Error).message})${hint}`, {
      option: 'migrations.directory',
      cause: error,
    });
  }
  const exports = (loaded.up === undefined && loaded.default && typeof loaded.default === 'object' ? loaded.default : loaded) as Record<string, unknown>;
  const main = role === 'up' ? exports.up : (exports.down ?? exports.up);
  if (typeof main !== 'function') {
    throw new ConfigurationError(
      role === 'up'
        ? `migration file ${path} must export a function up(db) (and may export down(db))`
        : `migration file ${path} must export a function down(db)`,
      { option: 'migrations.directory' },
    );
  }
  if (exports.down !== undefined && typeof exports.down !== 'function') {
    throw new ConfigurationError(`migration file ${path}: down must be a function down(db)`, { option: 'migrations.directory' });
  }
  if (role === 'down') return { down: main as (db: Database) => unknown };
  return {
    up: main as (db: Database) => unknown,
    down: exports.down as ((db: Database) => unknown) | undefined,
    transaction: exports.transaction === false ? false : undefined,
  };
}

function checkListEntry(entry: unknown, index: number): Migration {
  const m = entry as Migration;
  const where = `migrations.list[${index}]`;
  if (!m || typeof m !== 'object' || typeof m.name !== 'string' || m.name.trim() === '') {
    throw new ConfigurationError(`${where} must be { name, up, down? } with a non-empty name`, { option: 'migrations.list' });
  }
  if (m.name.length > 255) throw new ConfigurationError(`${where}: the name is longer than 255 characters`, { option: 'migrations.list' });
  for (const key of ['up', 'down'] as const) {
    const step = m[key];
    if (step === undefined && key === 'down') continue;
    if (typeof step !== 'string' && typeof step !== 'function') {
      throw new ConfigurationError(`${where} "${m.name}": ${key} must be SQL text or a function (db) => Promise`, { option: 'migrations.list' });
    }
  }
  if (m.transaction !== undefined && typeof m.transaction !== 'boolean') {
    throw new ConfigurationError(`${where} "${m.name}": transaction must be true or false`, { option: 'migrations.list' });
  }
  return m;
}

/** The migrations of `directory` and `list` for `dialect`, in the order they apply. */
export async function loadMigrations(
  dialect: Dialect,
  dialects: readonly string[],
  directory: string | undefined,
  list: readonly Migration[] | undefined,
): Promise<MigrationSource[]> {
  const out = new Map<string, MigrationSource>();
  if (directory !== undefined) {
    for (const [name, files] of scanDirectory(directory, dialect, dialects)) {
      if (!files.up) {
        if (files.down) {
          throw new ConfigurationError(`migration "${name}" has a down file (${files.down.path}) but no up file for ${dialect}`, {
            option: 'migrations.directory',
          });
        }
        continue;
      }
      let up: MigrationStep;
      let transaction = true;
      let checksum: string | null = null;
      let down: MigrationStep | undefined;
      if (files.up.kind === 'sql') {
        up = readFileSync(files.up.path, 'utf8');
        checksum = checksumOf(up);
        if (NO_TRANSACTION.test(up)) transaction = false;
      } else {
        const module = await loadModule(files.up.path, 'up');
        up = module.up!;
        down = module.down;
        if (module.transaction === false) transaction = false;
      }
      if (files.down?.kind === 'sql') down = readFileSync(files.down.path, 'utf8');
      else if (files.down) {
        down = (await loadModule(files.down.path, 'down')).down; // a .down.js file: its down(db), or its up(db)
      }
      out.set(name, { name, checksum, transaction, up, down, origin: files.up.path });
    }
  }
  (list ?? []).forEach((entry, index) => {
    const m = checkListEntry(entry, index);
    if (out.has(m.name)) {
      throw new ConfigurationError(`migration "${m.name}" is both in migrations.list and a file (${out.get(m.name)!.origin}); keep one`, {
        option: 'migrations.list',
      });
    }
    out.set(m.name, {
      name: m.name,
      checksum: typeof m.up === 'string' ? checksumOf(m.up) : null,
      transaction: m.transaction ?? true,
      up: m.up,
      down: m.down,
      origin: `migrations.list[${index}]`,
    });
  });
  return [...out.values()].sort((a, b) => compareNames(a.name, b.name));
}
