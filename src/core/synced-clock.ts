import type { Clock } from './clock.js';

/**
 * One clock for several hub instances on one PostgreSQL (issue 9). Lease expiry, `available_at`,
 * lock and memory TTLs are wall times that every instance compares against its own `now()`:
 * with each instance on its own wall clock, two instances 30 s apart disagree for 30 s about
 * whether a lease has expired (one re-queues a task whose holder is heartbeating on the other).
 *
 * So on PostgreSQL the hub's wall clock is the database server's: read with `clock_timestamp()`
 * (each read the best of a few round trips, taken as read at the midpoint of its round trip), and
 * carried forward between reads by this process's monotonic clock. Every instance then reads the
 * same clock, within half a round trip plus drift between reads (NTP slews the monotonic clock's
 * rate too: microseconds per second). A local wall-clock step changes nothing here: it is not
 * this clock. A step of the database server's clock reaches it at the next sync, as a step of
 * that size: the step detector (clock-step.ts) sees it as one when it exceeds the slack, which a
 * sync's correction of a few milliseconds never does.
 *
 * Chosen over refusing or warning past a skew threshold: a threshold still lets instances
 * disagree by up to the threshold, and refusing to start makes the hub's availability depend on
 * every host's NTP. Here the one clock that all instances already share, the database's, decides.
 */

/** An offset to the database server's clock beyond this is worth a warning (the log, `baton doctor`), in ms. */
export const CLOCK_OFFSET_WARN_MS = 1_000;

export interface ClockSample {
  /** Local monotonic time when the query was sent and when its answer arrived. */
  readonly sentMono: number;
  readonly receivedMono: number;
  /** Local wall time when the query was sent. */
  readonly sentWall: number;
  /** The server's clock as it answered (ms since epoch). */
  readonly serverMs: number;
}

export interface ClockSyncStatus {
  /** Server clock minus this host's wall clock (ms): positive when this host is behind. */
  readonly offsetMs: number;
  /** Round trip of the sample used (ms); the reading is good to about half of it. */
  readonly rttMs: number;
  /** How far the last sync moved this clock (ms; drift, or a step of the server's clock). */
  readonly correctionMs: number;
  /** When the last sync succeeded (this clock's time, ms since epoch). */
  readonly at: number;
  readonly syncs: number;
  /** Consecutive failed syncs since the last good one. */
  readonly failures: number;
}

export class SyncedClock implements Clock {
  private anchor: { server: number; mono: number } | null = null;
  private state: ClockSyncStatus | null = null;
  private failures = 0;

  constructor(readonly local: Clock) {}

  now(): number {
    const a = this.anchor;
    // Whole ms, like Date.now(): stored times are integer columns.
    return a === null ? this.local.now() : Math.round(a.server + (this.local.monotonic() - a.mono));
  }

  monotonic(): number {
    return this.local.monotonic();
  }

  /** Adopts the sample with the shortest round trip (the least room for an asymmetric delay). */
  adopt(samples: readonly ClockSample[]): ClockSyncStatus {
    let best: ClockSample | undefined;
    for (const s of samples) if (best === undefined || s.receivedMono - s.sentMono < best.receivedMono - best.sentMono) best = s;
    if (best === undefined) throw new Error('no clock sample');
    const rtt = Math.max(0, best.receivedMono - best.sentMono);
    const mid = best.sentMono + rtt / 2;
    // Before the first good sync the clock was this host's own wall clock.
    const before = this.anchor === null ? best.sentWall + rtt / 2 : this.anchor.server + (mid - this.anchor.mono);
    this.anchor = { server: best.serverMs, mono: mid };
    this.failures = 0;
    this.state = {
      offsetMs: best.serverMs - (best.sentWall + rtt / 2),
      rttMs: rtt,
      correctionMs: best.serverMs - before,
      at: this.now(),
      syncs: (this.state?.syncs ?? 0) + 1,
      failures: 0,
    };
    return this.state;
  }

  /**
   * A sync that could not read the server's clock: the clock runs on from the last good one (this
   * host's wall clock before the first). Returns the consecutive failures so far.
   */
  failed(): number {
    return ++this.failures;
  }

  /** Null until the first good sync. */
  status(): ClockSyncStatus | null {
    return this.state === null ? null : { ...this.state, failures: this.failures };
  }
}
