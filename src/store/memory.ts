import type { Executor } from './db.js';
import { sql } from './sql.js';

/**
 * Memory statements. A row is addressed by (project, owner, key): `owner` is an agent id for
 * agent scope and PROJECT_OWNER for project scope. Callers always pass the owner derived from the
 * caller's own identity, so no statement here can reach another agent's private rows. An expired
 * row (expires_at <= now) is treated as absent everywhere until the sweep removes it.
 */
export const PROJECT_OWNER = '';

export interface MemoryRow {
  project_id: string;
  owner: string;
  key: string;
  version: number;
  size: number;
  updated_by: string;
  updated_at: number;
  expires_at: number | null;
  value: string;
}

export type MemoryMeta = Omit<MemoryRow, 'value' | 'project_id' | 'owner'>;

export interface MemoryAddress {
  projectId: string;
  owner: string;
  key: string;
}

/** The row, live or expired (the caller decides: an expired row still occupies the key). */
export function getMemory(ex: Executor, a: MemoryAddress): Promise<MemoryRow | undefined> {
  return ex.get<MemoryRow>(sql`SELECT * FROM memory
    WHERE project_id = ${a.projectId} AND owner = ${a.owner} AND key = ${a.key}`);
}

export function isLive(row: { expires_at: number | null }, now: number): boolean {
  return row.expires_at === null || row.expires_at > now;
}

export async function putMemory(
  ex: Executor,
  a: MemoryAddress,
  v: { value: string; version: number; updatedBy: string; now: number; expiresAt: number | null; size?: number },
): Promise<void> {
  // `value` may be sealed (S32): `size` then gives the plaintext's length, which is what callers see.
  const size = v.size ?? v.value.length;
  await ex.run(sql`INSERT INTO memory (project_id, owner, key, version, size, updated_by, updated_at, expires_at, value)
    VALUES (${a.projectId}, ${a.owner}, ${a.key}, ${v.version}, ${size}, ${v.updatedBy}, ${v.now},
      ${v.expiresAt}, ${v.value})
    ON CONFLICT (project_id, owner, key) DO UPDATE SET version = excluded.version, size = excluded.size,
      updated_by = excluded.updated_by, updated_at = excluded.updated_at, expires_at = excluded.expires_at,
      value = excluded.value`);
}

/** Deletes a live row; answers whether one was deleted. */
export async function deleteMemory(ex: Executor, a: MemoryAddress, now: number): Promise<boolean> {
  const r = await ex.run(sql`DELETE FROM memory
    WHERE project_id = ${a.projectId} AND owner = ${a.owner} AND key = ${a.key}
      AND (expires_at IS NULL OR expires_at > ${now})`);
  return r.changes > 0;
}

/** Live keys of one owner (the quota counts these). */
export async function countLive(ex: Executor, projectId: string, owner: string, now: number): Promise<number> {
  const row = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM memory
    WHERE project_id = ${projectId} AND owner = ${owner} AND (expires_at IS NULL OR expires_at > ${now})`);
  return row?.n ?? 0;
}

/**
 * Live keys of one owner starting with `prefix`, after `after`, in key order. Keys are ASCII
 * below '~' (see the key pattern), so `prefix || '~'` bounds the range and the unique index
 * serves the whole scan.
 */
export function listMemory(
  ex: Executor,
  f: { projectId: string; owner: string; prefix: string; after: string | null; now: number; limit: number },
): Promise<MemoryMeta[]> {
  const from = f.after !== null && f.after >= f.prefix ? f.after : null;
  const lower = from === null ? sql`key >= ${f.prefix}` : sql`key > ${from}`;
  return ex.all<MemoryMeta>(sql`SELECT key, version, size, updated_by, updated_at, expires_at FROM memory
    WHERE project_id = ${f.projectId} AND owner = ${f.owner} AND ${lower} AND key < ${f.prefix + '~'}
      AND (expires_at IS NULL OR expires_at > ${f.now})
    ORDER BY key LIMIT ${f.limit}`);
}

/** Removes expired entries of every project; returns how many. The hub's sweeper calls it. */
export async function sweepMemory(ex: Executor, now: number): Promise<number> {
  const r = await ex.run(sql`DELETE FROM memory WHERE expires_at IS NOT NULL AND expires_at <= ${now}`);
  return r.changes;
}

/** Key rotation (S32): entries whose value is not sealed under the key with this sealed prefix. */
export function staleMemory(
  ex: Executor,
  prefix: string,
  limit: number,
): Promise<Pick<MemoryRow, 'project_id' | 'owner' | 'key' | 'value'>[]> {
  return ex.all(sql`SELECT project_id, owner, key, value FROM memory
    WHERE substr(value, 1, ${prefix.length}) <> ${prefix} ORDER BY project_id, owner, key LIMIT ${limit}`);
}

/** Replaces the stored form of a value (re-sealed), nothing else: version and size stay. */
export async function setMemoryValue(ex: Executor, a: MemoryAddress, value: string): Promise<void> {
  await ex.run(sql`UPDATE memory SET value = ${value}
    WHERE project_id = ${a.projectId} AND owner = ${a.owner} AND key = ${a.key}`);
}
