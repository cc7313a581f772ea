import type { Migration } from '../db.js';

/**
 * Discoveries (immutable: no statement ever updates or deletes one), decisions (append-only) and
 * approvals (pending → granted | denied, once). Task links are not foreign keys: a link is checked
 * against the caller's project when written, and later retention of tasks must not be blocked by it.
 */
export const V4_OVERSIGHT: Migration = {
  version: 4,
  name: 'discoveries, decisions, approvals',
  sqlite: `
CREATE TABLE discoveries (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  content TEXT NOT NULL,
  tags TEXT NOT NULL DEFAULT '[]',
  task_ids TEXT NOT NULL DEFAULT '[]',
  files TEXT NOT NULL DEFAULT '[]',
  author TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX discoveries_recent ON discoveries(project_id, created_at, id);

CREATE TABLE discovery_tags (
  discovery_id TEXT NOT NULL REFERENCES discoveries(id),
  project_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  PRIMARY KEY (discovery_id, tag)
) WITHOUT ROWID;
CREATE INDEX discovery_tags_tag ON discovery_tags(project_id, tag);

CREATE TABLE decisions (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  what TEXT NOT NULL,
  why TEXT NOT NULL,
  alternatives TEXT NOT NULL DEFAULT '[]',
  task_id TEXT,
  author TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX decisions_recent ON decisions(project_id, created_at, id);
CREATE INDEX decisions_task ON decisions(project_id, task_id, created_at, id) WHERE task_id IS NOT NULL;

CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  action TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '',
  risk TEXT NOT NULL,
  task_id TEXT,
  status TEXT NOT NULL DEFAULT 'pending',
  requested_by TEXT NOT NULL,
  requester_id TEXT NOT NULL,
  decided_by TEXT,
  decided_at INTEGER,
  reason TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX approvals_recent ON approvals(project_id, created_at, id);
CREATE INDEX approvals_task ON approvals(task_id, status) WHERE task_id IS NOT NULL;
`,
  postgres: `
CREATE TABLE discoveries (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  content TEXT NOT NULL,
  tags TEXT NOT NULL DEFAULT '[]',
  task_ids TEXT NOT NULL DEFAULT '[]',
  files TEXT NOT NULL DEFAULT '[]',
  author TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX discoveries_recent ON discoveries(project_id, created_at, id);

CREATE TABLE discovery_tags (
  discovery_id TEXT NOT NULL REFERENCES discoveries(id),
  project_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  PRIMARY KEY (discovery_id, tag)
);
CREATE INDEX discovery_tags_tag ON discovery_tags(project_id, tag);

CREATE TABLE decisions (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  what TEXT NOT NULL,
  why TEXT NOT NULL,
  alternatives TEXT NOT NULL DEFAULT '[]',
  task_id TEXT,
  author TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX decisions_recent ON decisions(project_id, created_at, id);
CREATE INDEX decisions_task ON decisions(project_id, task_id, created_at, id) WHERE task_id IS NOT NULL;

CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  action TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '',
  risk TEXT NOT NULL,
  task_id TEXT,
  status TEXT NOT NULL DEFAULT 'pending',
  requested_by TEXT NOT NULL,
  requester_id TEXT NOT NULL,
  decided_by TEXT,
  decided_at BIGINT,
  reason TEXT,
  created_at BIGINT NOT NULL
);
CREATE INDEX approvals_recent ON approvals(project_id, created_at, id);
CREATE INDEX approvals_task ON approvals(task_id, status) WHERE task_id IS NOT NULL;
`,
};
