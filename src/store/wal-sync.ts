import { close, fdatasync, openSync } from 'node:fs';

/**
 * `durability: full-threaded`'s fsync, off the event loop (the default `full` leaves it to
 * SQLite, inside COMMIT). SQLite's `synchronous = FULL` fsyncs the WAL
 * inside COMMIT, and both drivers are synchronous: each group commit blocked the whole process
 * (every HTTP request with it) for the length of an fsync, 0.3–4 ms on this machine's disk. The
 * connection instead runs `synchronous = NORMAL` (identical on-disk format and crash recovery; the
 * WAL header and checkpoints are still synced by SQLite) and this class fdatasyncs the WAL file on
 * libuv's thread pool after commits. Answers wait for it (SqliteDb.deliver): nothing is
 * acknowledged — and no read answers with state — before the WAL holding it is on disk, exactly
 * what FULL promised, while the event loop runs the next batch during the fsync.
 *
 * One fsync at a time: commits that land while one runs share the next (a second group commit,
 * at the fsync's level). The WAL is one file and fsync covers all of its data written before the
 * call, so a sync started after commit n covers commits 1..n, whoever wrote them.
 *
 * A failed fsync is final. Unlike SQLite's own sync inside COMMIT, this one runs after the commit
 * is visible: later transactions may have read and built on pages the OS then dropped, and on
 * Linux a later fsync may succeed without having written them. So from then on nothing is
 * acknowledged (every `durable()` is refused) until the hub is restarted and SQLite recovers the
 * WAL as it is on disk.
 */
export class WalSync {
  private fd: number | null = null;
  /** Commits (this connection's, or another connection's it has seen) that need a sync. */
  private committed = 0;
  /** Every commit up to this number is on disk. */
  private synced = 0;
  private running: Promise<void> | null = null;
  private waiters: { upTo: number; resolve: () => void; reject: (err: unknown) => void }[] = [];
  /** The first fsync failure: every answer from then on is refused with it. */
  private broken: Error | null = null;

  constructor(private readonly path: string) {}

  /** A commit happened (or another connection's commit became visible): later answers wait for a sync. */
  noteCommit(): void {
    this.committed++;
  }

  /** Something committed or seen is not yet on disk (or never will be: an fsync failed). */
  get behind(): boolean {
    return this.broken !== null || this.synced < this.committed;
  }

  /** The fsync running, if any (the store's next batch waits for it: SqliteDb.scheduleWrites). */
  get inFlight(): Promise<void> | null {
    return this.running;
  }

  /** Resolves once everything committed or seen so far is on disk; rejects when the fsync fails. */
  durable(): Promise<void> {
    if (this.broken !== null) return Promise.reject(this.broken);
    const upTo = this.committed;
    if (upTo <= this.synced) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ upTo, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.running !== null || this.waiters.length === 0 || this.broken !== null) return;
    const upTo = this.committed;
    let fd: number;
    try {
      // Opened on first use: the WAL file exists once the connection has run a transaction, and
      // is neither removed nor replaced while a connection to the database is open.
      fd = this.fd ??= openSync(this.path, 'r+');
    } catch (err) {
      this.settle(upTo, err as Error);
      return;
    }
    this.running = new Promise<void>((done) => {
      fdatasync(fd, (err) => {
        this.running = null;
        this.settle(upTo, err);
        done();
        this.kick(); // commits that landed meanwhile
      });
    });
  }

  private settle(upTo: number, err: Error | null): void {
    if (err !== null) {
      // SQLite's code for it (SQLITE_IOERR_FSYNC): the store's fault mapping turns it into
      // storage_readonly, as for any write the disk could not keep. Every waiter, covered or not.
      this.broken ??= Object.assign(new Error(`fsync of the WAL failed: ${err.message}`), { code: 'SQLITE_IOERR_FSYNC' });
      const all = this.waiters;
      this.waiters = [];
      for (const w of all) w.reject(this.broken);
      return;
    }
    this.synced = Math.max(this.synced, upTo);
    const covered = this.waiters.filter((w) => w.upTo <= upTo);
    this.waiters = this.waiters.filter((w) => w.upTo > upTo);
    for (const w of covered) w.resolve();
  }

  /** Waits for the sync in flight (answers wait on it), then closes the file. */
  async close(): Promise<void> {
    while (this.running !== null) await this.running;
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) await new Promise<void>((resolve) => close(fd, () => resolve()));
  }
}
