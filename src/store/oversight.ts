import type { Executor } from './db.js';
import type { Before } from './discoveries.js';
import { join, sql, trusted, type Sql } from './sql.js';

/** Decisions (append-only) and approvals (pending → granted | denied, decided once). */
export interface DecisionRow {
  id: string;
  project_id: string;
  what: string;
  why: string;
  alternatives: string;
  task_id: string | null;
  author: string;
  created_at: number;
}

export interface NewDecision {
  id: string;
  projectId: string;
  what: string;
  why: string;
  /** JSON text of the alternatives (sealed when encryption is on). */
  alternatives: string;
  taskId: string | null;
  author: string;
  now: number;
}

export async function insertDecision(ex: Executor, d: NewDecision): Promise<void> {
  await ex.run(sql`INSERT INTO decisions (id, project_id, what, why, alternatives, task_id, author, created_at)
    VALUES (${d.id}, ${d.projectId}, ${d.what}, ${d.why}, ${d.alternatives}, ${d.taskId}, ${d.author},
      ${d.now})`);
}

/** Newest first. */
export function listDecisions(
  ex: Executor,
  f: { projectId: string; taskId?: string; before?: Before; limit: number },
): Promise<DecisionRow[]> {
  const where: Sql[] = [sql`project_id = ${f.projectId}`];
  if (f.taskId !== undefined) where.push(sql`task_id = ${f.taskId}`);
  if (f.before !== undefined) where.push(sql`(created_at, id) < (${f.before.createdAt}, ${f.before.id})`);
  return ex.all<DecisionRow>(sql`SELECT * FROM decisions WHERE ${join(where, trusted(' AND '))}
      ORDER BY created_at DESC, id DESC LIMIT ${f.limit}`);
}

export type ApprovalStatus = 'pending' | 'granted' | 'denied';

export interface ApprovalRow {
  id: string;
  project_id: string;
  action: string;
  details: string;
  risk: string;
  task_id: string | null;
  status: ApprovalStatus;
  requested_by: string;
  requester_id: string;
  decided_by: string | null;
  decided_at: number | null;
  reason: string | null;
  created_at: number;
}

export interface NewApproval {
  id: string;
  projectId: string;
  action: string;
  details: string;
  risk: string;
  taskId: string | null;
  requestedBy: string;
  requesterId: string;
  now: number;
}

export async function insertApproval(ex: Executor, a: NewApproval): Promise<void> {
  await ex.run(sql`INSERT INTO approvals (id, project_id, action, details, risk, task_id, status, requested_by,
      requester_id, created_at)
    VALUES (${a.id}, ${a.projectId}, ${a.action}, ${a.details}, ${a.risk}, ${a.taskId}, 'pending', ${a.requestedBy},
      ${a.requesterId}, ${a.now})`);
}

export function getApproval(ex: Executor, projectId: string, id: string): Promise<ApprovalRow | undefined> {
  return ex.get<ApprovalRow>(sql`SELECT * FROM approvals WHERE id = ${id} AND project_id = ${projectId}`);
}

/** Decides a pending approval; undefined when it does not exist in the project or is already decided. */
export function decideApproval(
  ex: Executor,
  d: { projectId: string; id: string; status: 'granted' | 'denied'; by: string; reason: string | null; now: number },
): Promise<ApprovalRow | undefined> {
  return ex.get<ApprovalRow>(sql`UPDATE approvals SET status = ${d.status}, decided_by = ${d.by}, decided_at = ${d.now},
      reason = ${d.reason}
    WHERE id = ${d.id} AND project_id = ${d.projectId} AND status = 'pending' RETURNING *`);
}

/** Newest first. */
export function listApprovals(
  ex: Executor,
  f: { projectId: string; status?: ApprovalStatus; before?: Before; limit: number },
): Promise<ApprovalRow[]> {
  const where: Sql[] = [sql`project_id = ${f.projectId}`];
  if (f.status !== undefined) where.push(sql`status = ${f.status}`);
  if (f.before !== undefined) where.push(sql`(created_at, id) < (${f.before.createdAt}, ${f.before.id})`);
  return ex.all<ApprovalRow>(sql`SELECT * FROM approvals WHERE ${join(where, trusted(' AND '))}
      ORDER BY created_at DESC, id DESC LIMIT ${f.limit}`);
}

/** Whether a granted approval names this task (what a task with needs_approval waits for). */
export async function approvalGranted(ex: Executor, projectId: string, taskId: string): Promise<boolean> {
  const row = await ex.get<{ one: number }>(sql`SELECT 1 AS one FROM approvals
    WHERE task_id = ${taskId} AND status = 'granted' AND project_id = ${projectId} LIMIT 1`);
  return row !== undefined;
}
