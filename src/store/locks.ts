import type { Executor } from './db.js';
import { sql, trusted, type Sql } from './sql.js';

/**
 * Lock statements. A lock row exists while the lock does; every way a lock ends deletes it and
 * returns what was deleted, so the caller (which owns the event stream) can announce it.
 * Overlap is decided in code over a project's live locks (core/globs.ts), inside the caller's
 * write transaction: the check and the insert cannot interleave with another acquirer's.
 */
export type LockMode = 'exclusive' | 'shared';

export interface LockRow {
  id: string;
  project_id: string;
  agent_id: string;
  agent_name: string;
  mode: LockMode;
  paths: string;
  reason: string | null;
  task_id: string | null;
  created_at: number;
  expires_at: number;
}

export interface Lock {
  id: string;
  projectId: string;
  agentId: string;
  agentName: string;
  mode: LockMode;
  paths: string[];
  reason: string | null;
  taskId: string | null;
  createdAt: number;
  expiresAt: number;
}

export function toLock(r: LockRow): Lock {
  return {
    id: r.id,
    projectId: r.project_id,
    agentId: r.agent_id,
    agentName: r.agent_name,
    mode: r.mode,
    paths: JSON.parse(r.paths) as string[],
    reason: r.reason,
    taskId: r.task_id,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  };
}

export async function insertLock(ex: Executor, l: Lock): Promise<void> {
  await ex.run(sql`INSERT INTO locks (id, project_id, agent_id, agent_name, mode, paths, reason, task_id, created_at, expires_at)
    VALUES (${l.id}, ${l.projectId}, ${l.agentId}, ${l.agentName}, ${l.mode}, ${JSON.stringify(l.paths)}, ${l.reason},
      ${l.taskId}, ${l.createdAt}, ${l.expiresAt})`);
}

/** A lock of the project, live or not yet swept. */
export async function getLock(ex: Executor, projectId: string, id: string): Promise<Lock | undefined> {
  const row = await ex.get<LockRow>(sql`SELECT * FROM locks WHERE id = ${id} AND project_id = ${projectId}`);
  return row === undefined ? undefined : toLock(row);
}

export interface LockPage {
  projectId: string;
  now: number;
  agentName?: string;
  /** Strictly after this (created_at, id). */
  after?: { createdAt: number; id: string };
  limit: number;
}

/** Live locks of a project, oldest first. */
export async function liveLocks(ex: Executor, q: LockPage): Promise<Lock[]> {
  const agent = q.agentName === undefined ? sql`` : sql` AND agent_name = ${q.agentName}`;
  const after =
    q.after === undefined
      ? sql``
      : sql` AND (created_at > ${q.after.createdAt} OR (created_at = ${q.after.createdAt} AND id > ${q.after.id}))`;
  const rows = await ex.all<LockRow>(sql`SELECT * FROM locks WHERE project_id = ${q.projectId} AND expires_at > ${q.now}${agent}${after}
    ORDER BY created_at, id LIMIT ${q.limit}`);
  return rows.map(toLock);
}

export async function countLiveLocksOf(ex: Executor, projectId: string, agentId: string, now: number): Promise<number> {
  const row = await ex.get<{ n: number }>(
    sql`SELECT count(*) AS n FROM locks WHERE agent_id = ${agentId} AND project_id = ${projectId} AND expires_at > ${now}`,
  );
  return row?.n ?? 0;
}

export async function deleteLock(ex: Executor, projectId: string, id: string): Promise<Lock | undefined> {
  const row = await ex.get<LockRow>(sql`DELETE FROM locks WHERE id = ${id} AND project_id = ${projectId} RETURNING *`);
  return row === undefined ? undefined : toLock(row);
}

export async function renewLock(ex: Executor, projectId: string, id: string, expiresAt: number): Promise<Lock | undefined> {
  const row = await ex.get<LockRow>(
    sql`UPDATE locks SET expires_at = ${expiresAt} WHERE id = ${id} AND project_id = ${projectId} RETURNING *`,
  );
  return row === undefined ? undefined : toLock(row);
}

/** Deletes the project's expired locks (at most `limit`); returns them. */
export async function sweepProjectLocks(ex: Executor, projectId: string, now: number, limit = 100): Promise<Lock[]> {
  const rows = await ex.all<LockRow>(sql`DELETE FROM locks WHERE id IN (
      SELECT id FROM locks WHERE project_id = ${projectId} AND expires_at <= ${now} LIMIT ${limit}
    ) RETURNING *`);
  return rows.map(toLock);
}

/**
 * Releases every lock held for a task (call when the task completes, fails or is cancelled).
 * Returns the released locks; announce each with `lock.released` (see `lockReleasedEvent` in
 * ops/locks.ts).
 */
export async function releaseTaskLocks(ex: Executor, projectId: string, taskId: string, _now: number): Promise<Lock[]> {
  return (await ex.all<LockRow>(releaseLocksSql(projectId, taskId))).map(toLock);
}

/** The DELETE of a task's locks, returning them (`also`: a further condition, tasks.ts completeReleasing). */
export function releaseLocksSql(projectId: string, taskId: string, also: Sql = trusted('')): Sql {
  return sql`DELETE FROM locks WHERE task_id = ${taskId} AND project_id = ${projectId}${also} RETURNING *`;
}

/** Releases every lock an agent holds in a project (call when its session ends). Returns them. */
export async function releaseAgentLocks(ex: Executor, projectId: string, agentId: string, _now: number): Promise<Lock[]> {
  const rows = await ex.all<LockRow>(
    sql`DELETE FROM locks WHERE agent_id = ${agentId} AND project_id = ${projectId} RETURNING *`,
  );
  return rows.map(toLock);
}

/** Deletes expired locks of every project (the hub's sweeper). Returns them. */
export async function sweepLocks(ex: Executor, now: number): Promise<Lock[]> {
  const rows = await ex.all<LockRow>(sql`DELETE FROM locks WHERE expires_at <= ${now} RETURNING *`);
  return rows.map(toLock);
}
