/**
 * The `nestjs-dbpool` command, for deploy pipelines that migrate before the app starts:
 *
 *   DATABASE_URL=postgres://… npx nestjs-dbpool migrate up --dir migrations
 *
 * Commands: `migrate up [--to NAME | --step N]`, `migrate down [--to NAME | --step N]`
 * (`--to 0` reverts all), `migrate pending`, `migrate executed`. The URL comes from `--url` or
 * DATABASE_URL and is never printed. Exit code 0 when done, 1 when a migration or the database
 * failed, 2 for a usage error.
 */
import { Logger } from '@nestjs/common';
import { parseArgs } from 'node:util';
import { Database } from '../database/database.js';
import { DatabaseError } from '../core/errors.js';
import { Migrator } from '../migrations/migrator.js';
import { resolveOptions } from '../config/options.js';

const USAGE = `usage: nestjs-dbpool migrate <up|down|pending|executed> [options]

  --url URL             the database (default: the DATABASE_URL environment variable)
  --dir DIR             the folder of migration files (default: migrations)
  --table NAME          the migrations table (default: nestjs_dbpool_migrations)
  --to NAME             up: up to and including NAME; down: down to and including NAME (0: all)
  --step N              up/down: this many migrations
  --lock-timeout-ms MS  wait this long for another instance's migration lock (default: 600000)
  --quiet               print only errors`;

class UsageError extends Error {}

export async function main(argv: string[], out: (line: string) => void = console.log): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (parsed === 'help') {
    out(USAGE);
    return 0;
  }
  const { command, values } = parsed;
  const url = values.url ?? process.env.DATABASE_URL;
  if (!url) {
    process.stderr.write(`nestjs-dbpool: no database: give --url or set DATABASE_URL\n\n${USAGE}\n`);
    return 2;
  }
  if (values.quiet) Logger.overrideLogger(['error']);
  let db: Database | undefined;
  try {
    db = new Database(resolveOptions({ url, name: 'migrate', pool: { max: 2 } }), new Logger('nestjs-dbpool:migrate'));
    await db.driver.load?.();
    const migrator = new Migrator(db, {
      directory: values.dir ?? 'migrations',
      table: values.table,
      lockTimeoutMs: values['lock-timeout-ms'] === undefined ? undefined : Number(values['lock-timeout-ms']),
    });
    const step = values.step === undefined ? undefined : Number(values.step);
    if (step !== undefined && !(Number.isInteger(step) && step >= 1)) throw new UsageError(`--step must be a whole number >= 1 (got ${values.step})`);
    const range = step !== undefined ? { step } : values.to !== undefined ? { to: values.to } : {};
    switch (command) {
      case 'up': {
        const run = await migrator.up(range);
        for (const name of run.names) out(`applied  ${name}`);
        if (run.names.length === 0) out('nothing to apply');
        break;
      }
      case 'down': {
        const run = await migrator.down(values.to === '0' ? { to: 0 } : range);
        for (const name of run.names) out(`reverted ${name}`);
        if (run.names.length === 0) out('nothing to revert');
        break;
      }
      case 'pending':
        for (const name of await migrator.pending()) out(name);
        break;
      case 'executed':
        for (const m of await migrator.executed())
          out(`${m.name}\t${m.appliedAt instanceof Date ? m.appliedAt.toISOString() : String(m.appliedAt)}\t${m.durationMs} ms`);
        break;
    }
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${error.message}\n\n${USAGE}\n`);
      return 2;
    }
    const e = error as Error;
    process.stderr.write(`nestjs-dbpool migrate ${command}: ${e instanceof DatabaseError ? `${e.name}: ` : ''}${e?.message ?? e}\n`);
    return 1;
  } finally {
    await db?.close().catch(() => {});
  }
}

function parse(argv: string[]): 'help' | { command: 'up' | 'down' | 'pending' | 'executed'; values: Record<string, string | undefined> & { quiet?: boolean } } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      dir: { type: 'string' },
      table: { type: 'string' },
      to: { type: 'string' },
      step: { type: 'string' },
      'lock-timeout-ms': { type: 'string' },
      quiet: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help || positionals.length === 0) return 'help';
  const [group, command, ...rest] = positionals;
  if (group !== 'migrate') throw new UsageError(`unknown command "${group}"`);
  if (!command || !['up', 'down', 'pending', 'executed'].includes(command))
    throw new UsageError(`migrate needs up, down, pending or executed (got ${command ?? 'nothing'})`);
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (values.to !== undefined && values.step !== undefined) throw new UsageError('give --to or --step, not both');
  return { command: command as 'up' | 'down' | 'pending' | 'executed', values: values as Record<string, string | undefined> & { quiet?: boolean } };
}
