import { z } from 'zod';
import { decodePosition, encodePositions } from '../core/cursor.js';
import { BatonError, notFound } from '../core/errors.js';
import { ID_PATTERN } from '../core/ids.js';
import { agentByName, projectByName } from '../store/directory.js';
import {
  anchorIsAuthentic,
  beginAuditWalk,
  beginChainWalk,
  chainsAnchorIsAuthentic,
  endAuditWalk,
  endChainWalk,
  exportChainsAnchor,
  queryAudit,
  stepAuditWalk,
  stepChainWalk,
  type AuditAnchor,
  type AuditRow,
  type AuditVerdict,
  type AuditWalk,
  type ChainMark,
  type ChainsAnchor,
  type ChainWalk,
} from '../store/journal.js';
import { defineOp, RETRY, type OpContext, type OpDef } from './catalog.js';
import { lazy, agentName, projectName } from './schemas.js';

/**
 * The audit trail (S29): read by admins of a project (their project's rows only; a server admin
 * may name another project, or read the rows of no project: failed authentications and
 * throttling), and verified: a project admin verifies its project's chain, a server admin every
 * chain (and the legacy segment of before migration 14), their authenticated heads and any anchor
 * it kept (`baton audit anchor`). Both ops are reads.
 * Audit rows never hold content: op inputs are kept as a summary (ids, numbers, sizes and short
 * hashes; see runner.ts `summarize`).
 */
const SEVERITIES = ['info', 'low', 'medium', 'high', 'critical'] as const;
const OUTCOMES = ['ok', 'denied', 'invalid', 'limited', 'error'] as const;
const EVENTS = ['AUTH_FAILURE', 'PERMISSION_DENIED', 'RATE_LIMIT_EXCEEDED', 'INVALID_INPUT', 'SUSPICIOUS_ACTIVITY'] as const;
const MAX_PAGE = 500;

const auditOut = lazy(() => z.object({
  id: z.string().describe('opaque'),
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
}));

function toAuditOut(r: AuditRow, id: string): z.infer<ReturnType<typeof auditOut>> {
  let params: unknown = null;
  if (r.params !== null) {
    try {
      params = JSON.parse(r.params) as unknown;
    } catch {
      params = null;
    }
  }
  return {
    id,
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

/**
 * Audit row ids count every project's rows (the table's): row ids and the cursor are sealed
 * positions (core/cursor.ts), bound to the rows' project (or to "no project"), so a project admin
 * sees no global count and cannot use a cursor elsewhere (S9). `audit_verify` names a bad row by
 * its chain and its position there (and, for a server admin, by its id).
 */
const sealFor = (ctx: OpContext, projectId: string | null): { secret: Buffer; scope: string } => ({
  secret: ctx.services.keyPepper,
  scope: projectId ?? '',
});

export const auditQuery = defineOp({
  name: 'audit_query',
  summary: "Read your project's audit trail, newest first (admin).",
  input: () => z
    .object({
      since: z.iso.datetime().optional(),
      until: z.iso.datetime().optional(),
      op: z.string().regex(/^[a-z][a-z0-9_]{0,63}$/, 'expected an op name').optional(),
      outcome: z.enum(OUTCOMES).optional(),
      principal: z
        .union([z.string().regex(ID_PATTERN('agt')), agentName()])
        .optional()
        .describe('agent id or name'),
      severity: z.enum(SEVERITIES).optional(),
      event: z.enum(EVENTS).optional(),
      project: projectName().optional().describe('server admins: another project'),
      no_project: z
        .boolean()
        .optional()
        .describe('server admins: rows of no project (failed authentication, throttling)'),
      limit: z.number().int().min(1).max(MAX_PAGE).optional(),
      cursor: z.string().max(22).optional(),
    })
    .strict(),
  output: () => z.object({ rows: z.array(auditOut()), next_cursor: z.string().nullable() }),
  permission: 'token.admin',
  kind: 'read',
  tier: 'all',
  rest: { method: 'GET', path: '/audit' },
  cli: { group: 'audit-log', command: 'query' },
  async handler(ctx, input) {
    const p = ctx.principal;
    let projectId: string | null = p.projectId;
    if (input.no_project === true) {
      if (!p.serverAdmin) throw new BatonError('forbidden', 'only a server admin may read audit rows of no project');
      if (input.project !== undefined) throw new BatonError('invalid_input', 'no_project: not with project');
      projectId = null;
    } else if (input.project !== undefined && input.project !== p.projectName) {
      if (!p.serverAdmin) throw new BatonError('forbidden', 'only a server admin may read the audit of other projects');
      const found = await projectByName(ctx.tx, input.project);
      if (found === undefined) throw notFound('project');
      projectId = found.id;
    }
    let principal: string | null = null;
    if (input.principal !== undefined) {
      if (input.principal.startsWith('agt_')) principal = input.principal;
      else {
        const agent = projectId === null ? undefined : await agentByName(ctx.tx, projectId, input.principal);
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
      before: input.cursor === undefined ? null : decodePosition('audit', input.cursor, sealFor(ctx, projectId)),
      limit,
    });
    const last = rows[rows.length - 1];
    // One query reads one project's rows (or those of none): one seal for all.
    const ids = encodePositions('audit', rows.map((r) => r.id), sealFor(ctx, projectId));
    return {
      rows: rows.map((r, i) => toAuditOut(r, ids[i]!)),
      // The last row's id is the cursor after it (same listing, same project).
      next_cursor: rows.length === limit && last !== undefined ? ids[rows.length - 1]! : null,
    };
  },
});

/**
 * An exported anchor as one string (fits a query parameter and a shell argument). v1: the legacy
 * chain's end (before migration 14); v2: every chain's end, as base64url JSON `[[chain, seq,
 * hash prefix], …]`, about 60 characters per chain.
 */
const ANCHOR_V1 = /^baton-audit-anchor:v1:(\d{1,15}):(\d{1,15}):([0-9a-f]{64}):([0-9a-f]{64})$/;
const ANCHOR_V2 = /^baton-audit-anchor:v2:([A-Za-z0-9_-]*):([0-9a-f]{64})$/;
const MAX_ANCHOR = 60_000;

function anchorText(a: ChainsAnchor): string {
  const marks = Buffer.from(JSON.stringify(a.marks.map((m) => [m.chain, m.seq, m.hash]))).toString('base64url');
  return `baton-audit-anchor:v2:${marks}:${a.mac}`;
}

function parseAnchor(text: string): AuditAnchor | ChainsAnchor {
  const bad = (): BatonError => new BatonError('invalid_input', 'anchor: expected the text printed by `baton audit anchor`');
  const m1 = ANCHOR_V1.exec(text);
  if (m1 !== null) return { v: 1, count: Number(m1[1]), last_id: Number(m1[2]), hash: m1[3]!, mac: m1[4]! };
  const m2 = ANCHOR_V2.exec(text);
  if (m2 === null) throw bad();
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(m2[1]!, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  const marks = z
    .array(z.tuple([z.string().max(200), z.number().int().min(0), z.string().regex(/^[0-9a-f]{1,64}$/)]))
    .max(10_000)
    .safeParse(raw);
  if (!marks.success) throw bad();
  return { v: 2, marks: marks.data.map(([chain, seq, hash]): ChainMark => ({ chain, seq, hash })), mac: m2[2]! };
}

/**
 * Rows checked per step of a verify, each step its own read, so another call waits for the store
 * no longer than one step. Measured at 1,000 rows per step on the shared 2-core machine (load
 * average 11): 21-58 ms for the chain, 28-213 ms for a project's rows (two lookups by id each);
 * these sizes make a step a few milliseconds there.
 */
const WALK_PAGE = 250;
const PROJECT_PAGE = 100;

/**
 * A verify in progress (a server admin's walk of the chain, a project admin's of its rows),
 * keyed by the call's parsed input object, which the runner hands unchanged to every attempt of
 * one call (see ops/sessions.ts commitJobs): each attempt resumes the walk where the last one
 * stopped.
 */
const walks = new WeakMap<object, AuditWalk>();
const projectWalks = new WeakMap<object, ChainWalk>();

/** Settles on a later turn of the event loop: the runner's next attempt comes then (ctx.outside). */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export const auditVerify = defineOp({
  name: 'audit_verify',
  summary: "Check the audit trail's hash chains (yours: your project's chain); names the chain and its first bad row.",
  input: () => z
    .object({
      anchor: z
        .string()
        .max(MAX_ANCHOR)
        .optional()
        .describe('server admins: an anchor from `baton audit anchor` the trail must still reach'),
      since_anchor: z
        .boolean()
        .optional()
        .describe('with anchor: verify only the rows written after it (incremental)'),
    })
    .strict(),
  output: () => z.object({
    ok: z.boolean(),
    rows: z.number(),
    first_bad_id: z.number().nullable(),
    /** The chain that does not hold: a project id, `server` (rows of no project) or `legacy` (rows from before the per-project chains). */
    chain: z.string().nullable(),
    /** Its first position that does not hold (legacy: the row id). */
    first_bad_seq: z.number().nullable(),
    scope: z.enum(['server', 'project']),
    reason: z.string().nullable(),
    /** Server admins, when the chain holds: an anchor of its end to keep elsewhere. */
    anchor: z.string().nullable(),
  }),
  permission: 'token.admin',
  kind: 'read',
  tier: 'all',
  rest: { method: 'GET', path: '/audit/verify' },
  cli: { group: 'audit-log', command: 'verify' },
  async handler(ctx, input) {
    const p = ctx.principal;
    const key = ctx.services.auditKey;
    if (!p.serverAdmin) {
      if (input.anchor !== undefined || input.since_anchor !== undefined) throw new BatonError('forbidden', 'only a server admin may verify anchors');
      // A project admin's chain holds its project's rows only (migration 14): every row and
      // position it names is its own. In steps too, each its own short read (see below).
      let pw = projectWalks.get(input);
      if (pw === undefined) {
        pw = await beginChainWalk(ctx.tx, key, p.projectId);
        projectWalks.set(input, pw);
      }
      if (!(await stepChainWalk(ctx.tx, key, pw, PROJECT_PAGE))) {
        ctx.outside(nextTurn());
        return RETRY;
      }
      return verdictOut(await endChainWalk(ctx.tx, key, pw), 'project', null);
    }
    const anchor = input.anchor === undefined ? undefined : parseAnchor(input.anchor);
    if (anchor !== undefined && !(anchor.v === 1 ? anchorIsAuthentic(key, anchor) : chainsAnchorIsAuthentic(key, anchor))) {
      throw new BatonError('invalid_input', 'anchors: not an anchor of this server (its MAC does not hold)');
    }
    if (input.since_anchor === true && anchor === undefined) {
      throw new BatonError('invalid_input', 'since_anchor: needs anchor');
    }
    // The whole trail, in steps: each attempt is its own short read of WALK_PAGE rows, and the
    // store (on SQLite, the process's one connection) is free for every other call in between.
    let w = walks.get(input);
    if (w === undefined) {
      w = await beginAuditWalk(ctx.tx, key, anchor, input.since_anchor === true);
      walks.set(input, w);
    }
    if (!(await stepAuditWalk(ctx.tx, key, w, WALK_PAGE))) {
      ctx.outside(nextTurn());
      return RETRY;
    }
    const v = await endAuditWalk(ctx.tx, key, w);
    return verdictOut(v, 'server', v.ok && v.ends !== undefined ? anchorText(exportChainsAnchor(key, v.ends)) : null);
  },
});

/** audit_verify's answer (the CLI and tests read it as this). */
export type VerifyAnswer = ReturnType<typeof verdictOut>;

/** A walk's verdict as audit_verify answers it (a project admin's or a server admin's). */
function verdictOut(v: AuditVerdict, scope: 'project' | 'server', anchor: string | null) {
  return {
    ok: v.ok,
    rows: v.rows,
    first_bad_id: v.firstBadId,
    chain: v.ok ? null : (v.chain ?? null),
    first_bad_seq: v.firstBadSeq ?? null,
    scope,
    reason: v.reason ?? null,
    anchor,
  };
}

export const AUDIT_OPS: readonly OpDef[] = [auditQuery, auditVerify];
