/** Splitting migration scripts into statements, per dialect. */
import { MYSQL_REPLICATION } from '../../lib/drivers/mysql/mysql.replication.js';
import { POSTGRES_REPLICATION } from '../../lib/drivers/postgres/postgres.replication.js';
import { isReadStatement } from '../../lib/sql/statement-kind.js';
import { splitStatements } from '../../lib/sql/script.js';
import { MYSQL_SCRIPT_SYNTAX } from '../../lib/drivers/mysql/mysql.syntax.js';
import { POSTGRES_SCRIPT_SYNTAX } from '../../lib/drivers/postgres/postgres.syntax.js';
import { SQLITE_SCRIPT_SYNTAX } from '../../lib/drivers/sqlite/sqlite.syntax.js';

const SCRIPTS = { postgres: POSTGRES_SCRIPT_SYNTAX, mysql: MYSQL_SCRIPT_SYNTAX, sqlite: SQLITE_SCRIPT_SYNTAX };
const texts = (script: string, dialect: keyof typeof SCRIPTS) => splitStatements(script, SCRIPTS[dialect]).map((s) => s.text);

describe('splitStatements', () => {
  it('splits on semicolons outside quotes, identifiers and comments, and numbers lines', () => {
    const script = "CREATE TABLE a (x VARCHAR(10) DEFAULT 'a;b');\n-- c; d\n\nINSERT INTO \"we;ird\" VALUES ('it''s; fine');\n/* e;\n f */ SELECT 1";
    expect(splitStatements(script, POSTGRES_SCRIPT_SYNTAX)).toEqual([
      { text: "CREATE TABLE a (x VARCHAR(10) DEFAULT 'a;b')", line: 1 },
      { text: "-- c; d\n\nINSERT INTO \"we;ird\" VALUES ('it''s; fine')", line: 2 },
      { text: '/* e;\n f */ SELECT 1', line: 5 },
    ]);
  });

  it('drops empty statements and trailing comments', () => {
    expect(texts(';;\nSELECT 1;\n-- the end\n', 'sqlite')).toEqual(['SELECT 1']);
  });

  it("keeps PostgreSQL dollar-quoted bodies whole, and reads backslashes as escapes only in E'' strings", () => {
    const fn = 'CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql';
    expect(texts(`${fn};\nSELECT $$a;b$$;`, 'postgres')).toEqual([fn, 'SELECT $$a;b$$']);
    expect(texts("SELECT 'C:\\';SELECT 2;", 'postgres')).toEqual(["SELECT 'C:\\'", 'SELECT 2']);
    expect(texts("SELECT E'it\\'s; one';SELECT 2;", 'postgres')).toEqual(["SELECT E'it\\'s; one'", 'SELECT 2']);
  });

  it("follows MySQL's DELIMITER lines, # comments and backslash escapes", () => {
    const script = "DELIMITER //\nCREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END //\nDELIMITER ;\n# a comment; here\nSELECT 'it\\'s;';";
    expect(texts(script, 'mysql')).toEqual(['CREATE PROCEDURE p() BEGIN SELECT 1; SELECT 2; END', "# a comment; here\nSELECT 'it\\'s;'"]);
  });

  it('keeps SQLite trigger bodies whole, CASE … END included', () => {
    const trigger = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET n = CASE WHEN n > 0 THEN n + 1 ELSE 1 END; INSERT INTO c VALUES ('end;'); END";
    expect(texts(`${trigger};\nSELECT 1;`, 'sqlite')).toEqual([trigger, 'SELECT 1']);
  });
});

describe('isReadStatement (what may go to a read replica)', () => {
  it.each([
    ['SELECT * FROM users WHERE id = $1', true],
    ['  with t AS (SELECT 1) SELECT * FROM t', true],
    ['(SELECT 1) UNION (SELECT 2)', true],
    ['VALUES (1), (2)', true],
    ['SHOW server_version', true],
    ["SELECT 'insert into' AS text_only", true],
    ['SELECT 1 -- update later', true],
    ['INSERT INTO t VALUES (1) RETURNING id', false],
    ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', false],
    ['SELECT * FROM t FOR UPDATE', false],
    ['SELECT * FROM t FOR SHARE', false],
    ['SELECT * INTO copy FROM t', false],
    ['UPDATE t SET a = 1', false],
    ['CALL proc()', false],
  ])('%s → %s', (text, read) => {
    expect(isReadStatement(text)).toBe(read);
  });
});

describe('replication positions', () => {
  it('MariaDB GTID positions: included per domain, merged keeping each domain’s latest', () => {
    const { includes, merge } = MYSQL_REPLICATION;
    expect(includes('0-1-42', '0-1-41')).toBe(true);
    expect(includes('0-1-42', '0-1-42')).toBe(true);
    expect(includes('0-1-41', '0-1-42')).toBe(false);
    expect(includes('0-1-42,1-2-7', '1-2-7')).toBe(true);
    expect(includes('0-1-42', '1-2-1')).toBe(false);
    expect(includes('0-1-100', '0-2-99')).toBe(true);
    expect(merge('0-1-42', '0-1-40')).toBe('0-1-42');
    expect(merge('0-1-42', '1-2-7')).toBe('0-1-42,1-2-7');
    expect(merge('0-1-42,1-2-7', '1-3-9')).toBe('0-1-42,1-3-9');
  });

  it('PostgreSQL LSNs: compared as 64-bit positions, not as text', () => {
    const { includes, merge } = POSTGRES_REPLICATION;
    expect(includes('0/A000000', '0/9FFFFFF')).toBe(true);
    expect(includes('0/9FFFFFF', '0/A000000')).toBe(false);
    expect(includes('1/0', 'FFFFFFFF/0')).toBe(false);
    expect(includes('10/0', '9/FFFFFFFF')).toBe(true);
    expect(merge('0/16B3748', '0/16B3750')).toBe('0/16B3750');
  });
});
