import type { Migration } from '../db.js';

/**
 * Idempotent finishing and retention.
 *
 * `finish_*` on a task remember its last finish (complete, fail or release): who, with which lease
 * token, which op, and the answer given. They are written by the same fenced UPDATE that finishes
 * the task (no extra statement), and read only when a finish misses its fence: a retry of a
 * finish whose answer was lost gets the same answer again instead of `lease_lost`.
 *
 * `event_horizon` holds, per project, the id of the newest event removed by retention: a cursor
 * below it has missed events and gets `cursor_expired`.
 */
export const V9_FINISH_RETENTION: Migration = {
  version: 9,
  name: 'task finish replay; event retention horizon',
  sqlite: `
ALTER TABLE tasks ADD COLUMN finish_owner TEXT;
ALTER TABLE tasks ADD COLUMN finish_token INTEGER;
ALTER TABLE tasks ADD COLUMN finish_op TEXT;
ALTER TABLE tasks ADD COLUMN finish_answer TEXT;
CREATE TABLE event_horizon (
  project_id TEXT PRIMARY KEY,
  pruned_through INTEGER NOT NULL
);
`,
  postgres: `
ALTER TABLE tasks ADD COLUMN finish_owner TEXT;
ALTER TABLE tasks ADD COLUMN finish_token BIGINT;
ALTER TABLE tasks ADD COLUMN finish_op TEXT;
ALTER TABLE tasks ADD COLUMN finish_answer TEXT;
CREATE TABLE event_horizon (
  project_id TEXT PRIMARY KEY,
  pruned_through BIGINT NOT NULL
);
`,
};
