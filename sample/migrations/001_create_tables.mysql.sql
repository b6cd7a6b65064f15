-- MySQL and MariaDB: the same tables, in InnoDB (transactions, foreign keys) and utf8mb4, whatever
-- the server's defaults are, so that every name round-trips.
CREATE TABLE users (
  login VARCHAR(64) NOT NULL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  forname VARCHAR(255) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE accounts (
  id INTEGER NOT NULL PRIMARY KEY,
  owner VARCHAR(64) NOT NULL,
  balance INTEGER NOT NULL,
  FOREIGN KEY (owner) REFERENCES users (login)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
