import { z } from 'zod';
import { BatonError, notFound } from '../core/errors.js';
import { ID_PATTERN, newId } from '../core/ids.js';
import * as store from '../store/oversight.js';
import type { ApprovalRow, DecisionRow } from '../store/oversight.js';
import { defineOp, RETRY, type OpDef } from './catalog.js';
import { AAD, openNullable, openWith, sealNullable, sealWith, type Cipher } from '../security/crypto.js';
import { decodeBefore, mustHaveTasks, page } from './discoveries.js';
import { lazy, cursor, limit, taskId, waitMs } from './schemas.js';

import { iso } from '../core/time.js';

const approvalId = lazy(() => z.string().regex(ID_PATTERN('apr'), 'expected an approval id (apr_…)'));
const RISKS = ['low', 'medium', 'high', 'critical'] as const;
const APPROVAL_STATES = ['pending', 'granted', 'denied'] as const;

// ---------------------------------------------------------------- decisions

const decisionOut = lazy(() => z.object({
  id: z.string(),
  what: z.string(),
  why: z.string(),
  alternatives: z.array(z.string()),
  task_id: z.string().nullable(),
  author: z.string(),
  created_at: z.string(),
}));

/**
 * Encryption at rest (S32): a decision's what, why and alternatives, and an approval's action,
 * details and decision reason are sealed when written, bound to project, id and column.
 */
function toDecisionOut(c: Cipher | undefined, r: DecisionRow): z.infer<ReturnType<typeof decisionOut>> {
  return {
    id: r.id,
    what: openWith(c, r.what, AAD.decision(r.project_id, r.id, 'what')),
    why: openWith(c, r.why, AAD.decision(r.project_id, r.id, 'why')),
    alternatives: JSON.parse(openWith(c, r.alternatives, AAD.decision(r.project_id, r.id, 'alternatives'))) as string[],
    task_id: r.task_id,
    author: r.author,
    created_at: iso(r.created_at),
  };
}

export const decisionRecord = defineOp({
  name: 'decision_record',
  summary: 'Record a decision: what, why, alternatives.',
  input: () => z
    .object({
      what: z.string().min(1).max(2_000),
      why: z.string().min(1).max(10_000),
      alternatives: z.array(z.string().min(1).max(2_000)).max(20).optional(),
      task_id: taskId().optional(),
    })
    .strict(),
  output: () => z.object({ id: z.string(), created_at: z.string() }),
  permission: 'decision.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/decisions' },
  cli: { group: 'decision', command: 'record' },
  async handler(ctx, input) {
    const { projectId } = ctx.principal;
    if (input.task_id !== undefined) await mustHaveTasks(ctx.tx, projectId, [input.task_id]);
    const id = newId('dec');
    ctx.target(id);
    const c = ctx.services.cipher;
    await store.insertDecision(ctx.tx, {
      id,
      projectId,
      what: sealWith(c, input.what, AAD.decision(projectId, id, 'what')),
      why: sealWith(c, input.why, AAD.decision(projectId, id, 'why')),
      alternatives: sealWith(c, JSON.stringify(input.alternatives ?? []), AAD.decision(projectId, id, 'alternatives')),
      taskId: input.task_id ?? null,
      author: ctx.principal.agentName,
      now: ctx.now,
    });
    await ctx.emit('decision.recorded', id, { task_id: input.task_id ?? null });
    return { id, created_at: iso(ctx.now) };
  },
});

export const decisionList = defineOp({
  name: 'decision_list',
  summary: 'List recorded decisions, newest first.',
  input: () => z.object({ task_id: taskId().optional(), limit: limit().optional(), cursor: cursor().optional() }).strict(),
  output: () => z.object({ decisions: z.array(decisionOut()), next_cursor: z.string().nullable() }),
  permission: 'read',
  kind: 'read',
  tier: 'all',
  rest: { method: 'GET', path: '/decisions' },
  cli: { group: 'decision', command: 'list' },
  async handler(ctx, input) {
    const size = input.limit ?? 50;
    const rows = await store.listDecisions(ctx.tx, {
      projectId: ctx.principal.projectId,
      taskId: input.task_id,
      before: input.cursor === undefined ? undefined : decodeBefore(input.cursor),
      limit: size + 1,
    });
    const p = page(rows, size);
    return { decisions: p.rows.map((r) => toDecisionOut(ctx.services.cipher, r)), next_cursor: p.next };
  },
});

// ---------------------------------------------------------------- approvals

const approvalOut = lazy(() => z.object({
  id: z.string(),
  action: z.string(),
  details: z.string(),
  risk: z.enum(RISKS),
  task_id: z.string().nullable(),
  status: z.enum(APPROVAL_STATES),
  requested_by: z.string(),
  decided_by: z.string().nullable(),
  decided_at: z.string().nullable(),
  reason: z.string().nullable(),
  created_at: z.string(),
}));

function toApprovalOut(c: Cipher | undefined, r: ApprovalRow): z.infer<ReturnType<typeof approvalOut>> {
  return {
    id: r.id,
    action: openWith(c, r.action, AAD.approval(r.project_id, r.id, 'action')),
    details: openWith(c, r.details, AAD.approval(r.project_id, r.id, 'details')),
    risk: r.risk as (typeof RISKS)[number],
    task_id: r.task_id,
    status: r.status,
    requested_by: r.requested_by,
    decided_by: r.decided_by,
    decided_at: r.decided_at === null ? null : iso(r.decided_at),
    reason: openNullable(c, r.reason, AAD.approval(r.project_id, r.id, 'reason')),
    created_at: iso(r.created_at),
  };
}

export const approvalRequest = defineOp({
  name: 'approval_request',
  summary: 'Ask a human to approve a critical action.',
  input: () => z
    .object({
      action: z.string().min(1).max(500),
      details: z.string().max(10_000).optional(),
      risk: z.enum(RISKS),
      task_id: taskId().optional().describe('unlocks this needs_approval task when granted'),
    })
    .strict(),
  output: () => z.object({ id: z.string(), status: z.literal('pending') }),
  permission: 'approval.request',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/approvals' },
  cli: { group: 'approval', command: 'request' },
  async handler(ctx, input) {
    const { projectId, agentId, agentName } = ctx.principal;
    if (input.task_id !== undefined) await mustHaveTasks(ctx.tx, projectId, [input.task_id]);
    const id = newId('apr');
    ctx.target(id);
    const c = ctx.services.cipher;
    await store.insertApproval(ctx.tx, {
      id,
      projectId,
      action: sealWith(c, input.action, AAD.approval(projectId, id, 'action')),
      details: sealWith(c, input.details ?? '', AAD.approval(projectId, id, 'details')),
      risk: input.risk,
      taskId: input.task_id ?? null,
      requestedBy: agentName,
      requesterId: agentId,
      now: ctx.now,
    });
    await ctx.emit('approval.requested', id, { risk: input.risk, task_id: input.task_id ?? null });
    return { id, status: 'pending' as const };
  },
});

export const approvalGet = defineOp({
  name: 'approval_get',
  summary: 'An approval; wait_ms waits (bounded) for the decision.',
  input: () => z.object({ id: approvalId(), wait_ms: waitMs().optional() }).strict(),
  // A wait that ends with the approval still pending answers it as pending (ctx.final).
  output: () => z.object({ approval: approvalOut() }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/approvals/:id' },
  cli: { group: 'approval', command: 'get', positional: 'id' },
  waitMs: (input) => input.wait_ms ?? 0,
  async handler(ctx, { id }) {
    const row = await store.getApproval(ctx.tx, ctx.principal.projectId, id);
    if (row === undefined) throw notFound('approval');
    ctx.target(id);
    if (row.status === 'pending' && !ctx.final) return RETRY;
    return { approval: toApprovalOut(ctx.services.cipher, row) };
  },
});

export const approvalDecide = defineOp({
  name: 'approval_decide',
  summary: 'Grant or deny a pending approval (humans).',
  input: () => z
    .object({ id: approvalId(), decision: z.enum(['grant', 'deny']), reason: z.string().max(2_000).optional() })
    .strict(),
  output: () => z.object({ approval: approvalOut() }),
  permission: 'approval.decide',
  kind: 'write',
  tier: 'all',
  rest: { method: 'POST', path: '/approvals/:id/decide' },
  cli: { group: 'approval', command: 'decide', positional: 'id' },
  async handler(ctx, { id, decision, reason }) {
    const { projectId } = ctx.principal;
    ctx.target(id);
    const row = await store.decideApproval(ctx.tx, {
      projectId,
      id,
      status: decision === 'grant' ? 'granted' : 'denied',
      by: ctx.principal.agentName,
      reason: sealNullable(ctx.services.cipher, reason ?? null, AAD.approval(projectId, id, 'reason')),
      now: ctx.now,
    });
    if (row === undefined) {
      const existing = await store.getApproval(ctx.tx, projectId, id);
      if (existing === undefined) throw notFound('approval');
      throw new BatonError('conflict', `approval already ${existing.status}`, { status: existing.status });
    }
    // Only the requester is told; everyone else may read the approval itself.
    await ctx.emit('approval.decided', id, { status: row.status, task_id: row.task_id }, {
      kind: 'agent',
      agentId: row.requester_id,
    });
    return { approval: toApprovalOut(ctx.services.cipher, row) };
  },
});

export const approvalList = defineOp({
  name: 'approval_list',
  summary: 'List approvals, newest first; optionally by status (humans).',
  input: () => z
    .object({ status: z.enum(APPROVAL_STATES).optional(), limit: limit().optional(), cursor: cursor().optional() })
    .strict(),
  output: () => z.object({ approvals: z.array(approvalOut()), next_cursor: z.string().nullable() }),
  permission: 'approval.decide',
  kind: 'read',
  tier: 'all',
  rest: { method: 'GET', path: '/approvals' },
  cli: { group: 'approval', command: 'list' },
  async handler(ctx, input) {
    const size = input.limit ?? 50;
    const rows = await store.listApprovals(ctx.tx, {
      projectId: ctx.principal.projectId,
      status: input.status,
      before: input.cursor === undefined ? undefined : decodeBefore(input.cursor),
      limit: size + 1,
    });
    const p = page(rows, size);
    return { approvals: p.rows.map((r) => toApprovalOut(ctx.services.cipher, r)), next_cursor: p.next };
  },
});

export const OVERSIGHT_OPS: readonly OpDef[] = [
  decisionRecord,
  decisionList,
  approvalRequest,
  approvalGet,
  approvalDecide,
  approvalList,
];
