import type { Executor } from './db.js';
import { list, sql, trusted } from './sql.js';

/**
 * Sessions, checkpoints and handoffs. The one statement here that touches another area's table is
 * the lease transfer of a handoff (`transferLease`): it is fenced exactly like the task writes in
 * tasks.ts (status, owner, fencing token, unexpired), so it can never take a lease the ender no
 * longer holds, and it bumps the token so the ender's old token is stale from then on.
 */
export type SessionStatus = 'open' | 'ended' | 'abandoned';
export type HandoffStatus = 'pending' | 'accepted';

export interface SessionRow {
  id: string;
  project_id: string;
  agent_id: string;
  status: SessionStatus;
  goal: string | null;
  summary: string | null;
  checkpoints: number;
  started_at: number;
  ended_at: number | null;
}

export interface CheckpointRow {
  session_id: string;
  seq: number;
  at: number;
  summary: string;
  completed: string;
  metrics: string;
  commit_sha: string | null;
}

export interface HandoffRow {
  id: string;
  project_id: string;
  session_id: string;
  from_agent_id: string;
  from_name: string;
  to_kind: 'agent' | 'role' | 'anyone';
  to_agent_id: string | null;
  to_name: string | null;
  to_role: string | null;
  summary: string;
  next_goals: string;
  /** JSON `[{id, token}]`: the leases the ender held when it handed over. */
  leases: string;
  memory_keys: string;
  files: string;
  status: HandoffStatus;
  created_at: number;
  accepted_by: string | null;
  accepted_name: string | null;
  accepted_at: number | null;
}

export function openSessionOf(ex: Executor, projectId: string, agentId: string): Promise<SessionRow | undefined> {
  return ex.get<SessionRow>(
    sql`SELECT * FROM sessions WHERE agent_id = ${agentId} AND status = 'open' AND project_id = ${projectId}`,
  );
}

export async function insertSession(
  ex: Executor,
  s: { id: string; projectId: string; agentId: string; goal: string | null; now: number },
): Promise<SessionRow> {
  const row = await ex.get<SessionRow>(sql`INSERT INTO sessions (id, project_id, agent_id, status, goal, started_at)
      VALUES (${s.id}, ${s.projectId}, ${s.agentId}, 'open', ${s.goal}, ${s.now}) RETURNING *`);
  if (row === undefined) throw new Error('session insert returned nothing');
  return row;
}

/** Closes an open session; undefined when it was not open (any more). */
export function closeSession(
  ex: Executor,
  id: string,
  status: 'ended' | 'abandoned',
  summary: string | null,
  now: number,
): Promise<SessionRow | undefined> {
  return ex.get<SessionRow>(sql`UPDATE sessions SET status = ${status}, summary = coalesce(${summary}, summary),
      ended_at = ${now} WHERE id = ${id} AND status = 'open' RETURNING *`);
}

export async function addCheckpoint(
  ex: Executor,
  c: {
    sessionId: string;
    at: number;
    summary: string;
    completed: string;
    metrics: string;
    commitSha: string | null;
    /** Encrypts summary and completed once the checkpoint's number is known (S32: bound to it). */
    seal?: (seq: number, column: 'summary' | 'completed', value: string) => string;
  },
): Promise<CheckpointRow> {
  const counted = await ex.get<{ checkpoints: number }>(sql`UPDATE sessions SET checkpoints = checkpoints + 1
      WHERE id = ${c.sessionId} AND status = 'open' RETURNING checkpoints`);
  if (counted === undefined) throw new Error('checkpoint on a session that is not open');
  const seq = counted.checkpoints;
  const summary = c.seal === undefined ? c.summary : c.seal(seq, 'summary', c.summary);
  const completed = c.seal === undefined ? c.completed : c.seal(seq, 'completed', c.completed);
  const row = await ex.get<CheckpointRow>(sql`INSERT INTO session_checkpoints
      (session_id, seq, at, summary, completed, metrics, commit_sha)
      VALUES (${c.sessionId}, ${seq}, ${c.at}, ${summary}, ${completed}, ${c.metrics}, ${c.commitSha})
      RETURNING *`);
  if (row === undefined) throw new Error('checkpoint insert returned nothing');
  return row;
}

export function lastCheckpoint(ex: Executor, sessionId: string): Promise<CheckpointRow | undefined> {
  return ex.get<CheckpointRow>(
    sql`SELECT * FROM session_checkpoints WHERE session_id = ${sessionId} ORDER BY seq DESC LIMIT 1`,
  );
}

export interface HeldLease {
  id: string;
  status: string;
  lease_owner: string | null;
  lease_token: number;
  lease_expires_at: number | null;
}

/** The given tasks of the project with their lease state (absent ids are simply missing). */
export function leasesOf(ex: Executor, projectId: string, ids: readonly string[]): Promise<HeldLease[]> {
  return ex.all<HeldLease>(sql`SELECT id, status, lease_owner, lease_token, lease_expires_at FROM tasks
      WHERE project_id = ${projectId} AND id IN ${list(ids)}`);
}

export interface NewHandoff {
  id: string;
  projectId: string;
  sessionId: string;
  fromAgentId: string;
  fromName: string;
  to: { kind: 'agent'; agentId: string; name: string } | { kind: 'role'; role: string } | { kind: 'anyone' };
  summary: string;
  nextGoals: string;
  leases: string;
  memoryKeys: string;
  files: string;
  now: number;
}

export async function insertHandoff(ex: Executor, h: NewHandoff): Promise<HandoffRow> {
  const toAgent = h.to.kind === 'agent' ? h.to.agentId : null;
  const toName = h.to.kind === 'agent' ? h.to.name : null;
  const toRole = h.to.kind === 'role' ? h.to.role : null;
  const row = await ex.get<HandoffRow>(sql`INSERT INTO handoffs (id, project_id, session_id, from_agent_id, from_name,
      to_kind, to_agent_id, to_name, to_role, summary, next_goals, leases, memory_keys, files, status, created_at)
    VALUES (${h.id}, ${h.projectId}, ${h.sessionId}, ${h.fromAgentId}, ${h.fromName}, ${h.to.kind}, ${toAgent},
      ${toName}, ${toRole}, ${h.summary}, ${h.nextGoals}, ${h.leases}, ${h.memoryKeys}, ${h.files}, 'pending', ${h.now})
    RETURNING *`);
  if (row === undefined) throw new Error('handoff insert returned nothing');
  return row;
}

export function getHandoff(ex: Executor, projectId: string, id: string): Promise<HandoffRow | undefined> {
  return ex.get<HandoffRow>(sql`SELECT * FROM handoffs WHERE id = ${id} AND project_id = ${projectId}`);
}

export interface Reader {
  projectId: string;
  agentId: string;
  role: string;
}

/** Addressed to this reader: to its agent, to its role, or to anyone. */
const addressedTo = (r: Reader) =>
  sql`(to_kind = 'anyone' OR (to_kind = 'agent' AND to_agent_id = ${r.agentId})
      OR (to_kind = 'role' AND to_role = ${r.role}))`;

/** Handoffs the reader may see: addressed to it, or created by it; newest first. */
export function listHandoffs(
  ex: Executor,
  r: Reader,
  status: HandoffStatus | undefined,
  limit: number,
): Promise<HandoffRow[]> {
  const only = status === undefined ? trusted('') : sql` AND status = ${status}`;
  return ex.all<HandoffRow>(sql`SELECT * FROM handoffs WHERE project_id = ${r.projectId}
      AND (${addressedTo(r)} OR from_agent_id = ${r.agentId})${only}
      ORDER BY created_at DESC, id LIMIT ${limit}`);
}

/** Pending handoffs addressed to the reader by someone else: how many, and the oldest few. */
export async function pendingFor(ex: Executor, r: Reader, first: number): Promise<{ count: number; rows: HandoffRow[] }> {
  const where = sql`project_id = ${r.projectId} AND status = 'pending' AND from_agent_id <> ${r.agentId}
      AND ${addressedTo(r)}`;
  const counted = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM handoffs WHERE ${where}`);
  const rows = await ex.all<HandoffRow>(sql`SELECT * FROM handoffs WHERE ${where} ORDER BY created_at, id LIMIT ${first}`);
  return { count: counted?.n ?? 0, rows };
}

/** Marks a pending handoff accepted; undefined when it was not pending (any more). */
export function markAccepted(
  ex: Executor,
  id: string,
  by: { agentId: string; name: string },
  now: number,
): Promise<HandoffRow | undefined> {
  return ex.get<HandoffRow>(sql`UPDATE handoffs SET status = 'accepted', accepted_by = ${by.agentId},
      accepted_name = ${by.name}, accepted_at = ${now} WHERE id = ${id} AND status = 'pending' RETURNING *`);
}

export interface Transfer {
  projectId: string;
  taskId: string;
  /** The lease the ender held when it handed over: owner name and fencing token. */
  from: string;
  token: number;
  to: string;
  now: number;
  leaseMs: number;
}

/**
 * Moves one lease from the ender to the accepter, fenced like every task write: only while the
 * ender still holds that very lease (same token, unexpired). The token goes up by one, so a late
 * write with the ender's old token is refused as `lease_lost`.
 */
export function transferLease(
  ex: Executor,
  t: Transfer,
): Promise<{ id: string; lease_owner: string; lease_token: number; lease_expires_at: number } | undefined> {
  return ex.get(sql`UPDATE tasks SET lease_owner = ${t.to}, lease_token = lease_token + 1,
      lease_expires_at = ${t.now + t.leaseMs}, updated_at = ${t.now}, version = version + 1
    WHERE id = ${t.taskId} AND project_id = ${t.projectId} AND status IN ('claimed', 'running')
      AND lease_owner = ${t.from} AND lease_token = ${t.token} AND lease_expires_at > ${t.now}
    RETURNING id, lease_owner, lease_token, lease_expires_at`);
}

/**
 * Retention: finished sessions that ended before `cutoff` go, with their checkpoints and their
 * accepted handoffs. A session is kept while a handoff of it is still pending (someone may still
 * accept it), and open sessions are never touched. Returns how many sessions were removed.
 */
export async function sweepSessions(ex: Executor, cutoff: number): Promise<number> {
  const old = sql`SELECT s.id FROM sessions s WHERE s.status <> 'open' AND s.ended_at < ${cutoff}
    AND NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.session_id = s.id AND h.status = 'pending')`;
  await ex.run(sql`DELETE FROM session_checkpoints WHERE session_id IN (${old})`);
  await ex.run(sql`DELETE FROM handoffs WHERE session_id IN (${old})`);
  return (await ex.run(sql`DELETE FROM sessions WHERE id IN (${old})`)).changes;
}

export type HandoffPackage = Pick<HandoffRow, 'summary' | 'next_goals' | 'memory_keys' | 'files'>;

/** Key rotation (S32): handoffs with a package field not sealed under the key with this prefix. */
export function staleHandoffs(
  ex: Executor,
  prefix: string,
  limit: number,
): Promise<(HandoffPackage & Pick<HandoffRow, 'id' | 'project_id'>)[]> {
  const n = prefix.length;
  return ex.all(sql`SELECT id, project_id, summary, next_goals, memory_keys, files FROM handoffs
    WHERE substr(summary, 1, ${n}) <> ${prefix} OR substr(next_goals, 1, ${n}) <> ${prefix}
      OR substr(memory_keys, 1, ${n}) <> ${prefix} OR substr(files, 1, ${n}) <> ${prefix}
    ORDER BY created_at, id LIMIT ${limit}`);
}

export async function setHandoffPackage(ex: Executor, id: string, p: HandoffPackage): Promise<void> {
  await ex.run(sql`UPDATE handoffs SET summary = ${p.summary}, next_goals = ${p.next_goals},
    memory_keys = ${p.memory_keys}, files = ${p.files} WHERE id = ${id}`);
}
