import { InvalidParameter, sql } from '../../lib/index.js';
import { syntaxOf } from '../../lib/drivers/registry.js';

describe('sql template', () => {
  it('compiles values to each dialect placeholders, never into the text', () => {
    const q = sql`SELECT * FROM users WHERE login = ${"x' OR 1=1 --"} AND age > ${3}`;
    expect(q.compile(syntaxOf('postgres'))).toEqual({ text: 'SELECT * FROM users WHERE login = $1 AND age > $2', values: ["x' OR 1=1 --", 3] });
    expect(q.compile(syntaxOf('mysql'))).toEqual({ text: 'SELECT * FROM users WHERE login = ? AND age > ?', values: ["x' OR 1=1 --", 3] });
    expect(q.compile(syntaxOf('sqlite')).text).toBe('SELECT * FROM users WHERE login = ? AND age > ?');
  });

  it('numbers placeholders across nested fragments and joins', () => {
    const ids = [1, 2, 3];
    const q = sql`SELECT ${sql.identifier('public', 'users')}.* FROM users WHERE a = ${'a'} AND id IN (${sql.join(ids.map((id) => sql`${id}`))}) AND b = ${'b'}`;
    expect(q.compile(syntaxOf('postgres'))).toEqual({
      text: 'SELECT "public"."users".* FROM users WHERE a = $1 AND id IN ($2, $3, $4) AND b = $5',
      values: ['a', 1, 2, 3, 'b'],
    });
    expect(q.compile(syntaxOf('mysql')).text).toBe('SELECT `public`.`users`.* FROM users WHERE a = ? AND id IN (?, ?, ?) AND b = ?');
  });

  it('caches the text per dialect and still collects fresh values', () => {
    const q = sql`SELECT ${1}`;
    expect(q.compile(syntaxOf('postgres'))).toEqual(q.compile(syntaxOf('postgres')));
  });

  it('quotes identifiers, doubling the quote character, and rejects NUL and empty names', () => {
    expect(sql`${sql.identifier('we"ird')}`.compile(syntaxOf('postgres')).text).toBe('"we""ird"');
    expect(sql`${sql.identifier('we`ird')}`.compile(syntaxOf('mysql')).text).toBe('`we``ird`');
    expect(() => sql.identifier('a\0b')).toThrow(InvalidParameter);
    expect(() => sql.identifier('')).toThrow(InvalidParameter);
  });

  it('splices raw text as it is', () => {
    expect(sql`ORDER BY id ${sql.raw('DESC')}`.compile(syntaxOf('mysql'))).toEqual({ text: 'ORDER BY id DESC', values: [] });
  });

  it('joins with a custom separator and handles an empty list', () => {
    expect(sql.join([sql`a = ${1}`, sql`b = ${2}`], sql` AND `).compile(syntaxOf('postgres'))).toEqual({ text: 'a = $1 AND b = $2', values: [1, 2] });
    expect(sql.join([]).compile(syntaxOf('postgres')).text).toBe('');
  });
});
