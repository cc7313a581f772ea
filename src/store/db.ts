import type { Sql } from './sql.js';

/**
 * The persistence contract: async and dialect-neutral. Queries are `Sql` values (see sql.ts);
 * backend differences live in a `Profile`, never as `if (sqlite)` in the code that uses it.
 */
export interface Executor {
  all<T>(query: Sql): Promise<T[]>;
  get<T>(query: Sql): Promise<T | undefined>;
  run(query: Sql): Promise<{ changes: number }>;
}

export interface Profile {
  readonly name: 'sqlite' | 'postgres';
  /** Several processes may share the store and must be woken by polling (SQLite) or notify (pg). */
  readonly crossProcessPoll: boolean;
}

export interface Migration {
  readonly version: number;
  readonly name: string;
  /** DDL per dialect; each is a fixed script. */
  readonly sqlite: string;
}

export interface Db {
  readonly profile: Profile;
  /** A read: consistent within this process; never blocks a writer. */
  read<T>(fn: (ex: Executor) => Promise<T>): Promise<T>;
  /** A writing transaction: all or nothing, serialized against every other writer. */
  write<T>(fn: (ex: Executor) => Promise<T>): Promise<T>;
  /** Changes when any connection (any process) commits; the cross-process doorbell polls it. */
  changeCounter(): Promise<number>;
  migrate(migrations: readonly Migration[], now: number): Promise<number>;
  close(): Promise<void>;
}
