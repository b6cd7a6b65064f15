import { Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { Database, InjectDatabase, sql } from '../../lib/index.js';

export interface User {
  login: string;
  name: string;
  forname: string;
}

/** Three of Twisted's authors, as in the adbapi tutorial. */
const SEED: User[] = [
  { login: 'glyph', name: 'Lefkowitz', forname: 'Glyph' },
  { login: 'exarkun', name: 'Calderone', forname: 'Jean-Paul' },
  { login: 'itamar', name: 'Turner-Trauring', forname: 'Itamar' },
];

@Injectable()
export class UsersService implements OnApplicationBootstrap {
  constructor(@InjectDatabase() private readonly db: Database) {}

  /** Creates the table if missing and the three users if absent: safe on every start. */
  async onApplicationBootstrap(): Promise<void> {
    await this.db.runOperation(sql`
      CREATE TABLE IF NOT EXISTS users (
        login VARCHAR(64) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        forname VARCHAR(255) NOT NULL
      )`);
    const rows = sql.join(SEED.map((u) => sql`(${u.login}, ${u.name}, ${u.forname})`));
    await this.db.runOperation(
      this.db.dialect === 'mysql'
        ? sql`INSERT IGNORE INTO users (login, name, forname) VALUES ${rows}`
        : sql`INSERT INTO users (login, name, forname) VALUES ${rows} ON CONFLICT (login) DO NOTHING`,
    );
  }

  /** Every user, read a batch at a time (`for await`). */
  all(): AsyncIterable<User> {
    return this.db.stream<User>(sql`SELECT login, name, forname FROM users ORDER BY login`);
  }

  async find(login: string): Promise<User | undefined> {
    const [user] = await this.db.runQuery<User>(sql`SELECT login, name, forname FROM users WHERE login = ${login}`);
    return user;
  }
}
