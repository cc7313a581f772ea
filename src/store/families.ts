import type { Executor } from './db.js';
import { sql } from './sql.js';

/**
 * A refresh family is live while one of its tokens is unrevoked: rotation spends tokens (used_at)
 * but never revokes them, and revoking a family revokes every token of it at once. Served by the
 * `refresh_tokens_family` index.
 */
export async function familyIsLive(ex: Executor, familyId: string): Promise<boolean> {
  const row = await ex.get<{ live: number }>(
    sql`SELECT 1 AS live FROM refresh_tokens WHERE family_id = ${familyId} AND revoked_at IS NULL LIMIT 1`,
  );
  return row !== undefined;
}
