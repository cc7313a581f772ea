import { z } from 'zod';
import { BatonError } from '../core/errors.js';
import { presence } from '../core/tasks.js';
import { agentById, getPlan, listAgents, putPlan } from '../store/directory.js';
import { liveLocks } from '../store/locks.js';
import { unreadCount } from '../store/messages.js';
import { countByStatus, listTasks } from '../store/tasks.js';
import { schemaVersion } from '../store/health.js';
import { defineOp, type OpDef } from './catalog.js';
import { lazy, LIMITS, taskSummaryOut } from './schemas.js';
import { lockOut, toLockOut } from './locks.js';
import { pendingHandoffsOut, resumeInfo, resumeSessionOut } from './sessions.js';
import { toTaskSummary } from './tasks.js';
import { VERSION } from '../version.js';
import { AAD, openWith, sealWith } from '../security/crypto.js';

import { iso } from '../core/time.js';

export const whoami = defineOp({
  name: 'whoami',
  summary: 'Your role, tasks, session, locks, handoffs, unread mail. Call first and on reconnect.',
  input: () => z.object({}).strict(),
  output: () => z.object({
    agent: z.object({ id: z.string(), name: z.string(), role: z.string() }),
    project: z.object({ id: z.string(), name: z.string() }),
    server_admin: z.boolean(),
    held_tasks: z.array(taskSummaryOut()),
    board: z.record(z.string(), z.number()),
    server: z.object({ name: z.string(), version: z.string() }),
    /** Your open session (with its last checkpoint) and handoffs waiting for you: resume from here. */
    session: resumeSessionOut(),
    pending_handoffs: pendingHandoffsOut(),
    /** File locks you hold, and how many of your messages are unread. */
    locks: z.array(lockOut()),
    unread: z.number(),
  }),
  permission: 'self',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/whoami' },
  cli: { group: 'agent', command: 'whoami' },
  async handler(ctx) {
    const p = ctx.principal;
    const held = await listTasks(ctx.tx, {
      projectId: p.projectId,
      statuses: ['claimed', 'running'],
      leaseOwner: p.agentName,
      limit: LIMITS.page,
    });
    return {
      agent: { id: p.agentId, name: p.agentName, role: p.role },
      project: { id: p.projectId, name: p.projectName },
      server_admin: p.serverAdmin,
      held_tasks: held.map((r) => toTaskSummary(ctx.services.cipher, r)),
      board: await countByStatus(ctx.tx, p.projectId),
      server: { name: 'baton', version: VERSION },
      ...(await resumeInfo(ctx.tx, p, ctx.services.cipher)),
      locks: (await liveLocks(ctx.tx, { projectId: p.projectId, now: ctx.now, agentName: p.agentName, limit: 100 })).map((l) =>
        toLockOut(l, ctx.services.cipher),
      ),
      unread: await unreadCount(ctx.tx, p.projectId, p.agentId),
    };
  },
});

export const agentList = defineOp({
  name: 'agent_list',
  summary: 'Agents here: role, capabilities, presence.',
  input: () => z.object({}).strict(),
  output: () => z.object({
    agents: z.array(
      z.object({
        id: z.string(),
        name: z.string(),
        kind: z.string().nullable(),
        role: z.string(),
        capabilities: z.array(z.string()),
        presence: z.enum(['online', 'idle', 'offline']),
        last_seen_at: z.string().nullable(),
      }),
    ),
  }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/agents' },
  cli: { group: 'agent', command: 'list' },
  async handler(ctx) {
    const rows = await listAgents(ctx.tx, ctx.principal.projectId);
    return {
      agents: rows.map((a) => ({
        id: a.id,
        name: a.name,
        kind: a.kind,
        role: a.role,
        capabilities: JSON.parse(a.capabilities) as string[],
        presence: presence(a.last_seen_at, ctx.now),
        last_seen_at: iso(a.last_seen_at),
      })),
    };
  },
});

const planOut = lazy(() => z.object({
  goal: z.string(),
  body: z.string(),
  version: z.number(),
  updated_by: z.string().nullable(),
  updated_at: z.string().nullable(),
}));

export const planGet = defineOp({
  name: 'plan_get',
  summary: "The project's goal and master plan (markdown), with its version.",
  input: () => z.object({}).strict(),
  output: () => z.object({ plan: planOut() }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/plan' },
  cli: { group: 'plan', command: 'get' },
  async handler(ctx) {
    const row = await getPlan(ctx.tx, ctx.principal.projectId);
    if (row === undefined) return { plan: { goal: '', body: '', version: 0, updated_by: null, updated_at: null } };
    const by = row.updated_by === null ? null : ((await agentById(ctx.tx, row.updated_by))?.name ?? null);
    const c = ctx.services.cipher;
    const goal = openWith(c, row.goal, AAD.plan(row.project_id, 'goal'));
    const body = openWith(c, row.body, AAD.plan(row.project_id, 'body'));
    return {
      plan: { goal, body, version: row.version, updated_by: by, updated_at: iso(row.updated_at) },
    };
  },
});

export const planUpdate = defineOp({
  name: 'plan_update',
  summary: 'Replace the goal and/or plan; if_version makes it compare-and-set.',
  input: () => z
    .object({
      goal: z.string().max(LIMITS.title * 10).optional(),
      body: z.string().max(LIMITS.plan).optional(),
      if_version: z.number().int().min(0).optional(),
    })
    .strict()
    .refine((v) => v.goal !== undefined || v.body !== undefined, { message: 'give goal, body or both' }),
  output: () => z.object({ plan: planOut() }),
  permission: 'plan.write',
  kind: 'write',
  tier: 'all',
  rest: { method: 'PUT', path: '/plan' },
  cli: { group: 'plan', command: 'update' },
  async handler(ctx, input) {
    const p = ctx.principal;
    const row = await getPlan(ctx.tx, p.projectId);
    const current = row?.version ?? 0;
    if (input.if_version !== undefined && input.if_version !== current) {
      throw new BatonError('version_conflict', `plan is at version ${current}`, { version: current });
    }
    // Encryption at rest (S32): goal and body are sealed, bound to the project and column.
    const c = ctx.services.cipher;
    const goal = input.goal ?? (row === undefined ? '' : openWith(c, row.goal, AAD.plan(p.projectId, 'goal')));
    const body = input.body ?? (row === undefined ? '' : openWith(c, row.body, AAD.plan(p.projectId, 'body')));
    const sealedGoal = sealWith(c, goal, AAD.plan(p.projectId, 'goal'));
    const sealedBody = sealWith(c, body, AAD.plan(p.projectId, 'body'));
    await putPlan(ctx.tx, p.projectId, sealedGoal, sealedBody, current + 1, p.agentId, ctx.now);
    await ctx.emit('plan.updated', null, { version: current + 1 });
    return {
      plan: { goal, body, version: current + 1, updated_by: p.agentName, updated_at: iso(ctx.now) },
    };
  },
});

export const serverStatus = defineOp({
  name: 'server_status',
  summary: 'Diagnostics: version, uptime, schema version, runtime (debug tier).',
  input: () => z.object({}).strict(),
  output: () => z.object({
    version: z.string(),
    node: z.string(),
    uptime_s: z.number(),
    schema_version: z.number(),
    store: z.string(),
    env: z.string(),
  }),
  permission: 'debug',
  kind: 'read',
  tier: 'all',
  rest: { method: 'GET', path: '/status' },
  cli: { group: 'server', command: 'status' },
  async handler(ctx) {
    const schema = await schemaVersion(ctx.tx);
    return {
      version: VERSION,
      node: process.version,
      uptime_s: Math.round(process.uptime()),
      schema_version: schema,
      store: ctx.tx.dialect.name,
      env: ctx.services.config.env,
    };
  },
});

export const ORIENTATION_OPS: readonly OpDef[] = [whoami, agentList, planGet, planUpdate, serverStatus];
