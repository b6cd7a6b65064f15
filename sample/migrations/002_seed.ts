/**
 * The users of Twisted's adbapi tutorial, and two accounts to transfer between: a migration in
 * code, given the app's `Database`. Runs once per database, in a transaction where the dialect
 * has transactional DDL; the values go as parameters, accents and all.
 */
import { sql, type Database } from '../../lib/index.js';

const USERS = [
  { login: 'yoen', forname: 'Yoen', name: 'Van der Veld' },
  { login: 'esteban', forname: 'Estebán', name: 'Garcia Marquez' },
  { login: 'mohamed', forname: 'Mohamed', name: 'Al Ghâlib' },
];

const ACCOUNTS = [
  { id: 1, owner: 'yoen', balance: 100 },
  { id: 2, owner: 'esteban', balance: 50 },
];

export async function up(db: Database): Promise<void> {
  await db.runOperation(sql`INSERT INTO users (login, name, forname) VALUES ${sql.join(USERS.map((u) => sql`(${u.login}, ${u.name}, ${u.forname})`))}`);
  await db.runOperation(sql`INSERT INTO accounts (id, owner, balance) VALUES ${sql.join(ACCOUNTS.map((a) => sql`(${a.id}, ${a.owner}, ${a.balance})`))}`);
}

export async function down(db: Database): Promise<void> {
  await db.runOperation(sql`DELETE FROM accounts WHERE id IN ${sql.in(ACCOUNTS.map((a) => a.id))}`);
  await db.runOperation(sql`DELETE FROM users WHERE login IN ${sql.in(USERS.map((u) => u.login))}`);
}
