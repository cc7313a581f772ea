import type { ServerResponse } from 'node:http';

/**
 * Requests in flight, for a graceful stop. Each request gets an AbortSignal that fires when its
 * client goes away before the answer is complete (the socket closed under it): the runner then
 * ends its wait without committing anything for it. A drain marks every open response
 * `Connection: close` and ends when none is left (or its time is up).
 */
export class InFlight {
  private readonly open = new Set<ServerResponse>();
  private draining = false;
  private idle: (() => void) | null = null;

  /** Tracks one request; the returned signal aborts if its client leaves before the answer is complete. */
  track(res: ServerResponse): AbortSignal {
    const gone = new AbortController();
    this.open.add(res);
    res.once('close', () => {
      if (!res.writableFinished) gone.abort();
      this.open.delete(res);
      if (this.draining && this.open.size === 0) this.idle?.();
    });
    return gone.signal;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get count(): number {
    return this.open.size;
  }

  /** From now on new requests are refused; resolves true when none is in flight, false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    // Answers still to come close their connection: no request follows them on it.
    for (const res of this.open) if (!res.headersSent) res.shouldKeepAlive = false;
    if (this.open.size === 0) return Promise.resolve(true);
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
