import { z } from 'zod';
import { sql } from '../store/sql.js';
import { BatonError, notFound } from '../core/errors.js';
import { ID_PATTERN } from '../core/ids.js';
import { agentByName, projectByName } from '../store/directory.js';
import { queryAudit, verifyAudit, type AuditRow } from '../store/journal.js';
import { defineOp, type OpDef } from './catalog.js';
import { agentName, projectName } from './schemas.js';

/**
 * The audit trail (S29): read by admins of a project (their project's rows only; a server admin
 * may name another project), and verified as a whole by a server admin. Both ops are reads.
 * Audit rows never hold content: op inputs are kept as a summary (ids, numbers, sizes and short
 * hashes; see runner.ts `summarize`).
 */
const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
const OUTCOMES = ['ok', 'denied', 'invalid', 'limited', 'error'] as const;
const EVENTS = ['AUTH_FAILURE', 'PERMISSION_DENIED', 'RATE_LIMIT_EXCEEDED', 'INVALID_INPUT', 'SUSPICIOUS_ACTIVITY'] as const;
const MAX_PAGE = 500;

const auditOut = z.object({
  id: z.number(),
  at: z.string(),
  request_id: z.string(),
  principal: z.string().nullable(),
  role: z.string().nullable(),
  op: z.string(),
  target: z.string().nullable(),
  outcome: z.string(),
  code: z.string().nullable(),
  params: z.unknown().nullable(),
  transport: z.string(),
  address: z.string().nullable(),
  severity: z.string().nullable(),
  event: z.string().nullable(),
});

function toAuditOut(r: AuditRow): z.infer<typeof auditOut> {
  let params: unknown = null;
  if (r.params !== null) {
    try {
      params = JSON.parse(r.params) as unknown;
    } catch {
      params = null;
    }
  }
  return {
    id: r.id,
    at: new Date(r.at).toISOString(),
    request_id: r.request_id,
    principal: r.principal,
    role: r.role,
    op: r.op,
    target: r.target,
    outcome: r.outcome,
    code: r.code,
    params,
    transport: r.transport,
    address: r.address,
    severity: r.severity,
    event: r.event,
  };
}

const cursorOf = (id: number): string => `aud_${id.toString(36)}`;
function parseCursor(cursor: string): number {
  const m = /^aud_([0-9a-z]{1,11})$/.exec(cursor);
  const id = m === null ? NaN : parseInt(m[1]!, 36);
  if (!Number.isSafeInteger(id) || id < 1) throw new BatonError('invalid_input', 'cursor: not a cursor of audit_query');
  return id;
}

export const auditQuery = defineOp({
  name: 'audit_query',
  summary: "Read your project's audit trail, newest first (admin).",
  input: z
    .object({
      since: z.iso.datetime().optional(),
      until: z.iso.datetime().optional(),
      op: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'expected an op name').optional(),
      outcome: z.enum(OUTCOMES).optional(),
      principal: z
        .union([z.string().regex(ID_PATTERN('agt')), agentName])
        .optional()
        .describe('agent id or name'),
      severity: z.enum(SEVERITIES).optional(),
      event: z.enum(EVENTS).optional(),
      project: projectName.optional().describe('server admins: another project'),
      limit: z.number().int().min(1).max(MAX_PAGE).optional(),
      cursor: z.string().max(20).optional(),
    })
    .strict(),
  output: z.object({ rows: z.array(auditOut), next_cursor: z.string().nullable() }),
  permission: 'token.admin',
  kind: 'read',
  rest: { method: 'GET', path: '/audit' },
  cli: { group: 'audit-log', command: 'query' },
  async handler(ctx, input) {
    const p = ctx.principal;
    let projectId = p.projectId;
    if (input.project !== undefined && input.project !== p.projectName) {
      if (!p.serverAdmin) throw new BatonError('forbidden', 'only a server admin may read the audit of other projects');
      const found = await projectByName(ctx.tx, input.project);
      if (found === undefined) throw notFound('project');
      projectId = found.id;
    }
    let principal: string | null = null;
    if (input.principal !== undefined) {
      if (input.principal.startsWith('agt_')) principal = input.principal;
      else {
        const agent = await agentByName(ctx.tx, projectId, input.principal);
        // An unknown name matches no row (an agent id that matches nothing does the same).
        principal = agent?.id ?? 'agt_none';
      }
    }
    const limit = input.limit ?? 100;
    const rows = await queryAudit(ctx.tx, {
      projectId,
      since: input.since === undefined ? null : Date.parse(input.since),
      until: input.until === undefined ? null : Date.parse(input.until),
      op: input.op ?? null,
      outcome: input.outcome ?? null,
      principal,
      severity: input.severity ?? null,
      event: input.event ?? null,
      before: input.cursor === undefined ? null : parseCursor(input.cursor),
      limit,
    });
    const last = rows[rows.length - 1];
    return { rows: rows.map(toAuditOut), next_cursor: rows.length === limit && last !== undefined ? cursorOf(last.id) : null };
  },
});

export const auditVerify = defineOp({
  name: 'audit_verify',
  summary: "Check the audit trail's hash chain; names the first bad row.",
  input: z.object({}).strict(),
  output: z.object({ ok: z.boolean(), rows: z.number(), first_bad_id: z.number().nullable() }),
  permission: 'token.admin',
  kind: 'read',
  rest: { method: 'GET', path: '/audit/verify' },
  cli: { group: 'audit-log', command: 'verify' },
  async handler(ctx) {
    // The chain spans every project. A project admin learns whether it holds, and the bad row's
    // id only when that row is its own project's; a server admin always gets the id.
    const v = await verifyAudit(ctx.tx, ctx.services.auditKey);
    let bad = v.firstBadId;
    if (bad !== null && !ctx.principal.serverAdmin) {
      const row = await ctx.tx.get<{ project_id: string | null }>(sql`SELECT project_id FROM audit WHERE id = ${bad}`);
      if (row?.project_id !== ctx.principal.projectId) bad = null;
    }
    return { ok: v.ok, rows: v.rows, first_bad_id: bad };
  },
});

export const AUDIT_OPS: readonly OpDef[] = [auditQuery, auditVerify];
