import type { Clock } from './clock.js';

/**
 * Detects wall-clock steps (NTP corrections, a manual change, a laptop's clock after sleep) from
 * two readings: between two observations the wall clock and the monotonic clock should advance by
 * the same amount; a difference beyond `slackMs` is a step. Process-local: monotonic readings mean
 * nothing to another process, so nothing here is ever stored.
 */
export interface ClockStep {
  /** How far the wall clock jumped (positive: forwards). */
  stepMs: number;
  /** The wall time it would be now without the step (in the time leases written before it assumed). */
  unsteppedNow: number;
  /** The stepped wall time now. */
  now: number;
  /**
   * Rows written before the step carry wall times below this; rows written after it (in the new
   * time, a later tick's own writes included) carry this or more: the previous reading plus the
   * step. (Exact while the readings are closer together than the step is large, as ticks are.)
   */
  writtenBefore: number;
}

export class StepDetector {
  private last: { wall: number; mono: number } | null = null;
  private pending: ClockStep[] = [];

  constructor(
    private readonly clock: Clock,
    private readonly slackMs: number,
  ) {}

  /**
   * Takes a reading and returns the forward steps not yet settled (oldest first), the one found
   * now included. A step stays pending until the sweeper has applied it and committed
   * (`settle`): an op that applies it in a transaction that then rolls back loses nothing, since
   * applying a step twice changes nothing the second time (see store `extendLeasesAfterStep`).
   * Backward steps are only noted: leases then last longer by the step, which harms no holder.
   */
  observe(): readonly ClockStep[] {
    const wall = this.clock.now();
    const mono = this.clock.monotonic();
    const prev = this.last;
    this.last = { wall, mono };
    if (prev !== null) {
      const monoDelta = mono - prev.mono;
      const stepMs = wall - prev.wall - monoDelta;
      if (stepMs > this.slackMs) this.pending.push({ stepMs, unsteppedNow: prev.wall + monoDelta, now: wall, writtenBefore: prev.wall + stepMs });
    }
    return [...this.pending];
  }

  /** The sweeper applied these steps and committed. */
  settle(steps: readonly ClockStep[]): void {
    this.pending = this.pending.filter((s) => !steps.includes(s));
  }
}

const detectors = new WeakMap<object, StepDetector>();

/**
 * The one detector of a hub (keyed by an object the hub and its ops share, its config), used by
 * the sweeper and by the ops that would otherwise expire leases first: a claim's inline sweep and
 * a fenced write that finds its lease expired.
 */
export function stepDetectorOf(owner: object, clock: Clock, slackMs: number): StepDetector {
  let d = detectors.get(owner);
  if (d === undefined) {
    d = new StepDetector(clock, slackMs);
    detectors.set(owner, d);
  }
  return d;
}

/** Steps smaller than this (beyond the sweep interval) are noise: NTP slews, timer jitter. */
export const CLOCK_STEP_SLACK_MS = 1_000;
