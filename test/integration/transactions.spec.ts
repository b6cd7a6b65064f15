import 'reflect-metadata';
import { jest } from '@jest/globals';
import { Inject, Injectable, SetMetadata, type INestApplicationContext } from '@nestjs/common';
import {
  Database,
  DatabaseError,
  DatabaseModule,
  getDatabaseToken,
  InjectDatabase,
  sql,
  Transaction,
  Transactional,
  TransactionError,
  ConfigurationError,
} from '../../lib/index.js';
import { bootContext } from '../support/app.js';
import { barrier, sleep } from '../support/barrier.js';
import { allCases, describeEachDialect, uniqueTable, type DialectCase } from '../support/databases.js';

/** The table the services below write to; set by each dialect's beforeAll (the suites run one after another). */
const target = { table: '' };

const insertTag = (db: Database, tag: string) => db.runOperation(sql`INSERT INTO ${sql.identifier(target.table)} (tag) VALUES (${tag})`);

@Injectable()
class LedgerService {
  constructor(@InjectDatabase() private readonly db: Database) {}

  @Transactional()
  async record(tag: string, fail?: Error): Promise<Transaction | undefined> {
    await insertTag(this.db, tag);
    if (fail) throw fail;
    return this.db.currentTransaction();
  }
}

@Injectable()
class AccountsService {
  constructor(
    @InjectDatabase() private readonly db: Database,
    @InjectDatabase('other') private readonly other: Database,
    @Inject(LedgerService) private readonly ledger: LedgerService,
  ) {}

  /** Writes through both services; `failIn` says which one throws afterwards. */
  @Transactional()
  async transfer(tag: string, failIn?: 'accounts' | 'ledger'): Promise<Array<Transaction | undefined>> {
    await insertTag(this.db, `${tag}:accounts`);
    const outer = this.db.currentTransaction();
    const inner = await this.ledger.record(`${tag}:ledger`, failIn === 'ledger' ? new Error('ledger refused') : undefined);
    if (failIn === 'accounts') throw new Error('accounts refused');
    return [outer, inner];
  }

  /** Not decorated: without a caller's transaction, each write commits on its own. */
  async transferWithoutTransaction(tag: string): Promise<void> {
    await insertTag(this.db, `${tag}:accounts`);
    await this.ledger.record(`${tag}:ledger`);
    throw new Error('too late to undo');
  }

  @Transactional({ connection: 'other' })
  async onOther(): Promise<[Transaction | undefined, Transaction | undefined]> {
    return [this.db.currentTransaction(), this.other.currentTransaction()];
  }
}

/** One decorated method per propagation: each runs the callback it is given under that rule. */
@Injectable()
class Scopes {
  @Transactional({ propagation: 'required' })
  required<R>(fn: () => Promise<R>): Promise<R> {
    return fn();
  }
  @Transactional({ propagation: 'requiresNew' })
  requiresNew<R>(fn: () => Promise<R>): Promise<R> {
    return fn();
  }
  @Transactional({ propagation: 'nested' })
  nested<R>(fn: () => Promise<R>): Promise<R> {
    return fn();
  }
  @Transactional({ propagation: 'mandatory' })
  mandatory<R>(fn: () => Promise<R>): Promise<R> {
    return fn();
  }
  @Transactional({ propagation: 'never' })
  never<R>(fn: () => Promise<R>): Promise<R> {
    return fn();
  }
  @Transactional({ propagation: 'supports' })
  supports<R>(fn: () => Promise<R>): Promise<R> {
    return fn();
  }
  @Transactional({ propagation: 'notSupported' })
  notSupported<R>(fn: () => Promise<R>): Promise<R> {
    return fn();
  }
}

class BusinessRuleViolation extends Error {}

@Injectable()
class RuleScopes {
  @Transactional({ noRollbackFor: [BusinessRuleViolation] })
  commitDespiteRule(fn: () => Promise<unknown>): Promise<unknown> {
    return fn();
  }
  @Transactional({ noRollbackFor: (e) => (e as Error)?.message === 'harmless' })
  commitDespitePredicate(fn: () => Promise<unknown>): Promise<unknown> {
    return fn();
  }
  @Transactional({ rollbackFor: [BusinessRuleViolation] })
  rollbackOnlyForRule(fn: () => Promise<unknown>): Promise<unknown> {
    return fn();
  }
}

describeEachDialect(allCases, '@Transactional() and runInteraction', (c: DialectCase) => {
  let app: INestApplicationContext;
  let db: Database;
  let other: Database;
  let accounts: AccountsService;
  let scopes: Scopes;
  let rules: RuleScopes;
  const table = uniqueTable('tx');
  const server = c.dialect !== 'sqlite';
  const itOnServers = server ? it : it.skip;

  /** Rows with this tag seen from another connection (a second Database on the same URL). */
  const visible = async (tag: string): Promise<number> => {
    const [row] = await other.runQuery<{ n: number | string }>(sql`SELECT count(*) AS n FROM ${sql.identifier(table)} WHERE tag = ${tag}`);
    return Number(row.n);
  };
  const insert = (tag: string) => insertTag(db, tag);
  /** The server session this call runs on (PostgreSQL backend pid, MySQL connection id). */
  const sessionId = async (): Promise<number> => {
    const text = c.dialect === 'postgres' ? 'SELECT pg_backend_pid() AS id' : 'SELECT CONNECTION_ID() AS id';
    const [row] = await db.runQuery<{ id: number | string }>(text);
    return Number(row.id);
  };

  beforeAll(async () => {
    const url = c.url();
    app = await bootContext(
      [DatabaseModule.forRoot({ url, pool: { max: 6 } }), DatabaseModule.forRoot({ url, name: 'other', pool: { max: 4 } })],
      [LedgerService, AccountsService, Scopes, RuleScopes],
    );
    db = app.get<Database>(getDatabaseToken());
    other = app.get<Database>(getDatabaseToken('other'));
    accounts = app.get(AccountsService);
    scopes = app.get(Scopes);
    rules = app.get(RuleScopes);
    target.table = table;
    await db.runOperation(`CREATE TABLE ${table} (id ${c.serial}, tag VARCHAR(64) NOT NULL)`);
  });

  afterAll(async () => {
    await db.runOperation(`DROP TABLE ${table}`).catch(() => {});
    await app.close();
  });

  afterEach(() => {
    expect(db.stats().busy).toBe(0);
  });

  describe('two services', () => {
    it('commits the writes of both services in one transaction on one connection', async () => {
      const [outer, inner] = await accounts.transfer('both-ok');
      expect(outer).toBeInstanceOf(Transaction);
      expect(inner).toBe(outer);
      expect(outer!.state).toBe('committed');
      expect(await visible('both-ok:accounts')).toBe(1);
      expect(await visible('both-ok:ledger')).toBe(1);
    });

    it('rolls back both services when the first throws after the second wrote', async () => {
      await expect(accounts.transfer('first-fails', 'accounts')).rejects.toThrow('accounts refused');
      expect(await visible('first-fails:accounts')).toBe(0);
      expect(await visible('first-fails:ledger')).toBe(0);
    });

    it('rolls back both services when the second throws', async () => {
      await expect(accounts.transfer('second-fails', 'ledger')).rejects.toThrow('ledger refused');
      expect(await visible('second-fails:accounts')).toBe(0);
      expect(await visible('second-fails:ledger')).toBe(0);
    });

    it('commits each write on its own when the caller is not transactional (the contrast)', async () => {
      await expect(accounts.transferWithoutTransaction('no-tx')).rejects.toThrow('too late to undo');
      expect(await visible('no-tx:accounts')).toBe(1);
      expect(await visible('no-tx:ledger')).toBe(1);
    });

    it('picks the named database with { connection }', async () => {
      const [onDefault, onOther] = await accounts.onOther();
      expect(onDefault).toBeUndefined();
      expect(onOther).toBeInstanceOf(Transaction);
      expect(onOther!.state).toBe('committed');
    });
  });

  describe('propagation', () => {
    it('required joins the current transaction: same connection, nothing visible before the outer commit', async () => {
      await scopes.required(async () => {
        const outer = db.currentTransaction();
        const outerSession = server ? await sessionId() : 0;
        await insert('req-outer');
        await scopes.required(async () => {
          expect(db.currentTransaction()).toBe(outer);
          if (server) expect(await sessionId()).toBe(outerSession);
          await insert('req-inner');
        });
        expect(await visible('req-inner')).toBe(0);
      });
      expect(await visible('req-outer')).toBe(1);
      expect(await visible('req-inner')).toBe(1);
    });

    it('required begins a transaction when there is none', async () => {
      await scopes.required(async () => {
        expect(db.currentTransaction()?.isActive).toBe(true);
        await insert('req-alone');
        expect(await visible('req-alone')).toBe(0);
      });
      expect(await visible('req-alone')).toBe(1);
    });

    it('a failure in a joined call marks the whole transaction rollback-only, even when the caller catches it', async () => {
      const boom = new Error('inner failed');
      const error = await scopes
        .required(async () => {
          await insert('ro-outer');
          await scopes.required(async () => Promise.reject(boom)).catch(() => {});
        })
        .catch((e) => e);
      expect(error).toBeInstanceOf(TransactionError);
      expect(error.code).toBe('TRANSACTION_ROLLBACK_ONLY');
      expect(error.cause).toBe(boom);
      expect(await visible('ro-outer')).toBe(0);
    });

    itOnServers('requiresNew suspends the outer transaction and commits on its own connection', async () => {
      const boom = new Error('outer fails after the inner committed');
      await expect(
        scopes.required(async () => {
          const outer = db.currentTransaction();
          const outerSession = await sessionId();
          await insert('rn-outer');
          await scopes.requiresNew(async () => {
            expect(db.currentTransaction()).not.toBe(outer);
            expect(db.currentTransaction()?.isActive).toBe(true);
            expect(await sessionId()).not.toBe(outerSession);
            await insert('rn-inner');
            expect(await visible('rn-inner')).toBe(0);
          });
          // Committed while the outer one is still open.
          expect(await visible('rn-inner')).toBe(1);
          expect(await visible('rn-outer')).toBe(0);
          expect(db.currentTransaction()).toBe(outer);
          expect(await sessionId()).toBe(outerSession);
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await visible('rn-inner')).toBe(1);
      expect(await visible('rn-outer')).toBe(0);
    });

    itOnServers('requiresNew that fails rolls back alone: the outer transaction still commits', async () => {
      await scopes.required(async () => {
        await insert('rn2-outer');
        await expect(
          scopes.requiresNew(async () => {
            await insert('rn2-inner');
            throw new Error('inner only');
          }),
        ).rejects.toThrow('inner only');
      });
      expect(await visible('rn2-outer')).toBe(1);
      expect(await visible('rn2-inner')).toBe(0);
    });

    it('nested runs in a savepoint: its rollback keeps the outer work', async () => {
      await scopes.required(async () => {
        const outer = db.currentTransaction();
        await insert('nest-outer');
        await expect(
          scopes.nested(async () => {
            expect(db.currentTransaction()).toBe(outer);
            await insert('nest-failed');
            throw new Error('nested failed');
          }),
        ).rejects.toThrow('nested failed');
        await scopes.nested(() => insert('nest-ok'));
        expect(await visible('nest-ok')).toBe(0);
        expect(await db.runQuery(sql`SELECT tag FROM ${sql.identifier(table)} WHERE tag LIKE ${'nest-%'} ORDER BY tag`)).toEqual([
          { tag: 'nest-ok' },
          { tag: 'nest-outer' },
        ]);
      });
      expect(await visible('nest-outer')).toBe(1);
      expect(await visible('nest-failed')).toBe(0);
      expect(await visible('nest-ok')).toBe(1);
    });

    it('nested keeps the outer transaction usable after a statement inside it failed on the server', async () => {
      await scopes.required(async () => {
        await insert('nest-sql-outer');
        await expect(scopes.nested(() => db.runQuery('SELEC broken'))).rejects.toBeInstanceOf(DatabaseError);
        await insert('nest-sql-after');
      });
      expect(await visible('nest-sql-outer')).toBe(1);
      expect(await visible('nest-sql-after')).toBe(1);
    });

    it('nested: a joined call that fails inside the savepoint does not doom the outer transaction', async () => {
      await scopes.required(async () => {
        await insert('nest-ro-outer');
        await expect(
          scopes.nested(() =>
            scopes.required(async () => {
              await insert('nest-ro-inner');
              throw new Error('joined inside the savepoint');
            }),
          ),
        ).rejects.toThrow('joined inside the savepoint');
      });
      expect(await visible('nest-ro-outer')).toBe(1);
      expect(await visible('nest-ro-inner')).toBe(0);
    });

    it('nested begins a transaction when there is none', async () => {
      await scopes.nested(async () => {
        expect(db.currentTransaction()?.isActive).toBe(true);
        await insert('nest-alone');
        expect(await visible('nest-alone')).toBe(0);
      });
      expect(await visible('nest-alone')).toBe(1);
    });

    it('mandatory throws without a transaction, and joins one', async () => {
      const fn = jest.fn(async () => undefined);
      const error = await scopes.mandatory(fn).catch((e) => e);
      expect(error).toBeInstanceOf(TransactionError);
      expect(error.code).toBe('TRANSACTION_REQUIRED');
      expect(error.message).toMatch(/mandatory/);
      expect(fn).not.toHaveBeenCalled();
      await scopes.required(async () => {
        const outer = db.currentTransaction();
        await scopes.mandatory(async () => {
          expect(db.currentTransaction()).toBe(outer);
          await insert('mand-inner');
        });
        expect(await visible('mand-inner')).toBe(0);
      });
      expect(await visible('mand-inner')).toBe(1);
    });

    it('never throws inside a transaction, and runs without one (each statement commits at once)', async () => {
      const fn = jest.fn(async () => undefined);
      await scopes.required(async () => {
        const error = await scopes.never(fn).catch((e) => e);
        expect(error).toBeInstanceOf(TransactionError);
        expect(error.code).toBe('TRANSACTION_FORBIDDEN');
      });
      expect(fn).not.toHaveBeenCalled();
      await scopes.never(async () => {
        expect(db.currentTransaction()).toBeUndefined();
        await insert('never-alone');
        expect(await visible('never-alone')).toBe(1);
      });
    });

    it('supports joins a transaction when there is one, and runs without one otherwise', async () => {
      await scopes.supports(async () => {
        expect(db.currentTransaction()).toBeUndefined();
        await insert('sup-alone');
        expect(await visible('sup-alone')).toBe(1);
      });
      await scopes.required(async () => {
        const outer = db.currentTransaction();
        await scopes.supports(async () => {
          expect(db.currentTransaction()).toBe(outer);
          await insert('sup-joined');
        });
        expect(await visible('sup-joined')).toBe(0);
      });
      expect(await visible('sup-joined')).toBe(1);
    });

    itOnServers('notSupported runs outside the current transaction, on another pool connection, committing at once', async () => {
      await expect(
        scopes.required(async () => {
          const outer = db.currentTransaction();
          const outerSession = await sessionId();
          await insert('ns-outer');
          await scopes.notSupported(async () => {
            expect(db.currentTransaction()).toBeUndefined();
            expect(await sessionId()).not.toBe(outerSession);
            await insert('ns-inner');
            expect(await visible('ns-inner')).toBe(1);
          });
          expect(db.currentTransaction()).toBe(outer);
          throw new Error('outer rolls back');
        }),
      ).rejects.toThrow('outer rolls back');
      expect(await visible('ns-inner')).toBe(1);
      expect(await visible('ns-outer')).toBe(0);
    });

    (c.dialect === 'sqlite' ? it : it.skip)(
      'requiresNew and notSupported commit on another connection while a read-only outer transaction stays open (SQLite: one writer)',
      async () => {
        const seenInside = async (tag: string) =>
          Number((await db.runQuery<{ n: number }>(sql`SELECT count(*) AS n FROM ${sql.identifier(table)} WHERE tag = ${tag}`))[0].n);
        await db.runInteraction(
          async () => {
            const outer = db.currentTransaction()!;
            expect(await seenInside('lite-rn')).toBe(0);
            await scopes.requiresNew(async () => {
              expect(db.currentTransaction()).not.toBe(outer);
              expect(db.currentTransaction()!.connection.serverId).not.toBe(outer.connection.serverId);
              await insert('lite-rn');
            });
            await scopes.notSupported(async () => {
              expect(db.currentTransaction()).toBeUndefined();
              await insert('lite-ns');
            });
            expect(await visible('lite-rn')).toBe(1);
            expect(await visible('lite-ns')).toBe(1);
            // Still in the outer transaction, whose snapshot predates both commits.
            expect(db.currentTransaction()).toBe(outer);
            expect(await seenInside('lite-rn')).toBe(0);
          },
          { readOnly: true },
        );
      },
    );

    it('rejects an unknown propagation with a ConfigurationError naming the accepted ones', async () => {
      const error = await db.runInteraction(async () => undefined, { propagation: 'sometimes' as never }).catch((e) => e);
      expect(error).toBeInstanceOf(DatabaseError);
      expect(error.code).toBe('CONFIGURATION_ERROR');
      expect(error.message).toMatch(/requiresNew/);
    });
  });

  describe('savepoint(fn)', () => {
    it('rolls back only the failed savepoint, nested ones included, and commits the rest', async () => {
      await db.runInteraction(async (tx) => {
        await tx.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${'sp-outer'})`);
        const boom = new Error('savepoint body failed');
        await expect(
          tx.savepoint(async () => {
            await insert('sp-failed');
            throw boom;
          }),
        ).rejects.toBe(boom);
        const value = await tx.savepoint(async (inner) => {
          expect(inner).toBe(tx);
          await inner.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${'sp-ok'})`);
          return 7;
        });
        expect(value).toBe(7);
        await tx.savepoint(async () => {
          await insert('sp-level1');
          await tx
            .savepoint(async () => {
              await insert('sp-level2');
              throw new Error('level 2');
            })
            .catch(() => {});
        });
        await expect(tx.savepoint(() => tx.runQuery('SELEC broken'))).rejects.toBeInstanceOf(DatabaseError);
        await insert('sp-after-error');
      });
      expect(await visible('sp-outer')).toBe(1);
      expect(await visible('sp-failed')).toBe(0);
      expect(await visible('sp-ok')).toBe(1);
      expect(await visible('sp-level1')).toBe(1);
      expect(await visible('sp-level2')).toBe(0);
      expect(await visible('sp-after-error')).toBe(1);
    });
  });

  describe('afterCommit / afterRollback', () => {
    it('runs afterCommit once, after the commit (the row is visible elsewhere), and never afterRollback', async () => {
      const events: string[] = [];
      await db.runInteraction(async (tx) => {
        await insert('hook-commit');
        tx.afterCommit(async () => {
          events.push(`afterCommit sees ${await visible('hook-commit')} row`);
          // A hook runs outside the finished transaction: its queries go to the pool.
          expect(db.currentTransaction()).toBeUndefined();
          expect(await db.runQuery('SELECT 1 AS one')).toHaveLength(1);
        });
        tx.afterRollback(() => events.push('afterRollback'));
        events.push('interaction done');
      });
      expect(events).toEqual(['interaction done', 'afterCommit sees 1 row']);
    });

    it('runs afterRollback once, after the rollback, and never afterCommit', async () => {
      const events: string[] = [];
      const boom = new Error('boom');
      await expect(
        db.runInteraction(async (tx) => {
          await insert('hook-rollback');
          tx.afterCommit(() => events.push('afterCommit'));
          tx.afterRollback(async () => events.push(`afterRollback sees ${await visible('hook-rollback')} row`));
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(events).toEqual(['afterRollback sees 0 row']);
    });

    it('runs hooks registered in a joined call only when the outer transaction ends', async () => {
      const events: string[] = [];
      await scopes.required(async () => {
        await scopes.required(async () => {
          db.currentTransaction()!.afterCommit(() => events.push('inner afterCommit'));
        });
        events.push('outer body done');
      });
      expect(events).toEqual(['outer body done', 'inner afterCommit']);
    });

    it('logs a hook that throws, runs the others, and keeps the outcome', async () => {
      const logged = jest.spyOn(db.logger, 'error').mockImplementation(() => {});
      try {
        const ran: string[] = [];
        const result = await db.runInteraction(async (tx) => {
          await insert('hook-throws');
          tx.afterCommit(() => {
            throw new Error('hook exploded');
          });
          tx.afterCommit(() => ran.push('second hook'));
          return 'committed';
        });
        expect(result).toBe('committed');
        expect(ran).toEqual(['second hook']);
        expect(await visible('hook-throws')).toBe(1);
        expect(logged).toHaveBeenCalledWith(expect.stringMatching(/afterCommit hook threw: hook exploded/), expect.any(String));

        const boom = new Error('original');
        await expect(
          db.runInteraction(async (tx) => {
            tx.afterRollback(async () => Promise.reject(new Error('rollback hook exploded')));
            throw boom;
          }),
        ).rejects.toBe(boom);
        expect(logged).toHaveBeenCalledWith(expect.stringMatching(/afterRollback hook threw: rollback hook exploded/), expect.any(String));
      } finally {
        logged.mockRestore();
      }
    });
  });

  describe('leak guard', () => {
    it('rejects a query on a transaction that already committed, instead of running it elsewhere', async () => {
      let escaped!: Transaction;
      await db.runInteraction(async (tx) => {
        escaped = tx;
      });
      const error = await escaped.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${'leak-escaped'})`).catch((e) => e);
      expect(error).toBeInstanceOf(TransactionError);
      expect(error.code).toBe('TRANSACTION_ENDED');
      expect(error.message).toMatch(/already committed/);
      expect(await visible('leak-escaped')).toBe(0);
    });

    it('rejects a query made later from a callback scheduled inside the transaction (no silent autocommit on the pool)', async () => {
      let late!: Promise<unknown>;
      // The callback is scheduled inside the transaction (it keeps its context) and runs once the rollback is done.
      let rolledBack!: () => void;
      const afterRollback = new Promise<void>((resolve) => (rolledBack = resolve));
      await expect(
        db.runInteraction(async () => {
          late = afterRollback.then(() => insert('leak-late'));
          late.catch(() => {});
          throw new Error('rolled back');
        }),
      ).rejects.toThrow('rolled back');
      rolledBack();
      const error = (await late.catch((e) => e)) as TransactionError;
      expect(error).toBeInstanceOf(TransactionError);
      expect(error.code).toBe('TRANSACTION_ENDED');
      expect(error.message).toMatch(/already rolled back/);
      expect(await visible('leak-late')).toBe(0);
    });

    it('fails the commit when a query was left running (not awaited), and rolls everything back', async () => {
      const error = await db
        .runInteraction(async (tx) => {
          await insert('orphan-awaited');
          void tx.runOperation(sql`INSERT INTO ${sql.identifier(table)} (tag) VALUES (${'orphan-forgotten'})`);
          return 'done';
        })
        .catch((e) => e);
      expect(error).toBeInstanceOf(TransactionError);
      expect(error.code).toBe('TRANSACTION_ORPHANED_QUERIES');
      expect(error.message).toMatch(/still running when the interaction returned/);
      expect(await visible('orphan-awaited')).toBe(0);
      expect(await visible('orphan-forgotten')).toBe(0);
    });

    it('fails the commit after a Promise.all that rejected early left its other queries running', async () => {
      const error = await db
        .runInteraction(async () => {
          await insert('all-first');
          // One statement fails at once; the INSERT queued behind it is still running when the
          // caught rejection lets the interaction return.
          await Promise.all([db.runQuery('SELEC broken'), insert('all-orphan')]).catch(() => {});
          return 'done';
        })
        .catch((e) => e);
      expect(error).toBeInstanceOf(TransactionError);
      expect(error.code).toBe('TRANSACTION_ORPHANED_QUERIES');
      expect(await visible('all-first')).toBe(0);
      expect(await visible('all-orphan')).toBe(0);
    });
  });

  describe('rollbackFor / noRollbackFor', () => {
    it('commits despite an error listed in noRollbackFor, and still gives the caller that error', async () => {
      const error = new BusinessRuleViolation('limit exceeded');
      await expect(
        rules.commitDespiteRule(async () => {
          await insert('nrf-class');
          throw error;
        }),
      ).rejects.toBe(error);
      expect(await visible('nrf-class')).toBe(1);
    });

    it('commits despite an error matched by a noRollbackFor predicate, and rolls back for others', async () => {
      await expect(
        rules.commitDespitePredicate(async () => {
          await insert('nrf-pred');
          throw new Error('harmless');
        }),
      ).rejects.toThrow('harmless');
      expect(await visible('nrf-pred')).toBe(1);
      await expect(
        rules.commitDespitePredicate(async () => {
          await insert('nrf-pred-other');
          throw new Error('serious');
        }),
      ).rejects.toThrow('serious');
      expect(await visible('nrf-pred-other')).toBe(0);
    });

    it('with rollbackFor, rolls back only for the listed errors', async () => {
      await expect(
        rules.rollbackOnlyForRule(async () => {
          await insert('rf-listed');
          throw new BusinessRuleViolation('listed');
        }),
      ).rejects.toThrow('listed');
      expect(await visible('rf-listed')).toBe(0);
      await expect(
        rules.rollbackOnlyForRule(async () => {
          await insert('rf-unlisted');
          throw new Error('unlisted');
        }),
      ).rejects.toThrow('unlisted');
      expect(await visible('rf-unlisted')).toBe(1);
    });

    it('a joined call whose error is in its noRollbackFor does not doom the outer transaction', async () => {
      await scopes.required(async () => {
        await insert('nrf-joined-outer');
        await rules.commitDespiteRule(async () => Promise.reject(new BusinessRuleViolation('tolerated'))).catch(() => {});
      });
      expect(await visible('nrf-joined-outer')).toBe(1);
    });
  });

  describe('concurrency', () => {
    it('keeps concurrent independent transactions on one pool isolated: each sees only its own writes', async () => {
      const n = c.dialect === 'sqlite' ? 4 : 6;
      // SQLite has one writer at a time (BEGIN IMMEDIATE), so its transactions cannot all meet at a barrier.
      const written = server ? barrier(n) : undefined;
      const read = server ? barrier(n) : undefined;
      const results = await Promise.allSettled(
        Array.from({ length: n }, (_, i) =>
          db.runInteraction(async (tx) => {
            await insert(`conc-${i}-a`);
            await insert(`conc-${i}-b`);
            await written?.wait();
            const seen = await tx.runQuery<{ tag: string }>(sql`SELECT tag FROM ${sql.identifier(table)} WHERE tag LIKE ${'conc-%'} ORDER BY tag`);
            await read?.wait();
            if (i % 2 === 1) throw new Error(`transaction ${i} rolls back`);
            return seen.map((r) => r.tag);
          }),
        ),
      );
      results.forEach((result, i) => {
        if (i % 2 === 1) {
          expect(result.status).toBe('rejected');
          return;
        }
        expect(result.status).toBe('fulfilled');
        const seen = (result as PromiseFulfilledResult<string[]>).value;
        const own = [`conc-${i}-a`, `conc-${i}-b`];
        if (server) {
          expect(seen).toEqual(own);
        } else {
          // One writer at a time (in the order the write lock is taken): besides its own rows, a
          // transaction sees only rows committed before it began, so never those of a rolled-back one.
          expect(seen).toEqual(expect.arrayContaining(own));
          const others = seen.filter((tag) => !own.includes(tag)).map((tag) => Number(tag.split('-')[1]));
          for (const j of others) expect(j % 2).toBe(0);
        }
      });
      const committed = await other.runQuery<{ tag: string }>(sql`SELECT tag FROM ${sql.identifier(table)} WHERE tag LIKE ${'conc-%'} ORDER BY tag`);
      expect(committed.map((r) => r.tag)).toEqual(
        Array.from({ length: n }, (_, i) => i)
          .filter((i) => i % 2 === 0)
          .flatMap((i) => [`conc-${i}-a`, `conc-${i}-b`]),
      );
      expect(db.stats().total).toBeLessThanOrEqual(6);
    });
  });

  describe('isolation, readOnly, deferrable reach the server', () => {
    const levels = ['read uncommitted', 'read committed', 'repeatable read', 'serializable'] as const;

    if (c.dialect === 'postgres') {
      it.each(levels)('isolation %s', async (level) => {
        const [row] = await db.runInteraction((tx) => tx.runQuery<{ transaction_isolation: string }>('SHOW transaction_isolation'), {
          isolation: level,
        });
        expect(row.transaction_isolation).toBe(level);
      });

      it('readOnly and deferrable', async () => {
        const seen = await db.runInteraction(
          async (tx) => ({
            readOnly: (await tx.runQuery<{ transaction_read_only: string }>('SHOW transaction_read_only'))[0].transaction_read_only,
            deferrable: (await tx.runQuery<{ transaction_deferrable: string }>('SHOW transaction_deferrable'))[0].transaction_deferrable,
          }),
          { isolation: 'serializable', readOnly: true, deferrable: true },
        );
        expect(seen).toEqual({ readOnly: 'on', deferrable: 'on' });
        const write = await db.runInteraction(() => insert('ro-write'), { readOnly: true }).catch((e) => e);
        expect(write).toBeInstanceOf(DatabaseError);
        expect(write.sqlState).toBe('25006');
        const plain = await db.runInteraction((tx) => tx.runQuery<{ transaction_read_only: string }>('SHOW transaction_read_only'));
        expect(plain[0].transaction_read_only).toBe('off');
      });
    }

    if (c.dialect === 'mysql') {
      // @@tx_isolation shows the session default, not the level SET TRANSACTION gave the running
      // transaction; InnoDB's own view of the transaction (INNODB_TRX) does. That view is a cache,
      // refreshed by a read only when nobody read it for 100 ms: a row may be older than this
      // transaction (absent, or a previous transaction of the same session). A row taken during
      // this very SELECT shows it as the session's trx_query, with its marker: that one is fresh.
      // Reads are one at a time here and paced past 100 ms (InnoDB's rule); bounded.
      let innodbReads: Promise<unknown> = Promise.resolve();
      let innodbViews = 0;
      const innodbView = (tx: Transaction): Promise<{ level: string; readOnly: number }> => {
        const marker = `innodb_view_${process.pid}_${++innodbViews}`;
        const read = innodbReads.then(async () => {
          for (let attempt = 0; attempt < 50; attempt++) {
            const [row] = await tx.runQuery<{ level: string; readOnly: number; query: string | null }>(
              `SELECT '${marker}' AS marker, trx_isolation_level AS level, trx_is_read_only AS readOnly, trx_query AS query FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()`,
            );
            if (row?.query?.includes(marker)) return { level: row.level, readOnly: row.readOnly };
            await sleep(120); // pacing: the cache refreshes only on a read 100 ms after the previous one
          }
          throw new Error('INNODB_TRX never showed this transaction (the cache was not refreshed within 50 reads)');
        });
        innodbReads = read.catch(() => {});
        return read;
      };

      it.each(levels)('isolation %s', async (level) => {
        const seen = await db.runInteraction(
          async (tx) => {
            await tx.runQuery(`SELECT count(*) FROM ${table}`);
            return innodbView(tx);
          },
          { isolation: level },
        );
        expect(seen.level).toBe(level.toUpperCase());
      });

      it('readOnly, and the level applies to that transaction only', async () => {
        const seen = await db.runInteraction(
          async (tx) => {
            await tx.runQuery(`SELECT count(*) FROM ${table}`);
            return innodbView(tx);
          },
          { readOnly: true, isolation: 'serializable' },
        );
        expect(seen).toEqual({ level: 'SERIALIZABLE', readOnly: 1 });
        const write = await db.runInteraction(() => insert('ro-write'), { readOnly: true }).catch((e) => e);
        expect(write).toBeInstanceOf(DatabaseError);
        expect(write.errno).toBe(1792);
        const next = await Promise.all(
          Array.from({ length: 6 }, () =>
            db.runInteraction(async (tx) => {
              await tx.runQuery(`SELECT count(*) FROM ${table}`);
              return innodbView(tx);
            }),
          ),
        );
        for (const view of next) expect(view).toEqual({ level: 'REPEATABLE READ', readOnly: 0 });
      });
    }

    if (c.dialect === 'sqlite') {
      it('accepts every isolation level (SQLite transactions are serializable) and readOnly', async () => {
        for (const level of levels) {
          expect(await db.runInteraction((tx) => tx.runQuery('SELECT 1 AS one'), { isolation: level, readOnly: true })).toEqual([{ one: 1 }]);
        }
      });
    }
  });
});

describe('@Transactional() as a decorator', () => {
  const ROLES = 'test:roles';

  class Decorated {
    @SetMetadata(ROLES, ['admin'])
    @Transactional()
    @SetMetadata('test:applied-before', true)
    async handle(): Promise<string> {
      return 'handled';
    }
  }

  it('keeps the metadata of decorators applied before and after it, and the method name', () => {
    const method = Decorated.prototype.handle;
    expect(Reflect.getMetadata(ROLES, method)).toEqual(['admin']);
    expect(Reflect.getMetadata('test:applied-before', method)).toBe(true);
    expect(method.name).toBe('handle');
  });

  it('rejects (does not throw) with ConfigurationError on an object Nest did not create', async () => {
    class Orphan {
      @Transactional({ connection: 'nowhere' })
      async run(): Promise<void> {}
    }
    const result = new Orphan().run();
    await expect(result).rejects.toBeInstanceOf(ConfigurationError);
    await expect(result).rejects.toThrow(/Nest did not create/);
  });
});
