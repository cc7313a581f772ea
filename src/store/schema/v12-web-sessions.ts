import type { Migration } from '../db.js';

/**
 * Browser sessions (issue 10, S23): a dashboard login exchanges an API key for an opaque cookie.
 * Only a hash of the cookie's value is stored (`id_hash`), so a copy of the database opens no
 * session. `csrf` is the session's anti-CSRF token, sent back to the page (not a secret from the
 * session's own holder; it only proves a request came from a page that read it). `token_id` is
 * the key logged in with: every use checks that key is still live, so revoking it ends its
 * sessions. The idle limit is counted from `last_seen_at` (refreshed at most once a minute), the
 * absolute one is `expires_at`. PostgreSQL: the same table with the times as BIGINT (milliseconds
 * overflow a 32-bit INTEGER there).
 */
export const V12_WEB_SESSIONS: Migration = {
  version: 12,
  name: 'browser sessions',
  sqlite: `
CREATE TABLE web_sessions (
  id_hash TEXT PRIMARY KEY,
  token_id TEXT NOT NULL,
  csrf TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_token ON web_sessions(token_id);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
`,
  postgres: `
CREATE TABLE web_sessions (
  id_hash TEXT PRIMARY KEY,
  token_id TEXT NOT NULL,
  csrf TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  last_seen_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_token ON web_sessions(token_id);
CREATE INDEX web_sessions_expiry ON web_sessions(expires_at);
`,
};
