import type { Executor } from './db.js';
import { list, sql } from './sql.js';

/** Statements of authentication: keys with their address binding, refresh token families. */

export interface KeyForAuth {
  id: string;
  project_id: string;
  project_name: string;
  name: string;
  role: string;
  server_admin: number;
  expires_at: number | null;
  revoked_at: number | null;
  allowed_addresses: string | null;
  agent_id: string | null;
}

/** The columns of KeyForAuth, from `t` (tokens) joined by KEY_JOINS: one list for every way a key is read. */
export const KEY_COLUMNS = sql`t.id, t.project_id, t.name, t.role, t.server_admin, t.expires_at,
      t.revoked_at, t.allowed_addresses, p.name AS project_name, a.id AS agent_id`;
/** The project and the agent of a key `t`. */
export const KEY_JOINS = sql`JOIN projects p ON p.id = t.project_id
    LEFT JOIN agents a ON a.project_id = t.project_id AND a.name = t.name`;

/** The one statement behind a request with an API key: token, project, agent, address binding. */
export function keyByHash(ex: Executor, hash: string): Promise<KeyForAuth | undefined> {
  return ex.get<KeyForAuth>(sql`SELECT ${KEY_COLUMNS} FROM tokens t ${KEY_JOINS} WHERE t.key_hash = ${hash}`);
}

/** The keys of several hashes in one statement (a write batch's keys read ahead), with each one's hash. */
export function keysByHashes(ex: Executor, hashes: readonly string[]): Promise<(KeyForAuth & { key_hash: string })[]> {
  return ex.all<KeyForAuth & { key_hash: string }>(sql`SELECT ${KEY_COLUMNS}, t.key_hash FROM tokens t ${KEY_JOINS} WHERE t.key_hash IN ${list(hashes)}`);
}

/** The same, by key id: every use of an access token checks that its key is still live. */
export function keyById(ex: Executor, id: string): Promise<KeyForAuth | undefined> {
  return ex.get<KeyForAuth>(sql`SELECT ${KEY_COLUMNS} FROM tokens t ${KEY_JOINS} WHERE t.id = ${id}`);
}

export async function setAllowedAddresses(ex: Executor, tokenId: string, json: string | null): Promise<void> {
  await ex.run(sql`UPDATE tokens SET allowed_addresses = ${json} WHERE id = ${tokenId}`);
}

export interface RefreshRow {
  token_hash: string;
  family_id: string;
  token_id: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
}

export async function insertRefresh(ex: Executor, r: Omit<RefreshRow, 'used_at' | 'revoked_at'>): Promise<void> {
  await ex.run(sql`INSERT INTO refresh_tokens (token_hash, family_id, token_id, created_at, expires_at)
    VALUES (${r.token_hash}, ${r.family_id}, ${r.token_id}, ${r.created_at}, ${r.expires_at})`);
}

export function refreshByHash(ex: Executor, hash: string): Promise<RefreshRow | undefined> {
  return ex.get<RefreshRow>(sql`SELECT * FROM refresh_tokens WHERE token_hash = ${hash}`);
}

/** Spends a refresh token; false when someone spent it first (a concurrent or repeated use). */
export async function spendRefresh(ex: Executor, hash: string, now: number): Promise<boolean> {
  const r = await ex.run(sql`UPDATE refresh_tokens SET used_at = ${now} WHERE token_hash = ${hash} AND used_at IS NULL`);
  return r.changes === 1;
}

/** Revokes every token of a family (reuse of a spent one means the chain leaked). */
export async function revokeFamily(ex: Executor, familyId: string, now: number): Promise<number> {
  const r = await ex.run(sql`UPDATE refresh_tokens SET revoked_at = ${now} WHERE family_id = ${familyId}
    AND revoked_at IS NULL`);
  return r.changes;
}

/** Whether any key was ever issued (the first start creates the server-admin key when none was). */
export async function anyToken(ex: Executor): Promise<boolean> {
  return (await ex.get<{ one: number }>(sql`SELECT 1 AS one FROM tokens LIMIT 1`)) !== undefined;
}
