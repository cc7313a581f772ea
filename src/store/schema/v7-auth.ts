import type { Migration } from '../db.js';

/**
 * Authentication (S2, S4): address binding of API keys, and refresh tokens. A refresh token is
 * stored only as its keyed hash; rows of one rotation chain share a family id, so reuse of a
 * spent token revokes the whole family with one statement.
 */
export const V7_AUTH: Migration = {
  version: 7,
  name: 'auth: refresh tokens, address binding',
  sqlite: `
ALTER TABLE tokens ADD COLUMN allowed_addresses TEXT;
CREATE TABLE refresh_tokens (
  token_hash TEXT PRIMARY KEY,
  family_id TEXT NOT NULL,
  token_id TEXT NOT NULL REFERENCES tokens(id),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
`,
  postgres: `
ALTER TABLE tokens ADD COLUMN allowed_addresses TEXT;
CREATE TABLE refresh_tokens (
  token_hash TEXT PRIMARY KEY,
  family_id TEXT NOT NULL,
  token_id TEXT NOT NULL REFERENCES tokens(id),
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens(family_id);
`,
};
