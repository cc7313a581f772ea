import type { Migration } from '../db.js';

/**
 * Key → value memory. `owner` is the owning agent's id for agent scope and '' for project scope
 * (not NULL: NULLs are distinct in a UNIQUE index, so two project-scope rows could share a key).
 * `value` is the last column so that listing (which reads version, size and times) never touches
 * a value's overflow pages. The unique index serves get, prefix listing (a key range) and the
 * quota count; the partial expiry index serves only the sweep.
 */
export const V3_MEMORY: Migration = {
  version: 3,
  name: 'memory',
  sqlite: `
CREATE TABLE memory (
  project_id TEXT NOT NULL REFERENCES projects(id),
  owner TEXT NOT NULL,
  key TEXT NOT NULL,
  version INTEGER NOT NULL,
  size INTEGER NOT NULL,
  updated_by TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  expires_at INTEGER,
  value TEXT NOT NULL
);
CREATE UNIQUE INDEX memory_key ON memory(project_id, owner, key);
CREATE INDEX memory_expiry ON memory(expires_at) WHERE expires_at IS NOT NULL;
`,
  postgres: `
CREATE TABLE memory (
  project_id TEXT NOT NULL REFERENCES projects(id),
  owner TEXT NOT NULL,
  key TEXT NOT NULL,
  version BIGINT NOT NULL,
  size BIGINT NOT NULL,
  updated_by TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  expires_at BIGINT,
  value TEXT NOT NULL
);
CREATE UNIQUE INDEX memory_key ON memory(project_id, owner, key);
CREATE INDEX memory_expiry ON memory(expires_at) WHERE expires_at IS NOT NULL;
`,
};
