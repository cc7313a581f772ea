import type { Migration } from '../db.js';

/**
 * Messages with per-recipient read/ack state; events get an audience (who may see them).
 * Recipients are resolved when a message is sent (the named agents, a role's members or
 * everyone, narrowed by the visibility tier), so every read path checks one indexed row.
 */
export const V2_MESSAGES: Migration = {
  version: 2,
  name: 'messages; event audiences',
  sqlite: `
ALTER TABLE events ADD COLUMN audience TEXT NOT NULL DEFAULT 'project';

CREATE TABLE messages (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  project_id TEXT NOT NULL REFERENCES projects(id),
  thread_id TEXT NOT NULL,
  reply_to TEXT,
  sender_id TEXT NOT NULL REFERENCES agents(id),
  sender_name TEXT NOT NULL,
  to_kind TEXT NOT NULL,
  to_names TEXT,
  to_role TEXT,
  visibility TEXT NOT NULL,
  subject TEXT NOT NULL DEFAULT '',
  body TEXT NOT NULL,
  importance TEXT NOT NULL,
  ack_required INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE INDEX messages_thread ON messages(project_id, thread_id, seq);
CREATE INDEX messages_project ON messages(project_id, seq);

CREATE TABLE message_recipients (
  agent_id TEXT NOT NULL,
  seq INTEGER NOT NULL REFERENCES messages(seq),
  read_at INTEGER,
  acked_at INTEGER,
  PRIMARY KEY (agent_id, seq)
);
CREATE INDEX message_recipients_message ON message_recipients(seq);
`,
};
