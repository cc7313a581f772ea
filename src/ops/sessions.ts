import { z } from 'zod';
import type { Principal } from '../auth/principal.js';
import type { Audience } from '../core/audience.js';
import { BatonError, conflict, notFound } from '../core/errors.js';
import { allowedRepos, commitStaged, GIT_TIMEOUT_MS, projectDir, stageForAgent, type Staged } from '../os/git.js';
import { refuseLockedStaged } from './commit-guard.js';
import { ID_PATTERN, newId } from '../core/ids.js';
import { scanFields } from '../core/secrets-scan.js';
import { AAD, isSealed, openNullable, openWith, sealNullable, sealWith, type Cipher } from '../security/crypto.js';
import type { Executor } from '../store/db.js';
import { agentByName } from '../store/directory.js';
import * as store from '../store/sessions.js';
import type { CheckpointRow, HandoffRow, SessionRow } from '../store/sessions.js';
import { defineOp, RETRY, type OpContext, type OpDef } from './catalog.js';
import { lazy, agentName, leaseOut, limit, LIMITS, projectPath, roleName, taskId } from './schemas.js';
import { releaseAgentLocks } from '../store/locks.js';
import { lockReleasedEvent } from './locks.js';

import { iso } from '../core/time.js';
const json = <T>(text: string): T => JSON.parse(text) as T;

const handoffId = lazy(() => z.string().regex(ID_PATTERN('hof'), 'expected a handoff id (hof_…)'));
const item = lazy(() => z.string().min(1).max(500));
const memoryKey = lazy(() => z.string().min(1).max(200));

/** How many pending handoffs whoami lists (the count says how many there are in all). */
const WHOAMI_HANDOFFS = 5;
const PREVIEW = 200;

// ---------------------------------------------------------------- output shapes

const sessionOut = lazy(() => z.object({
  id: z.string(),
  agent: z.string(),
  status: z.enum(['open', 'ended', 'abandoned']),
  goal: z.string().nullable(),
  summary: z.string().nullable(),
  checkpoints: z.number(),
  started_at: z.string(),
  ended_at: z.string().nullable(),
}));

const checkpointOut = lazy(() => z.object({
  id: z.number().describe('checkpoint number within its session'),
  at: z.string(),
  summary: z.string(),
  completed: z.array(z.string()),
  metrics: z.record(z.string(), z.number()),
  commit_sha: z.string().nullable(),
}));

const toOut = lazy(() => z.union([
  z.object({ kind: z.literal('agent'), agent: z.string() }),
  z.object({ kind: z.literal('role'), role: z.string() }),
  z.object({ kind: z.literal('anyone') }),
]));

const handoffOut = lazy(() => z.object({
  id: z.string(),
  session_id: z.string(),
  from: z.string(),
  to: toOut(),
  summary: z.string(),
  next_goals: z.array(z.string()),
  task_ids: z.array(z.string()),
  memory_keys: z.array(z.string()),
  files: z.array(z.string()),
  status: z.enum(['pending', 'accepted']),
  created_at: z.string(),
  accepted_by: z.string().nullable(),
  accepted_at: z.string().nullable(),
}));

/** What whoami adds so an agent can resume after a crash or a compacted context. */
export const resumeSessionOut = lazy(() => sessionOut().extend({ last_checkpoint: checkpointOut().nullable() }).nullable());
export const pendingHandoffsOut = lazy(() => z.object({
  count: z.number(),
  first: z.array(
    z.object({ id: z.string(), from: z.string(), to: toOut(), summary: z.string(), tasks: z.number(), created_at: z.string() }),
  ),
}));

/**
 * Encryption at rest (S32): a session's goal and summary, and a checkpoint's summary and completed
 * items, are sealed when written (bound to project and session id, or session id and checkpoint
 * number, and column); the metrics (numbers under short keys) and commit sha stay clear.
 */
function toSession(c: Cipher | undefined, row: SessionRow, agent: string): z.infer<ReturnType<typeof sessionOut>> {
  return {
    id: row.id,
    agent,
    status: row.status,
    goal: openNullable(c, row.goal, AAD.session(row.project_id, row.id, 'goal')),
    summary: openNullable(c, row.summary, AAD.session(row.project_id, row.id, 'summary')),
    checkpoints: row.checkpoints,
    started_at: iso(row.started_at),
    ended_at: iso(row.ended_at),
  };
}

function toCheckpoint(c: Cipher | undefined, row: CheckpointRow): z.infer<ReturnType<typeof checkpointOut>> {
  return {
    id: row.seq,
    at: iso(row.at),
    summary: openWith(c, row.summary, AAD.checkpoint(row.session_id, row.seq, 'summary')),
    completed: json<string[]>(openWith(c, row.completed, AAD.checkpoint(row.session_id, row.seq, 'completed'))),
    metrics: json<Record<string, number>>(row.metrics),
    commit_sha: row.commit_sha,
  };
}

interface Lease {
  id: string;
  token: number;
}

function toTo(row: HandoffRow): z.infer<ReturnType<typeof toOut>> {
  if (row.to_kind === 'agent') return { kind: 'agent', agent: row.to_name ?? '' };
  if (row.to_kind === 'role') return { kind: 'role', role: row.to_role ?? '' };
  return { kind: 'anyone' };
}

/**
 * Encryption at rest (S32): the handoff package (summary, next goals, memory keys, files) is
 * sealed when written, each field bound to its project, handoff id and column.
 */
type PackageField = 'summary' | 'next_goals' | 'memory_keys' | 'files';

function openPackage(c: Cipher | undefined, row: HandoffRow, field: PackageField): string {
  return openWith(c, row[field], AAD.handoff(row.project_id, row.id, field));
}

function toHandoff(c: Cipher | undefined, row: HandoffRow): z.infer<ReturnType<typeof handoffOut>> {
  return {
    id: row.id,
    session_id: row.session_id,
    from: row.from_name,
    to: toTo(row),
    summary: openPackage(c, row, 'summary'),
    next_goals: json<string[]>(openPackage(c, row, 'next_goals')),
    task_ids: json<Lease[]>(row.leases).map((l) => l.id),
    memory_keys: json<string[]>(openPackage(c, row, 'memory_keys')),
    files: json<string[]>(openPackage(c, row, 'files')),
    status: row.status,
    created_at: iso(row.created_at),
    accepted_by: row.accepted_name,
    accepted_at: iso(row.accepted_at),
  };
}

const reader = (p: Principal): store.Reader => ({ projectId: p.projectId, agentId: p.agentId, role: p.role });

function addressedTo(row: HandoffRow, p: Principal): boolean {
  if (row.to_kind === 'anyone') return true;
  if (row.to_kind === 'agent') return row.to_agent_id === p.agentId;
  return row.to_role === p.role;
}

/** S34: refuses text that carries a credential; names the field and the kind, never the value. */
function refuseSecrets(fields: Parameters<typeof scanFields>[0]): void {
  const found = scanFields(fields);
  if (found !== null) {
    throw new BatonError('invalid_input', `${found.field}: looks like it contains a secret (${found.kind}); leave secrets out`, {
      fields: [found.field],
    });
  }
}

async function mustOpen(ctx: OpContext): Promise<SessionRow> {
  const row = await store.openSessionOf(ctx.tx, ctx.principal.projectId, ctx.principal.agentId);
  if (row === undefined) throw conflict('no open session; call session_start first');
  ctx.target(row.id);
  return row;
}

const preview = (s: string): string => (s.length > PREVIEW ? `${s.slice(0, PREVIEW - 1)}…` : s);

/**
 * whoami's session and pending handoffs for the caller. `cipher`: the hub's (ctx.services.cipher);
 * without it an encrypted handoff summary previews as "(encrypted)".
 */
export async function resumeInfo(
  ex: Executor,
  p: Principal,
  cipher?: Cipher,
): Promise<{ session: z.infer<ReturnType<typeof resumeSessionOut>>; pending_handoffs: z.infer<ReturnType<typeof pendingHandoffsOut>> }> {
  const open = await store.openSessionOf(ex, p.projectId, p.agentId);
  let session: z.infer<ReturnType<typeof resumeSessionOut>> = null;
  if (open !== undefined) {
    const last = open.checkpoints > 0 ? await store.lastCheckpoint(ex, open.id) : undefined;
    session = { ...toSession(cipher, open, p.agentName), last_checkpoint: last === undefined ? null : toCheckpoint(cipher, last) };
  }
  const pending = await store.pendingFor(ex, reader(p), WHOAMI_HANDOFFS);
  return {
    session,
    pending_handoffs: {
      count: pending.count,
      first: pending.rows.map((r) => ({
        id: r.id,
        from: r.from_name,
        to: toTo(r),
        summary: preview(cipher === undefined && isSealed(r.summary) ? '(encrypted)' : openPackage(cipher, r, 'summary')),
        tasks: json<Lease[]>(r.leases).length,
        created_at: iso(r.created_at),
      })),
    },
  };
}

// ---------------------------------------------------------------- session_start

export const sessionStart = defineOp({
  name: 'session_start',
  summary: 'Start a work session (ends your open one as abandoned).',
  input: () => z.object({ goal: z.string().min(1).max(2_000).optional() }).strict(),
  output: () => z.object({ session: sessionOut(), abandoned: z.string().nullable() }),
  permission: 'session.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/sessions' },
  cli: { group: 'session', command: 'start' },
  async handler(ctx, input) {
    const p = ctx.principal;
    refuseSecrets({ goal: input.goal });
    const old = await store.openSessionOf(ctx.tx, p.projectId, p.agentId);
    if (old !== undefined) {
      await store.closeSession(ctx.tx, old.id, 'abandoned', null, ctx.now);
      await ctx.emit('session.ended', old.id, { status: 'abandoned', agent: p.agentName });
    }
    const id = newId('ses');
    const row = await store.insertSession(ctx.tx, {
      id,
      projectId: p.projectId,
      agentId: p.agentId,
      goal: sealNullable(ctx.services.cipher, input.goal ?? null, AAD.session(p.projectId, id, 'goal')),
      now: ctx.now,
    });
    ctx.target(id);
    await ctx.emit('session.started', id, { agent: p.agentName });
    return { session: toSession(ctx.services.cipher, row, p.agentName), abandoned: old?.id ?? null };
  },
});

// ---------------------------------------------------------------- session_checkpoint

// Key length is checked here rather than in the key schema: zod reports a bad record key as
// `invalid_key`, which would hide that a limit (too_large) was exceeded.
const metrics = lazy(() => z.record(z.string().min(1), z.number().finite()).superRefine((m, ctx) => {
  const keys = Object.keys(m);
  const tooBig = (origin: 'object' | 'string', maximum: number, message: string): void =>
    ctx.addIssue({ code: 'too_big', origin, maximum, inclusive: true, input: m, message });
  if (keys.length > 50) tooBig('object', 50, 'at most 50 metrics');
  if (keys.some((k) => k.length > 64)) tooBig('string', 64, 'metric names are at most 64 characters');
}));

/**
 * A checkpoint's git work, outside every transaction (see session_checkpoint): first `stage`
 * (check, add, list what is staged), then, after the lock check in a transaction, `commit`.
 */
interface CommitJob {
  readonly sessionId: string;
  readonly deadline: number;
  phase: 'stage' | 'commit';
  settled: boolean;
  staged: Staged | null;
  sha: string | null;
  error: unknown;
}

/**
 * Keyed by the call's parsed input object, which the runner hands unchanged to every attempt of
 * one call: no other call (whatever request id it claims) can find this call's job, and a call
 * that is abandoned (its client gone) leaves nothing behind once collected.
 */
const commitJobs = new WeakMap<object, CommitJob>();

function run<T>(ctx: OpContext, job: CommitJob, phase: CommitJob['phase'], work: Promise<T>, keep: (value: T) => void): void {
  Object.assign(job, { phase, settled: false, error: undefined });
  // The runner's next attempt comes as soon as git settles (see OpContext.outside).
  ctx.outside(work);
  void work.then(
    (value) => {
      keep(value);
      job.settled = true;
    },
    (error: unknown) => Object.assign(job, { settled: true, error }),
  );
}

/** The bound on a checkpoint's git work. */
const CHECKPOINT_GIT_MS = GIT_TIMEOUT_MS;

export const sessionCheckpoint = defineOp({
  name: 'session_checkpoint',
  summary: 'Record progress in your session; optionally git-commit as the user.',
  input: () => z
    .object({
      summary: z.string().min(1).max(LIMITS.summary),
      completed: z.array(item()).max(100).optional(),
      metrics: metrics().optional(),
      commit: z
        .object({
          repo: z.string().min(1).max(1024).describe("absolute path on the server, or '.'"),
          message: z.string().min(1).max(500),
          paths: z.array(projectPath()).max(LIMITS.files).optional().describe('to git add first'),
        })
        .strict()
        .optional(),
    })
    .strict(),
  output: () => z.object({ checkpoint: z.object({ id: z.number(), at: z.string(), commit_sha: z.string().nullable() }) }),
  permission: 'session.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/sessions/checkpoint' },
  cli: { group: 'session', command: 'checkpoint' },
  // A commit makes this a multi-attempt op: git runs between attempts (ctx.outside), never inside
  // a transaction. It asks for no wait of its own, so no waitMaxMs applies; git's timeout bounds it.
  waitMs: () => 0,
  async handler(ctx, input) {
    refuseSecrets({
      summary: input.summary,
      completed: input.completed,
      'metrics (keys)': Object.keys(input.metrics ?? {}),
      'commit.message': input.commit?.message,
    });
    const job = commitJobs.get(input);
    const open = await store.openSessionOf(ctx.tx, ctx.principal.projectId, ctx.principal.agentId);
    if (job !== undefined && (open === undefined || open.id !== job.sessionId)) {
      if (!job.settled && !ctx.final) return RETRY;
      commitJobs.delete(input);
      const sha = job.phase === 'commit' ? job.sha : null;
      const details = sha === null ? undefined : { commit_sha: sha };
      throw conflict(`the session ended while git ran${sha === null ? '' : `; commit ${sha} was made`}; no checkpoint was recorded`, details);
    }
    const session = await mustOpen(ctx);
    let sha: string | null = null;
    if (input.commit !== undefined) {
      // Git must not run inside the write transaction: every project's writes wait behind it
      // (one store, one writer), and a rollback after git ran would leave a commit without its
      // row. So the work is split over attempts of this waiting op: the first checks what it can
      // and starts staging, then answers RETRY, which ends the transaction; the runner runs the
      // next attempt as soon as git settles (ctx.outside). The attempt that finds the staging done
      // checks the staged paths against other agents' locks (no hook runs, so this is the
      // guard) and starts the commit; the one that finds the commit done writes the row in a
      // fresh transaction, with the caller re-authenticated and the session checked again. What
      // can still refuse after the commit: the session ended meanwhile (the error names the
      // commit), a store fault, or the client going away (the runner then answers nothing): the
      // commit stays in git, with the agent's message, and no checkpoint row names it.
      const commit = input.commit;
      if (job === undefined) {
        const started: CommitJob = {
          sessionId: session.id,
          deadline: Date.now() + CHECKPOINT_GIT_MS,
          phase: 'stage',
          settled: false,
          staged: null,
          sha: null,
          error: undefined,
        };
        commitJobs.set(input, started);
        const request = {
          repo: commit.repo,
          message: commit.message,
          paths: commit.paths,
          base: projectDir(ctx.services.config),
          allowed: allowedRepos(ctx.services.config),
        };
        run(ctx, started, 'stage', stageForAgent(request, started.deadline), (staged) => (started.staged = staged));
        return RETRY;
      }
      if (!job.settled) {
        if (!ctx.final) return RETRY;
        throw new BatonError('unavailable', 'git did not finish in time');
      }
      if (job.error !== undefined) {
        commitJobs.delete(input);
        throw job.error;
      }
      if (job.phase === 'stage' && job.staged !== null) {
        try {
          await refuseLockedStaged(ctx, job.staged);
        } catch (err) {
          commitJobs.delete(input);
          throw err;
        }
        run(ctx, job, 'commit', commitStaged(job.staged.cwd, commit.message, job.deadline), (value) => (job.sha = value));
        return RETRY;
      }
      commitJobs.delete(input);
      sha = job.phase === 'commit' ? job.sha : null;
    }
    const row = await store.addCheckpoint(ctx.tx, {
      sessionId: session.id,
      at: ctx.now,
      summary: input.summary,
      completed: JSON.stringify(input.completed ?? []),
      metrics: JSON.stringify(input.metrics ?? {}),
      commitSha: sha,
      seal: (seq, column, value) => sealWith(ctx.services.cipher, value, AAD.checkpoint(session.id, seq, column)),
    });
    await ctx.emit('session.checkpoint', session.id, { seq: row.seq, committed: sha !== null });
    return { checkpoint: { id: row.seq, at: iso(row.at), commit_sha: sha } };
  },
});

// ---------------------------------------------------------------- session_end

const handoffIn = lazy(() => z
  .object({
    summary: z.string().min(1).max(LIMITS.summary),
    next_goals: z.array(item()).max(50).optional(),
    task_ids: z.array(taskId()).max(100).optional().describe('tasks you hold'),
    memory_keys: z.array(memoryKey()).max(100).optional(),
    files: z.array(projectPath()).max(LIMITS.files).optional(),
    to: z
      .object({ agent: agentName().optional(), role: roleName().optional() })
      .strict()
      .refine((v) => (v.agent === undefined) !== (v.role === undefined), { message: 'give agent or role (omit to for anyone)' })
      .optional()
      .describe('one agent or one role; omit for anyone'),
  })
  .strict());

export const sessionEnd = defineOp({
  name: 'session_end',
  summary: 'End your session, optionally handing off to an agent, a role or anyone.',
  input: () => z.object({ summary: z.string().min(1).max(LIMITS.summary).optional(), handoff: handoffIn().optional() }).strict(),
  output: () => z.object({ session: sessionOut(), handoff: handoffOut().nullable() }),
  permission: 'session.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/sessions/end' },
  cli: { group: 'session', command: 'end' },
  async handler(ctx, input) {
    const p = ctx.principal;
    const h = input.handoff;
    refuseSecrets({
      summary: input.summary,
      'handoff.summary': h?.summary,
      'handoff.next_goals': h?.next_goals,
      'handoff.memory_keys': h?.memory_keys,
    });
    const session = await mustOpen(ctx);

    let to: store.NewHandoff['to'] = { kind: 'anyone' };
    let audience: Audience = { kind: 'project' };
    let leases: Lease[] = [];
    if (h !== undefined) {
      if (h.to?.agent !== undefined) {
        const agent = await agentByName(ctx.tx, p.projectId, h.to.agent);
        if (agent === undefined) throw notFound('agent');
        to = { kind: 'agent', agentId: agent.id, name: agent.name };
        audience = { kind: 'agent', agentId: agent.id };
      } else if (h.to?.role !== undefined) {
        if (!ctx.services.roles.has(h.to.role)) throw new BatonError('invalid_input', 'handoff.to.role: unknown role');
        to = { kind: 'role', role: h.to.role };
        audience = { kind: 'role', role: h.to.role };
      }
      const ids = [...new Set(h.task_ids ?? [])];
      const rows = new Map((await store.leasesOf(ctx.tx, p.projectId, ids)).map((r) => [r.id, r]));
      const notHeld = ids.filter((id) => {
        const r = rows.get(id);
        return (
          r === undefined ||
          (r.status !== 'claimed' && r.status !== 'running') ||
          r.lease_owner !== p.agentName ||
          r.lease_expires_at === null ||
          r.lease_expires_at <= ctx.now
        );
      });
      if (notHeld.length > 0) {
        const named = notHeld.slice(0, 10).join(', ') + (notHeld.length > 10 ? ` (+${notHeld.length - 10} more)` : '');
        throw conflict(`you do not hold these tasks: ${named}`, { task_ids: notHeld });
      }
      leases = ids.map((id) => ({ id, token: rows.get(id)!.lease_token }));
    }

    const summary = sealNullable(ctx.services.cipher, input.summary ?? null, AAD.session(p.projectId, session.id, 'summary'));
    const closed = await store.closeSession(ctx.tx, session.id, 'ended', summary, ctx.now);
    if (closed === undefined) throw conflict('session changed concurrently; retry');
    await ctx.emit('session.ended', session.id, { status: 'ended', agent: p.agentName });
    // Locks are not handed over: whoever continues takes the locks they need.
    for (const l of await releaseAgentLocks(ctx.tx, p.projectId, p.agentId, ctx.now)) {
      const e = lockReleasedEvent(l, 'session_ended');
      await ctx.emit(e.type, e.subject, e.data);
    }

    let handoff: HandoffRow | null = null;
    if (h !== undefined) {
      const hid = newId('hof');
      const seal = (field: PackageField, text: string): string =>
        sealWith(ctx.services.cipher, text, AAD.handoff(p.projectId, hid, field));
      handoff = await store.insertHandoff(ctx.tx, {
        id: hid,
        projectId: p.projectId,
        sessionId: session.id,
        fromAgentId: p.agentId,
        fromName: p.agentName,
        to,
        summary: seal('summary', h.summary),
        nextGoals: seal('next_goals', JSON.stringify(h.next_goals ?? [])),
        leases: JSON.stringify(leases),
        memoryKeys: seal('memory_keys', JSON.stringify(h.memory_keys ?? [])),
        files: seal('files', JSON.stringify(h.files ?? [])),
        now: ctx.now,
      });
      await ctx.emit(
        'handoff.created',
        handoff.id,
        { from: p.agentName, to: to.kind, tasks: leases.length, session_id: session.id },
        audience,
      );
    }
    return { session: toSession(ctx.services.cipher, closed, p.agentName), handoff: handoff === null ? null : toHandoff(ctx.services.cipher, handoff) };
  },
});

// ---------------------------------------------------------------- handoffs

export const handoffAccept = defineOp({
  name: 'handoff_accept',
  summary: "Accept a handoff to you; its tasks' leases become yours.",
  input: () => z.object({ id: handoffId() }).strict(),
  output: () => z.object({
    handoff: handoffOut(),
    tasks: z.array(z.object({ id: z.string(), lease: leaseOut() })),
    not_transferred: z.array(z.object({ id: z.string(), status: z.string() })),
  }),
  permission: 'session.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/handoffs/:id/accept' },
  cli: { group: 'handoff', command: 'accept', positional: 'id' },
  async handler(ctx, { id }) {
    const p = ctx.principal;
    const row = await store.getHandoff(ctx.tx, p.projectId, id);
    // Not addressed to the caller answers like a missing one: nobody can probe others' handoffs.
    if (row === undefined || !addressedTo(row, p)) throw notFound('handoff');
    ctx.target(id);
    if (row.status !== 'pending') throw conflict('handoff was already accepted', { accepted_by: row.accepted_name });
    const leases = json<Lease[]>(row.leases);
    if (leases.length > 0 && !ctx.services.roles.allows(p.role, 'task.work')) {
      throw new BatonError('forbidden', `role ${p.role} may not work tasks`);
    }
    const accepted = await store.markAccepted(ctx.tx, id, { agentId: p.agentId, name: p.agentName }, ctx.now);
    if (accepted === undefined) throw conflict('handoff was already accepted');

    const tasks: { id: string; lease: z.infer<ReturnType<typeof leaseOut>> }[] = [];
    const moved = new Set<string>();
    for (const lease of leases) {
      const out = await store.transferLease(ctx.tx, {
        projectId: p.projectId,
        taskId: lease.id,
        from: row.from_name,
        token: lease.token,
        to: p.agentName,
        now: ctx.now,
        leaseMs: ctx.services.config.leaseMs,
      });
      if (out === undefined) continue;
      moved.add(lease.id);
      tasks.push({
        id: out.id,
        lease: { owner: out.lease_owner, token: out.lease_token, expires_at: iso(out.lease_expires_at) },
      });
      await ctx.emit('task.lease_transferred', out.id, { from: row.from_name, to: p.agentName, handoff_id: id });
    }
    const left = leases.filter((l) => !moved.has(l.id)).map((l) => l.id);
    // Why each one stayed: its status now, or lease_expired when the ender's lease ran out unswept.
    const states = new Map(
      (await store.leasesOf(ctx.tx, p.projectId, left)).map((r) => [
        r.id,
        r.lease_expires_at !== null && r.lease_expires_at <= ctx.now ? 'lease_expired' : r.status,
      ]),
    );
    const notTransferred = left.map((tid) => ({ id: tid, status: states.get(tid) ?? 'missing' }));
    await ctx.emit('handoff.accepted', id, { by: p.agentName, from: row.from_name, transferred: tasks.length });
    return { handoff: toHandoff(ctx.services.cipher, accepted), tasks, not_transferred: notTransferred };
  },
});

export const handoffList = defineOp({
  name: 'handoff_list',
  summary: 'Handoffs for you or your role, and yours.',
  input: () => z.object({ status: z.enum(['pending', 'accepted']).optional(), limit: limit().optional() }).strict(),
  output: () => z.object({ handoffs: z.array(handoffOut()) }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/handoffs' },
  cli: { group: 'handoff', command: 'list' },
  async handler(ctx, input) {
    const rows = await store.listHandoffs(ctx.tx, reader(ctx.principal), input.status, input.limit ?? 50);
    return { handoffs: rows.map((r) => toHandoff(ctx.services.cipher, r)) };
  },
});

export const SESSION_OPS: readonly OpDef[] = [sessionStart, sessionCheckpoint, sessionEnd, handoffAccept, handoffList];
