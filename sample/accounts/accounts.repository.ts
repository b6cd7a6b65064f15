import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { Database, InjectDatabase, sql } from '../../lib/index.js';

export interface Account {
  id: number;
  owner: string;
  balance: number;
}

const SEED: Account[] = [
  { id: 1, owner: 'glyph', balance: 100 },
  { id: 2, owner: 'exarkun', balance: 50 },
];

/**
 * Plain queries on the injected `Database`: called from a `@Transactional()` method, they run
 * on that transaction's connection without being told.
 */
@Injectable()
export class AccountsRepository implements OnApplicationBootstrap {
  constructor(@InjectDatabase() private readonly db: Database) {}

  /** Creates the table if missing and the two accounts if absent: safe on every start. */
  async onApplicationBootstrap(): Promise<void> {
    await this.db.runOperation(sql`
      CREATE TABLE IF NOT EXISTS accounts (
        id INTEGER NOT NULL PRIMARY KEY,
        owner VARCHAR(64) NOT NULL,
        balance INTEGER NOT NULL
      )`);
    const rows = sql.join(SEED.map((a) => sql`(${a.id}, ${a.owner}, ${a.balance})`));
    await this.db.runOperation(
      this.db.dialect === 'mysql'
        ? sql`INSERT IGNORE INTO accounts (id, owner, balance) VALUES ${rows}`
        : sql`INSERT INTO accounts (id, owner, balance) VALUES ${rows} ON CONFLICT (id) DO NOTHING`,
    );
  }

  findAll(): Promise<Account[]> {
    return this.db.runQuery<Account>(sql`SELECT id, owner, balance FROM accounts ORDER BY id`);
  }

  async find(id: number): Promise<Account | undefined> {
    const [account] = await this.db.runQuery<Account>(sql`SELECT id, owner, balance FROM accounts WHERE id = ${id}`);
    return account;
  }

  /**
   * Locks these rows, in id order, until the transaction ends. SQLite has no row locks and
   * needs none: its first write takes the one write lock of the whole database.
   */
  async lock(ids: number[]): Promise<void> {
    if (this.db.dialect === 'sqlite') return;
    const sorted = [...ids].sort((a, b) => a - b);
    await this.db.runQuery(sql`SELECT id FROM accounts WHERE id IN (${sql.join(sorted)}) ORDER BY id FOR UPDATE`);
  }

  /** Takes `amount` and returns the new balance (below zero when overdrawn), or undefined for no such account. */
  async withdraw(id: number, amount: number): Promise<number | undefined> {
    const { affectedRows } = await this.db.runOperation(sql`UPDATE accounts SET balance = balance - ${amount} WHERE id = ${id}`);
    return affectedRows === 0 ? undefined : (await this.find(id))?.balance;
  }

  /** Adds `amount`; false for no such account. */
  async deposit(id: number, amount: number): Promise<boolean> {
    const { affectedRows } = await this.db.runOperation(sql`UPDATE accounts SET balance = balance + ${amount} WHERE id = ${id}`);
    return affectedRows === 1;
  }
}
