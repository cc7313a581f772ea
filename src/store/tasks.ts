import type { MachineTime } from '../core/clock.js';
import type { ClockStep } from '../core/clock-step.js';
import type { TaskState } from '../core/tasks.js';
import type { Executor } from './db.js';
import { releaseLocksSql, releaseTaskLocks, toLock, type Lock, type LockRow } from './locks.js';
import { join, list, sql, trusted, type Sql } from './sql.js';

/**
 * Task statements. The hot ones (claim, heartbeat, the lease sweep) each run as one atomic
 * statement, and every write after a claim is fenced by lease owner + lease token.
 */
export interface TaskRow {
  id: string;
  project_id: string;
  title: string;
  description: string;
  priority: number;
  labels: string;
  capabilities: string;
  caps_count: number;
  parent_id: string | null;
  context: string | null;
  assignee_agent: string | null;
  assignee_role: string | null;
  status: TaskState;
  deps_open: number;
  attempts: number;
  max_attempts: number;
  available_at: number;
  lease_owner: string | null;
  lease_token: number;
  lease_expires_at: number | null;
  result: string | null;
  last_error: string | null;
  needs_approval: number;
  idempotency_key: string | null;
  created_by: string;
  created_at: number;
  updated_at: number;
  claimed_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  version: number;
  /** The last finish (see migration 9): replayed to a retry with the same owner, token and op. */
  finish_owner: string | null;
  finish_token: number | null;
  finish_op: string | null;
  finish_answer: string | null;
}

export interface NewTask {
  id: string;
  projectId: string;
  title: string;
  description: string;
  priority: number;
  labels: string[];
  capabilities: string[];
  parentId: string | null;
  context: string | null;
  assigneeAgent: string | null;
  assigneeRole: string | null;
  status: 'blocked' | 'ready';
  depsOpen: number;
  maxAttempts: number;
  needsApproval: boolean;
  idempotencyKey: string | null;
  createdBy: string;
  now: number;
}

export async function insertTask(ex: Executor, t: NewTask, deps: readonly string[]): Promise<void> {
  await ex.run(sql`INSERT INTO tasks (id, project_id, title, description, priority, labels, capabilities, caps_count,
      parent_id, context, assignee_agent, assignee_role, status, deps_open, max_attempts, available_at,
      needs_approval, idempotency_key, created_by, created_at, updated_at)
    VALUES (${t.id}, ${t.projectId}, ${t.title}, ${t.description}, ${t.priority}, ${JSON.stringify(t.labels)},
      ${JSON.stringify(t.capabilities)}, ${t.capabilities.length}, ${t.parentId}, ${t.context}, ${t.assigneeAgent},
      ${t.assigneeRole}, ${t.status}, ${t.depsOpen}, ${t.maxAttempts}, ${t.now}, ${t.needsApproval},
      ${t.idempotencyKey}, ${t.createdBy}, ${t.now}, ${t.now})`);
  for (const cap of new Set(t.capabilities)) {
    await ex.run(sql`INSERT INTO task_caps (task_id, cap) VALUES (${t.id}, ${cap})`);
  }
  for (const dep of new Set(deps)) {
    await ex.run(sql`INSERT INTO task_deps (task_id, depends_on) VALUES (${t.id}, ${dep})`);
  }
}

export function getTask(ex: Executor, projectId: string, id: string): Promise<TaskRow | undefined> {
  return ex.get<TaskRow>(sql`SELECT * FROM tasks WHERE id = ${id} AND project_id = ${projectId}`);
}

export function taskByIdempotencyKey(ex: Executor, projectId: string, key: string): Promise<TaskRow | undefined> {
  return ex.get<TaskRow>(sql`SELECT * FROM tasks WHERE project_id = ${projectId} AND idempotency_key = ${key}`);
}

/** The statuses of the given tasks that exist in the project (others are simply absent). */
export async function statusesOf(
  ex: Executor,
  projectId: string,
  ids: readonly string[],
): Promise<Map<string, TaskState>> {
  const rows = await ex.all<{ id: string; status: TaskState }>(
    sql`SELECT id, status FROM tasks WHERE project_id = ${projectId} AND id IN ${list(ids)}`,
  );
  return new Map(rows.map((r) => [r.id, r.status]));
}

export async function depsOf(ex: Executor, taskIds: readonly string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>(taskIds.map((id) => [id, []]));
  if (taskIds.length === 0) return out;
  const rows = await ex.all<{ task_id: string; depends_on: string }>(
    sql`SELECT task_id, depends_on FROM task_deps WHERE task_id IN ${list(taskIds)} ORDER BY depends_on`,
  );
  for (const r of rows) out.get(r.task_id)?.push(r.depends_on);
  return out;
}

/** Every task reachable from `start` through depends_on edges, with its edges (for cycle checks). */
export async function dependencyClosure(ex: Executor, start: readonly string[]): Promise<Map<string, string[]>> {
  const rows = await ex.all<{ task_id: string; depends_on: string }>(sql`
    WITH RECURSIVE reach(id) AS (
      SELECT depends_on FROM task_deps WHERE task_id IN ${list(start)}
      UNION
      SELECT d.depends_on FROM task_deps d JOIN reach r ON d.task_id = r.id
    )
    SELECT task_id, depends_on FROM task_deps WHERE task_id IN (SELECT id FROM reach) OR task_id IN ${list(start)}`);
  const graph = new Map<string, string[]>();
  for (const r of rows) {
    const deps = graph.get(r.task_id) ?? [];
    deps.push(r.depends_on);
    graph.set(r.task_id, deps);
  }
  return graph;
}

export interface ClaimRequest extends Claimant {
  agentId: string;
  leaseMs: number;
  /** Claim this task only. */
  taskId?: string;
}

/**
 * The claim: one UPDATE that picks the most urgent ready task this agent may take and leases it.
 * Two claimers can never both get a task: the row changes from `ready` in one statement, under
 * SQLite's write lock (and `FOR UPDATE SKIP LOCKED` on PostgreSQL).
 */
/** Who may claim: a task `t` of the project, ready and past its backoff, for this agent (assignee, role, capabilities). */
export interface Claimant {
  projectId: string;
  agentName: string;
  role: string;
  capabilities: readonly string[];
  now: number;
}

/** The claim's eligibility rule, as a condition on `t` (the claim below, and the brief's "ready for you"). */
export function claimableBy(r: Claimant): Sql {
  const capsOk =
    r.capabilities.length === 0
      ? sql`t.caps_count = 0`
      : sql`(t.caps_count = 0 OR NOT EXISTS (SELECT 1 FROM task_caps c WHERE c.task_id = t.id AND c.cap NOT IN ${list(r.capabilities)}))`;
  return sql`t.project_id = ${r.projectId} AND t.status = 'ready' AND t.available_at <= ${r.now}
        AND (t.assignee_agent IS NULL OR t.assignee_agent = ${r.agentName})
        AND (t.assignee_role IS NULL OR t.assignee_role = ${r.role})
        AND ${capsOk}`;
}

/**
 * Claims the first task `r` may take, and returns it with its dependencies (`deps`, ordered):
 * read in the same statement (the claim's answer lists them), one round trip fewer on a backend
 * where every statement is one.
 */
export async function claimTask(ex: Executor, r: ClaimRequest): Promise<(TaskRow & { deps: string[] }) | undefined> {
  const only = r.taskId === undefined ? trusted('') : sql` AND t.id = ${r.taskId}`;
  const deps = ex.dialect.jsonArrayOf(sql`SELECT depends_on AS v FROM task_deps WHERE task_id = tasks.id ORDER BY depends_on`);
  const row = await ex.get<TaskRow & { deps_json: string | string[] }>(sql`
    UPDATE tasks SET status = 'claimed', lease_owner = ${r.agentName}, lease_token = lease_token + 1,
      lease_expires_at = ${r.now + r.leaseMs}, attempts = attempts + 1, claimed_at = ${r.now},
      started_at = NULL, updated_at = ${r.now}, version = version + 1
    WHERE status = 'ready' AND id = (
      SELECT t.id FROM tasks t
      WHERE ${claimableBy(r)}${only}
      ORDER BY t.priority, t.created_at, t.id
      LIMIT 1${ex.dialect.skipLocked})
    RETURNING *, ${deps} AS deps_json`);
  if (row === undefined) return undefined;
  const { deps_json: json, ...task } = row;
  // SQLite gives the JSON as text, PostgreSQL's json as parsed.
  return { ...task, deps: (typeof json === 'string' ? JSON.parse(json) : json) as string[] };
}

/** When the next backed-off task in the project becomes claimable, if any (for waiting claimers). */
export async function nextAvailableAt(ex: Executor, projectId: string, now: number): Promise<number | null> {
  const row = await ex.get<{ at: number | null }>(
    sql`SELECT min(available_at) AS at FROM tasks WHERE project_id = ${projectId} AND status = 'ready' AND available_at > ${now}`,
  );
  return row?.at ?? null;
}

export interface Fence {
  projectId: string;
  id: string;
  owner: string;
  token: number;
  now: number;
}

const fenced = (f: Fence): Sql =>
  sql`id = ${f.id} AND project_id = ${f.projectId} AND status IN ('claimed', 'running')
      AND lease_owner = ${f.owner} AND lease_token = ${f.token} AND lease_expires_at > ${f.now}`;

export function startTask(ex: Executor, f: Fence): Promise<TaskRow | undefined> {
  return ex.get<TaskRow>(sql`UPDATE tasks SET status = 'running', started_at = coalesce(started_at, ${f.now}),
      updated_at = ${f.now}, version = version + 1 WHERE ${fenced(f)} RETURNING *`);
}

export function heartbeatTask(ex: Executor, f: Fence, leaseMs: number): Promise<TaskRow | undefined> {
  return ex.get<TaskRow>(sql`UPDATE tasks SET lease_expires_at = ${f.now + leaseMs}, updated_at = ${f.now}
      WHERE ${fenced(f)} RETURNING *`);
}

/** How many earlier finishes a task keeps for their replay: a task claimed and released without end keeps no more. */
export const KEPT_FINISHES = 16;

/**
 * A task that was finished before is claimed again: its last finish is kept (task_finishes, keyed
 * by its lease token), so a repeat of it still gets its answer after this attempt finishes too;
 * finishes more than KEPT_FINISHES claims old are dropped (a repeat of one gets `lease_lost`).
 */
export async function keepFinish(ex: Executor, row: TaskRow): Promise<void> {
  if (row.finish_token === null || row.finish_owner === null || row.finish_op === null || row.finish_answer === null) return;
  await ex.run(sql`INSERT INTO task_finishes (task_id, token, owner, op, answer)
    VALUES (${row.id}, ${row.finish_token}, ${row.finish_owner}, ${row.finish_op}, ${row.finish_answer})
    ON CONFLICT (task_id, token) DO NOTHING`);
  if (row.finish_token > KEPT_FINISHES) await ex.run(sql`DELETE FROM task_finishes WHERE task_id = ${row.id} AND token <= ${row.finish_token - KEPT_FINISHES}`);
}

/** An earlier finish of the task made with `token` (keepFinish), if one was kept. */
export function keptFinish(ex: Executor, id: string, token: number): Promise<{ owner: string; op: string; answer: string } | undefined> {
  return ex.get(sql`SELECT owner, op, answer FROM task_finishes WHERE task_id = ${id} AND token = ${token}`);
}

/** What a finish records for its replay (the answer as JSON, as the op returned it). */
const finishOf = (f: Fence, op: string, answer: Sql): Sql =>
  sql`finish_owner = ${f.owner}, finish_token = ${f.token}, finish_op = ${op}, finish_answer = ${answer}`;

/**
 * Completes a fenced task. A task that needs an approval completes only when the caller has
 * checked that one was granted (`approved`); otherwise nothing matches and the caller explains.
 * The answer is recorded in the same statement: `unblocked` are the dependents for which this was
 * the last open dependency (exactly those `resolveDependency` then frees), by id.
 */
function completeTask(
  ex: Executor,
  f: Fence,
  result: string,
  approved = false,
): Promise<{ status: TaskState } | undefined> {
  return ex.get<{ status: TaskState }>(completeUpdate(ex, f, result, approved));
}

/** The fenced UPDATE of a completion (completeTask), `RETURNING status`. */
function completeUpdate(ex: Executor, f: Fence, result: string, approved: boolean): Sql {
  const gate = approved ? trusted('') : trusted(' AND needs_approval = 0');
  const d = ex.dialect;
  const answer = d.jsonObject([
    ['id', d.text(f.id)],
    ['status', d.text('done')],
    [
      'unblocked',
      d.jsonArrayOf(sql`SELECT d.task_id AS v FROM task_deps d JOIN tasks x ON x.id = d.task_id
            WHERE d.depends_on = ${f.id} AND x.deps_open = 1 AND x.status = 'blocked' ORDER BY d.task_id`),
    ],
  ]);
  return sql`UPDATE tasks SET status = 'done', result = ${result}, lease_owner = NULL,
      lease_expires_at = NULL, finished_at = ${f.now}, updated_at = ${f.now}, version = version + 1,
      ${finishOf(f, 'task_complete', answer)}
      WHERE ${fenced(f)}${gate} RETURNING status`;
}

/** What a completion did besides finishing its task: the locks it released, the dependents it freed. */
export interface Completed {
  status: TaskState;
  released: Lock[];
  unblocked: string[];
}

/**
 * A completion (`approved`: the caller checked that its approval was granted; see completeTask)
 * with what follows it: the task's locks released and its dependents resolved. Where the dialect
 * runs UPDATE and DELETE inside a WITH (PostgreSQL) it is one statement (the three run under the
 * project's lock one after the other otherwise; each a round trip there): the release and the
 * resolution only happen when the fenced UPDATE matched.
 * Undefined when it did not (the caller explains, or replays a finish).
 */
export async function completeReleasing(ex: Executor, f: Fence, result: string, approved = false): Promise<Completed | undefined> {
  if (!ex.dialect.insertInWith) {
    const row = await completeTask(ex, f, result, approved);
    if (row === undefined) return undefined;
    // Neither waits for the other's answer.
    const [released, unblocked] = await Promise.all([releaseTaskLocks(ex, f.projectId, f.id, f.now), resolveDependency(ex, f.id, f.now)]);
    return { status: row.status, released, unblocked };
  }
  const r = await ex.get<{ status: TaskState | null; released: LockRow[] | null; freed: Freed[] | null }>(sql`WITH done AS (${completeUpdate(ex, f, result, approved)}),
      released AS (${releaseLocksSql(f.projectId, f.id, sql` AND EXISTS (SELECT 1 FROM done)`)}),
      freed AS (${resolveSql(f.id, f.now, sql` AND EXISTS (SELECT 1 FROM done)`)})
    SELECT (SELECT status FROM done) AS status, (SELECT json_agg(released) FROM released) AS released,
      (SELECT json_agg(freed) FROM freed) AS freed`);
  if (r === undefined || r.status === null) return undefined;
  return { status: r.status, released: (r.released ?? []).map(toLock), unblocked: freedOf(r.freed ?? []) };
}

/** Back to `ready` at `availableAt` (retry with backoff) or `failed` (dead-lettered). */
export function failTask(
  ex: Executor,
  f: Fence,
  error: string,
  next: { state: 'ready'; availableAt: number } | { state: 'failed' },
  answer: string,
): Promise<TaskRow | undefined> {
  const availableAt = next.state === 'ready' ? next.availableAt : f.now;
  const finishedAt = next.state === 'failed' ? f.now : null;
  return ex.get<TaskRow>(sql`UPDATE tasks SET status = ${next.state}, last_error = ${error}, lease_owner = NULL,
      lease_expires_at = NULL, available_at = ${availableAt}, finished_at = ${finishedAt}, updated_at = ${f.now},
      version = version + 1, ${finishOf(f, 'task_fail', sql`${answer}`)} WHERE ${fenced(f)} RETURNING *`);
}

/** A voluntary release does not count as an attempt. */
export function releaseTask(ex: Executor, f: Fence, answer: string): Promise<TaskRow | undefined> {
  return ex.get<TaskRow>(sql`UPDATE tasks SET status = 'ready', attempts = attempts - 1, lease_owner = NULL,
      lease_expires_at = NULL, available_at = ${f.now}, updated_at = ${f.now}, version = version + 1,
      ${finishOf(f, 'task_release', sql`${answer}`)} WHERE ${fenced(f)} RETURNING *`);
}

/**
 * After a forward wall-clock step: live leases (not yet expired in the time they were written in)
 * that were last written before the step move forward by the step. The move writes `updated_at`
 * in the new time, so applying the same step again (another process saw it too, or the sweeper
 * re-applies one an op applied) matches nothing; leases heartbeated after the step are already in
 * the new time and are left alone. Returns how many leases moved.
 */
export async function extendLeasesAfterStep(
  ex: Executor,
  step: { stepMs: number; unsteppedNow: number; now: number; writtenBefore: number },
): Promise<number> {
  const { changes } = await ex.run(sql`UPDATE tasks SET lease_expires_at = lease_expires_at + ${step.stepMs},
      updated_at = ${step.now}
    WHERE lease_expires_at > ${step.unsteppedNow} AND status IN ('claimed', 'running')
      AND updated_at < ${step.writtenBefore}`);
  return changes;
}

/**
 * The forward wall-clock step since the offset (wall − machine monotonic) last recorded for this
 * boot by any process, recorded anew in this transaction (a rollback forgets both). Null when the
 * offset moved by no more than `slackMs`; on the first reading of a boot (rows of other boots
 * are dropped: one machine holds one SQLite file); and for a backward
 * change, which is recorded only when `recordBackward` (the caller saw its own offset fall: see
 * ops/tasks.ts wallSteps) and moves nothing (leases then just last longer). Steps are recorded
 * before any lease is written after them (ops/tasks.ts checkStepBeforeLease), so every lease
 * still live in unstepped time was written before the step and moves; a lease written before the
 * step may carry a later wall time than the step's own (an earlier backward step), so none is
 * told apart by its write time. Applied once, by one process: the write lock orders the checks.
 */
export async function wallStepSince(
  ex: Executor,
  machine: MachineTime,
  wall: number,
  now: number,
  slackMs: number,
  recordBackward: boolean,
): Promise<ClockStep | null> {
  const offset = Math.round(wall - machine.ms);
  const row = await ex.get<{ offset_ms: number | string }>(sql`SELECT offset_ms FROM clock_offsets WHERE boot = ${machine.boot}`);
  if (row === undefined) {
    await ex.run(sql`DELETE FROM clock_offsets WHERE boot <> ${machine.boot}`);
    await ex.run(sql`INSERT INTO clock_offsets (boot, offset_ms) VALUES (${machine.boot}, ${offset}) ON CONFLICT (boot) DO NOTHING`);
    return null;
  }
  const stepMs = offset - Number(row.offset_ms);
  if (Math.abs(stepMs) <= slackMs || (stepMs < 0 && !recordBackward)) return null;
  await ex.run(sql`UPDATE clock_offsets SET offset_ms = ${offset} WHERE boot = ${machine.boot}`);
  if (stepMs < 0) return null;
  return { stepMs, unsteppedNow: now - stepMs, now, writtenBefore: now + 1 };
}

/** Tasks whose lease has run out, oldest expiry first (in one project, or in all). */
export function expiredLeases(ex: Executor, now: number, projectId: string | null, max = 500): Promise<TaskRow[]> {
  const scope = projectId === null ? trusted('') : sql` AND project_id = ${projectId}`;
  return ex.all<TaskRow>(sql`SELECT * FROM tasks WHERE lease_expires_at IS NOT NULL AND lease_expires_at <= ${now}
      AND status IN ('claimed', 'running')${scope} ORDER BY lease_expires_at LIMIT ${max}`);
}

export async function hasExpiredLease(ex: Executor, projectId: string, now: number): Promise<boolean> {
  const row = await ex.get<{ one: number }>(sql`SELECT 1 AS one FROM tasks WHERE lease_expires_at IS NOT NULL
      AND lease_expires_at <= ${now} AND project_id = ${projectId} AND status IN ('claimed', 'running') LIMIT 1`);
  return row !== undefined;
}

/**
 * Ends an expired lease (fenced on the lease token it expired with): retry or dead-letter. The
 * expiry is checked again in the UPDATE itself: a heartbeat that extended the lease after `row`
 * was read (on another instance, between the sweeper's read and this write) keeps it.
 */
export function expireLease(
  ex: Executor,
  row: TaskRow,
  now: number,
  next: { state: 'ready'; availableAt: number } | { state: 'failed' },
): Promise<TaskRow | undefined> {
  const availableAt = next.state === 'ready' ? next.availableAt : now;
  const finishedAt = next.state === 'failed' ? now : null;
  return ex.get<TaskRow>(sql`UPDATE tasks SET status = ${next.state}, last_error = 'lease expired',
      lease_owner = NULL, lease_expires_at = NULL, available_at = ${availableAt}, finished_at = ${finishedAt},
      updated_at = ${now}, version = version + 1
      WHERE id = ${row.id} AND lease_token = ${row.lease_token} AND status IN ('claimed', 'running')
        AND lease_expires_at IS NOT NULL AND lease_expires_at <= ${now}
      RETURNING *`);
}

/** A dependent a finished dependency touched (resolveSql): its new status and open dependencies. */
interface Freed {
  id: string;
  status: TaskState;
  deps_open: number;
}

/**
 * One statement: the dependents of `doneId` have one open dependency fewer, and those that
 * reach zero while blocked become ready (every SET expression reads the row as it was).
 */
function resolveSql(doneId: string, now: number, also: Sql = trusted('')): Sql {
  const freed = trusted(`deps_open = 1 AND status = 'blocked'`);
  return sql`UPDATE tasks SET deps_open = deps_open - 1, updated_at = ${now},
      status = CASE WHEN ${freed} THEN 'ready' ELSE status END,
      available_at = CASE WHEN ${freed} THEN ${now} ELSE available_at END,
      version = CASE WHEN ${freed} THEN version + 1 ELSE version END
    WHERE id IN (SELECT task_id FROM task_deps WHERE depends_on = ${doneId}) AND deps_open > 0${also}
    RETURNING id, status, deps_open`;
}

/** The dependents that became ready, by id. */
function freedOf(rows: readonly Freed[]): string[] {
  return rows
    .filter((t) => t.deps_open === 0 && t.status === 'ready')
    .map((t) => t.id)
    .sort();
}

/** A dependency finished: its dependents have one open dependency fewer; those at zero become ready. */
export async function resolveDependency(ex: Executor, doneId: string, now: number): Promise<string[]> {
  return freedOf(await ex.all<Freed>(resolveSql(doneId, now)));
}

export interface TaskFilter {
  projectId: string;
  statuses?: readonly TaskState[];
  assignee?: string;
  label?: string;
  leaseOwner?: string;
  parentId?: string;
  after?: { priority: number; createdAt: number; id: string };
  limit: number;
}

export function listTasks(ex: Executor, f: TaskFilter): Promise<TaskRow[]> {
  const where: Sql[] = [sql`project_id = ${f.projectId}`];
  if (f.statuses !== undefined && f.statuses.length > 0) where.push(sql`status IN ${list(f.statuses)}`);
  if (f.assignee !== undefined) where.push(sql`assignee_agent = ${f.assignee}`);
  if (f.leaseOwner !== undefined) where.push(sql`lease_owner = ${f.leaseOwner}`);
  if (f.parentId !== undefined) where.push(sql`parent_id = ${f.parentId}`);
  if (f.label !== undefined) where.push(ex.dialect.jsonArrayHas(trusted('labels'), f.label));
  if (f.after !== undefined) {
    const a = f.after;
    where.push(sql`(priority, created_at, id) > (${a.priority}, ${a.createdAt}, ${a.id})`);
  }
  return ex.all<TaskRow>(sql`SELECT * FROM tasks WHERE ${join(where, trusted(' AND '))}
      ORDER BY priority, created_at, id LIMIT ${f.limit}`);
}

export interface TaskPatch {
  title?: string;
  description?: string;
  priority?: number;
  labels?: string[];
  capabilities?: string[];
  context?: string | null;
  assigneeAgent?: string | null;
  assigneeRole?: string | null;
  maxAttempts?: number;
}

export async function patchTask(ex: Executor, row: TaskRow, p: TaskPatch, now: number): Promise<TaskRow> {
  const sets: Sql[] = [sql`updated_at = ${now}`, sql`version = version + 1`];
  if (p.title !== undefined) sets.push(sql`title = ${p.title}`);
  if (p.description !== undefined) sets.push(sql`description = ${p.description}`);
  if (p.priority !== undefined) sets.push(sql`priority = ${p.priority}`);
  if (p.labels !== undefined) sets.push(sql`labels = ${JSON.stringify(p.labels)}`);
  if (p.context !== undefined) sets.push(sql`context = ${p.context}`);
  if (p.assigneeAgent !== undefined) sets.push(sql`assignee_agent = ${p.assigneeAgent}`);
  if (p.assigneeRole !== undefined) sets.push(sql`assignee_role = ${p.assigneeRole}`);
  if (p.maxAttempts !== undefined) sets.push(sql`max_attempts = ${p.maxAttempts}`);
  if (p.capabilities !== undefined) {
    const caps = [...new Set(p.capabilities)];
    sets.push(sql`capabilities = ${JSON.stringify(caps)}`, sql`caps_count = ${caps.length}`);
    await ex.run(sql`DELETE FROM task_caps WHERE task_id = ${row.id}`);
    for (const cap of caps) await ex.run(sql`INSERT INTO task_caps (task_id, cap) VALUES (${row.id}, ${cap})`);
  }
  const out = await ex.get<TaskRow>(
    sql`UPDATE tasks SET ${join(sets)} WHERE id = ${row.id} AND version = ${row.version} RETURNING *`,
  );
  if (out === undefined) throw new Error('task changed during update');
  return out;
}

/** Replaces a task's dependencies and recounts the open ones; the caller decides blocked/ready. */
export async function replaceDeps(ex: Executor, id: string, deps: readonly string[]): Promise<number> {
  await ex.run(sql`DELETE FROM task_deps WHERE task_id = ${id}`);
  for (const dep of new Set(deps)) await ex.run(sql`INSERT INTO task_deps (task_id, depends_on) VALUES (${id}, ${dep})`);
  const row = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM task_deps d JOIN tasks t ON t.id = d.depends_on
      WHERE d.task_id = ${id} AND t.status <> 'done'`);
  return row?.n ?? 0;
}

export function setStatus(
  ex: Executor,
  row: TaskRow,
  status: TaskState,
  now: number,
  extra: { depsOpen?: number; resetAttempts?: boolean } = {},
): Promise<TaskRow | undefined> {
  const finishedAt = status === 'done' || status === 'failed' || status === 'cancelled' ? now : null;
  const deps = extra.depsOpen === undefined ? trusted('') : sql`, deps_open = ${extra.depsOpen}`;
  const attempts = extra.resetAttempts === true ? trusted(', attempts = 0, last_error = NULL') : trusted('');
  return ex.get<TaskRow>(sql`UPDATE tasks SET status = ${status}, lease_owner = NULL, lease_expires_at = NULL,
      available_at = ${now}, finished_at = ${finishedAt}, updated_at = ${now}, version = version + 1${deps}${attempts}
      WHERE id = ${row.id} AND version = ${row.version} RETURNING *`);
}

export async function countByStatus(ex: Executor, projectId: string): Promise<Record<string, number>> {
  const rows = await ex.all<{ status: string; n: number }>(
    sql`SELECT status, count(*) AS n FROM tasks WHERE project_id = ${projectId} GROUP BY status`,
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}
