/**
 * One clock for several instances on PostgreSQL (issue 9, core/synced-clock.ts): two hubs on one
 * schema whose hosts' clocks are 30 s apart (an injected local clock, as a host with a wrong clock
 * would have) read the same time, the database server's, and so agree on when a lease expires.
 * Tolerances (250 ms) are for a loaded machine's round trips; the effect tested is 30 s.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.js';
import { Hub } from '../../src/hub.js';
import { clockSteps } from '../../src/ops/tasks.js';
import { healthAnswer } from '../../src/api/http/health.js';
import { HubMetrics } from '../../src/api/http/metrics.js';
import { call, createKey, openHub, runBaton, testConfig, type TestHub } from '../helpers.js';

/** This host's clock, `skew` ms off (changeable: a local clock step). */
function hostClock(skew: number): Clock & { skew: number } {
  return {
    skew,
    now() {
      return Date.now() + this.skew;
    },
    monotonic: () => performance.now(),
  };
}

describe('two instances whose hosts disagree by 30 s, on one PostgreSQL', () => {
  let t: TestHub;
  let b: Hub;
  const aClock = hostClock(0);
  const bClock = hostClock(30_000);

  beforeEach(async () => {
    bClock.skew = 30_000;
    t = await openHub({ backend: 'postgres', clock: aClock, clockSync: true });
    b = await Hub.open(testConfig(join(t.dir, 'data')), { clock: bClock, clockSync: true, checkOutputs: true, log: pino({ level: 'silent' }) });
  });
  afterEach(async () => {
    await b.close();
    await t.close();
  });

  it('both read the database server\'s clock, and each reports its own host\'s offset to it', () => {
    const a = t.hub.clockStatus();
    const bs = b.clockStatus();
    expect(a.source).toBe('database');
    expect(bs.source).toBe('database');
    // The database runs on this machine: host A is on time, host B 30 s ahead.
    expect(Math.abs((a as { offsetMs: number }).offsetMs)).toBeLessThan(1_000);
    expect((bs as { offsetMs: number }).offsetMs).toBeGreaterThan(-31_000);
    expect((bs as { offsetMs: number }).offsetMs).toBeLessThan(-29_000);
    expect(Math.abs(t.hub.clock.now() - b.clock.now())).toBeLessThan(250);
  });

  it('agree on expiry: a lease taken on either instance is live on the other, and expires at the same time for both', async () => {
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'on A' }, { title: 'on B' }] });
    const onA = await t.hub.authenticate(await createKey(t, 'wa', 'worker'));
    const onB = await b.authenticate(await createKey(t, 'wb', 'worker'));
    const lease = 20_000;
    const claimA = await call<{ task: { id: string; lease: { expires_at: string; token: string } } }>(t.hub, onA, 'task_claim', { lease_ms: lease });
    const claimB = await call<{ task: { id: string; lease: { expires_at: string; token: string } } }>(b, onB, 'task_claim', { lease_ms: lease });
    // Each lease ends `lease` after the claim by the other instance's clock too.
    expect(Math.abs(Date.parse(claimA.task.lease.expires_at) - (b.clock.now() + lease))).toBeLessThan(1_000);
    expect(Math.abs(Date.parse(claimB.task.lease.expires_at) - (t.hub.clock.now() + lease))).toBeLessThan(1_000);
    // B's host is 30 s ahead: on its own clock it would find A's 20 s lease long expired.
    expect(await b.sweep()).toBe(0);
    expect(await t.hub.sweep()).toBe(0);
    const seen = await call<{ tasks: { id: string; status: string }[] }>(t.hub, t.admin, 'task_list', {});
    expect(seen.tasks.map((x) => x.status).sort()).toEqual(['claimed', 'claimed']);
    // The holder on B completes through A: its lease is live there too.
    await call(t.hub, onB, 'task_complete', { id: claimB.task.id, lease_token: claimB.task.lease.token, result: { summary: 'done' } });
  });

  it('a step of a host\'s own clock is no step of the hub\'s clock, and a resync is none either', async () => {
    const steps = clockSteps(b.config, b.clock);
    steps.observe();
    const before = b.clock.now();
    bClock.skew += 600_000; // B's host clock jumps 10 min forward (NTP, an operator)
    expect(Math.abs(b.clock.now() - before)).toBeLessThan(1_000);
    for (let i = 0; i < 3; i++) await b.resyncClock();
    const s = b.clockStatus() as { offsetMs: number; correctionMs: number; syncs: number };
    expect(s.syncs).toBeGreaterThanOrEqual(4);
    expect(s.offsetMs).toBeLessThan(-629_000);
    expect(Math.abs(s.correctionMs)).toBeLessThan(250);
    expect(steps.observe()).toEqual([]);
    expect(Math.abs(t.hub.clock.now() - b.clock.now())).toBeLessThan(250);
  });

  it('says the offset in /readyz, /metrics and baton doctor', async () => {
    const ready = (await healthAnswer(b, '/readyz'))!;
    expect(ready.status).toBe(200);
    const clock = (ready.body as { checks: Record<string, { ok: boolean; status: string; offset_ms: number; rtt_ms: number }> }).checks.clock!;
    expect(clock).toMatchObject({ ok: true, status: 'synced', source: 'database' });
    expect(clock.offset_ms).toBeGreaterThan(-31_000);
    expect(clock.offset_ms).toBeLessThan(-29_000);
    const text = await HubMetrics.of(b).registry.metrics();
    const offset = Number(/^baton_clock_offset_seconds (\S+)$/m.exec(text)?.[1]);
    expect(offset).toBeGreaterThan(-31);
    expect(offset).toBeLessThan(-29);
    expect(text).toMatch(/^baton_clock_sync_rtt_seconds \d/m);
    // The doctor compares its own host's clock (on time here) with the database's.
    const doctor = await runBaton(['doctor', '--data', join(t.dir, 'data')]);
    expect(doctor.stdout).toMatch(/ok {3}clock: this host is \d+ ms (behind|ahead of) the database server \(round trip [\d.]+ ms\); the hub keeps the database's time/);
  });
});
