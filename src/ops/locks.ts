import { z } from 'zod';
import { decodeCursor, encodeCursor } from '../core/cursor.js';
import { BatonError, notFound } from '../core/errors.js';
import { GlobBudget, globsOverlap, MAX_LENGTH, MAX_STARS, normalizeGlob } from '../core/globs.js';
import { ID_PATTERN, newId } from '../core/ids.js';
import * as store from '../store/locks.js';
import type { Lock } from '../store/locks.js';
import { AAD, openNullable, sealNullable, type Cipher } from '../security/crypto.js';
import { statusesOf } from '../store/tasks.js';
import { defineOp, RETRY, type OpContext, type OpDef } from './catalog.js';
import { agentName, cursor, limit, taskId, waitMs } from './schemas.js';

/**
 * File locks: project-relative path patterns (core/globs.ts) held by an agent, exclusive or
 * shared, until released, expired, or ended with their task or the agent's session. The conflict
 * check and the insert run in the op's one write transaction, so of two racing acquirers exactly
 * one wins and the other is told who holds the paths and until when.
 */
export const LOCK_LIMITS = {
  paths: 50,
  path: MAX_LENGTH,
  stars: MAX_STARS,
  reason: 500,
  ttlMaxS: 86_400,
  ttlDefaultS: 1_800,
  /** Live locks one agent may hold in a project. */
  perAgent: 100,
} as const;

import { iso } from '../core/time.js';

export const lockId = z.string().regex(ID_PATTERN('lck'), 'expected a lock id (lck_…)');

/** A lock pattern: normalised, project-relative (no `..` escape, absolute path or NUL). */
export const lockPath = z
  .string()
  .max(LOCK_LIMITS.path, `expected at most ${LOCK_LIMITS.path} characters per lock pattern`)
  .transform((p, ctx) => {
    const r = normalizeGlob(p);
    if (!r.ok) {
      ctx.addIssue({ code: 'custom', message: `expected a project-relative path or glob: ${r.reason}` });
      return z.NEVER;
    }
    return r.glob;
  });

const lockMode = z.enum(['exclusive', 'shared']);

export const lockOut = z.object({
  id: z.string(),
  agent: z.string(),
  mode: lockMode,
  paths: z.array(z.string()),
  reason: z.string().nullable(),
  task_id: z.string().nullable(),
  created_at: z.string(),
  expires_at: z.string(),
});
export type LockOut = z.infer<typeof lockOut>;

/** The reason is content, sealed at rest (S32); the paths stay clear (the overlap check reads them). */
export function toLockOut(l: Lock, c: Cipher | undefined): LockOut {
  return {
    id: l.id,
    agent: l.agentName,
    mode: l.mode,
    paths: l.paths,
    reason: openNullable(c, l.reason, AAD.lock(l.projectId, l.id, 'reason')),
    task_id: l.taskId,
    created_at: iso(l.createdAt),
    expires_at: iso(l.expiresAt),
  };
}

export type LockReleaseReason = 'released' | 'forced' | 'expired' | 'task_ended' | 'session_ended';

/**
 * The `lock.released` event for a lock that ended: what callers of the store's release
 * functions (task end, session end, the sweeper) append, e.g.
 * `const e = lockReleasedEvent(l, 'task_ended'); await ctx.emit(e.type, e.subject, e.data)`.
 */
export function lockReleasedEvent(
  l: Lock,
  reason: LockReleaseReason,
): { projectId: string; type: 'lock.released'; subject: string; data: Record<string, unknown> } {
  return {
    projectId: l.projectId,
    type: 'lock.released',
    subject: l.id,
    data: { paths: l.paths, mode: l.mode, agent: l.agentName, reason },
  };
}

export interface Holder {
  lock_id: string;
  agent: string;
  mode: 'exclusive' | 'shared';
  /** The holder's patterns that overlap the request. */
  paths: string[];
  expires_at: string;
}

/** Every live lock of the project, oldest first (bounded by the per-agent cap times agents). */
async function allLive(ctx: OpContext): Promise<Lock[]> {
  const out: Lock[] = [];
  let after: store.LockPage['after'];
  for (;;) {
    const page = await store.liveLocks(ctx.tx, { projectId: ctx.principal.projectId, now: ctx.now, after, limit: 500 });
    out.push(...page);
    const last = page[page.length - 1];
    if (page.length < 500 || last === undefined) return out;
    after = { createdAt: last.createdAt, id: last.id };
  }
}

/**
 * Live locks of other agents that a request for `paths` in `mode` conflicts with: exclusive
 * conflicts with any overlapping lock, shared only with overlapping exclusive ones. An agent's
 * own locks never conflict with its requests.
 */
export function conflictsWith(
  locks: readonly Lock[],
  agentId: string,
  paths: readonly string[],
  mode: 'exclusive' | 'shared',
  budget: GlobBudget = new GlobBudget(),
): Holder[] {
  const holders: Holder[] = [];
  for (const l of locks) {
    if (l.agentId === agentId) continue;
    if (mode === 'shared' && l.mode === 'shared') continue;
    const hit = l.paths.filter((held) => paths.some((want) => globsOverlap(held, want, budget)));
    if (hit.length > 0) {
      holders.push({ lock_id: l.id, agent: l.agentName, mode: l.mode, paths: hit, expires_at: iso(l.expiresAt) });
    }
  }
  return holders;
}

/** Ends the project's expired locks, announcing each (so waiters and watchers see them go). */
async function sweepExpired(ctx: OpContext): Promise<void> {
  const gone = await store.sweepProjectLocks(ctx.tx, ctx.principal.projectId, ctx.now);
  for (const l of gone) {
    const e = lockReleasedEvent(l, 'expired');
    await ctx.emit(e.type, e.subject, e.data);
  }
}

export const lockAcquire = defineOp({
  name: 'lock_acquire',
  summary: 'Lock paths/globs (exclusive|shared, TTL; again renews); conflicts name the holder or wait.',
  input: z
    .object({
      paths: z.array(lockPath).min(1).max(LOCK_LIMITS.paths),
      mode: lockMode.optional().describe('default exclusive'),
      ttl_s: z.number().int().min(1).max(LOCK_LIMITS.ttlMaxS).optional(),
      reason: z.string().max(LOCK_LIMITS.reason).optional(),
      task_id: taskId.optional().describe('released when this task ends'),
      wait_ms: waitMs.optional().describe('ms to wait for conflicts to clear'),
    })
    .strict(),
  output: z.object({ lock: lockOut }),
  permission: 'lock.write',
  kind: 'write',
  rest: { method: 'POST', path: '/locks' },
  cli: { group: 'lock', command: 'acquire' },
  waitMs: (input) => input.wait_ms ?? 0,
  async handler(ctx, input) {
    const { projectId, agentId, agentName: name } = ctx.principal;
    if (input.task_id !== undefined) {
      const found = await statusesOf(ctx.tx, projectId, [input.task_id]);
      if (!found.has(input.task_id)) throw notFound('task');
    }
    const paths = [...new Set(input.paths)];
    const mode = input.mode ?? 'exclusive';
    await sweepExpired(ctx);
    const holders = conflictsWith(await allLive(ctx), agentId, paths, mode);
    if (holders.length > 0) {
      // While the wait lasts, try again when something changes; its last attempt reports the conflict.
      if (!ctx.final) return RETRY;
      const first = holders[0]!;
      const more = holders.length > 1 ? ` and ${holders.length - 1} more` : '';
      throw new BatonError('conflict', `paths are locked by ${first.agent} (${first.mode}, until ${first.expires_at})${more}`, {
        holders: holders.slice(0, 20),
      });
    }
    // Acquiring exactly what you already hold (same paths, mode and task) renews that lock.
    const expiresAt = ctx.now + (input.ttl_s ?? LOCK_LIMITS.ttlDefaultS) * 1000;
    const key = JSON.stringify([[...paths].sort(), mode, input.task_id ?? null]);
    const same = (await allLive(ctx)).find(
      (l) => l.agentId === agentId && JSON.stringify([[...l.paths].sort(), l.mode, l.taskId]) === key,
    );
    if (same !== undefined) {
      const renewed = await store.renewLock(ctx.tx, projectId, same.id, expiresAt);
      ctx.target(same.id);
      await ctx.emit('lock.renewed', same.id, { paths, mode, agent: name });
      return { lock: toLockOut(renewed ?? { ...same, expiresAt }, ctx.services.cipher) };
    }
    if ((await store.countLiveLocksOf(ctx.tx, projectId, agentId, ctx.now)) >= LOCK_LIMITS.perAgent) {
      throw new BatonError('conflict', `you hold ${LOCK_LIMITS.perAgent} live locks; release some first`);
    }
    const lock: Lock = {
      id: newId('lck'),
      projectId,
      agentId,
      agentName: name,
      mode,
      paths,
      reason: input.reason ?? null,
      taskId: input.task_id ?? null,
      createdAt: ctx.now,
      expiresAt,
    };
    const stored = { ...lock, reason: sealNullable(ctx.services.cipher, lock.reason, AAD.lock(projectId, lock.id, 'reason')) };
    await store.insertLock(ctx.tx, stored);
    ctx.target(lock.id);
    await ctx.emit('lock.acquired', lock.id, { paths, mode, agent: name });
    return { lock: toLockOut(stored, ctx.services.cipher) };
  },
});

export const lockRelease = defineOp({
  name: 'lock_release',
  summary: 'Release a lock you hold.',
  input: z.object({ id: lockId }).strict(),
  output: z.object({ released: z.boolean() }),
  permission: 'lock.write',
  kind: 'write',
  rest: { method: 'DELETE', path: '/locks/:id' },
  cli: { group: 'lock', command: 'release', positional: 'id' },
  async handler(ctx, { id }) {
    const l = await store.getLock(ctx.tx, ctx.principal.projectId, id);
    if (l === undefined) throw notFound('lock');
    ctx.target(id);
    if (l.agentId !== ctx.principal.agentId) throw new BatonError('forbidden', 'the lock is held by another agent');
    await store.deleteLock(ctx.tx, ctx.principal.projectId, id);
    const e = lockReleasedEvent(l, l.expiresAt <= ctx.now ? 'expired' : 'released');
    await ctx.emit(e.type, e.subject, e.data);
    return { released: true };
  },
});

export const lockForceRelease = defineOp({
  name: 'lock_force_release',
  summary: "Release another agent's lock (leads and admins).",
  input: z.object({ id: lockId, reason: z.string().max(LOCK_LIMITS.reason).optional() }).strict(),
  output: z.object({ released: z.boolean(), lock: lockOut }),
  permission: 'lock.manage',
  kind: 'write',
  rest: { method: 'POST', path: '/locks/:id/force-release' },
  cli: { group: 'lock', command: 'force-release', positional: 'id' },
  async handler(ctx, { id }) {
    const l = await store.getLock(ctx.tx, ctx.principal.projectId, id);
    if (l === undefined) throw notFound('lock');
    ctx.target(id);
    await store.deleteLock(ctx.tx, ctx.principal.projectId, id);
    const e = lockReleasedEvent(l, 'forced');
    await ctx.emit(e.type, e.subject, { ...e.data, by: ctx.principal.agentName });
    return { released: true, lock: toLockOut(l, ctx.services.cipher) };
  },
});

function encodeLockCursor(l: Lock): string {
  return encodeCursor('locks', [l.createdAt, l.id]);
}

function decodeLockCursor(c: string): { createdAt: number; id: string } {
  const [createdAt, id] = decodeCursor('locks', c, ['int', 'str']);
  return { createdAt, id };
}

export const lockList = defineOp({
  name: 'lock_list',
  summary: 'Live locks; with path: who holds it.',
  input: z
    .object({
      path: lockPath.optional().describe('a path or glob'),
      agent: agentName.optional(),
      limit: limit.optional(),
      cursor: cursor.optional(),
    })
    .strict(),
  output: z.object({ locks: z.array(lockOut), next_cursor: z.string().nullable() }),
  permission: 'read',
  kind: 'read',
  rest: { method: 'GET', path: '/locks' },
  cli: { group: 'lock', command: 'list' },
  async handler(ctx, input) {
    const pageSize = input.limit ?? 50;
    const budget = new GlobBudget();
    let after = input.cursor === undefined ? undefined : decodeLockCursor(input.cursor);
    const found: Lock[] = [];
    // With a path filter, overlap is decided in code: read in chunks until the page is full.
    for (;;) {
      const chunk = await store.liveLocks(ctx.tx, {
        projectId: ctx.principal.projectId,
        now: ctx.now,
        agentName: input.agent,
        after,
        limit: 500,
      });
      for (const l of chunk) {
        if (input.path === undefined || l.paths.some((p) => globsOverlap(p, input.path!, budget))) found.push(l);
        if (found.length > pageSize) break;
      }
      const last = chunk[chunk.length - 1];
      if (found.length > pageSize || chunk.length < 500 || last === undefined) break;
      after = { createdAt: last.createdAt, id: last.id };
    }
    const page = found.slice(0, pageSize);
    const last = page[page.length - 1];
    return {
      locks: page.map((l) => toLockOut(l, ctx.services.cipher)),
      next_cursor: found.length > pageSize && last !== undefined ? encodeLockCursor(last) : null,
    };
  },
});

export const LOCK_OPS: readonly OpDef[] = [lockAcquire, lockRelease, lockList, lockForceRelease];
