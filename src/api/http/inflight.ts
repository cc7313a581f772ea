import type { ServerResponse } from 'node:http';

/**
 * Requests in flight, for a graceful stop. Each request gets an AbortSignal that fires when its
 * client goes away before the answer is complete (the socket closed under it): the runner then
 * ends its wait without committing anything for it. While draining, every request that finishes
 * frees its connection, and the drain ends when none is left (or its time is up).
 */
export class InFlight {
  private active = 0;
  private draining = false;
  private idle: (() => void) | null = null;

  constructor(private readonly onFinishedWhileDraining: () => void) {}

  /** Tracks one request; the returned signal aborts if its client leaves before the answer is complete. */
  track(res: ServerResponse): AbortSignal {
    const gone = new AbortController();
    this.active++;
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
      this.active--;
      if (this.draining) {
        this.onFinishedWhileDraining();
        if (this.active === 0) this.idle?.();
      }
    });
    return gone.signal;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get count(): number {
    return this.active;
  }

  /** From now on new requests are refused; resolves true when none is in flight, false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    if (this.active === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idle = null;
        resolve(false);
      }, timeoutMs);
      this.idle = () => {
        clearTimeout(timer);
        this.idle = null;
        resolve(true);
      };
    });
  }
}
