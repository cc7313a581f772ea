import type { Migration } from '../db.js';

/**
 * Sessions (one agent's stretch of work), their checkpoints, and handoffs to the next agent.
 * At most one open session per agent: the partial unique index enforces it and serves the
 * "my open session" lookup of whoami and every session op. Checkpoints are numbered within
 * their session (`seq`); no op looks one up by id, so a sequence is not an enumeration risk.
 * Handoffs keep the leases (task id + fencing token) the ender held when it handed over: the
 * accept transfers exactly those leases, never a later claim of the same task.
 */
export const V6_SESSIONS: Migration = {
  version: 6,
  name: 'sessions and handoffs',
  sqlite: `
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  agent_id TEXT NOT NULL REFERENCES agents(id),
  status TEXT NOT NULL,
  goal TEXT,
  summary TEXT,
  checkpoints INTEGER NOT NULL DEFAULT 0,
  started_at INTEGER NOT NULL,
  ended_at INTEGER
);
CREATE UNIQUE INDEX sessions_open ON sessions(agent_id) WHERE status = 'open';

CREATE TABLE session_checkpoints (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  seq INTEGER NOT NULL,
  at INTEGER NOT NULL,
  summary TEXT NOT NULL,
  completed TEXT NOT NULL,
  metrics TEXT NOT NULL,
  commit_sha TEXT,
  PRIMARY KEY (session_id, seq)
);

CREATE TABLE handoffs (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  session_id TEXT NOT NULL REFERENCES sessions(id),
  from_agent_id TEXT NOT NULL REFERENCES agents(id),
  from_name TEXT NOT NULL,
  to_kind TEXT NOT NULL,
  to_agent_id TEXT REFERENCES agents(id),
  to_name TEXT,
  to_role TEXT,
  summary TEXT NOT NULL,
  next_goals TEXT NOT NULL,
  leases TEXT NOT NULL,
  memory_keys TEXT NOT NULL,
  files TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  accepted_by TEXT,
  accepted_name TEXT,
  accepted_at INTEGER
);
CREATE INDEX handoffs_project ON handoffs(project_id, status, created_at);
`,
  postgres: `
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  agent_id TEXT NOT NULL REFERENCES agents(id),
  status TEXT NOT NULL,
  goal TEXT,
  summary TEXT,
  checkpoints BIGINT NOT NULL DEFAULT 0,
  started_at BIGINT NOT NULL,
  ended_at BIGINT
);
CREATE UNIQUE INDEX sessions_open ON sessions(agent_id) WHERE status = 'open';

CREATE TABLE session_checkpoints (
  session_id TEXT NOT NULL REFERENCES sessions(id),
  seq BIGINT NOT NULL,
  at BIGINT NOT NULL,
  summary TEXT NOT NULL,
  completed TEXT NOT NULL,
  metrics TEXT NOT NULL,
  commit_sha TEXT,
  PRIMARY KEY (session_id, seq)
);

CREATE TABLE handoffs (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  session_id TEXT NOT NULL REFERENCES sessions(id),
  from_agent_id TEXT NOT NULL REFERENCES agents(id),
  from_name TEXT NOT NULL,
  to_kind TEXT NOT NULL,
  to_agent_id TEXT REFERENCES agents(id),
  to_name TEXT,
  to_role TEXT,
  summary TEXT NOT NULL,
  next_goals TEXT NOT NULL,
  leases TEXT NOT NULL,
  memory_keys TEXT NOT NULL,
  files TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  accepted_by TEXT,
  accepted_name TEXT,
  accepted_at BIGINT
);
CREATE INDEX handoffs_project ON handoffs(project_id, status, created_at);
`,
};
