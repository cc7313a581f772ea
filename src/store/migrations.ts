import type { Migration } from './db.js';
import { V2_MESSAGES } from './schema/v2-messages.js';
import { V3_MEMORY } from './schema/v3-memory.js';
import { V4_OVERSIGHT } from './schema/v4-oversight.js';
import { V5_LOCKS } from './schema/v5-locks.js';
import { V6_SESSIONS } from './schema/v6-sessions.js';
import { V7_AUTH } from './schema/v7-auth.js';
import { V8_AUDIT } from './schema/v8-audit.js';
import { V9_FINISH_RETENTION } from './schema/v9-finish-retention.js';
import { V10_IDENTITY_AUDIT_HEAD } from './schema/v10-identity-audit-head.js';
import { V11_TASK_PARENT_INDEX } from './schema/v11-task-parent-index.js';
import { V12_WEB_SESSIONS } from './schema/v12-web-sessions.js';
import { V13_TOKEN_TOOLS } from './schema/v13-token-tools.js';
import { V14_AUDIT_CHAINS } from './schema/v14-audit-chains.js';
import { V15_DEFERRED_MARKS } from './schema/v15-deferred-marks.js';
import { V16_TASK_FINISHES } from './schema/v16-task-finishes.js';
import { V17_CLOCK_OFFSETS } from './schema/v17-clock-offsets.js';

/**
 * Versioned schema. Append only: a shipped migration is never edited. Times are integer
 * milliseconds since the epoch; JSON columns hold TEXT.
 *
 * Every index on `tasks`, `events` and `audit` is one more page written per transaction on the
 * hottest path (a claim or a completion), so there are only the ones queries need. `events` and
 * `audit` ids are rowids without AUTOINCREMENT (which would rewrite `sqlite_sequence` on every
 * insert): they grow monotonically as long as the newest row is never deleted, which retention
 * never does.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'core: projects, agents, tokens, tasks, plans, events, audit',
    sqlite: `
CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);

CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  name TEXT NOT NULL,
  kind TEXT,
  role TEXT NOT NULL,
  capabilities TEXT NOT NULL DEFAULT '[]',
  last_seen_at INTEGER,
  created_at INTEGER NOT NULL,
  UNIQUE (project_id, name)
);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  server_admin INTEGER NOT NULL DEFAULT 0,
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_by TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER,
  last_used_at INTEGER
);
CREATE INDEX tokens_project ON tokens(project_id, created_at);

CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  title TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  priority INTEGER NOT NULL,
  labels TEXT NOT NULL DEFAULT '[]',
  capabilities TEXT NOT NULL DEFAULT '[]',
  caps_count INTEGER NOT NULL DEFAULT 0,
  parent_id TEXT REFERENCES tasks(id),
  context TEXT,
  assignee_agent TEXT,
  assignee_role TEXT,
  status TEXT NOT NULL,
  deps_open INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  available_at INTEGER NOT NULL,
  lease_owner TEXT,
  lease_token INTEGER NOT NULL DEFAULT 0,
  lease_expires_at INTEGER,
  result TEXT,
  last_error TEXT,
  needs_approval INTEGER NOT NULL DEFAULT 0,
  idempotency_key TEXT,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  claimed_at INTEGER,
  started_at INTEGER,
  finished_at INTEGER,
  version INTEGER NOT NULL DEFAULT 1,
  UNIQUE (project_id, idempotency_key)
);
CREATE INDEX tasks_claimable ON tasks(project_id, status, priority, created_at, id);
CREATE INDEX tasks_leases ON tasks(lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE task_deps (
  task_id TEXT NOT NULL REFERENCES tasks(id),
  depends_on TEXT NOT NULL REFERENCES tasks(id),
  PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX task_deps_reverse ON task_deps(depends_on);

CREATE TABLE task_caps (
  task_id TEXT NOT NULL REFERENCES tasks(id),
  cap TEXT NOT NULL,
  PRIMARY KEY (task_id, cap)
);

CREATE TABLE plans (
  project_id TEXT PRIMARY KEY REFERENCES projects(id),
  goal TEXT NOT NULL DEFAULT '',
  body TEXT NOT NULL DEFAULT '',
  version INTEGER NOT NULL,
  updated_by TEXT,
  updated_at INTEGER NOT NULL
);

CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  project_id TEXT NOT NULL,
  type TEXT NOT NULL,
  subject TEXT,
  actor TEXT,
  data TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX events_project ON events(project_id, id);

CREATE TABLE audit (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  project_id TEXT,
  principal TEXT,
  role TEXT,
  op TEXT NOT NULL,
  target TEXT,
  outcome TEXT NOT NULL,
  code TEXT,
  params TEXT,
  transport TEXT NOT NULL,
  address TEXT
);
`,
    postgres: `
CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL
);

CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  name TEXT NOT NULL,
  kind TEXT,
  role TEXT NOT NULL,
  capabilities TEXT NOT NULL DEFAULT '[]',
  last_seen_at BIGINT,
  created_at BIGINT NOT NULL,
  UNIQUE (project_id, name)
);

CREATE TABLE tokens (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  server_admin BIGINT NOT NULL DEFAULT 0,
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_by TEXT,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT,
  last_used_at BIGINT
);
CREATE INDEX tokens_project ON tokens(project_id, created_at);

CREATE TABLE tasks (
  id TEXT PRIMARY KEY,
  project_id TEXT NOT NULL REFERENCES projects(id),
  title TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  priority BIGINT NOT NULL,
  labels TEXT NOT NULL DEFAULT '[]',
  capabilities TEXT NOT NULL DEFAULT '[]',
  caps_count BIGINT NOT NULL DEFAULT 0,
  parent_id TEXT REFERENCES tasks(id),
  context TEXT,
  assignee_agent TEXT,
  assignee_role TEXT,
  status TEXT NOT NULL,
  deps_open BIGINT NOT NULL DEFAULT 0,
  attempts BIGINT NOT NULL DEFAULT 0,
  max_attempts BIGINT NOT NULL,
  available_at BIGINT NOT NULL,
  lease_owner TEXT,
  lease_token BIGINT NOT NULL DEFAULT 0,
  lease_expires_at BIGINT,
  result TEXT,
  last_error TEXT,
  needs_approval BIGINT NOT NULL DEFAULT 0,
  idempotency_key TEXT,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  claimed_at BIGINT,
  started_at BIGINT,
  finished_at BIGINT,
  version BIGINT NOT NULL DEFAULT 1,
  UNIQUE (project_id, idempotency_key)
);
CREATE INDEX tasks_claimable ON tasks(project_id, status, priority, created_at, id);
CREATE INDEX tasks_leases ON tasks(lease_expires_at) WHERE lease_expires_at IS NOT NULL;

CREATE TABLE task_deps (
  task_id TEXT NOT NULL REFERENCES tasks(id),
  depends_on TEXT NOT NULL REFERENCES tasks(id),
  PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX task_deps_reverse ON task_deps(depends_on);

CREATE TABLE task_caps (
  task_id TEXT NOT NULL REFERENCES tasks(id),
  cap TEXT NOT NULL,
  PRIMARY KEY (task_id, cap)
);

CREATE TABLE plans (
  project_id TEXT PRIMARY KEY REFERENCES projects(id),
  goal TEXT NOT NULL DEFAULT '',
  body TEXT NOT NULL DEFAULT '',
  version BIGINT NOT NULL,
  updated_by TEXT,
  updated_at BIGINT NOT NULL
);

CREATE TABLE events (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  project_id TEXT NOT NULL,
  type TEXT NOT NULL,
  subject TEXT,
  actor TEXT,
  data TEXT,
  created_at BIGINT NOT NULL
);
CREATE INDEX events_project ON events(project_id, id);

CREATE TABLE audit (
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  at BIGINT NOT NULL,
  request_id TEXT NOT NULL,
  project_id TEXT,
  principal TEXT,
  role TEXT,
  op TEXT NOT NULL,
  target TEXT,
  outcome TEXT NOT NULL,
  code TEXT,
  params TEXT,
  transport TEXT NOT NULL,
  address TEXT
);
`,
  },
  V2_MESSAGES,
  V3_MEMORY,
  V4_OVERSIGHT,
  V5_LOCKS,
  V6_SESSIONS,
  V7_AUTH,
  V8_AUDIT,
  V9_FINISH_RETENTION,
  V10_IDENTITY_AUDIT_HEAD,
  V11_TASK_PARENT_INDEX,
  V12_WEB_SESSIONS,
  V13_TOKEN_TOOLS,
  V14_AUDIT_CHAINS,
  V15_DEFERRED_MARKS,
  V16_TASK_FINISHES,
  V17_CLOCK_OFFSETS,
];
