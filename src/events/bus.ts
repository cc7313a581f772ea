import type { Db } from '../store/db.js';

/**
 * The doorbell. Events are rows (see store/journal.ts); the bus only says "something changed,
 * read again". In-process: `ring()` after a commit wakes every waiter. Across processes sharing
 * one SQLite file: while anyone waits, the store's change counter (`PRAGMA data_version`, which
 * moves only when another connection commits) is polled every `pollMs` and a change rings the bell.
 */
export interface Mark {
  readonly rings: number;
  readonly version: number;
}

export class Bus {
  private waiters = new Set<() => void>();
  private timer: NodeJS.Timeout | null = null;
  private lastVersion = -1;
  private polling = false;
  private rings = 0;

  constructor(
    private readonly db: Db | null,
    private readonly pollMs: number,
  ) {}

  /** Taken before a waiter reads the store; a ring or commit after it wakes that waiter at once. */
  async mark(): Promise<Mark> {
    const version = this.db !== null && this.db.profile.crossProcessPoll ? await this.db.changeCounter() : -1;
    return { rings: this.rings, version };
  }

  ring(): void {
    this.rings++;
    const woken = this.waiters;
    this.waiters = new Set();
    for (const wake of woken) wake();
  }

  /** Resolves at the next ring, after `timeoutMs`, or when `signal` aborts, whichever is first. */
  async wait(timeoutMs: number, signal?: AbortSignal, since?: Mark): Promise<void> {
    if (timeoutMs <= 0 || signal?.aborted === true) return;
    if (since !== undefined) {
      if (since.rings !== this.rings) return;
      if (since.version !== -1 && this.db !== null && (await this.db.changeCounter()) !== since.version) return;
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
      this.startPolling();
    });
  }

  get waiting(): number {
    return this.waiters.size;
  }

  private startPolling(): void {
    if (this.timer !== null || this.db === null || !this.db.profile.crossProcessPoll) return;
    this.timer = setInterval(() => void this.poll(), this.pollMs);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.polling || this.db === null) return;
    if (this.waiters.size === 0) {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
      this.lastVersion = -1;
      return;
    }
    this.polling = true;
    try {
      const version = await this.db.changeCounter();
      if (this.lastVersion !== -1 && version !== this.lastVersion) this.ring();
      this.lastVersion = version;
    } catch {
      // The store is closing; waiters time out on their own.
    } finally {
      this.polling = false;
    }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.ring();
  }
}
