import { randomBytes } from 'node:crypto';
import type { Executor } from './db.js';
import { sql } from './sql.js';

/**
 * Marks of deferred batches already written (schema v15): what makes a batch handed on after its
 * worker died, or was terminated, written once however far that worker got.
 */

/** How long a mark is kept: far beyond the time a batch can wait to be handed on (minutes). */
export const DEFERRED_MARK_TTL_MS = 60 * 60_000;

/** The key's time prefix: fixed width, so keys sort by creation time (until the year 5188). */
function timePrefix(at: number): string {
  return Math.max(0, Math.floor(at)).toString(36).padStart(9, '0');
}

/** A new batch key: its creation time, then 48 random bits. */
export function deferredKey(now: number): string {
  return `${timePrefix(now)}.${randomBytes(6).toString('base64url')}`;
}

/** Marks `key` written in this transaction; false when it already was (the caller writes nothing). */
export async function markDeferred(ex: Executor, key: string): Promise<boolean> {
  const { changes } = await ex.run(sql`INSERT INTO deferred_marks (key) VALUES (${key}) ON CONFLICT (key) DO NOTHING`);
  return changes > 0;
}

/** Removes the marks made before `before` (ms); a range on the primary key. */
export async function pruneDeferredMarks(ex: Executor, before: number): Promise<number> {
  return (await ex.run(sql`DELETE FROM deferred_marks WHERE key < ${timePrefix(before)}`)).changes;
}
