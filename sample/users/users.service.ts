import { Injectable } from '@nestjs/common';
import { Database, InjectDatabase, sql } from '../../lib/index.js';

export interface User {
  login: string;
  name: string;
  forname: string;
}

/** The users table, created and seeded by the migrations (sample/migrations). */
@Injectable()
export class UsersService {
  constructor(@InjectDatabase() private readonly db: Database) {}

  /** Every user, read a batch at a time (`for await`). */
  all(): AsyncIterable<User> {
    return this.db.stream<User>(sql`SELECT login, name, forname FROM users ORDER BY login`);
  }

  async find(login: string): Promise<User | undefined> {
    const [user] = await this.db.runQuery<User>(sql`SELECT login, name, forname FROM users WHERE login = ${login}`);
    return user;
  }
}
