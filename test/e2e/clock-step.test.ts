import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import type { BatonError } from '../../src/core/errors.js';
import { join } from 'node:path';
import { pino } from 'pino';
import { Hub } from '../../src/hub.js';
import { call, createKey, openHub, testConfig, type TestHub } from '../helpers.js';

type Task = { id: string; status: string; attempts: number; lease: { owner: string; token: number; expires_at: string } | null };

/**
 * Leases are wall time; a wall-clock step between two sweeper ticks must not expire live leases
 * (a +10 min step once dead-lettered four heartbeating tasks). ManualClock.step moves the wall
 * clock only, as NTP or a manual change does.
 */
describe('wall-clock steps and leases', () => {
  let t: TestHub;
  let clock: ManualClock;
  let lead: Principal;
  let workers: Principal[];
  let late: Principal;

  beforeEach(async () => {
    clock = new ManualClock(Date.UTC(2026, 10, 1));
    t = await openHub({ clock, config: { leaseMs: 60_000, sweepIntervalMs: 1_000, backoffBaseMs: 0 } });
    lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    workers = [];
    for (let i = 0; i < 5; i++) workers.push(await t.hub.authenticate(await createKey(t, `w${i}`, 'worker')));
    late = await t.hub.authenticate(await createKey(t, 'late', 'worker'));
  });
  afterEach(async () => {
    await t.close();
  });

  const get = async (id: string): Promise<Task> => (await call<{ task: Task }>(t.hub, lead, 'task_get', { id })).task;
  const heartbeat = (p: Principal, task: Task) => call(t.hub, p, 'task_heartbeat', { id: task.id, lease_token: task.lease!.token });

  /** Five tasks, each claimed by its own worker (max_attempts 1: one expiry dead-letters it). */
  async function claimFive(): Promise<Task[]> {
    await call(t.hub, lead, 'task_create', { tasks: Array.from({ length: 5 }, (_, i) => ({ title: `t${i}`, max_attempts: 1 })) });
    const held: Task[] = [];
    for (const w of workers) held.push((await call<{ task: Task }>(t.hub, w, 'task_claim', {})).task);
    return held;
  }

  it('heartbeating tasks survive a +10 min step; a dead lease still expires afterwards', async () => {
    const held = await claimFive();
    await t.hub.sweep(); // a tick before the step
    clock.advance(20_000);
    // Four holders heartbeat; the fifth is dead (its lease has 40 s left in pre-step time).
    for (let i = 0; i < 4; i++) await heartbeat(workers[i]!, held[i]!);
    await t.hub.sweep();
    clock.advance(500);
    clock.step(10 * 60_000);

    // Before the next tick: another agent's claim sweeps expired leases inline, a holder
    // heartbeats. Neither may treat the live leases as expired.
    expect((await call<{ task: Task | null }>(t.hub, late, 'task_claim', {})).task).toBeNull();
    await heartbeat(workers[0]!, held[0]!);
    expect(await t.hub.sweep()).toBe(0);
    for (let i = 0; i < 5; i++) expect((await get(held[i]!.id)).status).toBe('claimed');

    // The four keep working and complete.
    for (let round = 0; round < 3; round++) {
      clock.advance(30_000);
      for (let i = 0; i < 4; i++) await heartbeat(workers[i]!, held[i]!);
      await t.hub.sweep();
    }
    for (let i = 0; i < 4; i++) {
      const out = await call<{ status: string }>(t.hub, workers[i]!, 'task_complete', {
        id: held[i]!.id,
        lease_token: held[i]!.lease!.token,
        result: { summary: 'ok' },
      });
      expect(out.status).toBe('done');
    }
    // The dead one ran out of its (moved) lease during those 90 s and was dead-lettered.
    const dead = await get(held[4]!.id);
    expect(dead.status).toBe('failed');
    const refused = await call(t.hub, workers[4]!, 'task_heartbeat', { id: held[4]!.id, lease_token: held[4]!.lease!.token }).catch(
      (e: unknown) => e,
    );
    expect((refused as BatonError).code).toBe('lease_lost');
  });

  it('a lease already expired before the step is not revived by it', async () => {
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'x', max_attempts: 1 }] });
    const task = (await call<{ task: Task }>(t.hub, workers[0]!, 'task_claim', { lease_ms: 5_000 })).task;
    await t.hub.sweep();
    clock.advance(900); // less than a tick, but past... nothing yet
    clock.advance(5_000); // the lease is over in pre-step time
    clock.step(10 * 60_000);
    expect(await t.hub.sweep()).toBe(1);
    expect((await get(task.id)).status).toBe('failed');
  });

  it('a second tick (or another process) applying the same step moves nothing twice', async () => {
    const held = await claimFive();
    await t.hub.sweep();
    clock.advance(1_000);
    clock.step(10 * 60_000);
    await t.hub.sweep();
    const first = await get(held[0]!.id);
    await t.hub.sweep();
    clock.advance(1_000);
    await t.hub.sweep();
    expect((await get(held[0]!.id)).lease!.expires_at).toBe(first.lease!.expires_at);
    // Moved by exactly the step: claimed at T with 60 s, now T + 60 s + 10 min.
    expect(Date.parse(first.lease!.expires_at) - Date.parse(held[0]!.lease!.expires_at)).toBe(10 * 60_000);
  });

  it('a backward step breaks nothing: holders keep working, dead leases expire (late by the step)', async () => {
    const held = await claimFive();
    await t.hub.sweep();
    clock.advance(1_000);
    clock.step(-10 * 60_000);
    expect(await t.hub.sweep()).toBe(0);
    await heartbeat(workers[0]!, held[0]!);
    const out = await call<{ status: string }>(t.hub, workers[0]!, 'task_complete', {
      id: held[0]!.id,
      lease_token: held[0]!.lease!.token,
      result: { summary: 'ok' },
    });
    expect(out.status).toBe('done');
    clock.advance(11 * 60_000 + 60_000);
    expect(await t.hub.sweep()).toBe(4);
  });

  it('a forward step larger than an earlier backward one still moves leases written before both', async () => {
    const held = await claimFive();
    await t.hub.sweep();
    clock.advance(1_000);
    clock.step(-10 * 60_000);
    await t.hub.sweep();
    clock.advance(1_000);
    clock.step(20 * 60_000); // net +10 min
    expect(await t.hub.sweep()).toBe(0);
    for (let i = 0; i < 5; i++) await heartbeat(workers[i]!, held[i]!);
  });
});

/**
 * A process started after the step (a CLI call, a new `baton mcp`) has no earlier reading of its
 * own: it once expired every live lease of the project at its first claim, and refused a holder's
 * heartbeat with lease_expired. On SQLite the offset of the wall clock from the machine's
 * monotonic clock is kept in the database (clock_offsets), so it sees the step too.
 */
describe('a clock step seen by a process that started after it (SQLite, one machine)', () => {
  const opened: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const o of opened.splice(0).reverse()) await o.close();
  });
  const config = { leaseMs: 60_000, sweepIntervalMs: 1_000, backoffBaseMs: 0 };

  /** A SQLite hub on a ManualClock, and a lead of it. */
  async function steppable(): Promise<{ clock: ManualClock; t: TestHub; lead: Principal }> {
    const clock = new ManualClock(Date.UTC(2026, 10, 1));
    const t = await openHub({ clock, config, backend: 'sqlite' });
    opened.push(t);
    return { clock, t, lead: await t.hub.authenticate(await createKey(t, 'lead', 'lead')) };
  }

  it('its claim moves live leases instead of expiring them, its holder heartbeats, and the step is applied once', async () => {
    const { clock, t, lead } = await steppable();
    await call(t.hub, lead, 'task_create', { tasks: Array.from({ length: 3 }, (_, i) => ({ title: `t${i}`, max_attempts: 1 })) });
    const held: Task[] = [];
    for (let i = 0; i < 3; i++) held.push((await call<{ task: Task }>(t.hub, await t.hub.localPrincipal(`w${i}`, 'worker'), 'task_claim', {})).task);
    await t.hub.sweep(); // the serving process's tick before the step
    clock.advance(20_000);
    clock.step(10 * 60_000);

    // A second process on the same data dir, started now: the same machine clock, no reading of its own.
    const fresh = { now: () => clock.now(), monotonic: () => 0, machine: () => clock.machine() };
    const other = await Hub.open(testConfig(join(t.dir, 'data'), config), { clock: fresh, log: pino({ level: 'silent' }) });
    opened.push(other);
    expect((await call<{ task: Task | null }>(other, await other.localPrincipal('late', 'worker'), 'task_claim', {})).task).toBeNull();
    const moved = (await call<{ task: Task }>(other, lead, 'task_get', { id: held[0]!.id })).task;
    expect(moved.status).toBe('claimed');
    expect(Date.parse(moved.lease!.expires_at) - Date.parse(held[0]!.lease!.expires_at)).toBe(10 * 60_000);
    const w1 = await other.localPrincipal('w1', 'worker');
    await call(other, w1, 'task_heartbeat', { id: held[1]!.id, lease_token: held[1]!.lease!.token });

    // The serving process's next tick finds the step applied: nothing moves twice, nothing expires.
    expect(await t.hub.sweep()).toBe(0);
    for (const h of held) expect((await call<{ task: Task }>(t.hub, lead, 'task_get', { id: h.id })).task.status).toBe('claimed');
    const third = (await call<{ task: Task }>(t.hub, lead, 'task_get', { id: held[2]!.id })).task;
    expect(Date.parse(third.lease!.expires_at) - Date.parse(held[2]!.lease!.expires_at)).toBe(10 * 60_000);
  });

  it('a lease written after the step (its holder then dead) is not moved by it: the step is recorded before the lease', async () => {
    const { clock, t, lead } = await steppable();
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'x', max_attempts: 1 }] });
    await t.hub.sweep();
    await t.hub.sweep();
    clock.advance(500);
    clock.step(10 * 3_600_000); // a laptop's suspend is a step too: hours
    // Claimed before any sweep: its holder dies at once.
    const held = (await call<{ task: Task }>(t.hub, await t.hub.localPrincipal('w0', 'worker'), 'task_claim', {})).task;
    clock.advance(5 * 60_000);
    expect(await t.hub.sweep()).toBe(1);
    expect((await call<{ task: Task }>(t.hub, lead, 'task_get', { id: held.id })).task.status).toBe('failed');
  });

  it('two processes whose clocks disagree (a shifted monotonic clock) do not move a lease on every tick', async () => {
    const { clock, t, lead } = await steppable();
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'x' }] });
    const held = (await call<{ task: Task }>(t.hub, await t.hub.localPrincipal('w0', 'worker'), 'task_claim', {})).task;
    await t.hub.sweep();
    // The same wall clock, a monotonic clock 30 s behind (a time namespace, libfaketime on one process).
    const shifted = { now: () => clock.now(), monotonic: () => clock.monotonic(), machine: () => ({ boot: 'manual', ms: clock.monotonic() - 30_000 }) };
    const other = await Hub.open(testConfig(join(t.dir, 'data'), config), { clock: shifted, log: pino({ level: 'silent' }) });
    opened.push(other);
    for (let i = 0; i < 10; i++) {
      clock.advance(1_000);
      await t.hub.sweep();
      await other.sweep();
    }
    const after = (await call<{ task: Task }>(t.hub, lead, 'task_get', { id: held.id })).task;
    // Moved once at most (by the 30 s the other process reads as a step), never 10 times.
    expect(Date.parse(after.lease!.expires_at) - Date.parse(held.lease!.expires_at)).toBeLessThanOrEqual(30_000);
  });
});
