/**
 * The task state machine under many agents, lease expiries and wall-clock steps, as properties
 * (fast-check, seeded and bounded so the file stays a few seconds). Each run drives a real hub
 * in-process (ManualClock, real SQLite file) with a random program of claims, starts, heartbeats,
 * completions, failures, releases, cancels, requeues, repeated finishes, time passing, clock
 * steps and sweeper ticks, and checks after every step:
 *
 * - at most one live lease per task: only the latest claim of a task is ever accepted by a fenced
 *   write, and a lease is never expired before its holder's time (monotonic) ran out, steps or not;
 * - `done` is final;
 * - a task is never claimed (nor ready) before every dependency is done;
 * - attempts ≤ max_attempts;
 * - no task is lost: every task is in a known state, held tasks have a holder, blocked tasks
 *   wait for a dependency that is not done;
 * - a repeated finish with the same lease token gets the first answer (or `lease_lost` once the
 *   task has finished again since) and changes nothing.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import { BatonError } from '../../src/core/errors.js';
import { TASK_STATES } from '../../src/core/tasks.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, openHub, tempDir } from '../helpers.js';

const AGENTS = 4;
const INTERVAL = 1_000;

type Action =
  | { kind: 'claim'; agent: number; leaseMs: number }
  | { kind: 'start' | 'heartbeat' | 'complete' | 'release'; agent: number; pick: number }
  | { kind: 'fail'; agent: number; pick: number; retry: boolean }
  | { kind: 'repeat'; pick: number }
  | { kind: 'cancel' | 'requeue'; task: number }
  | { kind: 'advance'; ms: number }
  | { kind: 'step'; ms: number }
  | { kind: 'sweep' };

const agent = fc.integer({ min: 0, max: AGENTS - 1 });
const pick = fc.nat({ max: 50 });
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('claim' as const), agent, leaseMs: fc.integer({ min: 3_000, max: 30_000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('start' as const), agent, pick }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('heartbeat' as const), agent, pick }) },
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('complete' as const), agent, pick }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('fail' as const), agent, pick, retry: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('release' as const), agent, pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('repeat' as const), pick }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('cancel' as const), task: pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('requeue' as const), task: pick }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 8_000 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('step' as const),
      ms: fc.oneof(fc.integer({ min: 60_000, max: 900_000 }), fc.integer({ min: -900_000, max: -60_000 })),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('sweep' as const) }) },
);

const taskSpecs = fc.array(
  fc.record({ maxAttempts: fc.integer({ min: 1, max: 3 }), deps: fc.array(fc.nat(), { maxLength: 2 }) }),
  { minLength: 3, maxLength: 6 },
);

interface Row {
  id: string;
  status: string;
  deps_open: number;
  attempts: number;
  max_attempts: number;
  lease_owner: string | null;
  lease_token: number;
  lease_expires_at: number | null;
  version: number;
}

interface Grant {
  agent: number;
  task: string;
  token: number;
  /** Monotonic time until which the holder was promised the lease. */
  deadline: number;
  /** Ended by an op of ours (finish, cancel), not by expiry. */
  ended: boolean;
}

interface Finish {
  agent: number;
  task: string;
  op: 'task_complete' | 'task_fail' | 'task_release';
  input: Record<string, unknown>;
  answer: unknown;
  seq: number;
}

const REFUSALS = new Set(['lease_lost', 'lease_expired', 'conflict', 'not_ready']);

async function attempt(p: Promise<unknown>): Promise<{ ok: true; out: unknown } | { ok: false; code: string }> {
  try {
    return { ok: true, out: await p };
  } catch (err) {
    if (err instanceof BatonError && REFUSALS.has(err.code)) return { ok: false, code: err.code };
    throw err;
  }
}

describe('task state machine (property)', () => {
  const tmp = tempDir('baton-prop-');
  afterAll(() => tmp.cleanup());
  let runs = 0;

  it('keeps its invariants under random agents, expiries and clock steps', async () => {
    await fc.assert(
      fc.asyncProperty(taskSpecs, fc.array(action, { minLength: 10, maxLength: 60 }), async (specs, program) => {
        const clock = new ManualClock(Date.UTC(2026, 10, 1));
        const t = await openHub({
          clock,
          dir: `${tmp.dir}/run${runs++}`,
          config: { leaseMs: 10_000, backoffBaseMs: 1_000, backoffMaxMs: 4_000, sweepIntervalMs: INTERVAL },
        });
        try {
          const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
          const workers: Principal[] = [];
          for (let i = 0; i < AGENTS; i++) workers.push(await t.hub.authenticate(await createKey(t, `w${i}`, 'worker')));
          const created = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', {
            tasks: specs.map((s, i) => ({
              ref: `r${i}`,
              title: `task ${i}`,
              max_attempts: s.maxAttempts,
              depends_on: i === 0 ? [] : [...new Set(s.deps.map((d) => `r${d % i}`))],
            })),
          });
          const ids = created.tasks.map((x) => x.id);
          const depsOf = new Map<string, string[]>(
            specs.map((s, i) => [ids[i]!, i === 0 ? [] : [...new Set(s.deps.map((d) => ids[d % i]!))]]),
          );
          const grants: Grant[] = [];
          const latest = new Map<string, Grant>();
          const finishes: Finish[] = [];
          const lastFinishSeq = new Map<string, number>();
          const seenDone = new Set<string>();
          let seq = 0;
          await t.hub.sweep(); // the sweeper's first reading

          const rows = async (): Promise<Map<string, Row>> =>
            new Map(
              (await t.hub.db.read((ex) => ex.all<Row>(sql`SELECT id, status, deps_open, attempts, max_attempts, lease_owner,
                  lease_token, lease_expires_at, version FROM tasks`))).map((r) => [r.id, r]),
            );
          const grantOf = (a: number, k: number): Grant | undefined => {
            const mine = grants.filter((g) => g.agent === a);
            return mine.length === 0 ? undefined : mine[k % mine.length];
          };
          /** A fenced write was accepted: only the task's latest claim may be. */
          const accepted = (g: Grant): void => {
            expect(latest.get(g.task), 'a fenced write was accepted from a lease that is not the latest').toBe(g);
          };

          for (const a of program) {
            switch (a.kind) {
              case 'claim': {
                const r = await attempt(call<{ task: { id: string; lease: { token: number }; attempts: number } | null }>(
                  t.hub, workers[a.agent]!, 'task_claim', { lease_ms: a.leaseMs }));
                if (r.ok) {
                  const task = (r.out as { task: { id: string; lease: { token: number } } | null }).task;
                  if (task !== null) {
                    const g: Grant = { agent: a.agent, task: task.id, token: task.lease.token, deadline: clock.monotonic() + a.leaseMs, ended: false };
                    grants.push(g);
                    latest.set(task.id, g);
                  }
                }
                break;
              }
              case 'start':
              case 'heartbeat': {
                const g = grantOf(a.agent, a.pick);
                if (g === undefined) break;
                const r = await attempt(call(t.hub, workers[a.agent]!, `task_${a.kind}`, { id: g.task, lease_token: g.token }));
                if (r.ok) {
                  accepted(g);
                  if (a.kind === 'heartbeat') g.deadline = clock.monotonic() + 10_000;
                }
                break;
              }
              case 'complete':
              case 'fail':
              case 'release': {
                const g = grantOf(a.agent, a.pick);
                if (g === undefined) break;
                const op = `task_${a.kind}` as Finish['op'];
                const input: Record<string, unknown> = { id: g.task, lease_token: g.token };
                if (a.kind === 'complete') input.result = { summary: `by w${a.agent}` };
                if (a.kind === 'fail') Object.assign(input, { error: 'boom', retry: a.retry });
                const before = finishes.find((f) => f.task === g.task && f.input.lease_token === g.token && f.agent === a.agent);
                const r = await attempt(call(t.hub, workers[a.agent]!, op, input));
                if (r.ok && before === undefined) {
                  accepted(g);
                  g.ended = true;
                  finishes.push({ agent: a.agent, task: g.task, op, input, answer: r.out, seq: ++seq });
                  lastFinishSeq.set(g.task, seq);
                } else if (r.ok && before !== undefined) {
                  // A retry of a finish already made with this token: the same op, the same answer.
                  expect(before.op).toBe(op);
                  expect(r.out).toEqual(before.answer);
                }
                break;
              }
              case 'repeat': {
                if (finishes.length === 0) break;
                const f = finishes[a.pick % finishes.length]!;
                const version = (await rows()).get(f.task)!.version;
                const r = await attempt(call(t.hub, workers[f.agent]!, f.op, f.input));
                if (lastFinishSeq.get(f.task) === f.seq) {
                  expect(r, 'the last finish of a task is replayed').toEqual({ ok: true, out: f.answer });
                } else if (r.ok) {
                  expect(r.out).toEqual(f.answer);
                } else {
                  expect(r.code).toBe('lease_lost');
                }
                expect((await rows()).get(f.task)!.version, 'a replay changes nothing').toBe(version);
                break;
              }
              case 'cancel': {
                const id = ids[a.task % ids.length]!;
                const r = await attempt(call(t.hub, lead, 'task_cancel', { id }));
                if (r.ok) {
                  const g = latest.get(id);
                  if (g !== undefined) g.ended = true;
                  lastFinishSeq.delete(id);
                }
                break;
              }
              case 'requeue': {
                const id = ids[a.task % ids.length]!;
                await attempt(call(t.hub, lead, 'task_update', { id, requeue: true }));
                break;
              }
              case 'advance':
                clock.advance(a.ms);
                break;
              case 'step':
                // The sweeper ticks every interval: its last reading is at most that old when a step comes.
                await t.hub.sweep();
                clock.step(a.ms);
                break;
              case 'sweep':
                await t.hub.sweep();
                break;
            }

            // ---- invariants
            const now = await rows();
            expect(now.size, 'no task lost').toBe(ids.length);
            for (const [id, r] of now) {
              expect(TASK_STATES as readonly string[]).toContain(r.status);
              const held = r.status === 'claimed' || r.status === 'running';
              expect(held, `lease fields match the state of ${r.status}`).toBe(r.lease_owner !== null && r.lease_expires_at !== null);
              if (held) expect(workers.map((w) => w.agentName)).toContain(r.lease_owner);
              if (held) expect(r.attempts, 'a held task counts its attempt').toBeGreaterThanOrEqual(1);
              expect(r.attempts, 'attempts ≤ max_attempts').toBeLessThanOrEqual(r.max_attempts);
              if (seenDone.has(id)) expect(r.status, 'done is final').toBe('done');
              if (r.status === 'done') seenDone.add(id);
              const openDeps = depsOf.get(id)!.filter((d) => now.get(d)!.status !== 'done').length;
              if (['ready', 'claimed', 'running', 'done'].includes(r.status)) {
                expect(openDeps, `${r.status} only once every dependency is done`).toBe(0);
              }
              if (r.status === 'blocked') expect(openDeps, 'blocked waits for a dependency').toBeGreaterThan(0);
              if (r.status === 'blocked' || r.status === 'ready') expect(r.deps_open).toBe(openDeps);
              // The latest grant either still holds the lease, was ended by us, or ran out of time.
              const g = latest.get(id);
              if (g !== undefined && !g.ended) {
                const stillHeld = held && r.lease_token === g.token;
                if (!stillHeld) {
                  expect(clock.monotonic(), 'a lease expired before its holder’s time ran out').toBeGreaterThanOrEqual(g.deadline);
                  g.ended = true;
                }
              }
            }
          }
        } finally {
          await t.close();
        }
      }),
      { seed: 20261129, numRuns: 25, endOnFailure: true },
    );
  });
});
