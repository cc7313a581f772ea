import { z } from 'zod';
import { BatonError, notFound } from '../core/errors.js';
import { ID_PATTERN, newId } from '../core/ids.js';
import { decodeCursor, encodeCursor } from '../core/cursor.js';
import { CLOCK_STEP_SLACK_MS, stepDetectorOf, type ClockStep, type StepDetector } from '../core/clock-step.js';
import type { Clock } from '../core/clock.js';
import type { Config } from '../config.js';
import { afterFailure, findCycle, isFinal, isHeld, topoOrder, type TaskState } from '../core/tasks.js';
import type { Executor } from '../store/db.js';
import { setAgentProfile } from '../store/directory.js';
import { releaseTaskLocks, type Lock } from '../store/locks.js';
import { approvalGranted } from '../store/oversight.js';
import * as store from '../store/tasks.js';
import type { TaskRow } from '../store/tasks.js';
import { AAD, openNullable, openWith, sealNullable, sealWith, type Cipher, type TaskField } from '../security/crypto.js';
import { defineOp, RETRY, type OpContext, type OpDef } from './catalog.js';
import { lockReleasedEvent } from './locks.js';
import {
  lazy,
  agentName,
  capability,
  cursor,
  label,
  leaseToken,
  limit,
  LIMITS,
  roleName,
  taskContext,
  taskBatch,
  taskId,
  taskOut,
  taskResult,
  taskState,
  taskSummaryOut,
  waitMs,
  type TaskOut,
} from './schemas.js';

import { iso } from '../core/time.js';

function parseJson<T>(text: string | null, fallback: T): T {
  return text === null ? fallback : (JSON.parse(text) as T);
}

/**
 * Encryption at rest (S32): title, description, context, result and last_error are sealed when
 * written (bound to project, task id and column) and opened here, only for the tasks an op
 * returns. Rows written before encryption was on are read as they are.
 */
const openTask = (c: Cipher | undefined, row: TaskRow, field: TaskField): string | null =>
  openNullable(c, row[field], AAD.task(row.project_id, row.id, field));

const sealTask = (c: Cipher | undefined, projectId: string, id: string, field: TaskField, value: string): string =>
  sealWith(c, value, AAD.task(projectId, id, field));

export function toTaskOut(c: Cipher | undefined, row: TaskRow, dependsOn: readonly string[]): TaskOut {
  return {
    id: row.id,
    title: openWith(c, row.title, AAD.task(row.project_id, row.id, 'title')),
    description: openWith(c, row.description, AAD.task(row.project_id, row.id, 'description')),
    status: row.status,
    priority: row.priority,
    labels: parseJson<string[]>(row.labels, []),
    capabilities: parseJson<string[]>(row.capabilities, []),
    depends_on: [...dependsOn],
    parent_id: row.parent_id,
    context: parseJson(openTask(c, row, 'context'), null),
    assignee: row.assignee_agent,
    assignee_role: row.assignee_role,
    attempts: row.attempts,
    max_attempts: row.max_attempts,
    available_at: iso(row.available_at),
    lease:
      row.lease_owner !== null && row.lease_expires_at !== null
        ? { owner: row.lease_owner, token: row.lease_token, expires_at: iso(row.lease_expires_at) }
        : null,
    result: parseJson(openTask(c, row, 'result'), null),
    last_error: openTask(c, row, 'last_error'),
    needs_approval: row.needs_approval === 1,
    idempotency_key: row.idempotency_key,
    created_by: row.created_by,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    version: row.version,
  };
}

/** The short form lists use (only the title is opened). */
export function toTaskSummary(c: Cipher | undefined, row: TaskRow): z.infer<ReturnType<typeof taskSummaryOut>> {
  return {
    id: row.id,
    title: openWith(c, row.title, AAD.task(row.project_id, row.id, 'title')),
    status: row.status,
    priority: row.priority,
    labels: parseJson<string[]>(row.labels, []),
    assignee: row.assignee_agent,
    attempts: row.attempts,
    lease:
      row.lease_owner !== null && row.lease_expires_at !== null
        ? { owner: row.lease_owner, token: row.lease_token, expires_at: iso(row.lease_expires_at) }
        : null,
    updated_at: iso(row.updated_at),
  };
}

async function full(ctx: OpContext, row: TaskRow): Promise<TaskOut> {
  const deps = await store.depsOf(ctx.tx, [row.id]);
  return toTaskOut(ctx.services.cipher, row, deps.get(row.id) ?? []);
}

async function mustGet(ctx: OpContext, id: string): Promise<TaskRow> {
  const row = await store.getTask(ctx.tx, ctx.principal.projectId, id);
  if (row === undefined) throw notFound('task');
  ctx.target(id);
  return row;
}

type Emit = (projectId: string, type: string, subject: string, data: Record<string, unknown>) => Promise<void>;

/** A task's attempt ended (done, failed, released, cancelled, lease expired): its file locks go. */
async function releaseLocksOfTask(ex: Executor, projectId: string, taskId: string, now: number, emit: Emit): Promise<void> {
  await emitReleased(await releaseTaskLocks(ex, projectId, taskId, now), emit);
}

/** The events of a task's locks released because its attempt ended. */
async function emitReleased(released: readonly Lock[], emit: Emit): Promise<void> {
  for (const l of released) {
    const e = lockReleasedEvent(l, 'task_ended');
    await emit(e.projectId, e.type, e.subject, e.data);
  }
}

const emitOf =
  (ctx: OpContext): Emit =>
  (_projectId, type, subject, data) =>
    ctx.emit(type, subject, data);

/** Ends expired leases: each task goes back to ready (the attempt counted at claim) or is dead-lettered. */
export async function sweepLeases(ex: Executor, now: number, rows: readonly TaskRow[], emit: Emit): Promise<number> {
  let swept = 0;
  for (const row of rows) {
    const next = afterFailure(row.attempts, row.max_attempts, now, { baseMs: 0, maxMs: 0 });
    const out = await store.expireLease(ex, row, now, next);
    if (out === undefined) continue;
    swept++;
    await emit(row.project_id, 'task.lease_expired', row.id, { owner: row.lease_owner, status: out.status });
    await releaseLocksOfTask(ex, row.project_id, row.id, now, emit);
  }
  return swept;
}

/** The hub's clock-step detector (shared by its sweeper and its ops). */
export function clockSteps(config: Config, clock: Clock): StepDetector {
  return stepDetectorOf(config, clock, config.sweepIntervalMs + CLOCK_STEP_SLACK_MS);
}

/**
 * The forward wall-clock steps to apply in this transaction before any lease is treated as
 * expired. On SQLite, where the clock offers the machine's shared monotonic clock: the step since
 * the offset any process of this boot recorded last (store `wallStepSince`, recorded in this same
 * transaction), so a process started after the step (a CLI call, a new `baton mcp`, whose own
 * detector has no earlier reading) sees it too. Otherwise (PostgreSQL, whose instances may run
 * on several machines; a platform without a boot id): this process's detector, whose steps stay
 * pending until `settle` after the commit.
 */
export async function wallSteps(ex: Executor, config: Config, clock: Clock, now: number): Promise<{ steps: readonly ClockStep[]; settle: () => void }> {
  const machine = ex.dialect.serverClock === null ? (clock.machine?.() ?? null) : null;
  if (machine !== null) {
    const wall = clock.now();
    const seen = seenOffsets.get(config);
    const offset = wall - machine.ms;
    // A backward change is recorded only when this process saw its own offset fall (a real step
    // on this machine). One that only differs from the row (a process whose clocks are shifted,
    // a time namespace, libfaketime) would otherwise flip the row back and forth with the other's
    // forward reading, moving every lease on each tick.
    const ownBackward = seen !== undefined && offset < seen - CLOCK_STEP_SLACK_MS;
    const step = await store.wallStepSince(ex, machine, wall, now, CLOCK_STEP_SLACK_MS, ownBackward);
    // Remembered unless a forward step was found: its record could still roll back with this
    // transaction, and is then found again at the next check.
    if (step === null) seenOffsets.set(config, offset);
    return { steps: step === null ? [] : [step], settle: () => undefined };
  }
  const detector = clockSteps(config, clock);
  const steps = detector.observe();
  return { steps, settle: () => detector.settle(steps) };
}

/** Per hub (keyed by its config): the wall − machine offset this process last checked against the store. */
const seenOffsets = new WeakMap<object, number>();

/**
 * Applies forward clock steps not yet applied, before anything here treats a lease as expired: a
 * step between two sweeper ticks must not dead-letter live tasks. Only called on paths that
 * already found something expired (or a fence that missed), never on the hot path. True when a
 * lease moved.
 */
async function absorbClockSteps(ctx: OpContext): Promise<boolean> {
  let moved = 0;
  const { steps } = await wallSteps(ctx.tx, ctx.services.config, ctx.services.clock, ctx.now);
  for (const step of steps) moved += await store.extendLeasesAfterStep(ctx.tx, step);
  return moved > 0;
}

/**
 * Before a lease is written (claim, start, heartbeat), on SQLite: a step since this process last
 * checked is recorded and applied first. A step is thereby recorded before any lease is written
 * in the new time, so the leases it moves are all from before it (a lease written after an
 * unrecorded step, its holder then dead, was once moved by the whole step: a task held for hours).
 * Costs nothing while this process's own offset has not moved since its last check (two clock
 * readings); a process's first lease write reads the store's offset once.
 */
async function checkStepBeforeLease(ctx: OpContext): Promise<void> {
  const { clock, config } = ctx.services;
  if (ctx.tx.dialect.serverClock !== null) return;
  const machine = clock.machine?.() ?? null;
  if (machine === null) return;
  const seen = seenOffsets.get(config);
  if (seen !== undefined && Math.abs(clock.now() - machine.ms - seen) <= CLOCK_STEP_SLACK_MS) return;
  await absorbClockSteps(ctx);
}

/** A fenced write that missed is tried once more if a clock step had made its lease look expired. */
async function fencedWrite<T>(ctx: OpContext, write: () => Promise<T | undefined>): Promise<T | undefined> {
  const out = await write();
  if (out !== undefined) return out;
  return (await absorbClockSteps(ctx)) ? write() : undefined;
}

/** Explains why a fenced write matched no row: the most specific true reason. */
async function fenceFailure(ctx: OpContext, id: string, token: number): Promise<BatonError> {
  const row = await mustGet(ctx, id);
  if (!isHeld(row.status) || row.lease_owner !== ctx.principal.agentName || row.lease_token !== token) {
    return new BatonError('lease_lost', 'lease is not held by the caller (expired and reclaimed, released, or stale token)', {
      status: row.status,
    });
  }
  if (row.lease_expires_at !== null && row.lease_expires_at <= ctx.now) {
    return new BatonError('lease_expired', 'lease expired; claim the task again');
  }
  return new BatonError('conflict', 'task changed concurrently; retry');
}

/**
 * A finish (complete, fail, release) whose fence missed may be a retry of one that already
 * succeeded and whose answer was lost (the connection dropped after the commit): the same agent,
 * the same lease token and the same op get the recorded answer again, even after the task was
 * claimed and finished again since (earlier finishes are kept when the task is claimed again:
 * store.keepFinish). A different op with that token stays refused.
 */
async function replayedFinish(ctx: OpContext, id: string, token: number, op: string): Promise<unknown> {
  const row = await mustGet(ctx, id);
  const me = ctx.principal.agentName;
  if (row.finish_token === token) {
    if (row.finish_owner !== me || row.finish_op !== op) return undefined;
    return row.finish_answer === null ? undefined : (JSON.parse(row.finish_answer) as unknown);
  }
  // Only a token the task has moved past can have a kept finish (one statement for a real miss).
  if (token >= row.lease_token) return undefined;
  const kept = await store.keptFinish(ctx.tx, id, token);
  if (kept === undefined || kept.owner !== me || kept.op !== op) return undefined;
  return JSON.parse(kept.answer) as unknown;
}

const fenceOf = (ctx: OpContext, id: string, token: number): store.Fence => ({
  projectId: ctx.principal.projectId,
  id,
  owner: ctx.principal.agentName,
  token,
  now: ctx.now,
});

function leaseMsFor(ctx: OpContext, requested: number | undefined): number {
  const { leaseMs, leaseMaxMs } = ctx.services.config;
  if (requested === undefined) return leaseMs;
  if (requested > leaseMaxMs) throw new BatonError('invalid_input', `lease_ms exceeds the maximum of ${leaseMaxMs}`);
  return requested;
}

// ---------------------------------------------------------------- task_create

const taskSpec = lazy(() => z
  .object({
    ref: z.string().min(1).max(64).optional(),
    title: z.string().min(1).max(LIMITS.title),
    description: z.string().max(LIMITS.description).optional(),
    priority: z.number().int().min(1).max(10).optional().describe('1 most urgent; default 5'),
    labels: z.array(label()).max(LIMITS.labels).optional(),
    capabilities: z.array(capability()).max(LIMITS.labels).optional().describe('required of the claimer'),
    depends_on: z.array(z.string().min(1).max(64)).max(LIMITS.deps).optional(),
    parent_id: taskId().optional(),
    context: taskContext().optional(),
    assignee: agentName().optional(),
    assignee_role: roleName().optional(),
    max_attempts: z.number().int().min(1).max(100).optional(),
    idempotency_key: z.string().min(1).max(128).optional(),
    needs_approval: z.boolean().optional(),
  })
  .strict());

const createdOut = lazy(() => z.object({
  id: z.string(),
  ref: z.string().nullable(),
  status: taskState(),
  created: z.boolean(),
}));

export const taskCreate = defineOp({
  name: 'task_create',
  summary: 'Create tasks (a batch); depends_on: task ids or refs in the batch.',
  input: () => z.object({ tasks: taskBatch(taskSpec()) }).strict(),
  output: () => z.object({ tasks: z.array(createdOut()) }),
  permission: 'task.create',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/tasks' },
  cli: { group: 'task', command: 'add', wrap: 'tasks' },
  async handler(ctx, { tasks }) {
    const { projectId } = ctx.principal;
    const refs = new Map<string, number>();
    tasks.forEach((t, i) => {
      if (t.ref === undefined) return;
      if (refs.has(t.ref)) throw new BatonError('invalid_input', `duplicate ref "${t.ref}" in batch`);
      refs.set(t.ref, i);
    });

    // Idempotency: a spec whose key already exists maps to the existing task, unchanged.
    const existing = await Promise.all(
      tasks.map((t) =>
        t.idempotency_key === undefined ? undefined : store.taskByIdempotencyKey(ctx.tx, projectId, t.idempotency_key),
      ),
    );
    const ids = tasks.map((_, i) => existing[i]?.id ?? newId('tsk'));

    const inBatch: number[][] = tasks.map(() => []);
    const external = new Set<string>();
    tasks.forEach((t, i) => {
      for (const dep of t.depends_on ?? []) {
        const j = refs.get(dep);
        if (j !== undefined) {
          if (j === i) throw new BatonError('cycle', `task "${t.ref}" depends on itself`, { cycle: [t.ref, t.ref] });
          inBatch[i]!.push(j);
        } else if (ID_PATTERN('tsk').test(dep)) {
          external.add(dep);
        } else {
          throw new BatonError('invalid_input', `tasks.${i}.depends_on: "${dep}" is neither a task id nor a ref in this batch`);
        }
      }
    });

    const graph = new Map<string, string[]>();
    tasks.forEach((t, i) => graph.set(t.ref ?? `#${i}`, inBatch[i]!.map((j) => tasks[j]!.ref ?? `#${j}`)));
    const cycle = findCycle(graph);
    if (cycle !== null) {
      throw new BatonError('cycle', `dependency cycle: ${cycle.join(' -> ')}`, { cycle });
    }

    const statuses = await store.statusesOf(ctx.tx, projectId, [...external]);
    for (const dep of external) if (!statuses.has(dep)) throw new BatonError('not_found', `dependency ${dep} not found`);
    const parents = [...new Set(tasks.flatMap((t) => (t.parent_id === undefined ? [] : [t.parent_id])))];
    const parentStatuses = await store.statusesOf(ctx.tx, projectId, parents);
    for (const p of parents) if (!parentStatuses.has(p)) throw new BatonError('not_found', `parent ${p} not found`);

    const out: z.infer<ReturnType<typeof createdOut>>[] = new Array(tasks.length);
    const position = new Map(ids.map((id, k) => [id, k]));
    for (const i of topoOrder(tasks.length, inBatch)) {
      const t = tasks[i]!;
      const prior = existing[i];
      if (prior !== undefined) {
        out[i] = { id: prior.id, ref: t.ref ?? null, status: prior.status, created: false };
        continue;
      }
      const deps = (t.depends_on ?? []).map((d) => {
        const j = refs.get(d);
        return j === undefined ? d : ids[j]!;
      });
      let open = 0;
      for (const d of new Set(deps)) {
        const j = position.get(d) ?? -1;
        const status: TaskState | undefined = j >= 0 ? (out[j]?.status ?? existing[j]?.status) : statuses.get(d);
        if (status !== 'done') open++;
      }
      const status = open > 0 ? 'blocked' : 'ready';
      await store.insertTask(
        ctx.tx,
        {
          id: ids[i]!,
          projectId,
          title: sealTask(ctx.services.cipher, projectId, ids[i]!, 'title', t.title),
          description: sealTask(ctx.services.cipher, projectId, ids[i]!, 'description', t.description ?? ''),
          priority: t.priority ?? 5,
          labels: t.labels ?? [],
          capabilities: [...new Set(t.capabilities ?? [])],
          parentId: t.parent_id ?? null,
          context:
            t.context === undefined ? null : sealTask(ctx.services.cipher, projectId, ids[i]!, 'context', JSON.stringify(t.context)),
          assigneeAgent: t.assignee ?? null,
          assigneeRole: t.assignee_role ?? null,
          status,
          depsOpen: open,
          maxAttempts: t.max_attempts ?? ctx.services.config.defaultMaxAttempts,
          needsApproval: t.needs_approval ?? false,
          idempotencyKey: t.idempotency_key ?? null,
          createdBy: ctx.principal.agentName,
          now: ctx.now,
        },
        deps,
      );
      await ctx.emit('task.created', ids[i]!, { status, priority: t.priority ?? 5 });
      out[i] = { id: ids[i]!, ref: t.ref ?? null, status, created: true };
    }
    if (tasks.length === 1) ctx.target(ids[0]!);
    return { tasks: out };
  },
});

// ---------------------------------------------------------------- reads

export const taskList = defineOp({
  name: 'task_list',
  summary: 'List tasks by priority, with filters and paging.',
  input: () => z
    .object({
      status: z.array(taskState()).max(7).optional(),
      assignee: agentName().optional(),
      label: label().optional(),
      mine: z.boolean().optional().describe('only tasks I hold'),
      parent_id: taskId().optional(),
      limit: limit().optional(),
      cursor: cursor().optional(),
    })
    .strict(),
  output: () => z.object({ tasks: z.array(taskSummaryOut()), next_cursor: z.string().nullable() }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/tasks' },
  cli: { group: 'task', command: 'list' },
  async handler(ctx, input) {
    const pageSize = input.limit ?? 50;
    let after: store.TaskFilter['after'];
    if (input.cursor !== undefined) after = decodeTaskCursor(input.cursor);
    const rows = await store.listTasks(ctx.tx, {
      projectId: ctx.principal.projectId,
      statuses: input.status,
      assignee: input.assignee,
      label: input.label,
      leaseOwner: input.mine === true ? ctx.principal.agentName : undefined,
      parentId: input.parent_id,
      after,
      limit: pageSize + 1,
    });
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    const next = rows.length > pageSize && last !== undefined ? encodeTaskCursor(last) : null;
    return { tasks: page.map((r) => toTaskSummary(ctx.services.cipher, r)), next_cursor: next };
  },
});

function encodeTaskCursor(r: TaskRow): string {
  return encodeCursor('tasks', [r.priority, r.created_at, r.id]);
}

function decodeTaskCursor(c: string): store.TaskFilter['after'] {
  const [priority, createdAt, id] = decodeCursor('tasks', c, ['int', 'int', 'str']);
  return { priority, createdAt, id };
}

export const taskGet = defineOp({
  name: 'task_get',
  summary: 'One task in full, with its dependencies, lease and result.',
  input: () => z.object({ id: taskId() }).strict(),
  output: () => z.object({ task: taskOut() }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/tasks/:id' },
  cli: { group: 'task', command: 'get', positional: 'id' },
  async handler(ctx, { id }) {
    return { task: await full(ctx, await mustGet(ctx, id)) };
  },
});

// ---------------------------------------------------------------- the work cycle

const leased = lazy(() => z.object({ task: taskOut() }));
/** The fence fields of a held task's ops, built with their schema (not at import: cold start). */
const fenceInput = () => ({ id: taskId(), lease_token: leaseToken() });

export const taskClaim = defineOp({
  name: 'task_claim',
  summary: 'Claim the most urgent ready task you may take (or one by id); may wait.',
  input: () => z
    .object({
      id: taskId().optional(),
      capabilities: z.array(capability()).max(LIMITS.labels).optional(),
      lease_ms: z.number().int().min(1000).max(86_400_000).optional(),
      wait_ms: waitMs().optional().describe('ms to wait for a task'),
    })
    .strict(),
  output: () => z.object({ task: taskOut().nullable() }),
  permission: 'task.work',
  kind: 'write',
  parallel: true,
  tier: 'core',
  rest: { method: 'POST', path: '/tasks/claim' },
  cli: { group: 'task', command: 'claim' },
  waitMs: (input) => input.wait_ms ?? 0,
  async handler(ctx, input) {
    const { projectId, agentId, agentName: name, role } = ctx.principal;
    const lease = leaseMsFor(ctx, input.lease_ms);
    // Expired leases first, so their tasks are claimable now; once per write transaction and
    // project (the claims of one group commit run within milliseconds: the first one's probe
    // and sweep serve them all, one statement fewer for the others; the hub's sweep catches a
    // lease that runs out in between). The others wait for it (claims of a batch run side by
    // side: `parallel`). A rolled-back claim takes it with it (TxMemo).
    const probed = `claim-expiry:${projectId}`;
    let swept = ctx.tx.memo?.get<Promise<void>>(probed);
    if (swept === undefined) {
      swept = (async () => {
        if (!(await store.hasExpiredLease(ctx.tx, projectId, ctx.now))) return;
        await absorbClockSteps(ctx);
        const rows = await store.expiredLeases(ctx.tx, ctx.now, projectId);
        await sweepLeases(ctx.tx, ctx.now, rows, (_p, type, subject, data) => ctx.emitNow(type, subject, data));
      })();
      ctx.tx.memo?.set(probed, swept);
    }
    await swept;
    await checkStepBeforeLease(ctx);
    if (input.capabilities !== undefined) await setAgentProfile(ctx.tx, agentId, null, input.capabilities);
    const row = await store.claimTask(ctx.tx, {
      projectId,
      agentId,
      agentName: name,
      role,
      capabilities: input.capabilities ?? [],
      now: ctx.now,
      leaseMs: lease,
      taskId: input.id,
    });
    if (row === undefined) {
      if (input.id !== undefined) {
        const t = await mustGet(ctx, input.id);
        throw new BatonError('not_ready', `task is ${t.status}, not ready for you`, { status: t.status });
      }
      return RETRY;
    }
    ctx.target(row.id);
    // Finished before (released, or failed and retried): its last finish is kept for a repeat of it.
    if (row.finish_token !== null) await store.keepFinish(ctx.tx, row);
    await ctx.emit('task.claimed', row.id, { owner: name, attempt: row.attempts });
    const { deps, ...claimed } = row;
    return { task: toTaskOut(ctx.services.cipher, claimed, deps) };
  },
});

export const taskStart = defineOp({
  name: 'task_start',
  summary: 'Mark a claimed task as running.',
  input: () => z.object(fenceInput()).strict(),
  output: () => leased(),
  permission: 'task.work',
  kind: 'write',
  parallel: true,
  tier: 'standard',
  rest: { method: 'POST', path: '/tasks/:id/start' },
  cli: { group: 'task', command: 'start', positional: 'id' },
  async handler(ctx, { id, lease_token }) {
    ctx.target(id);
    await checkStepBeforeLease(ctx);
    const row = await fencedWrite(ctx, () => store.startTask(ctx.tx, fenceOf(ctx, id, lease_token)));
    if (row === undefined) throw await fenceFailure(ctx, id, lease_token);
    await ctx.emit('task.started', id);
    return { task: await full(ctx, row) };
  },
});

export const taskHeartbeat = defineOp({
  name: 'task_heartbeat',
  summary: 'Extend your lease on a task.',
  input: () => z.object({ ...fenceInput(), lease_ms: z.number().int().min(1000).max(86_400_000).optional() }).strict(),
  output: () => z.object({ id: z.string(), lease_expires_at: z.string() }),
  permission: 'task.work',
  kind: 'write',
  parallel: true,
  tier: 'core',
  rest: { method: 'POST', path: '/tasks/:id/heartbeat' },
  cli: { group: 'task', command: 'heartbeat', positional: 'id' },
  async handler(ctx, { id, lease_token, lease_ms }) {
    ctx.target(id);
    const lease = leaseMsFor(ctx, lease_ms);
    await checkStepBeforeLease(ctx);
    const row = await fencedWrite(ctx, () => store.heartbeatTask(ctx.tx, fenceOf(ctx, id, lease_token), lease));
    if (row === undefined) throw await fenceFailure(ctx, id, lease_token);
    return { id, lease_expires_at: iso(row.lease_expires_at!) };
  },
});

export const taskComplete = defineOp({
  name: 'task_complete',
  summary: 'Finish a task you hold with a result; unblocks dependents.',
  input: () => z.object({ ...fenceInput(), result: taskResult() }).strict(),
  output: () => z.object({ id: z.string(), status: taskState(), unblocked: z.array(z.string()) }),
  permission: 'task.work',
  kind: 'write',
  parallel: true,
  tier: 'core',
  rest: { method: 'POST', path: '/tasks/:id/complete' },
  cli: { group: 'task', command: 'complete', positional: 'id' },
  async handler(ctx, { id, lease_token, result }) {
    ctx.target(id);
    const fence = fenceOf(ctx, id, lease_token);
    const sealed = sealTask(ctx.services.cipher, ctx.principal.projectId, id, 'result', JSON.stringify(result));
    // The completion, its locks' release and its dependents' resolution (one statement on PostgreSQL).
    let done = await fencedWrite(ctx, () => store.completeReleasing(ctx.tx, fence, sealed));
    if (done === undefined) {
      const replay = await replayedFinish(ctx, id, lease_token, 'task_complete');
      if (replay !== undefined) return replay as { id: string; status: TaskState; unblocked: string[] };
      const failure = await fenceFailure(ctx, id, lease_token);
      // The fence holds, so the task needs an approval: it completes once one was granted.
      if (failure.code !== 'conflict' || (await mustGet(ctx, id)).needs_approval !== 1) throw failure;
      if (!(await approvalGranted(ctx.tx, ctx.principal.projectId, id))) {
        throw new BatonError('approval_required', 'this task needs a granted approval before it can complete');
      }
      done = await store.completeReleasing(ctx.tx, fence, sealed, true);
      if (done === undefined) throw failure;
    }
    await ctx.emit('task.done', id);
    await emitReleased(done.released, emitOf(ctx));
    for (const u of done.unblocked) await ctx.emit('task.ready', u);
    return { id, status: done.status, unblocked: done.unblocked };
  },
});

export const taskFail = defineOp({
  name: 'task_fail',
  summary: 'Fail a task you hold; retried with backoff until max_attempts.',
  input: () => z
    .object({
      ...fenceInput(),
      error: z.string().min(1).max(LIMITS.error),
      retry: z.boolean().optional().describe('false: dead-letter now'),
    })
    .strict(),
  output: () => z.object({ id: z.string(), status: taskState(), attempts: z.number(), available_at: z.string() }),
  permission: 'task.work',
  kind: 'write',
  // Its read of the task (attempts) cannot go stale before its fenced UPDATE: only a claim moves
  // attempts, and not while the caller's lease holds; the locks go in one DELETE.
  parallel: true,
  tier: 'core',
  rest: { method: 'POST', path: '/tasks/:id/fail' },
  cli: { group: 'task', command: 'fail', positional: 'id' },
  async handler(ctx, { id, lease_token, error, retry }) {
    const current = await mustGet(ctx, id);
    const { backoffBaseMs, backoffMaxMs } = ctx.services.config;
    const next = afterFailure(current.attempts, current.max_attempts, ctx.now, { baseMs: backoffBaseMs, maxMs: backoffMaxMs }, retry ?? true);
    const answer = {
      id,
      status: next.state,
      attempts: current.attempts,
      available_at: iso(next.state === 'ready' ? next.availableAt : ctx.now),
    };
    const sealedError = sealTask(ctx.services.cipher, ctx.principal.projectId, id, 'last_error', error);
    const row = await fencedWrite(ctx, () =>
      store.failTask(ctx.tx, fenceOf(ctx, id, lease_token), sealedError, next, JSON.stringify(answer)),
    );
    if (row === undefined) {
      const replay = await replayedFinish(ctx, id, lease_token, 'task_fail');
      if (replay !== undefined) return replay as typeof answer;
      throw await fenceFailure(ctx, id, lease_token);
    }
    await ctx.emit(row.status === 'failed' ? 'task.failed' : 'task.retry', id, { attempts: row.attempts });
    await releaseLocksOfTask(ctx.tx, ctx.principal.projectId, id, ctx.now, emitOf(ctx));
    return answer;
  },
});

export const taskRelease = defineOp({
  name: 'task_release',
  summary: 'Give back a task you hold (not counted as an attempt).',
  input: () => z.object(fenceInput()).strict(),
  output: () => z.object({ id: z.string(), status: taskState() }),
  permission: 'task.work',
  kind: 'write',
  parallel: true,
  tier: 'standard',
  rest: { method: 'POST', path: '/tasks/:id/release' },
  cli: { group: 'task', command: 'release', positional: 'id' },
  async handler(ctx, { id, lease_token }) {
    ctx.target(id);
    const answer = { id, status: 'ready' as TaskState };
    const row = await fencedWrite(ctx, () => store.releaseTask(ctx.tx, fenceOf(ctx, id, lease_token), JSON.stringify(answer)));
    if (row === undefined) {
      const replay = await replayedFinish(ctx, id, lease_token, 'task_release');
      if (replay !== undefined) return replay as typeof answer;
      throw await fenceFailure(ctx, id, lease_token);
    }
    await ctx.emit('task.ready', id, { released: true });
    await releaseLocksOfTask(ctx.tx, ctx.principal.projectId, id, ctx.now, emitOf(ctx));
    return answer;
  },
});

// ---------------------------------------------------------------- management

export const taskCancel = defineOp({
  name: 'task_cancel',
  summary: 'Cancel a task (ends any lease). Its dependents stay blocked.',
  input: () => z.object({ id: taskId(), reason: z.string().max(LIMITS.error).optional() }).strict(),
  output: () => z.object({ id: z.string(), status: taskState() }),
  permission: 'task.manage',
  kind: 'write',
  tier: 'all',
  rest: { method: 'POST', path: '/tasks/:id/cancel' },
  cli: { group: 'task', command: 'cancel', positional: 'id' },
  async handler(ctx, { id }) {
    const row = await mustGet(ctx, id);
    if (isFinal(row.status)) throw new BatonError('conflict', `task is already ${row.status}`, { status: row.status });
    const out = await store.setStatus(ctx.tx, row, 'cancelled', ctx.now);
    if (out === undefined) throw new BatonError('conflict', 'task changed concurrently; retry');
    await ctx.emit('task.cancelled', id);
    await releaseLocksOfTask(ctx.tx, ctx.principal.projectId, id, ctx.now, emitOf(ctx));
    return { id, status: out.status };
  },
});

export const taskUpdate = defineOp({
  name: 'task_update',
  summary: 'Edit a task, replace depends_on, or requeue a failed/cancelled one.',
  input: () => z
    .object({
      id: taskId(),
      if_version: z.number().int().min(1).optional(),
      title: z.string().min(1).max(LIMITS.title).optional(),
      description: z.string().max(LIMITS.description).optional(),
      priority: z.number().int().min(1).max(10).optional(),
      labels: z.array(label()).max(LIMITS.labels).optional(),
      capabilities: z.array(capability()).max(LIMITS.labels).optional(),
      depends_on: z.array(taskId()).max(LIMITS.deps).optional(),
      context: taskContext().nullable().optional(),
      assignee: agentName().nullable().optional(),
      assignee_role: roleName().nullable().optional(),
      max_attempts: z.number().int().min(1).max(100).optional(),
      requeue: z.boolean().optional(),
    })
    .strict(),
  output: () => z.object({ task: taskOut() }),
  permission: 'task.manage',
  kind: 'write',
  tier: 'all',
  rest: { method: 'PATCH', path: '/tasks/:id' },
  cli: { group: 'task', command: 'update', positional: 'id' },
  async handler(ctx, input) {
    let row = await mustGet(ctx, input.id);
    if (input.if_version !== undefined && input.if_version !== row.version) {
      throw new BatonError('version_conflict', `task is at version ${row.version}`, { version: row.version });
    }
    row = await store.patchTask(
      ctx.tx,
      row,
      {
        title: input.title === undefined ? undefined : sealTask(ctx.services.cipher, row.project_id, row.id, 'title', input.title),
        description:
          input.description === undefined
            ? undefined
            : sealTask(ctx.services.cipher, row.project_id, row.id, 'description', input.description),
        priority: input.priority,
        labels: input.labels,
        capabilities: input.capabilities,
        context:
          input.context === undefined
            ? undefined
            : sealNullable(ctx.services.cipher, input.context === null ? null : JSON.stringify(input.context), AAD.task(row.project_id, row.id, 'context')),
        assigneeAgent: input.assignee,
        assigneeRole: input.assignee_role,
        maxAttempts: input.max_attempts,
      },
      ctx.now,
    );

    let depsOpen: number | undefined;
    if (input.depends_on !== undefined) {
      if (row.status !== 'blocked' && row.status !== 'ready' && input.requeue !== true) {
        throw new BatonError('conflict', `dependencies can change only while a task is blocked or ready (it is ${row.status})`);
      }
      const deps = [...new Set(input.depends_on)];
      if (deps.includes(row.id)) throw new BatonError('cycle', `dependency cycle: ${row.id} -> ${row.id}`, { cycle: [row.id, row.id] });
      const found = await store.statusesOf(ctx.tx, ctx.principal.projectId, deps);
      for (const d of deps) if (!found.has(d)) throw new BatonError('not_found', `dependency ${d} not found`);
      const graph = await store.dependencyClosure(ctx.tx, deps);
      graph.set(row.id, deps);
      const cycle = findCycle(graph);
      if (cycle !== null) throw new BatonError('cycle', `dependency cycle: ${cycle.join(' -> ')}`, { cycle });
      depsOpen = await store.replaceDeps(ctx.tx, row.id, deps);
    }

    if (input.requeue === true) {
      if (row.status !== 'failed' && row.status !== 'cancelled') {
        throw new BatonError('conflict', `only failed or cancelled tasks can be requeued (it is ${row.status})`);
      }
      const open = depsOpen ?? (await store.replaceDeps(ctx.tx, row.id, (await store.depsOf(ctx.tx, [row.id])).get(row.id) ?? []));
      const out = await store.setStatus(ctx.tx, row, open > 0 ? 'blocked' : 'ready', ctx.now, { depsOpen: open, resetAttempts: true });
      if (out === undefined) throw new BatonError('conflict', 'task changed concurrently; retry');
      row = out;
      await ctx.emit(row.status === 'ready' ? 'task.ready' : 'task.blocked', row.id, { requeued: true });
    } else if (depsOpen !== undefined) {
      const target: TaskState = depsOpen > 0 ? 'blocked' : 'ready';
      if (target !== row.status) {
        const out = await store.setStatus(ctx.tx, row, target, ctx.now, { depsOpen });
        if (out === undefined) throw new BatonError('conflict', 'task changed concurrently; retry');
        row = out;
        if (target === 'ready') await ctx.emit('task.ready', row.id);
      } else {
        const out = await store.setStatus(ctx.tx, row, row.status, ctx.now, { depsOpen });
        row = out ?? row;
      }
    }
    await ctx.emit('task.updated', row.id);
    return { task: await full(ctx, row) };
  },
});

export const TASK_OPS: readonly OpDef[] = [
  taskCreate,
  taskList,
  taskGet,
  taskClaim,
  taskStart,
  taskHeartbeat,
  taskComplete,
  taskFail,
  taskRelease,
  taskCancel,
  taskUpdate,
];
