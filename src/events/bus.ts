import type { Db } from '../store/db.js';
import { eventsHead } from '../store/journal.js';

/**
 * The doorbell. Events are rows (see store/journal.ts); the bus only says "something changed,
 * read again". In-process: `ring()` after a commit wakes every waiter. Across processes sharing
 * one SQLite file: while anyone waits, the store's change counter (`PRAGMA data_version`, which
 * moves only when another connection commits) is polled every `pollMs`; when it moved, the events
 * head (the newest event id, one indexed lookup) is read and only a new event rings the bell.
 * Every change a waiter waits for appends an event; most other commits do not (the deferred audit
 * worker commits every 50 ms under load: ringing on those re-ran every idle waiting claim 59
 * times in 3 s instead of 4).
 */
export interface Mark {
  readonly rings: number;
  readonly version: number;
  /** The events head when the mark was taken (-1: not polling across processes). */
  readonly head: number;
}

export class Bus {
  private waiters = new Set<() => void>();
  private timer: NodeJS.Timeout | null = null;
  private lastVersion = -1;
  private lastHead = -1;
  /** The newest (data_version, events head) pair read: marks reuse the head while the version holds. */
  private known = { version: -1, head: -1 };
  private polling = false;
  private rings = 0;

  constructor(
    private readonly db: Db | null,
    private readonly pollMs: number,
  ) {}

  /** Taken before a waiter reads the store; a ring or commit after it wakes that waiter at once. */
  async mark(): Promise<Mark> {
    if (this.db === null || !this.db.profile.crossProcessPoll) return { rings: this.rings, version: -1, head: -1 };
    const { version, head } = await this.snapshot();
    return { rings: this.rings, version, head };
  }

  /**
   * The change counter and the events head. The head is read again only when the counter moved
   * since the last read; it is read after the counter, so a head is never older than its counter
   * (a newer one only costs a spurious wake-up).
   */
  private async snapshot(): Promise<{ version: number; head: number }> {
    const db = this.db!;
    const version = await db.changeCounter();
    if (version !== this.known.version || this.known.head === -1) {
      this.known = { version, head: await db.read(eventsHead) };
    }
    return { version, head: this.known.head };
  }

  /** Events head now, if another connection committed since `version` (else the mark's head). */
  private async headSince(version: number, head: number): Promise<number> {
    const now = await this.snapshot();
    return now.version === version ? head : now.head;
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
      if (since.version !== -1 && this.db !== null && (await this.headSince(since.version, since.head)) !== since.head) return;
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
    // From the newest pair read (a waiter's mark was just compared with it): a new event
    // committed before the first poll still rings.
    this.lastVersion = this.known.version;
    this.lastHead = this.known.head;
    this.timer = setInterval(() => void this.poll(), this.pollMs);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.polling || this.db === null) return;
    if (this.waiters.size === 0) {
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
      this.lastVersion = -1;
      this.lastHead = -1;
      return;
    }
    this.polling = true;
    try {
      const version = await this.db.changeCounter();
      if (version !== this.lastVersion || this.lastHead === -1) {
        const { head } = await this.snapshot();
        if (this.lastHead !== -1 && head !== this.lastHead) this.ring();
        this.lastHead = head;
      }
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
