import { chmodSync, existsSync } from 'node:fs';
import { databaseFiles, unwritablePaths } from '../os/datadir.js';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Db, Executor, IntegrityReport, Migration, Profile, StoreFault, TxMemo, WriteFault } from './db.js';
import { SQLITE } from './dialect.js';
import { busyError, faultCodeOf, faultError, faultRecord, hasRoom, isBusy, storeFailure } from './faults.js';
import { WriteMemo } from './memo.js';
import { Mutex } from './mutex.js';
import { openSqlite, type SqliteConnection, type SqliteDriverName, type SqliteStatement } from './sqlite-driver.js';
import { render, type Sql } from './sql.js';
import { WalSync } from './wal-sync.js';

const PROFILE: Profile = { name: 'sqlite', eventsInCommitOrder: true };
const placeholder = SQLITE.placeholder;

function bind(values: readonly unknown[]): unknown[] {
  return values.map((v) => (v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v));
}

/** Most writes committed (or reads run) together: bounds how long one batch holds a lock. */
const MAX_BATCH = 64;

/**
 * How long a start waits for another process that is creating or upgrading the schema (ms). A
 * migration takes milliseconds, but ten agents' stdio servers started together queue up behind
 * each other, each also waiting for the others' bootstrap; this only bounds a hung peer.
 */
const MIGRATE_WAIT_MS = 60_000;

/** While one fault persists, onFault hears of it again at most this often (ms). */
const FAULT_REPORT_MS = 10_000;

interface Pending {
  fn: (ex: Executor) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Another connection holds a lock (incl. SQLITE_BUSY_RECOVERY / _SNAPSHOT): worth waiting for. */

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Blocks for `ms`: only while the connection is being set up, before the store serves anyone. */
function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/**
 * `full`: SQLite's synchronous = FULL, the WAL fsynced inside COMMIT. `full-threaded`: as durable,
 * the fsync on the thread pool (WalSync) while the event loop goes on, answers waiting for it.
 * `normal`: synchronous = NORMAL, no fsync per commit.
 */
export type Durability = 'full' | 'full-threaded' | 'normal';

export interface SqliteOptions {
  /** How long a writer waits for another process's write lock before giving up (ms). */
  busyTimeoutMs?: number;
  /**
   * `full` (default): a commit is on disk before anyone is told: SQLite fsyncs the WAL inside
   * every group commit's COMMIT. `full-threaded`: as durable, the fsync on the thread pool after
   * COMMIT (wal-sync.ts), every answer waiting for the fsync that covers what it saw. `normal`:
   * WAL fsynced only at checkpoints; survives a crash of the process, not of the OS or the power.
   */
  durability?: Durability;
  /**
   * Called on a storage fault (disk full, damage, read-only) with the driver's error, for the
   * operator's log: when a fault starts or changes, and every 10 s while the same one persists.
   */
  onFault?: (err: unknown, fault: StoreFault) => void;
  /**
   * Internal, for tests: caps the database at this many pages (PRAGMA max_page_count, per
   * connection), so a "disk full" can be provoked without filling a disk.
   */
  maxPageCount?: number;
  /** Which driver (sqlite-driver.ts); default: the process's choice (BATON_SQLITE_DRIVER, else node:sqlite when usable). */
  driver?: SqliteDriverName;
  /** How often `subscribe` polls for other processes' commits while anyone listens (ms; default 100). */
  pollMs?: number;
}

/**
 * SQLite via node:sqlite or better-sqlite3 (sqlite-driver.ts): WAL, foreign keys, `BEGIN
 * IMMEDIATE` for every write, busy_timeout so several processes (one stdio server per agent) can
 * share one file. Both drivers are synchronous, so within a process a mutex keeps an async transaction from interleaving with
 * another caller's statements on the same connection.
 *
 * Faults: every caller of a batch is settled, whatever fails (a statement, SAVEPOINT, RELEASE,
 * COMMIT, ROLLBACK), and the drain loops never reject. Driver errors that are storage faults
 * become `storage_full` / `storage_corrupt` / `storage_readonly` here (see faults.ts).
 */
export class SqliteDb implements Db {
  readonly profile = PROFILE;
  private readonly conn: SqliteConnection;
  private readonly dir: string | null;
  private readonly mutex = new Mutex();
  /** The memo of the write transaction in progress (db.ts TxMemo); null outside one. */
  private txMemo: WriteMemo | null = null;
  private readonly cache = new Map<string, SqliteStatement>();
  private readonly ex: Executor;
  private readonly begin: SqliteStatement;
  private readonly beginRead: SqliteStatement;
  private readonly commit: SqliteStatement;
  private readonly rollback: SqliteStatement;
  private readonly savepoint: SqliteStatement;
  private readonly release: SqliteStatement;
  private readonly rollbackTo: SqliteStatement;
  private readonly dataVersion: SqliteStatement;
  /** Rows this connection has changed so far: read only while a fault is in force (faultOver). */
  private readonly totalChanges: SqliteStatement;
  private readonly file: string;
  private readonly writes: Pending[] = [];
  /** A drain of `writes` is scheduled and has not yet taken its batch. */
  private writesScheduled = false;
  /** How many writes the last batch took (scheduleWrites holds a batch until as many are queued). */
  private lastBatch = 0;
  /** Starts a batch held for the fsync in flight (scheduleWrites) once enough writes are queued. */
  private releaseHeld: (() => void) | null = null;
  private readonly reads: Pending[] = [];
  private readonly busyTimeoutMs: number;
  private readonly onFault: ((err: unknown, fault: StoreFault) => void) | undefined;
  private currentFault: StoreFault | null = null;
  /**
   * The read-only fault in force is one the files' permissions explain: they failed `access(W_OK)`
   * when it was recorded (mode, owner, an immutable flag, a read-only mount; SQLite reports some of
   * these as plain I/O errors). Not so for an I/O error on a writable file (a failing disk).
   */
  private faultByPermission = false;
  private reportedAt = -Infinity;
  private blocked: WriteFault | null = null;
  private integrity: IntegrityReport | null = null;
  private readonly pollMs: number;
  private readonly listeners = new Set<() => void>();
  private pollTimer: NodeJS.Timeout | null = null;
  private seenVersion = -1;
  /** `full-threaded`'s fsync off the event loop; null otherwise (and for `:memory:`). */
  private readonly walSync: WalSync | null;
  /** data_version when a read last checked for other connections' commits (they may await a sync). */
  private syncSeenVersion = -1;

  constructor(file: string, options: SqliteOptions = {}) {
    const fresh = file !== ':memory:' && !existsSync(file);
    this.dir = file === ':memory:' ? null : dirname(file);
    this.file = file;
    this.onFault = options.onFault;
    this.pollMs = Math.max(1, Math.floor(options.pollMs ?? 100));
    this.conn = openSqlite(file, options.driver === undefined ? {} : { driver: options.driver });
    if (fresh) chmodSync(file, 0o600);
    // SQLite's own busy handler sleeps 1, 2, 5, 10, … 100 ms and blocks the event loop while it
    // does; it gets only a few milliseconds here, and longer waits for another process's write
    // lock are polled without blocking, every millisecond, up to busyTimeoutMs (see lockFor).
    this.busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000));
    this.conn.pragma(`busy_timeout = ${Math.min(this.busyTimeoutMs, 5)}`);
    // Switching a fresh file to WAL needs an exclusive lock, and reading an existing one's header
    // meets a peer's WAL recovery: both answer SQLITE_BUSY (sometimes without calling the busy
    // handler) when several processes start together, so setup retries like migrate() waits.
    const setupDeadline = performance.now() + Math.max(this.busyTimeoutMs, MIGRATE_WAIT_MS);
    const setup = (pragma: string): void => {
      for (;;) {
        try {
          this.conn.pragma(pragma);
          return;
        } catch (error) {
          if (!isBusy(error) || performance.now() >= setupDeadline) throw error;
          sleepSync(2);
        }
      }
    };
    setup('journal_mode = WAL');
    // `full-threaded` syncs through WalSync: SQLite itself runs NORMAL (same file format and
    // recovery; it still syncs the WAL header and checkpoints), the WAL's fsync after each commit
    // is ours, on the thread pool. The default `full` leaves it to SQLite, inside COMMIT: measured
    // faster on a quiet machine with a fast fsync (docs/BENCHMARKS.md, issue 7).
    const durable = options.durability !== 'normal';
    this.walSync = options.durability === 'full-threaded' && file !== ':memory:' ? new WalSync(`${file}-wal`) : null;
    setup(`synchronous = ${durable && this.walSync === null ? 'FULL' : 'NORMAL'}`);
    setup('foreign_keys = ON');
    // Reads through a memory map instead of a read() per page (measured: a few % per read).
    setup('mmap_size = 268435456');
    if (options.maxPageCount !== undefined) setup(`max_page_count = ${Math.max(1, Math.floor(options.maxPageCount))}`);
    this.begin = this.conn.prepare('BEGIN IMMEDIATE');
    this.beginRead = this.conn.prepare('BEGIN');
    this.commit = this.conn.prepare('COMMIT');
    this.rollback = this.conn.prepare('ROLLBACK');
    this.savepoint = this.conn.prepare('SAVEPOINT op');
    this.release = this.conn.prepare('RELEASE op');
    this.rollbackTo = this.conn.prepare('ROLLBACK TO op');
    this.dataVersion = this.conn.prepare('PRAGMA data_version');
    this.totalChanges = this.conn.prepare('SELECT total_changes()');
    if (this.walSync !== null) {
      // Another process's commit made before this open may still be in its fsync: the first
      // answer here waits for one sync; after that, data_version tells of others' commits.
      this.syncSeenVersion = this.dataVersion.value() as number;
      this.walSync.noteCommit();
    }
    const memo = (): TxMemo | null => this.txMemo;
    this.ex = {
      dialect: SQLITE,
      all: async <T>(q: Sql) => this.stmt(q).all(bind(q.values)) as T[],
      get: async <T>(q: Sql) => this.stmt(q).get(bind(q.values)) as T | undefined,
      run: async (q: Sql) => this.stmt(q).run(bind(q.values)),
      send: async (q: Sql) => {
        this.stmt(q).run(bind(q.values));
      },
      // One writer at a time (BEGIN IMMEDIATE) already excludes every other writer.
      lock: async () => undefined,
      // Another connection's commit moves data_version (subscribe polls it).
      announce: async () => undefined,
      get memo() {
        return memo();
      },
    };
  }

  private stmt(q: Sql): SqliteStatement {
    const text = render(q, placeholder);
    let s = this.cache.get(text);
    if (s === undefined) {
      s = this.conn.prepare(text);
      if (this.cache.size >= 500) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(text, s);
    }
    return s;
  }

  /**
   * The error a caller gets for `error`: a storage fault becomes its stable BatonError (and is
   * recorded for fault() and reported to onFault); anything else (busy, a refusal, a bug) stays.
   */
  private failed(error: unknown): unknown {
    // Another process held the lock past busy_timeout (lockFor already waited): retryable.
    if (isBusy(error)) return busyError();
    const code = faultCodeOf(error, this.dir);
    if (code === null) return error;
    const fault = faultRecord(code, error, Date.now());
    const previous = this.currentFault;
    this.currentFault = fault;
    // Asked once as a read-only fault begins (not for every refused caller while it lasts).
    if (code === 'storage_readonly' && previous?.code !== code) this.faultByPermission = !this.filesWritable();
    // A full disk refuses every write of every batch: one report per fault and per
    // FAULT_REPORT_MS is enough for the operator, not one per caller.
    const now = performance.now();
    if (previous?.code !== code || previous.message !== fault.message || now - this.reportedAt >= FAULT_REPORT_MS) {
      this.reportedAt = now;
      try {
        this.onFault?.(error, fault);
      } catch {
        // A logger that throws must not turn a refused write into an unsettled one.
      }
    }
    return faultError(code, error);
  }

  /** Rows changed by this connection so far (read only while a fault is in force: faultOver). */
  private changesNow(): number {
    return Number(this.totalChanges.value());
  }

  /**
   * A write transaction committed without a fault: whether the fault in force (fault(), /readyz)
   * is over. A commit alone does not say so: the sweeper's tick commits an empty transaction every
   * second on a full or read-only disk, and a small write can fit in the WAL's old space when a
   * larger one does not. So damage (`storage_corrupt`) stays until the hub is restarted (after a
   * repair: it does not mend while the hub runs); a full disk is over once it has room again
   * (hasRoom, the threshold below which an I/O error counts as full); a read-only file once a
   * transaction whose kept ops changed rows (`changed`) has committed, or, when permissions
   * explain the fault (mode, owner, immutable flag, read-only mount), once the files pass
   * `access(W_OK)` again, so an idle hub recovers too. An I/O error on a writable file (a failing
   * disk) ends only with a commit that wrote rows.
   */
  private faultOver(changed: boolean): void {
    const f = this.currentFault;
    if (f === null || f.code === 'storage_corrupt') return;
    if (f.code === 'storage_full') {
      if (hasRoom(this.dir)) this.currentFault = null;
      return;
    }
    if (changed || (this.faultByPermission && this.filesWritable())) this.currentFault = null;
  }

  /** The data dir, the database file and its WAL and shared-memory files can be written by this process (`access(W_OK)`). */
  private filesWritable(): boolean {
    return this.dir === null || unwritablePaths([this.dir, ...databaseFiles(this.file)]).length === 0;
  }

  /** Ends whatever transaction is open; never throws (the transaction is being given up anyway). */
  private abandon(): void {
    if (!this.conn.inTransaction) return;
    try {
      this.rollback.run();
    } catch {
      // SQLite may already have ended it, or cannot write its rollback: either way it is gone or
      // will be rolled back from the journal on the next open.
    }
  }

  /**
   * Hands an answer (a result or a refusal) to its caller once everything this connection has
   * committed or seen is on disk (WalSync): at once when nothing is pending, which is the common
   * case for a read between batches. Answers keep their order.
   */
  private deliver(settle: () => void, reject: (error: unknown) => void): void {
    const sync = this.walSync;
    if (sync === null || !sync.behind) {
      settle();
      return;
    }
    sync.durable().then(settle, (error: unknown) => {
      // Final (wal-sync.ts): writes are refused up front too, and fault() keeps reporting it.
      this.blocked ??= { ...faultRecord('storage_readonly', error, Date.now()), code: 'storage_readonly' };
      reject(this.failed(error));
    });
  }

  /** Another connection's commit now visible here must be on disk before an answer shows it. */
  private noteOtherCommits(): void {
    if (this.walSync === null) return;
    const version = this.dataVersion.value() as number;
    if (version === this.syncSeenVersion) return;
    this.syncSeenVersion = version;
    this.walSync.noteCommit();
  }

  /**
   * Reads run inside a read transaction, so all statements of one read share one snapshot and
   * one WAL read lock; reads that arrive in the same I/O turn share one transaction. (Outside a
   * transaction every statement takes and drops the lock, which measured here costs about as
   * much as the rest of a cheap read.)
   */
  read<T>(fn: (ex: Executor) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.reads.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.reads.length === 1) setImmediate(() => void this.mutex.run(() => this.drainReads()));
    });
  }

  private async drainReads(): Promise<void> {
    while (this.reads.length > 0) {
      const batch = this.reads.splice(0, MAX_BATCH);
      try {
        await this.readBatch(batch);
      } catch (error) {
        // Last resort (readBatch settles every caller itself): nobody is left pending.
        this.abandon();
        const e = this.failed(error);
        for (const r of batch) r.reject(e);
      }
    }
  }

  private async readBatch(batch: Pending[]): Promise<void> {
    for (const r of batch) {
      try {
        if (!this.conn.inTransaction) {
          this.beginRead.run();
          this.noteOtherCommits();
        }
        const value = await r.fn(this.ex);
        this.deliver(() => r.resolve(value), r.reject);
      } catch (error) {
        if (isBusy(error)) {
          // Rare for a WAL reader (recovery, a truncating checkpoint elsewhere): retry alone.
          this.abandon();
          try {
            await this.lockFor(this.beginRead, async () => {
              this.noteOtherCommits();
              const value = await r.fn(this.ex);
              this.deliver(() => r.resolve(value), r.reject);
            });
          } catch (again) {
            const e = this.failed(again);
            this.deliver(() => r.reject(e), r.reject);
          }
        } else {
          const e = this.failed(error);
          this.deliver(() => r.reject(e), r.reject);
        }
      }
    }
    if (this.conn.inTransaction) {
      try {
        this.commit.run();
      } catch {
        // Ending a read transaction cannot lose anything; everyone has been answered already.
        this.abandon();
      }
    }
  }

  /**
   * Group commit: writes that queue up while another transaction runs are committed together,
   * each inside its own SAVEPOINT, so one op's failure rolls back only that op, and nobody's
   * result is released before the COMMIT that makes it durable. Under concurrency this writes
   * each hot page (the task table's leaf, the index, events, audit) once per batch instead of
   * once per op.
   */
  write<T>(fn: (ex: Executor) => Promise<T>): Promise<T> {
    if (this.blocked !== null) return Promise.reject(storeFailure('fault', this.blocked.code, this.blocked.message));
    return new Promise<T>((resolve, reject) => {
      this.writes.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (!this.writesScheduled) {
        this.writesScheduled = true;
        this.scheduleWrites(false);
      } else if (this.releaseHeld !== null && this.writes.length >= this.lastBatch) this.releaseHeld();
    });
  }

  /**
   * The first write of a batch waits for the rest of this I/O turn, so requests that arrived
   * together commit together. Under `full-threaded`, while a WAL fsync runs, a batch smaller
   * than the last one also waits (once) for that fsync to finish or for as many writes as the
   * last batch had, whichever comes first: its answers could not go out before the next fsync
   * anyway, and meanwhile it gathers what arrives. Measured with 16 HTTP agents: committing at
   * once made batches of ~4.5 writes where the blocking fsync of synchronous=FULL had made ~8,
   * and each write of a small batch costs more CPU (its share of BEGIN, COMMIT and the pages
   * written); always waiting for the fsync made ~7.5 but left the event loop idle during each
   * fsync. A full batch starts at once and runs while the fsync of the one before is on disk.
   */
  private scheduleWrites(waited: boolean): void {
    setImmediate(() => {
      const syncing = waited ? null : (this.walSync?.inFlight ?? null);
      if (syncing !== null && this.writes.length < this.lastBatch) {
        let released = false;
        const release = (): void => {
          if (released) return;
          released = true;
          this.releaseHeld = null;
          this.scheduleWrites(true);
        };
        this.releaseHeld = release;
        void syncing.then(release);
        return;
      }
      void this.mutex.run(() => this.drain());
    });
  }

  /** One batch; writes that arrive meanwhile schedule the next (scheduleWrites). */
  private async drain(): Promise<void> {
    this.writesScheduled = false;
    const batch = this.writes.splice(0, MAX_BATCH);
    if (batch.length > 0) this.lastBatch = batch.length;
    if (this.writes.length > 0) {
      this.writesScheduled = true;
      this.scheduleWrites(false);
    }
    if (batch.length === 0) return;
    try {
      await this.writeBatch(batch);
    } catch (error) {
      // Last resort (writeBatch settles every caller itself): a promise settles once, so
      // callers already answered keep their answer and nobody is left pending.
      this.abandon();
      const e = this.failed(error);
      for (const w of batch) w.reject(e);
    }
  }

  /** The batch's transaction has a memo (db.ts TxMemo) while it runs; runAlone's have their own. */
  private async writeBatch(batch: Pending[]): Promise<void> {
    try {
      await this.batchIn(batch);
    } finally {
      this.txMemo = null;
    }
  }

  private async batchIn(batch: Pending[]): Promise<void> {
    // Once per batch: a transaction a failed ROLLBACK left open would refuse every BEGIN after it.
    this.abandon();
    try {
      await this.lockFor(this.begin);
    } catch (error) {
      const e = this.failed(error);
      for (const w of batch) w.reject(e);
      return;
    }
    const memo = new WriteMemo();
    this.txMemo = memo;
    // While a fault is in force: rows changed by the ops kept (faultOver).
    const watching = this.currentFault !== null;
    let changed = 0;
    const outcomes: Outcome[] = [];
    let faulted = false;
    // Set when the batch's transaction is lost part-way: callers from this index on were not
    // (or not completely) run in it.
    let lostAt = -1;
    for (let i = 0; i < batch.length && lostAt < 0; i++) {
      const w = batch[i]!;
      try {
        this.savepoint.run();
      } catch {
        lostAt = i;
        break;
      }
      const mark = memo.mark();
      const before = watching ? this.changesNow() : 0;
      let outcome: Outcome;
      try {
        outcome = { ok: true, value: await w.fn(this.ex) };
      } catch (error) {
        outcome = { ok: false, error };
      }
      if (watching && outcome.ok) changed += this.changesNow() - before;
      if (!outcome.ok && faultCodeOf(outcome.error, this.dir) !== null) faulted = true;
      try {
        if (!outcome.ok) {
          this.rollbackTo.run();
          memo.restore(mark);
        }
        this.release.run();
      } catch {
        // "no such savepoint": SQLite rolled the whole transaction back itself (SQLITE_FULL,
        // SQLITE_IOERR and SQLITE_CORRUPT may), undoing the batch's earlier ops too. A failed
        // op keeps its own error; a succeeded one was undone and runs again below.
        if (outcome.ok) {
          lostAt = i;
          break;
        }
        outcomes.push(outcome);
        lostAt = i + 1;
        break;
      }
      outcomes.push(outcome);
    }
    if (lostAt < 0) {
      try {
        await memo.flush(this.ex);
        this.commit.run();
      } catch (error) {
        // The batch did not commit: failed ops keep their own errors, the others retry one by
        // one, so a batch too large for the remaining disk still commits the ops that fit.
        this.abandon();
        const e = this.failed(error);
        // Alone already: running it again alone would meet the same COMMIT.
        if (batch.length === 1) batch[0]!.reject(outcomes[0]!.ok ? e : this.failed(outcomes[0]!.error));
        else await this.settleAlone(batch, outcomes, 0);
        return;
      }
      if (!faulted) this.faultOver(changed > 0);
      this.walSync?.noteCommit();
      batch.forEach((w, i) => {
        const o = outcomes[i]!;
        if (o.ok) this.deliver(() => w.resolve(o.value), w.reject);
        else {
          const e = this.failed(o.error);
          this.deliver(() => w.reject(e), w.reject);
        }
      });
      return;
    }
    this.abandon();
    await this.settleAlone(batch, outcomes, lostAt);
  }

  /**
   * After the batch's transaction was lost: callers with a recorded failure get it; those that
   * succeeded (undone with the transaction) and those not run yet (from `from` on) run again,
   * each alone in its own transaction.
   */
  private async settleAlone(batch: Pending[], outcomes: Outcome[], from: number): Promise<void> {
    const failures: [Pending, unknown][] = [];
    for (let i = 0; i < batch.length; i++) {
      const w = batch[i]!;
      const o = i < outcomes.length ? outcomes[i]! : undefined;
      if (o !== undefined && !o.ok) failures.push([w, o.error]);
      else if (o !== undefined || i >= from) await this.runAlone(w);
    }
    // Refused last, so a storage fault of this batch stays in force (fault()) even though its
    // neighbours committed afterwards, as when the batch itself commits around a faulted op.
    for (const [w, error] of failures) {
      const e = this.failed(error);
      this.deliver(() => w.reject(e), w.reject);
    }
  }

  /** One caller in its own transaction; settles it whatever happens, never throws. */
  private async runAlone(w: Pending): Promise<void> {
    try {
      await this.lockFor(this.begin);
    } catch (error) {
      w.reject(this.failed(error));
      return;
    }
    let value: unknown;
    const memo = new WriteMemo();
    this.txMemo = memo;
    const watching = this.currentFault !== null;
    const before = watching ? this.changesNow() : 0;
    try {
      value = await w.fn(this.ex);
      await memo.flush(this.ex);
      this.commit.run();
    } catch (error) {
      this.abandon();
      w.reject(this.failed(error));
      return;
    } finally {
      this.txMemo = null;
    }
    this.faultOver(watching && this.changesNow() > before);
    this.walSync?.noteCommit();
    this.deliver(() => w.resolve(value), w.reject);
  }

  /**
   * Runs `stmt` (and then `first`), retrying while another process holds the lock, without
   * blocking. The deadline is on the monotonic clock: a wall-clock step must not cut a wait
   * short or stretch it.
   */
  private async lockFor(stmt: SqliteStatement, first?: () => Promise<unknown>, timeoutMs = this.busyTimeoutMs): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        stmt.run();
        if (first !== undefined) await first();
        return;
      } catch (error) {
        if (first !== undefined) this.abandon();
        if (!isBusy(error) || performance.now() >= deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  }

  /**
   * The cross-process doorbell: `PRAGMA data_version` moves only when another connection
   * commits, so while anyone listens it is polled every pollMs (one cheap pragma, no lock) and
   * each move calls the listeners. The baseline is read now, so a commit after this returns is
   * never missed.
   */
  subscribe(onCommit: () => void): () => void {
    this.listeners.add(onCommit);
    if (this.pollTimer === null) {
      this.seenVersion = this.dataVersion.value() as number;
      this.pollTimer = setInterval(() => this.pollVersion(), this.pollMs);
      this.pollTimer.unref();
    }
    return () => {
      this.listeners.delete(onCommit);
      if (this.listeners.size === 0 && this.pollTimer !== null) {
        clearInterval(this.pollTimer);
        this.pollTimer = null;
      }
    };
  }

  private pollVersion(): void {
    let version: number;
    try {
      version = this.dataVersion.value() as number;
    } catch {
      return; // closing, or a fault the next write reports; listeners time out on their own
    }
    if (version === this.seenVersion) return;
    this.seenVersion = version;
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch {
        // One listener's failure must not keep the others from hearing of the commit.
      }
    }
  }

  /**
   * Applies the pending migrations under one write lock (BEGIN IMMEDIATE), reading the version
   * inside it: processes started together on a fresh or older file take turns, and each applies
   * only what the one before it did not. A busy lock is polled without blocking, up to
   * MIGRATE_WAIT_MS. All pending migrations commit together or not at all.
   */
  async migrate(migrations: readonly Migration[], now: number): Promise<number> {
    return this.mutex.run(async () => {
      const known = Math.max(0, ...migrations.map((m) => m.version));
      // The version only grows, so a current schema seen without the lock is current: the common
      // start (every CLI call) takes no write lock.
      try {
        if (this.schemaVersion(known, true) === known) return 0;
        await this.lockFor(this.begin, undefined, Math.max(this.busyTimeoutMs, MIGRATE_WAIT_MS));
        this.conn.exec(
          'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
        );
        const applied = this.schemaVersion(known, false);
        const insert = this.conn.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
        let count = 0;
        for (const m of migrations) {
          if (m.version <= applied) continue;
          this.conn.exec(m.sqlite);
          insert.run([m.version, m.name, now]);
          count++;
        }
        this.commit.run();
        this.walSync?.noteCommit();
        if (this.walSync !== null) await this.walSync.durable();
        return count;
      } catch (error) {
        this.abandon();
        throw this.failed(error);
      }
    });
  }

  /** The applied schema version (0 for a fresh file); -1 when a peer's lock kept it from being read and `tolerant`. */
  private schemaVersion(known: number, tolerant: boolean): number {
    let v: number;
    try {
      const table = this.conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
      if (table === undefined) return 0;
      v = (this.conn.prepare('SELECT coalesce(max(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
    } catch (error) {
      if (tolerant && isBusy(error)) return -1;
      throw error;
    }
    if (v > known) throw new Error(`database schema version ${v} is newer than this Baton (${known}); upgrade Baton`);
    return v;
  }

  fault(): StoreFault | null {
    return this.blocked ?? this.currentFault;
  }

  block(fault: WriteFault | null): void {
    this.blocked = fault;
  }

  lastIntegrity(): IntegrityReport | null {
    return this.integrity;
  }

  async checkIntegrity(deep: boolean): Promise<IntegrityReport> {
    return this.mutex.run(async () => {
      let problems: string[];
      try {
        const rows = this.conn.prepare(deep ? 'PRAGMA integrity_check(50)' : 'PRAGMA quick_check(50)').column() as string[];
        problems = rows.length === 1 && rows[0] === 'ok' ? [] : rows;
      } catch (err) {
        problems = [(err as Error).message];
      }
      this.integrity = { ok: problems.length === 0, mode: deep ? 'deep' : 'quick', problems, at: Date.now() };
      return this.integrity;
    });
  }

  async close(): Promise<void> {
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.listeners.clear();
    await this.mutex.run(async () => {
      this.cache.clear();
      this.conn.close();
    });
    await this.walSync?.close();
  }
}
