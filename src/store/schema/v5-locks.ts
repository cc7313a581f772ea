import type { Migration } from '../db.js';

/**
 * File locks. A row lives while the lock does: release, force-release, task end, session end and
 * expiry delete it (the events and audit rows keep the history). `paths` is a JSON array of
 * normalised patterns; overlap is decided in code (core/globs.ts), over the project's live locks.
 */
export const V5_LOCKS: Migration = {
  version: 5,
  name: 'file locks',
  sqlite: `
CREATE TABLE locks (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  agent_id TEXT NOT NULL REFERENCES agents(id),
  agent_name TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('exclusive', 'shared')),
  paths TEXT NOT NULL,
  reason TEXT,
  task_id TEXT REFERENCES tasks(id),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX locks_project ON locks(project_id, created_at, id);
CREATE INDEX locks_agent ON locks(agent_id);
CREATE INDEX locks_task ON locks(task_id) WHERE task_id IS NOT NULL;
`,
  postgres: `
CREATE TABLE locks (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  agent_id TEXT NOT NULL REFERENCES agents(id),
  agent_name TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('exclusive', 'shared')),
  paths TEXT NOT NULL,
  reason TEXT,
  task_id TEXT REFERENCES tasks(id),
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX locks_project ON locks(project_id, created_at, id);
CREATE INDEX locks_agent ON locks(agent_id);
CREATE INDEX locks_task ON locks(task_id) WHERE task_id IS NOT NULL;
`,
};
