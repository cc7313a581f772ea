import type { Migration } from '../db.js';

/**
 * Purging finished tasks (retention) deletes task rows, and `tasks.parent_id` references
 * `tasks(id)`: without an index on it, SQLite's foreign-key check scans the whole table for
 * children of every deleted task, so one chunk of 2,000 cost 2,000 full scans. Measured in the
 * soak: a hub with ~40k tasks stopped answering for minutes at its first purge. Partial, so tasks
 * without a parent (nearly all) cost nothing on the hot path.
 */
export const V11_TASK_PARENT_INDEX: Migration = {
  version: 11,
  name: 'index of subtasks by parent',
  sqlite: `
CREATE INDEX tasks_parent ON tasks(parent_id) WHERE parent_id IS NOT NULL;
`,
  postgres: `
CREATE INDEX tasks_parent ON tasks(parent_id) WHERE parent_id IS NOT NULL;
`,
};
