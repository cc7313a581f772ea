import type { GoneSignal } from '../core/gone.js';
import type { Db } from '../store/db.js';
import { eventsHead } from '../store/journal.js';

/**
 * The doorbell. Events are rows (see store/journal.ts); the bus only says "something changed,
 * read again". In-process: `ring()` after a commit wakes every waiter. Across processes (several
 * processes on one SQLite file, several hub instances on one PostgreSQL): while anyone waits,
 * the bus listens to the store's `subscribe`. Every change a waiter waits for appends an event;
 * most other commits do not (the deferred audit worker commits every 50 ms under load: ringing
 * on those re-ran every idle waiting claim 59 times in 3 s instead of 4). SQLite reports every
 * other connection's commit (its change counter) but its event ids follow commit order, so the
 * events head (the newest id, one indexed lookup) is read and only a new event rings the bell.
 * PostgreSQL's ids do not follow commit order across projects (a later commit may carry a lower
 * id, and the head would not move), but it reports only commits that appended events (their
 * NOTIFY): each one rings, with no read.
 */
export interface Mark {
  readonly rings: number;
  /** How many other-connection commits had been heard of when the mark was taken (-1: not listening across processes). */
  readonly heard: number;
  /** The events head when the mark was taken (-1: not listening across processes). */
  readonly head: number;
}

/** How long the bus keeps listening after the last waiter left (ms). */
const IDLE_MS = 1000;

export class Bus {
  private waiters = new Set<() => void>();
  private unsubscribe: (() => void) | null = null;
  /** Other connections' commits heard of (the store's subscribe called us). */
  private heard = 0;
  /** The newest (heard, events head) pair read: marks reuse the head while no commit was heard. */
  private known = { heard: -1, head: -1 };
  /** The head the subscription compares with; -1 until read. */
  private lastHead = -1;
  private checking = false;
  private recheck = false;
  private rings = 0;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(private readonly db: Db | null) {}

  private get crossProcess(): boolean {
    return this.db !== null;
  }

  /** Whether a new event moves the events head (else every commit heard of is a new event). */
  private get ordered(): boolean {
    return this.db?.profile.eventsInCommitOrder === true;
  }

  /** Taken before a waiter reads the store; a ring or commit after it wakes that waiter at once. */
  async mark(): Promise<Mark> {
    if (!this.crossProcess) return { rings: this.rings, heard: -1, head: -1 };
    if (!this.ordered) return { rings: this.rings, heard: this.heard, head: -1 };
    const { heard, head } = await this.snapshot();
    return { rings: this.rings, heard, head };
  }

  /**
   * Commits heard of and the events head. While subscribed, the head is read again only when a
   * commit was heard of since the last read; it is read after the count, so a head is never
   * older than its count (a newer one only costs a spurious wake-up). Not subscribed, nothing is
   * heard of, so the head is read every time.
   */
  private async snapshot(): Promise<{ heard: number; head: number }> {
    const heard = this.heard;
    if (this.unsubscribe === null || heard !== this.known.heard || this.known.head === -1) {
      this.known = { heard, head: await this.db!.read(eventsHead) };
    }
    return this.known;
  }

  ring(): void {
    this.rings++;
    const woken = this.waiters;
    this.waiters = new Set();
    for (const wake of woken) wake();
  }

  /** Resolves at the next ring, after `timeoutMs`, or when `signal` aborts, whichever is first. */
  async wait(timeoutMs: number, signal?: GoneSignal, since?: Mark): Promise<void> {
    if (timeoutMs <= 0 || aborted(signal)) return;
    if (since !== undefined) {
      if (since.rings !== this.rings) return;
      if (since.heard !== -1 && !this.ordered && since.heard !== this.heard) return;
      if (since.heard !== -1 && this.ordered && (await this.snapshot()).head !== since.head) return;
    }
    // The snapshot above awaited a read: a caller that left meanwhile must not wait the full
    // timeout (its abort fired before this listener existed).
    if (aborted(signal)) return;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        if (this.waiters.size === 0) this.stopSoon();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal?.addEventListener('abort', done, { once: true });
      this.waiters.add(done);
      this.startListening();
    });
  }

  get waiting(): number {
    return this.waiters.size;
  }

  private startListening(): void {
    if (this.unsubscribe !== null || !this.crossProcess) return;
    // From the newest head read (a waiter's mark was just compared with it), then once more
    // right away: a new event committed between that read and the subscription still rings.
    // (Unordered: the store itself reports once when it starts hearing; see Db.subscribe.)
    this.lastHead = this.known.head;
    this.unsubscribe = this.db!.subscribe(() => {
      this.heard++;
      void this.check();
    });
    if (this.ordered) void this.check();
  }

  /**
   * Stops listening once nobody has waited for a while: a ring empties the waiter set and the
   * waiters come straight back (a claim waits again), so stopping at once would re-subscribe,
   * and read the head again, on every ring.
   */
  private stopSoon(): void {
    if (this.idleTimer !== null || this.unsubscribe === null) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.waiters.size > 0 || this.unsubscribe === null) return;
      this.unsubscribe();
      this.unsubscribe = null;
      this.lastHead = -1;
    }, IDLE_MS);
    this.idleTimer.unref();
  }

  /** Reads the events head and rings if it moved; calls that arrive during a read run once after it. */
  private async check(): Promise<void> {
    if (this.checking) {
      this.recheck = true;
      return;
    }
    this.checking = true;
    try {
      do {
        this.recheck = false;
        if (!this.ordered) {
          // Every commit heard of appended an event (or the store's LISTEN just came up and one
          // may have been missed): ring.
          this.ring();
          continue;
        }
        const heard = this.heard;
        const head = await this.db!.read(eventsHead);
        this.known = { heard, head };
        if (this.lastHead !== -1 && head !== this.lastHead) this.ring();
        this.lastHead = head;
      } while (this.recheck && this.unsubscribe !== null);
    } catch {
      // The store is closing; waiters time out on their own.
    } finally {
      this.checking = false;
    }
  }

  close(): void {
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    const unsubscribe = this.unsubscribe;
    this.unsubscribe = null;
    unsubscribe?.();
    this.ring();
  }
}

/** A function, so a check after an await is not narrowed away by the one before it. */
function aborted(signal: GoneSignal | undefined): boolean {
  return signal?.aborted === true;
}
