import { z } from 'zod';
import { decodeCursor, encodeCursor } from '../core/cursor.js';
import { BatonError, notFound } from '../core/errors.js';
import { GlobBudget, globsOverlap, MAX_LENGTH, normalizeGlob } from '../core/globs.js';
import { ID_PATTERN, newId } from '../core/ids.js';
import * as store from '../store/locks.js';
import type { Lock } from '../store/locks.js';
import { AAD, openNullable, sealNullable, type Cipher } from '../security/crypto.js';
import { statusesOf } from '../store/tasks.js';
import { defineOp, RETRY, type OpContext, type OpDef } from './catalog.js';
import { lazy, agentName, cursor, limit, taskId, waitMs } from './schemas.js';

/**
 * File locks: project-relative path patterns (core/globs.ts) held by an agent, exclusive or
 * shared, until released, expired, or ended with their task or the agent's session. The conflict
 * decision and the insert run in the op's one write transaction, so of two racing acquirers
 * exactly one wins and the other is told who holds the paths and until when. The pattern
 * matching behind the decision mostly runs outside it (see `lockAcquire`).
 */
export const LOCK_LIMITS = {
  paths: 50,
  path: MAX_LENGTH,
  reason: 500,
  ttlMaxS: 86_400,
  ttlDefaultS: 1_800,
  /** Live locks one agent may hold in a project. */
  perAgent: 100,
} as const;

import { iso } from '../core/time.js';

export const lockId = lazy(() => z.string().regex(ID_PATTERN('lck'), 'expected a lock id (lck_…)'));

/** A lock pattern: normalised, project-relative (no `..` escape, absolute path or NUL). */
export const lockPath = lazy(() => z
  .string()
  .max(LOCK_LIMITS.path, `expected at most ${LOCK_LIMITS.path} characters per lock pattern`)
  .transform((p, ctx) => {
    const r = normalizeGlob(p);
    if (!r.ok) {
      ctx.addIssue({ code: 'custom', message: `expected a project-relative path or glob: ${r.reason}` });
      return z.NEVER;
    }
    return r.glob;
  }));

const lockMode = lazy(() => z.enum(['exclusive', 'shared']));

export const lockOut = lazy(() => z.object({
  id: z.string(),
  agent: z.string(),
  mode: lockMode(),
  paths: z.array(z.string()),
  reason: z.string().nullable(),
  task_id: z.string().nullable(),
  created_at: z.string(),
  expires_at: z.string(),
}));
export type LockOut = z.infer<ReturnType<typeof lockOut>>;

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

/** Whether a request in `mode` by `agentId` can conflict with `l` at all (before any matching). */
function candidate(l: Lock, agentId: string, mode: 'exclusive' | 'shared'): boolean {
  return l.agentId !== agentId && !(mode === 'shared' && l.mode === 'shared');
}

/** The held patterns of `l` that overlap any of `paths` (empty: none). */
function overlapping(l: Lock, paths: readonly string[], budget: GlobBudget): string[] {
  return l.paths.filter((held) => paths.some((want) => globsOverlap(held, want, budget)));
}

function holderOf(l: Lock, hit: string[]): Holder {
  return { lock_id: l.id, agent: l.agentName, mode: l.mode, paths: hit, expires_at: iso(l.expiresAt) };
}

/**
 * Overlap work one attempt may do inside its write transaction (GlobBudget units): ordinary
 * pairs cost 1-40, so everyday requests are decided there in one transaction; one worst-case
 * pair (about 2,400) already goes outside.
 */
export const INLINE_WORK = 2_000;
/** Work done outside between yields to the event loop (about 0.1 ms on an idle core). */
const SLICE_WORK = 10_000;
/**
 * How many times one call hands its matching outside. Each hand-off covers the locks that
 * appeared since the last; past this (the lock set keeps changing under it) the rest is decided
 * inside, within the call's budget (as every call did before: about 1 ms at most).
 */
const MAX_HANDOFFS = 4;

/**
 * One lock_acquire call's matching, across its attempts. Keyed by the call's parsed input
 * object, which the runner hands unchanged to every attempt of one call (as session_checkpoint
 * does): nothing of it is reachable from another call, and it goes with the call.
 *
 * A verdict is kept per lock id: a lock's agent, mode and paths never change while it lives
 * (renewal moves only its expiry), so a verdict stays true for as long as the lock exists, and
 * an attempt that finds the same locks needs no matching at all.
 */
interface Matching {
  /** Lock id → the held patterns that overlap the request (empty: none). */
  readonly verdicts: Map<string, string[]>;
  /** The call's overlap budget; renewed when a wait goes on (a new round of the same request). */
  budget: GlobBudget;
  /** What the outside work ended with (too_complex, or a fault), thrown by the next attempt. */
  error: unknown;
  handoffs: number;
}

const matchings = new WeakMap<object, Matching>();

/** The call's matching state (see Matching); a refusal the outside work ended with is thrown here. */
function matchingOf(input: object): Matching {
  let m = matchings.get(input);
  if (m === undefined) {
    m = { verdicts: new Map(), budget: new GlobBudget(), error: undefined, handoffs: 0 };
    matchings.set(input, m);
  }
  if (m.error !== undefined) throw m.error;
  return m;
}

/** Decides `locks` into `m.verdicts` with `budget`, in order; throws when the budget runs out. */
function decide(m: Matching, locks: readonly Lock[], paths: readonly string[], budget: GlobBudget): void {
  for (const l of locks) m.verdicts.set(l.id, overlapping(l, paths, budget));
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The matching an attempt could not afford inside its transaction, run with no transaction open
 * (it starts on a later turn of the event loop, after the attempt has committed) and yielding to
 * the event loop every SLICE_WORK units, so other calls of every project go on in between.
 * Spends the call's budget; what it ends with (too_complex) is kept for the next attempt.
 */
async function decideOutside(m: Matching, locks: readonly Lock[], paths: readonly string[], need = Infinity): Promise<void> {
  await nextTurn();
  try {
    let mark = m.budget.remaining;
    let hits = 0;
    for (const l of locks) {
      // lock_list needs only enough matches to fill its page; later locks wait for a later attempt.
      if (hits >= need) break;
      const hit: string[] = [];
      for (const held of l.paths) {
        if (mark - m.budget.remaining >= SLICE_WORK) {
          await nextTurn();
          mark = m.budget.remaining;
        }
        if (paths.some((want) => globsOverlap(held, want, m.budget))) hit.push(held);
      }
      m.verdicts.set(l.id, hit);
      if (hit.length > 0) hits++;
    }
  } catch (err) {
    m.error = err;
  }
}

const isTooComplex = (err: unknown): boolean => err instanceof BatonError && err.code === 'too_complex';

/**
 * Live locks of other agents that a request for `paths` in `mode` conflicts with: exclusive
 * conflicts with any overlapping lock, shared only with overlapping exclusive ones; an agent's
 * own locks never conflict with its requests. Decides the locks not yet decided for
 * this call: within INLINE_WORK here, in the transaction; past that, the rest is handed outside
 * (`ctx.outside`) and the answer is `'outside'`: the attempt must end (RETRY) and the next one,
 * in a new transaction, reads the locks again and decides only those that appeared meanwhile.
 */
function conflictsOf(
  ctx: OpContext,
  m: Matching,
  live: readonly Lock[],
  paths: readonly string[],
  mode: 'exclusive' | 'shared',
): Holder[] | 'outside' {
  const candidates = live.filter((l) => candidate(l, ctx.principal.agentId, mode));
  const open = candidates.filter((l) => !m.verdicts.has(l.id));
  if (open.length > 0) {
    if (m.handoffs >= MAX_HANDOFFS) decide(m, open, paths, m.budget);
    else {
      const inline = new GlobBudget(Math.min(INLINE_WORK, m.budget.remaining));
      const before = inline.remaining;
      try {
        decide(m, open, paths, inline);
        m.budget.remaining -= before - inline.remaining;
      } catch (err) {
        if (!isTooComplex(err)) throw err;
        // What the inline pass spent counts; a call with nothing left is refused here.
        m.budget.spend(before);
        m.handoffs++;
        ctx.outside(decideOutside(m, open.filter((l) => !m.verdicts.has(l.id)), paths));
        return 'outside';
      }
    }
  }
  const holders: Holder[] = [];
  for (const l of candidates) {
    const hit = m.verdicts.get(l.id)!;
    if (hit.length > 0) holders.push(holderOf(l, hit));
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
  input: () => z
    .object({
      paths: z.array(lockPath()).min(1).max(LOCK_LIMITS.paths),
      mode: lockMode().optional().describe('default exclusive'),
      ttl_s: z.number().int().min(1).max(LOCK_LIMITS.ttlMaxS).optional(),
      reason: z.string().max(LOCK_LIMITS.reason).optional(),
      task_id: taskId().optional().describe('released when this task ends'),
      wait_ms: waitMs().optional().describe('ms to wait for conflicts to clear'),
    })
    .strict(),
  output: () => z.object({ lock: lockOut() }),
  permission: 'lock.write',
  kind: 'write',
  tier: 'core',
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
    // The outside work refused the request (too_complex): said here, before any more store work.
    const m = matchingOf(input);
    await sweepExpired(ctx);
    const live = await allLive(ctx);
    const holders = conflictsOf(ctx, m, live, paths, mode);
    // Matching to do with no transaction open: the runner runs the next attempt once it is done.
    if (holders === 'outside') return RETRY;
    if (holders.length > 0) {
      // While the wait lasts, try again when something changes; its last attempt reports the conflict.
      if (!ctx.final) {
        m.budget = new GlobBudget();
        m.handoffs = 0;
        return RETRY;
      }
      const first = holders[0]!;
      const more = holders.length > 1 ? ` and ${holders.length - 1} more` : '';
      throw new BatonError('conflict', `paths are locked by ${first.agent} (${first.mode}, until ${first.expires_at})${more}`, {
        holders: holders.slice(0, 20),
      });
    }
    // Acquiring exactly what you already hold (same paths, mode and task) renews that lock.
    const expiresAt = ctx.now + (input.ttl_s ?? LOCK_LIMITS.ttlDefaultS) * 1000;
    const key = JSON.stringify([[...paths].sort(), mode, input.task_id ?? null]);
    const same = live.find(
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
  input: () => z.object({ id: lockId() }).strict(),
  output: () => z.object({ released: z.boolean() }),
  permission: 'lock.write',
  kind: 'write',
  tier: 'standard',
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
  input: () => z.object({ id: lockId(), reason: z.string().max(LOCK_LIMITS.reason).optional() }).strict(),
  output: () => z.object({ released: z.boolean(), lock: lockOut() }),
  permission: 'lock.manage',
  kind: 'write',
  tier: 'all',
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
  input: () => z
    .object({
      path: lockPath().optional().describe('a path or glob'),
      agent: agentName().optional(),
      limit: limit().optional(),
      cursor: cursor().optional(),
    })
    .strict(),
  output: () => z.object({ locks: z.array(lockOut()), next_cursor: z.string().nullable() }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/locks' },
  cli: { group: 'lock', command: 'list' },
  async handler(ctx, input) {
    const pageSize = input.limit ?? 50;
    const m = input.path === undefined ? undefined : matchingOf(input);
    // As in lock_acquire: verdicts per lock id for the call, a small part decided in this read,
    // the rest outside it (the next attempt reads the page again and uses them).
    const inline = new GlobBudget(Math.min(INLINE_WORK, m?.budget.remaining ?? 0));
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
      for (const [k, l] of chunk.entries()) {
        if (m !== undefined && !m.verdicts.has(l.id)) {
          const paths = [input.path!];
          if (m.handoffs >= MAX_HANDOFFS) decide(m, [l], paths, m.budget);
          else {
            const before = inline.remaining;
            try {
              decide(m, [l], paths, inline);
              m.budget.remaining -= before - inline.remaining;
            } catch (err) {
              if (!isTooComplex(err)) throw err;
              m.budget.spend(Math.max(0, before));
              m.handoffs++;
              const rest = chunk.slice(k).filter((x) => !m.verdicts.has(x.id));
              ctx.outside(decideOutside(m, rest, paths, pageSize + 1 - found.length));
              return RETRY;
            }
          }
        }
        if (m === undefined || m.verdicts.get(l.id)!.length > 0) found.push(l);
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
