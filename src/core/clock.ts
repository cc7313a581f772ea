/**
 * Time comes from an injected clock so tests backdate instead of sleeping. `now()` is wall time
 * (ms since epoch): leases and stored timestamps use it, since several processes share them.
 * `monotonic()` never jumps with the wall clock: wait deadlines, timeouts and intervals measured
 * within one process use it, so a clock step neither cuts a wait short nor stretches it.
 */
export interface Clock {
  now(): number;
  monotonic(): number;
  /**
   * A monotonic reading every process of this machine shares (same boot), for a clock step seen
   * across processes (store `clock_offsets`); absent or null where there is none to share.
   */
  machine?(): MachineTime | null;
}

/** A reading of the machine's monotonic clock: `ms` compares only within one `boot`. */
export interface MachineTime {
  boot: string;
  ms: number;
}

export const systemClock: Clock = { now: () => Date.now(), monotonic: () => performance.now() };

/** A clock tests move by hand: `advance` moves both clocks, `step` only the wall clock (a clock step). */
export class ManualClock implements Clock {
  private t: number;
  private mono = 0;
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  monotonic(): number {
    return this.mono;
  }
  /** The same monotonic clock, as if every hub of a test shared one machine. */
  machine(): MachineTime {
    return { boot: 'manual', ms: this.mono };
  }
  advance(ms: number): void {
    this.t += ms;
    this.mono += ms;
  }
  /** Moves the wall clock only (forwards or backwards), as an NTP or manual clock change does. */
  step(ms: number): void {
    this.t += ms;
  }
  set(ms: number): void {
    this.t = ms;
  }
}
