import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { call, createKey, openHub, type TestHub } from '../helpers.js';

/**
 * Wait deadlines run on the monotonic clock (issue 7 item 8): a wall-clock step neither
 * stretches a wait nor cuts it short. ManualClock.step moves only the wall clock; advance moves
 * both. waitRecheckMs 0: an attempt runs only when the test rings the doorbell.
 */
async function until(cond: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

/** The call's outcome, or 'still waiting' after a generous bound (the wait itself is far longer). */
function settled<T>(p: Promise<T>, ms = 10_000): Promise<T | 'still waiting'> {
  return Promise.race([p, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms))]);
}

describe('wait deadlines on the monotonic clock', () => {
  let t: TestHub;
  afterEach(async () => t.close());

  it('a −10 min wall step does not stretch a 4 s wait', async () => {
    const clock = new ManualClock();
    t = await openHub({ clock, config: { waitRecheckMs: 0 } });
    const w = await t.hub.authenticate(await createKey(t, 'w', 'worker'));
    const waiting = call(t.hub, w, 'task_claim', { wait_ms: 4_000 });
    expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
    clock.step(-600_000);
    clock.advance(4_000);
    t.hub.bus.ring(); // an attempt now: its deadline has passed, so it answers
    expect(await settled(waiting)).toEqual({ task: null });
  });

  it('a +10 min wall step does not cut a wait short', async () => {
    const clock = new ManualClock();
    t = await openHub({ clock, config: { waitRecheckMs: 0 } });
    const w = await t.hub.authenticate(await createKey(t, 'w', 'worker'));
    const waiting = call<{ task: { title: string } | null }>(t.hub, w, 'task_claim', { wait_ms: 30_000 });
    expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
    clock.step(600_000);
    t.hub.bus.ring(); // an attempt now: 30 s have not passed, so it keeps waiting
    expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'still wanted' }] });
    const got = await settled(waiting);
    expect(got === 'still waiting' ? got : got.task?.title).toBe('still wanted');
  });
});
