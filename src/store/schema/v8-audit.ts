import type { Migration } from '../db.js';

/**
 * The audit trail becomes tamper-evident (S29): every row carries its hash (SHA-256 over its
 * fields and the previous row's hash; see store/journal.ts), a severity and a security event
 * class. The previous hash is not stored again: it is the previous row's `hash`. `audit_anchor` (one row) holds where the chain starts: the id and hash of
 * the newest row removed by retention (S30), or, on a fresh chain, the genesis hash after the
 * rows written before this migration (which stay unchained).
 */
export const V8_AUDIT: Migration = {
  version: 8,
  name: 'audit hash chain, severity',
  sqlite: `
ALTER TABLE audit ADD COLUMN severity TEXT;
ALTER TABLE audit ADD COLUMN event TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE TABLE audit_anchor (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_id INTEGER NOT NULL,
  hash TEXT NOT NULL,
  swept_at INTEGER NOT NULL
);
INSERT INTO audit_anchor (id, last_id, hash, swept_at)
  SELECT 1, coalesce(max(id), 0), '0000000000000000000000000000000000000000000000000000000000000000', 0 FROM audit;
`,
  postgres: `
ALTER TABLE audit ADD COLUMN severity TEXT;
ALTER TABLE audit ADD COLUMN event TEXT;
ALTER TABLE audit ADD COLUMN hash TEXT;
CREATE TABLE audit_anchor (
  id BIGINT PRIMARY KEY CHECK (id = 1),
  last_id BIGINT NOT NULL,
  hash TEXT NOT NULL,
  swept_at BIGINT NOT NULL
);
INSERT INTO audit_anchor (id, last_id, hash, swept_at)
  SELECT 1, coalesce(max(id), 0), '0000000000000000000000000000000000000000000000000000000000000000', 0 FROM audit;
`,
};
