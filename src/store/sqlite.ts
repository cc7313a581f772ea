import Database from 'better-sqlite3';
import { chmodSync, existsSync } from 'node:fs';
import type { Db, Executor, Migration, Profile } from './db.js';
import { Mutex } from './mutex.js';
import { render, type Placeholder, type Sql } from './sql.js';

const PROFILE: Profile = { name: 'sqlite', crossProcessPoll: true };
const placeholder: Placeholder = () => '?';

function bind(values: readonly unknown[]): unknown[] {
  return values.map((v) => (v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v));
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

  constructor(file: string, options: SqliteOptions = {}) {
    const fresh = file !== ':memory:' && !existsSync(file);
    this.conn = new Database(file);
    if (fresh) chmodSync(file, 0o600);
    this.conn.pragma('journal_mode = WAL');
    this.conn.pragma('synchronous = NORMAL');
    this.conn.pragma('foreign_keys = ON');
    this.conn.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    this.begin = this.conn.prepare('BEGIN IMMEDIATE');
    this.beginRead = this.conn.prepare('BEGIN');
    this.commit = this.conn.prepare('COMMIT');
    this.rollback = this.conn.prepare('ROLLBACK');
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
   * One read transaction per call: every statement in it shares one snapshot and one WAL read
   * lock. (Outside a transaction each statement takes and drops the lock; measured here, a lock
   * cycle costs about as much as the rest of a cheap read.)
   */
  read<T>(fn: (ex: Executor) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      this.beginRead.run();
      try {
        return await fn(this.ex);
      } finally {
        if (this.conn.inTransaction) this.commit.run();
      }
    });
  }

  write<T>(fn: (ex: Executor) => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      this.begin.run();
      try {
        const out = await fn(this.ex);
        this.commit.run();
        return out;
      } catch (err) {
        if (this.conn.inTransaction) this.rollback.run();
        throw err;
      }
    });
  }

  async changeCounter(): Promise<number> {
    return this.conn.pragma('data_version', { simple: true }) as number;
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

  async close(): Promise<void> {
    await this.mutex.run(async () => {
      this.cache.clear();
      this.conn.close();
    });
  }
}
