import type { Executor, TxMemo } from './db.js';

/**
 * A write transaction's memo (db.ts TxMemo) with what the store needs around it: `mark` before
 * an op's SAVEPOINT, `restore` after rolling back to it, `flush` just before COMMIT. Values are
 * replaced, never mutated, so a mark is a shallow copy.
 */
export class WriteMemo implements TxMemo {
  private values = new Map<string, unknown>();
  private hooks = new Map<string, (ex: Executor) => Promise<void>>();

  get<T>(key: string): T | undefined {
    return this.values.get(key) as T | undefined;
  }

  set(key: string, value: unknown): void {
    this.values.set(key, value);
  }

  beforeCommit(key: string, fn: (ex: Executor) => Promise<void>): void {
    if (!this.hooks.has(key)) this.hooks.set(key, fn);
  }

  /** Most ops remember nothing: the mark is then free. */
  mark(): Mark {
    return this.values.size === 0 && this.hooks.size === 0 ? EMPTY : { values: new Map(this.values), hooks: new Map(this.hooks) };
  }

  restore(m: Mark): void {
    this.values = new Map(m.values);
    this.hooks = new Map(m.hooks);
  }

  /** The hooks, in the order first registered; then the memo is empty (a transaction flushes once). */
  async flush(ex: Executor): Promise<void> {
    const hooks = [...this.hooks.values()];
    this.hooks.clear();
    for (const fn of hooks) await fn(ex);
    this.values.clear();
  }
}

interface Mark {
  readonly values: ReadonlyMap<string, unknown>;
  readonly hooks: ReadonlyMap<string, (ex: Executor) => Promise<void>>;
}

const EMPTY: Mark = { values: new Map(), hooks: new Map() };
