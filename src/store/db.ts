import type { Dialect } from './dialect.js';
import type { Sql } from './sql.js';

/**
 * The persistence contract: async and dialect-neutral. Queries are `Sql` values (see sql.ts);
 * backend differences live in the executor's `Dialect`, never as `if (sqlite)` in the code that
 * uses it.
 */
export interface Executor {
  /** The fragments that differ between backends (dialect.ts). */
  readonly dialect: Dialect;
  all<T>(query: Sql): Promise<T[]>;
  get<T>(query: Sql): Promise<T | undefined>;
  run(query: Sql): Promise<{ changes: number }>;
  /**
   * A write whose answer its caller does not need (no rows, no count) and whose failure it would
   * not handle itself. In a PostgreSQL write transaction it is sent at once and not waited for:
   * it travels pipelined with the statements after it, and if it fails, the whole transaction
   * fails (the store finds out at the latest at COMMIT, rolls back, and runs each caller of the
   * batch again alone, so each hears its own error). Elsewhere (SQLite, reads, migrations) it
   * runs as `run` does.
   */
  send(query: Sql): Promise<void>;
  /**
   * Takes what a write must hold before it reads what it will change, until its transaction
   * ends. SQLite: nothing (its one writer excludes every other). PostgreSQL: transaction-level
   * advisory locks (postgres.ts), always in the order server → project → server chain, so two writers
   * never wait for each other in a cycle. Calling it again for what is already held costs nothing.
   */
  lock(what: WriteLock): Promise<void>;
  /**
   * Called after appending an event row (journal.ts appendEvent): other processes' waiters must
   * hear of it. SQLite: nothing (another connection's commit moves data_version). PostgreSQL: a
   * NOTIFY, delivered at COMMIT (and dropped with a rolled-back op), so only commits that
   * appended events wake other instances' waiters.
   */
  announce(): Promise<void>;
  /**
   * The write transaction's scratch (memo.ts), shared by the ops of one group commit; null in a
   * read, and in executors outside a store's write (migrations, tools). journal.ts keeps each
   * audit chain's head here: read once per transaction and chain, written once before COMMIT.
   */
  readonly memo: TxMemo | null;
}

/**
 * What a write transaction remembers between its ops. Values must be replaced, never mutated:
 * the store takes a shallow copy before each op's SAVEPOINT and puts it back when the op is
 * rolled back to it, so nothing a rolled-back op remembered survives it.
 */
export interface TxMemo {
  get<T>(key: string): T | undefined;
  set(key: string, value: unknown): void;
  /** Runs `fn` once, just before COMMIT, after every op of the transaction (once per key). */
  beforeCommit(key: string, fn: (ex: Executor) => Promise<void>): void;
}

/**
 * What a write holds on a backend whose writers run in parallel (PostgreSQL):
 * - `{ project }`: the project's writer lock; every op of that project takes turns (its tasks,
 *   locks, quotas, events and inbox ids), writes of other projects run beside it;
 * - `shared`: no project's lock, only protection from a `server` write (row-level-safe writes:
 *   touches, the deferred audit rows);
 * - `server`: every writer of every project waits (sweeps across projects, tokens, sessions);
 * - `audit`: the head of the server-level audit chain (rows of no project; journal.ts), taken
 *   last. A project's audit rows go to its own chain under its `{ project }` lock (migration 14):
 *   no lock is common to every audited write any more.
 */
export type WriteLock = { readonly project: string } | 'shared' | 'server' | 'audit';

/**
 * How a write transaction is guarded where writers run in parallel: `server` (the default) holds
 * the `server` lock for the whole transaction, as if it were alone; `declared`: the function
 * calls `ex.lock()` itself before its first change (the op runner, once it knows the project).
 */
export type WriteMode = 'server' | 'declared';

/** What a backend whose statements are round trips (PostgreSQL) may do with a write; SQLite ignores them. */
export interface WriteOptions {
  /**
   * Called in the write's transaction before the batch's first op runs (only in a batch formed
   * for the write's `project`), so the reads it starts go out pipelined with BEGIN and no op of
   * the batch waits for them in turn. It may only start reads that the write's `fn` then uses in
   * the same transaction (tell it by `ex.memo`, one object per transaction); the store may not
   * call it at all.
   */
  readonly ahead?: ((ex: Executor) => void) | undefined;
  /**
   * The write may run beside the other `parallel` writes of its batch, their statements
   * interleaved in one transaction (each sent as soon as its write asks, so the batch waits for
   * one round trip where it waited for one per write): each of its statements must be right on
   * its own (a fenced or SKIP LOCKED update, a read whose answer no other write of the batch
   * could make wrong). When one of them fails, the batch runs again one write at a time.
   */
  readonly parallel?: boolean | undefined;
}

export interface Profile {
  readonly name: 'sqlite' | 'postgres';
  /**
   * Whether event ids follow commit order across the whole store. SQLite: yes (one writer), so a
   * moved events head is what tells a new event from any other commit `subscribe` reports.
   * PostgreSQL: no (projects commit in parallel; ids come from a sequence), so a newer commit can
   * carry a lower id; `subscribe` reports only commits that appended events, each one a wake-up.
   */
  readonly eventsInCommitOrder: boolean;
}

export interface Migration {
  readonly version: number;
  readonly name: string;
  /** DDL per dialect; each is a fixed script. */
  readonly sqlite: string;
  readonly postgres: string;
}

/** The faults that refuse writes (503 with this code) until an operator acts: see faults.ts. */
export type WriteFaultCode = 'storage_full' | 'storage_corrupt' | 'storage_readonly';

/** A fault writes are refused with (`Db.block`). */
export type WriteFault = StoreFault & { readonly code: WriteFaultCode };

/**
 * A storage fault the store is in: set when a write (or a read that met a damaged page) fails
 * with one, cleared by the next commit without one. `storage_unreachable` (PostgreSQL only: the
 * server cannot be reached, or the connection was lost, a COMMIT's included) is reported to
 * onFault for the operator but never kept by fault(): it passes by itself (the client is told
 * `unavailable`, and the circuit breaker counts it), whereas the other three need an operator.
 */
export interface StoreFault {
  readonly code: WriteFaultCode | 'storage_unreachable';
  /** For operators (readyz, doctor, the log): what the store said, with the table when known. */
  readonly message: string;
  readonly at: number;
}

export interface IntegrityReport {
  readonly ok: boolean;
  readonly mode: 'quick' | 'deep';
  /** What the check found (empty when ok); at most a few dozen lines. */
  readonly problems: readonly string[];
  readonly at: number;
}

export interface Db {
  readonly profile: Profile;
  /** A read: consistent within this process; never blocks a writer. */
  read<T>(fn: (ex: Executor) => Promise<T>): Promise<T>;
  /**
   * A writing transaction: all or nothing. SQLite serializes it against every other writer;
   * PostgreSQL runs it at READ COMMITTED, its writers taking the advisory locks `lock()` names. Contention (SQLite busy past the busy
   * timeout, a PostgreSQL serialization failure or deadlock) is retried inside the store; what
   * is left reaches the caller as `unavailable`, never as a driver error.
   * `mode`: see WriteMode; `project`: the project whose lock a `declared` write will take, when
   * the caller knows it before the transaction (writes of one project commit together, apart
   * from other projects'). SQLite ignores both.
   * `options`: what a backend whose statements are round trips may do with the write (WriteOptions).
   */
  write<T>(fn: (ex: Executor) => Promise<T>, mode?: WriteMode, project?: string, options?: WriteOptions): Promise<T>;
  /**
   * Calls `onCommit` after other connections (other processes, other hub instances) commit,
   * until the returned function is called. May call it for commits that changed nothing a
   * listener cares about, and may coalesce several commits into one call. SQLite: every other
   * connection's commit after subscribe returned (it polls its change counter every `pollMs`
   * while anyone is subscribed). PostgreSQL: commits that appended events (their NOTIFY), and
   * once when its LISTEN is up, for what may have committed while it was being set up.
   */
  subscribe(onCommit: () => void): () => void;
  migrate(migrations: readonly Migration[], now: number): Promise<number>;
  /** The write fault currently in force, or null when the last write committed. */
  fault(): StoreFault | null;
  /**
   * Refuse every write with this fault until called with null (e.g. the data dir was removed
   * under the running hub: acknowledging writes into an unlinked file would lose them).
   */
  block(fault: WriteFault | null): void;
  /** Runs the store's own consistency check (SQLite: quick_check, or integrity_check when deep); reports, never throws for damage. */
  checkIntegrity(deep: boolean): Promise<IntegrityReport>;
  /** The last report of checkIntegrity in this process, if any ran. */
  lastIntegrity(): IntegrityReport | null;
  close(): Promise<void>;
}
