import type { Migration } from '../db.js';

/**
 * Earlier finishes of a task, for their replay (issue 7, idempotent finishing). `tasks.finish_*`
 * (migration 9) hold a task's last finish only; a finish repeated after the task was claimed and
 * finished again (its answer lost, the agent retrying) found another finish there and was refused
 * with `lease_lost`. When a task that was finished before is claimed again, its last finish is
 * copied here, keyed by the lease token it was made with; a fence miss looks here after
 * `finish_*`. A task claimed once and completed (the common case) writes nothing here. Rows go
 * with their task (retention). No foreign key: like `task_caps`, removed with the task explicitly.
 */
export const V16_TASK_FINISHES: Migration = {
  version: 16,
  name: 'earlier finishes of a task, for their replay',
  sqlite: `
CREATE TABLE task_finishes (
  task_id TEXT NOT NULL,
  token INTEGER NOT NULL,
  owner TEXT NOT NULL,
  op TEXT NOT NULL,
  answer TEXT NOT NULL,
  PRIMARY KEY (task_id, token)
) WITHOUT ROWID;
`,
  postgres: `
CREATE TABLE task_finishes (
  task_id TEXT NOT NULL,
  token BIGINT NOT NULL,
  owner TEXT NOT NULL,
  op TEXT NOT NULL,
  answer TEXT NOT NULL,
  PRIMARY KEY (task_id, token)
);
`,
};
