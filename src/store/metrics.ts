import type { Executor } from './db.js';
import { sql } from './sql.js';

/** Store reads behind the gauges of `GET /metrics` (src/api/http/metrics.ts): counts over every project. */

export function tasksByState(ex: Executor): Promise<{ status: string; n: number }[]> {
  return ex.all(sql`SELECT status, count(*) AS n FROM tasks GROUP BY status`);
}

/** Ready tasks by priority: the claim queue (uses the tasks_claimable index's status column). */
export function readyByPriority(ex: Executor): Promise<{ priority: number; n: number }[]> {
  return ex.all(sql`SELECT priority, count(*) AS n FROM tasks WHERE status = 'ready' GROUP BY priority`);
}

/**
 * Events of one type after an event id, and the newest id seen: a counter of lease expiries,
 * read incrementally (only the events since the last scrape are scanned).
 */
export async function countEventsAfter(ex: Executor, type: string, after: number): Promise<{ n: number; head: number }> {
  const row = await ex.get<{ n: number; head: number | null }>(
    sql`SELECT sum(CASE WHEN type = ${type} THEN 1 ELSE 0 END) AS n, max(id) AS head FROM events WHERE id > ${after}`,
  );
  return { n: row?.n ?? 0, head: row?.head ?? after };
}
