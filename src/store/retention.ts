import type { Executor } from './db.js';
import { list, sql, trusted } from './sql.js';

/**
 * Retention: each function removes at most one chunk, so the caller runs each in its own short
 * write transaction and other writers get the lock between chunks. Each returns how many rows
 * (events, tasks, threads) it removed; fewer than the chunk means there is nothing more to do.
 */

/**
 * Events beyond `maxRows` (0: no count limit) or created before `cutoffAt` (null: no age limit),
 * oldest first, in id order. Ids are rowids that only ever grow by one (retention deletes from
 * the bottom and never the newest row), so the count kept is the id span, without a count(*)
 * scan. Each project's `event_horizon` records the newest id removed: a cursor below it missed
 * events and is refused with `cursor_expired`.
 */
export async function pruneEvents(ex: Executor, cutoffAt: number | null, maxRows: number, chunk: number): Promise<number> {
  const newest = (await ex.get<{ id: number | null }>(sql`SELECT max(id) AS id FROM events`))?.id ?? null;
  if (newest === null) return 0;
  const byCount = maxRows > 0 ? newest - maxRows : 0;
  const prunable = (r: { id: number; created_at: number }): boolean =>
    r.id < newest && (r.id <= byCount || (cutoffAt !== null && r.created_at < cutoffAt));
  // A run with nothing to do (the usual case) is two rowid lookups, not a page of rows.
  const oldest = await ex.get<{ id: number; created_at: number }>(sql`SELECT id, created_at FROM events ORDER BY id LIMIT 1`);
  if (oldest === undefined || !prunable(oldest)) return 0;
  const rows = await ex.all<{ id: number; created_at: number }>(sql`SELECT id, created_at FROM events ORDER BY id LIMIT ${chunk}`);
  let cut = 0;
  for (const r of rows) {
    if (!prunable(r)) break; // the newest never is: new ids continue from it
    cut = r.id;
  }
  if (cut === 0) return 0;
  await ex.run(sql`INSERT INTO event_horizon (project_id, pruned_through)
      SELECT project_id, max(id) FROM events WHERE id <= ${cut} GROUP BY project_id
    ON CONFLICT (project_id) DO UPDATE SET pruned_through = ${ex.dialect.greatest(trusted('event_horizon.pruned_through'), trusted('excluded.pruned_through'))}`);
  const { changes } = await ex.run(sql`DELETE FROM events WHERE id <= ${cut}`);
  return changes;
}

/** The newest event id of the project removed by retention (0: none). */
export async function eventHorizon(ex: Executor, projectId: string): Promise<number> {
  const row = await ex.get<{ id: number }>(sql`SELECT pruned_through AS id FROM event_horizon WHERE project_id = ${projectId}`);
  return row?.id ?? 0;
}

/**
 * Finished tasks (done, failed, cancelled) that finished before `cutoffAt`, with what hangs off
 * them (capabilities, their own dependency edges). A task is kept while anything still points at
 * it: a dependent (so a purged dependency can never re-block or un-block anything: it has no
 * dependents left), a subtask, or a lock. Chains go from the far end: once a finished dependent
 * is purged, its dependency becomes purgeable on a later chunk.
 */
export async function purgeTasks(ex: Executor, cutoffAt: number, chunk: number): Promise<number> {
  const rows = await ex.all<{ id: string }>(sql`SELECT t.id FROM tasks t
    WHERE t.status IN ('done', 'failed', 'cancelled') AND t.finished_at < ${cutoffAt}
      AND NOT EXISTS (SELECT 1 FROM task_deps d WHERE d.depends_on = t.id)
      AND NOT EXISTS (SELECT 1 FROM locks l WHERE l.task_id = t.id)
      AND t.id NOT IN (SELECT parent_id FROM tasks WHERE parent_id IS NOT NULL)
    LIMIT ${chunk}`);
  if (rows.length === 0) return 0;
  const ids = rows.map((r) => r.id);
  await ex.run(sql`DELETE FROM task_caps WHERE task_id IN ${list(ids)}`);
  await ex.run(sql`DELETE FROM task_deps WHERE task_id IN ${list(ids)}`);
  await ex.run(sql`DELETE FROM task_finishes WHERE task_id IN ${list(ids)}`);
  const { changes } = await ex.run(sql`DELETE FROM tasks WHERE id IN ${list(ids)}`);
  return changes;
}

/**
 * Whole threads, never part of one (a reply never loses its parent): a thread goes when its
 * newest message is older than `cutoffAt` and every recipient has read every message (and
 * acknowledged those that asked for it).
 */
export async function purgeMessages(ex: Executor, cutoffAt: number, chunk: number): Promise<number> {
  const threads = await ex.all<{ project_id: string; thread_id: string }>(sql`SELECT m.project_id, m.thread_id
    FROM messages m GROUP BY m.project_id, m.thread_id
    HAVING max(m.created_at) < ${cutoffAt}
      AND sum(CASE WHEN EXISTS (SELECT 1 FROM message_recipients r WHERE r.seq = m.seq
            AND (r.read_at IS NULL OR (m.ack_required = 1 AND r.acked_at IS NULL))) THEN 1 ELSE 0 END) = 0
    LIMIT ${chunk}`);
  for (const t of threads) {
    await ex.run(sql`DELETE FROM message_recipients WHERE seq IN
        (SELECT seq FROM messages WHERE project_id = ${t.project_id} AND thread_id = ${t.thread_id})`);
    await ex.run(sql`DELETE FROM messages WHERE project_id = ${t.project_id} AND thread_id = ${t.thread_id}`);
  }
  return threads.length;
}
