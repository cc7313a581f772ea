import Database from 'better-sqlite3';
import { chmodSync, existsSync } from 'node:fs';
import type { Db, Executor, IntegrityReport, Migration, Profile, StoreFault } from './db.js';
import { BatonError } from '../core/errors.js';
import { Mutex } from './mutex.js';
import { render, type Placeholder, type Sql } from './sql.js';

const PROFILE: Profile = { name: 'sqlite', crossProcessPoll: true };
const placeholder: Placeholder = () => '?';

function bind(values: readonly unknown[]): unknown[] {
  return values.map((v) => (v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v));
}

/** Most writes committed (or reads run) together: bounds how long one batch holds a lock. */
const MAX_BATCH = 64;

interface Pending {
  fn: (ex: Executor) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT';
}

export interface SqliteOptions {
  /** How long a writer waits for another process's write lock before giving up (ms). */
  busyTimeoutMs?: number;
}

/**
 * SQLite via better-sqlite3: WAL, foreign keys, `BEGIN IMMEDIATE` for every write, busy_timeout
 * so several processes (one stdio server per agent) can share one file. better-sqlite3 is
 * synchronous, so within a process a mutex keeps an async transaction from interleaving with
 * another caller's statements on the same connection.
 */
export class SqliteDb implements Db {
  readonly profile = PROFILE;
  private readonly conn: Database.Database;
  private readonly mutex = new Mutex();
  private readonly cache = new Map<string, Database.Statement>();
  private readonly ex: Executor;
  private readonly begin: Database.Statement;
  private readonly beginRead: Database.Statement;
  private readonly commit: Database.Statement;
  private readonly rollback: Database.Statement;
  private readonly savepoint: Database.Statement;
  private readonly release: Database.Statement;
  private readonly rollbackTo: Database.Statement;
  private readonly dataVersion: Database.Statement;
  private readonly writes: Pending[] = [];
  private readonly reads: Pending[] = [];
  private readonly busyTimeoutMs: number;
  private currentFault: StoreFault | null = null;
  private blocked: StoreFault | null = null;
  private integrity: IntegrityReport | null = null;

  constructor(file: string, options: SqliteOptions = {}) {
    const fresh = file !== ':memory:' && !existsSync(file);
    this.conn = new Database(file);
    if (fresh) chmodSync(file, 0o600);
    this.conn.pragma('journal_mode = WAL');
    this.conn.pragma('synchronous = NORMAL');
    this.conn.pragma('foreign_keys = ON');
    // Reads through a memory map instead of a read() per page (measured: a few % per read).
    this.conn.pragma('mmap_size = 268435456');
    // SQLite's own busy handler sleeps 1, 2, 5, 10, … 100 ms and blocks the event loop while it
    // does; it gets only a few milliseconds here, and longer waits for another process's write
    // lock are polled without blocking, every millisecond, up to busyTimeoutMs (see lockFor).
    this.busyTimeoutMs = Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000));
    this.conn.pragma(`busy_timeout = ${Math.min(this.busyTimeoutMs, 5)}`);
    this.begin = this.conn.prepare('BEGIN IMMEDIATE');
    this.beginRead = this.conn.prepare('BEGIN');
    this.commit = this.conn.prepare('COMMIT');
    this.rollback = this.conn.prepare('ROLLBACK');
    this.savepoint = this.conn.prepare('SAVEPOINT op');
    this.release = this.conn.prepare('RELEASE op');
    this.rollbackTo = this.conn.prepare('ROLLBACK TO op');
    this.dataVersion = this.conn.prepare('PRAGMA data_version').pluck();
    this.ex = {
      all: async <T>(q: Sql) => this.stmt(q).all(...bind(q.values)) as T[],
      get: async <T>(q: Sql) => this.stmt(q).get(...bind(q.values)) as T | undefined,
      run: async (q: Sql) => ({ changes: this.stmt(q).run(...bind(q.values)).changes }),
    };
  }

  private stmt(q: Sql): Database.Statement {
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
      for (const r of batch) {
        try {
          if (!this.conn.inTransaction) this.beginRead.run();
          r.resolve(await r.fn(this.ex));
        } catch (error) {
          if (isBusy(error)) {
            // Rare for a WAL reader (recovery, a truncating checkpoint elsewhere): retry alone.
            if (this.conn.inTransaction) this.commit.run();
            try {
              await this.lockFor(this.beginRead, () => r.fn(this.ex).then(r.resolve));
            } catch (again) {
              r.reject(again);
            }
          } else r.reject(error);
        }
      }
      if (this.conn.inTransaction) this.commit.run();
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
    if (this.blocked !== null) return Promise.reject(new BatonError(this.blocked.code, this.blocked.message));
    return new Promise<T>((resolve, reject) => {
      this.writes.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      // The first write of a batch waits for the rest of this I/O turn, so requests that arrived
      // together commit together.
      if (this.writes.length === 1) setImmediate(() => void this.mutex.run(() => this.drain()));
    });
  }

  private async drain(): Promise<void> {
    while (this.writes.length > 0) {
      const batch = this.writes.splice(0, MAX_BATCH);
      const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
      try {
        await this.lockFor(this.begin);
      } catch (error) {
        for (const w of batch) w.reject(error);
        continue;
      }
      for (const w of batch) {
        this.savepoint.run();
        try {
          const value = await w.fn(this.ex);
          this.release.run();
          outcomes.push({ ok: true, value });
        } catch (error) {
          this.rollbackTo.run();
          this.release.run();
          outcomes.push({ ok: false, error });
        }
      }
      try {
        this.commit.run();
      } catch (error) {
        if (this.conn.inTransaction) this.rollback.run();
        for (const w of batch) w.reject(error);
        continue;
      }
      batch.forEach((w, i) => {
        const o = outcomes[i]!;
        if (o.ok) w.resolve(o.value);
        else w.reject(o.error);
      });
    }
  }

  /** Runs `stmt` (and then `first`), retrying while another process holds the lock, without blocking. */
  private async lockFor(stmt: Database.Statement, first?: () => Promise<unknown>): Promise<void> {
    const deadline = Date.now() + this.busyTimeoutMs;
    for (;;) {
      try {
        stmt.run();
        if (first !== undefined) await first();
        return;
      } catch (error) {
        if (this.conn.inTransaction && first !== undefined) this.commit.run();
        if (!isBusy(error) || Date.now() >= deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    }
  }

  async changeCounter(): Promise<number> {
    return this.dataVersion.get() as number;
  }

  async migrate(migrations: readonly Migration[], now: number): Promise<number> {
    return this.mutex.run(async () => {
      this.conn.exec(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
      );
      const applied = this.conn.prepare('SELECT coalesce(max(version), 0) AS v FROM schema_migrations').get() as {
        v: number;
      };
      const known = Math.max(0, ...migrations.map((m) => m.version));
      if (applied.v > known) {
        throw new Error(`database schema version ${applied.v} is newer than this Baton (${known}); upgrade Baton`);
      }
      let count = 0;
      for (const m of migrations) {
        if (m.version <= applied.v) continue;
        const tx = this.conn.transaction(() => {
          this.conn.exec(m.sqlite);
          this.conn
            .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
            .run(m.version, m.name, now);
        });
        tx.immediate();
        count++;
      }
      return count;
    });
  }

  fault(): StoreFault | null {
    return this.blocked ?? this.currentFault;
  }

  block(fault: StoreFault | null): void {
    this.blocked = fault;
  }

  lastIntegrity(): IntegrityReport | null {
    return this.integrity;
  }

  async checkIntegrity(deep: boolean): Promise<IntegrityReport> {
    return this.mutex.run(async () => {
      let problems: string[];
      try {
        const rows = this.conn.prepare(deep ? 'PRAGMA integrity_check(50)' : 'PRAGMA quick_check(50)').pluck().all() as string[];
        problems = rows.length === 1 && rows[0] === 'ok' ? [] : rows;
      } catch (err) {
        problems = [(err as Error).message];
      }
      this.integrity = { ok: problems.length === 0, mode: deep ? 'deep' : 'quick', problems, at: Date.now() };
      return this.integrity;
    });
  }

  async close(): Promise<void> {
    await this.mutex.run(async () => {
      this.cache.clear();
      this.conn.close();
    });
  }
}
