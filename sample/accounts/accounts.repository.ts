import { Injectable } from '@nestjs/common';
import { Database, InjectDatabase, sql, UniqueViolation } from '../../lib/index.js';

export interface Account {
  id: number;
  owner: string;
  balance: number;
}

/**
 * Plain queries on the injected `Database`: called from a `@Transactional()` method, they run
 * on that transaction's connection without being told. The table comes from the migrations.
 */
@Injectable()
export class AccountsRepository {
  constructor(@InjectDatabase() private readonly db: Database) {}

  findAll(): Promise<Account[]> {
    return this.db.runQuery<Account>(sql`SELECT id, owner, balance FROM accounts ORDER BY id`);
  }

  async find(id: number): Promise<Account | undefined> {
    const [account] = await this.db.runQuery<Account>(sql`SELECT id, owner, balance FROM accounts WHERE id = ${id}`);
    return account;
  }

  /**
   * Adds `delta` (negative to take) and returns the new balance, or undefined for no such
   * account. The UPDATE locks the row until the transaction ends (SQLite: the whole database).
   */
  async add(id: number, delta: number): Promise<number | undefined> {
    const { affectedRows } = await this.db.runOperation(sql`UPDATE accounts SET balance = balance + ${delta} WHERE id = ${id}`);
    return affectedRows === 0 ? undefined : (await this.find(id))?.balance;
  }

  /**
   * Opens an empty account; false when the id is taken. A missing owner is the database's
   * `ForeignKeyViolation`, for the caller to answer: the same classes on every database.
   */
  async open(id: number, owner: string): Promise<boolean> {
    try {
      await this.db.runOperation(sql`INSERT INTO accounts (id, owner, balance) VALUES (${id}, ${owner}, 0)`);
      return true;
    } catch (e) {
      if (e instanceof UniqueViolation) return false;
      throw e;
    }
  }
}
