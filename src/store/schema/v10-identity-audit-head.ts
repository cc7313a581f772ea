import type { Migration } from '../db.js';

/**
 * Issue 8: identities from different credential sources never merge, and the audit trail's end
 * is authenticated.
 *
 * `external_identities` maps an external issuer's subject (per project) to the agent it speaks
 * for. An API key's agent is found by name; an external token's only through this table, so a
 * `sub` equal to a key agent's name no longer becomes that agent.
 *
 * `audit_head` (one row) is where the chain ends: the newest row's id and hash, with an HMAC
 * under the audit key (store/journal.ts), updated in the same transaction as every append.
 * Deleting the newest rows, or all of them, leaves a head that no row matches. Written here
 * without the key (the migration does not hold it): `mac` stays NULL until the first append.
 * `audit_anchor.mac` authenticates retention's anchor the same way, so an anchor copied from a
 * row (with the rows before it deleted) is refused.
 */
export const V10_IDENTITY_AUDIT_HEAD: Migration = {
  version: 10,
  name: 'external identities by issuer, authenticated audit head',
  sqlite: `
CREATE TABLE external_identities (
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  project_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (issuer, subject, project_id)
) WITHOUT ROWID;
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_id INTEGER NOT NULL,
  hash TEXT NOT NULL,
  mac TEXT
);
INSERT INTO audit_head (id, last_id, hash, mac) SELECT 1,
  coalesce((SELECT max(id) FROM audit), (SELECT last_id FROM audit_anchor WHERE id = 1), 0),
  coalesce((SELECT hash FROM audit ORDER BY id DESC LIMIT 1), (SELECT hash FROM audit_anchor WHERE id = 1),
    '0000000000000000000000000000000000000000000000000000000000000000'),
  NULL;
ALTER TABLE audit_anchor ADD COLUMN mac TEXT;
`,
  postgres: `
CREATE TABLE external_identities (
  issuer TEXT NOT NULL,
  subject TEXT NOT NULL,
  project_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (issuer, subject, project_id)
);
CREATE TABLE audit_head (
  id BIGINT PRIMARY KEY CHECK (id = 1),
  last_id BIGINT NOT NULL,
  hash TEXT NOT NULL,
  mac TEXT
);
INSERT INTO audit_head (id, last_id, hash, mac) SELECT 1,
  coalesce((SELECT max(id) FROM audit), (SELECT last_id FROM audit_anchor WHERE id = 1), 0),
  coalesce((SELECT hash FROM audit ORDER BY id DESC LIMIT 1), (SELECT hash FROM audit_anchor WHERE id = 1),
    '0000000000000000000000000000000000000000000000000000000000000000'),
  NULL;
ALTER TABLE audit_anchor ADD COLUMN mac TEXT;
`,
};
