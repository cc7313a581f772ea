import type { ApprovalRow } from './oversight.js';
import type { Executor } from './db.js';
import type { InboxRow } from './messages.js';
import { list, sql } from './sql.js';
import { claimableBy, type Claimant, type TaskRow } from './tasks.js';

/**
 * The statements behind `prime` (an agent's brief) that no other op needs. Each is bounded by
 * `limit` and paired with a count, so the brief can say "+N more" instead of listing everything.
 */

/** The ready tasks this agent may claim now, most urgent first (the order a claim takes them), and how many there are. */
export async function readyFor(ex: Executor, r: Claimant, limit: number): Promise<{ rows: TaskRow[]; count: number }> {
  const rows = await ex.all<TaskRow>(sql`SELECT t.* FROM tasks t WHERE ${claimableBy(r)} ORDER BY t.priority, t.created_at, t.id LIMIT ${limit}`);
  const count = rows.length < limit ? rows.length : ((await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM tasks t WHERE ${claimableBy(r)}`))?.n ?? 0);
  return { rows, count };
}

/** Unread messages to this agent of the given importance, oldest first, and how many there are. */
export async function unreadOf(
  ex: Executor,
  f: { projectId: string; agentId: string; importance: readonly string[] },
  limit: number,
): Promise<{ rows: InboxRow[]; count: number }> {
  const where = sql`r.agent_id = ${f.agentId} AND m.project_id = ${f.projectId} AND r.read_at IS NULL AND m.importance IN ${list(f.importance)}`;
  const rows = await ex.all<InboxRow>(sql`SELECT m.*, r.read_at, r.acked_at FROM message_recipients r JOIN messages m ON m.seq = r.seq
    WHERE ${where} ORDER BY m.seq LIMIT ${limit}`);
  const count =
    rows.length < limit
      ? rows.length
      : ((await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM message_recipients r JOIN messages m ON m.seq = r.seq WHERE ${where}`))?.n ?? 0);
  return { rows, count };
}

/** Approvals this agent asked for that were decided since `since`, newest decision first. */
export async function decidedFor(
  ex: Executor,
  f: { projectId: string; agentId: string; since: number },
  limit: number,
): Promise<{ rows: ApprovalRow[]; count: number }> {
  const where = sql`project_id = ${f.projectId} AND requester_id = ${f.agentId} AND status <> 'pending' AND decided_at >= ${f.since}`;
  const rows = await ex.all<ApprovalRow>(sql`SELECT * FROM approvals WHERE ${where} ORDER BY decided_at DESC, id DESC LIMIT ${limit}`);
  const count = rows.length < limit ? rows.length : ((await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM approvals WHERE ${where}`))?.n ?? 0);
  return { rows, count };
}
