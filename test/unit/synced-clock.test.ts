import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { StepDetector } from '../../src/core/clock-step.js';
import { SyncedClock } from '../../src/core/synced-clock.js';

/** A sample sent at the local clock's current time, answered `rtt` ms later, the server reading `serverMs` at the midpoint. */
function sample(local: ManualClock, rtt: number, serverMs: number) {
  return { sentMono: local.monotonic(), receivedMono: local.monotonic() + rtt, sentWall: local.now(), serverMs };
}

describe('SyncedClock (core/synced-clock.ts)', () => {
  it('takes the sample with the shortest round trip, read at its midpoint, and runs on by the monotonic clock', () => {
    const local = new ManualClock(1_000_000);
    const c = new SyncedClock(local);
    expect(c.now()).toBe(1_000_000); // before any sync: the local clock
    // The server is 5 s ahead; the slow sample would read 40 ms off.
    // Failures before the first good sync are counted (the clock is still this host's).
    expect(c.failed()).toBe(1);
    expect(c.failed()).toBe(2);
    const s = c.adopt([sample(local, 80, 1_005_000), sample(local, 2, 1_005_001)]);
    expect(s.offsetMs).toBe(5_000);
    // The first good sync moves the clock off this host's by the offset: it says so.
    expect(s.correctionMs).toBe(5_000);
    expect(s.failures).toBe(0);
    expect(s.rttMs).toBe(2);
    expect(c.now()).toBe(1_005_000); // the reading, carried back from the midpoint (1 ms later)
    local.advance(10_000);
    expect(c.now()).toBe(1_015_000);
    local.step(600_000); // the host's wall clock steps: the hub's does not
    expect(c.now()).toBe(1_015_000);
  });

  it('a resync that corrects drift is no step; a step of the server clock is one, of its size', () => {
    const local = new ManualClock(0);
    const c = new SyncedClock(local);
    c.adopt([sample(local, 0, 50_000)]);
    const steps = new StepDetector(c, 1_000);
    steps.observe();
    local.advance(30_000);
    expect(c.adopt([sample(local, 0, 80_003)]).correctionMs).toBe(3);
    expect(steps.observe()).toEqual([]);
    local.advance(30_000);
    const s = c.adopt([sample(local, 0, 110_003 + 120_000)]);
    expect(s.correctionMs).toBe(120_000);
    expect(steps.observe().map((x) => x.stepMs)).toEqual([120_000]);
  });

  it('a failed sync keeps the clock running from the last good one', () => {
    const local = new ManualClock(0);
    const c = new SyncedClock(local);
    c.adopt([sample(local, 0, 7_000)]);
    c.failed();
    c.failed();
    local.advance(1_000);
    expect(c.now()).toBe(8_000);
    expect(c.status()?.failures).toBe(2);
    c.adopt([sample(local, 0, 8_000)]);
    expect(c.status()?.failures).toBe(0);
  });
});
