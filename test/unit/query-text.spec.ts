import { redactLiterals } from '../../lib/telemetry/query-text.js';

describe('db.query.text: literals redacted', () => {
  it.each([
    ["CREATE ROLE u1 LOGIN PASSWORD 'Pw-@:/?#%&=+'", 'CREATE ROLE u1 LOGIN PASSWORD ?'],
    ["SELECT * FROM t1 WHERE a = $1 AND b = 'it''s' AND c = 42 AND d = 1.5e3", 'SELECT * FROM t1 WHERE a = $1 AND b = ? AND c = ? AND d = ?'],
    ["SELECT E'a\\'b', x FROM \"Table 2\" WHERE id = ?", 'SELECT E?, x FROM "Table 2" WHERE id = ?'],
    ['SELECT $fn$ secret body $fn$, $$ other $$ FROM t', 'SELECT ?, ? FROM t'],
    ['SELECT :name, col_2, 0x1F -- 99 stays in a comment\nFROM t /* 7 */', 'SELECT :name, col_2, ? -- 99 stays in a comment\nFROM t /* 7 */'],
    ["INSERT INTO `t` (a) VALUES ('x', -3)", 'INSERT INTO `t` (a) VALUES (?, -?)'],
  ])('%s', (text, expected) => {
    expect(redactLiterals(text, false)).toBe(expected);
  });

  it('MySQL: "…" is a string, not an identifier; a backslash escapes', () => {
    expect(redactLiterals(`SELECT "secret \\" still", 'a\\'b' FROM t`, true)).toBe('SELECT ?, ? FROM t');
    expect(redactLiterals(`SELECT "secret" FROM t`, false)).toBe('SELECT "secret" FROM t');
  });

  it("PostgreSQL: a backslash ends nothing outside E'…' (standard_conforming_strings), so the next literal is still found", () => {
    expect(redactLiterals("UPDATE u SET home = 'C:\\', pw = 'hunter2' WHERE id = $1", false)).toBe('UPDATE u SET home = ?, pw = ? WHERE id = $1');
    expect(redactLiterals("SELECT e'it\\'s', 'x'", false)).toBe('SELECT e?, ?');
  });

  it('MySQL: # starts a comment, whose apostrophe starts no literal', () => {
    expect(redactLiterals("SELECT a # don't\nFROM t WHERE b = 'hunter2'", true)).toBe("SELECT a # don't\nFROM t WHERE b = ?");
  });

  it('an unterminated literal is redacted to the end', () => {
    expect(redactLiterals("SELECT 'never closed", false)).toBe('SELECT ?');
  });
});
