-- The sample's schema, the same on PostgreSQL and SQLite (MySQL and MariaDB: 001_create_tables.mysql.sql).
CREATE TABLE users (
  login VARCHAR(64) NOT NULL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  forname VARCHAR(255) NOT NULL
);

CREATE TABLE accounts (
  id INTEGER NOT NULL PRIMARY KEY,
  owner VARCHAR(64) NOT NULL REFERENCES users (login),
  balance INTEGER NOT NULL
);
