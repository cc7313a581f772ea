import type { Migration } from '../db.js';

/**
 * Issue 9 item 3: one audit chain per project, and one for the rows of no project (failed
 * authentication, throttling), instead of one chain through every row. A project's rows are
 * appended under its own writer lock (on PostgreSQL, `{ project }`, which its ops hold anyway),
 * so no lock is common to every audited write any more (store/journal.ts).
 *
 * `audit.chain` is the project id, or '' for the server chain; `audit.seq` the row's position in
 * its chain, dense from 1. Chain order is (chain, seq), not id: the unique index makes a fork (two
 * rows at one position) impossible, and is what walks and head checks read. Ids only stay unique
 * and, within a chain, increasing (appends to one chain take turns), which is what the audit
 * query's cursor (newest first, by id, within one project) needs.
 *
 * `audit_chains` holds, per chain, its head (seq, hash and HMAC: where it ends, in the same
 * transaction as its appends) and its retention anchor (seq, hash, HMAC: the newest row retention
 * removed; 0 and the genesis hash before any). Both HMACs are written by the hub (the migration
 * does not hold the audit key), so a chain's row is created by its first append.
 *
 * Rows written before this migration stay as they are (chain and seq NULL): a closed "legacy"
 * segment, still verified as the one chain it was (ids dense, migration 10's head and migration
 * 8's anchor, which nothing appends to any more). Re-anchoring every chain at the upgrade instead
 * would need the key here, and would re-hash the past under new rules. On PostgreSQL the legacy
 * rows were inserted with explicit ids, so the identity sequence is moved past them.
 */
export const V14_AUDIT_CHAINS: Migration = {
  version: 14,
  name: 'audit chain per project',
  sqlite: `
ALTER TABLE audit ADD COLUMN chain TEXT;
ALTER TABLE audit ADD COLUMN seq INTEGER;
CREATE UNIQUE INDEX audit_chain_seq ON audit(chain, seq);
CREATE TABLE audit_chains (
  chain TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  mac TEXT NOT NULL,
  anchor_seq INTEGER NOT NULL,
  anchor_hash TEXT NOT NULL,
  anchor_mac TEXT,
  swept_at INTEGER
) WITHOUT ROWID;
`,
  postgres: `
ALTER TABLE audit ADD COLUMN chain TEXT;
ALTER TABLE audit ADD COLUMN seq BIGINT;
CREATE UNIQUE INDEX audit_chain_seq ON audit(chain, seq);
CREATE TABLE audit_chains (
  chain TEXT PRIMARY KEY,
  seq BIGINT NOT NULL,
  hash TEXT NOT NULL,
  mac TEXT NOT NULL,
  anchor_seq BIGINT NOT NULL,
  anchor_hash TEXT NOT NULL,
  anchor_mac TEXT,
  swept_at BIGINT
);
SELECT setval(pg_get_serial_sequence('audit', 'id'), coalesce((SELECT max(id) FROM audit), 0) + 1, false);
`,
};
