import type { Executor } from './db.js';
import { KEY_COLUMNS, KEY_JOINS, type KeyForAuth } from './auth.js';
import { list, sql } from './sql.js';

/** Statements of browser sessions (schema/v12-web-sessions.ts). */

export interface WebSessionRow {
  id_hash: string;
  token_id: string;
  csrf: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
}

/** A session with the key behind it, in one statement: what every cookie-authenticated request reads. */
export interface SessionWithKey extends KeyForAuth {
  id_hash: string;
  csrf: string;
  created_at: number;
  last_seen_at: number;
  /** The session's absolute end (`expires_at` is the key's own expiry, as in KeyForAuth). */
  session_expires_at: number;
}

export async function insertWebSession(ex: Executor, s: WebSessionRow): Promise<void> {
  await ex.run(sql`INSERT INTO web_sessions (id_hash, token_id, csrf, created_at, last_seen_at, expires_at)
    VALUES (${s.id_hash}, ${s.token_id}, ${s.csrf}, ${s.created_at}, ${s.last_seen_at}, ${s.expires_at})`);
}

export function webSessionByHash(ex: Executor, idHash: string): Promise<SessionWithKey | undefined> {
  return ex.get<SessionWithKey>(sql`SELECT s.id_hash, s.csrf, s.created_at, s.last_seen_at, s.expires_at AS session_expires_at, ${KEY_COLUMNS}
    FROM web_sessions s JOIN tokens t ON t.id = s.token_id ${KEY_JOINS}
    WHERE s.id_hash = ${idHash}`);
}

export async function touchWebSession(ex: Executor, idHash: string, now: number): Promise<void> {
  await ex.run(sql`UPDATE web_sessions SET last_seen_at = ${now} WHERE id_hash = ${idHash} AND last_seen_at < ${now}`);
}

export async function deleteWebSession(ex: Executor, idHash: string): Promise<void> {
  await ex.run(sql`DELETE FROM web_sessions WHERE id_hash = ${idHash}`);
}

/** Keeps a key's newest `keep` sessions and removes the rest (a key cannot grow the table without bound). */
export async function trimWebSessions(ex: Executor, tokenId: string, keep: number): Promise<void> {
  await ex.run(sql`DELETE FROM web_sessions WHERE token_id = ${tokenId} AND id_hash NOT IN
    (SELECT id_hash FROM web_sessions WHERE token_id = ${tokenId} ORDER BY created_at DESC, id_hash LIMIT ${keep})`);
}

/** Removes sessions past either limit; returns how many. */
export async function sweepWebSessions(ex: Executor, now: number, idleMs: number): Promise<number> {
  const r = await ex.run(sql`DELETE FROM web_sessions WHERE expires_at <= ${now} OR last_seen_at <= ${now - idleMs}`);
  return r.changes;
}

/** Sessions by hash, for re-checking many viewers in one statement (the event stream). */
export function webSessionsByHash(
  ex: Executor,
  idHashes: readonly string[],
): Promise<{ id_hash: string; last_seen_at: number; expires_at: number }[]> {
  if (idHashes.length === 0) return Promise.resolve([]);
  return ex.all(sql`SELECT id_hash, last_seen_at, expires_at FROM web_sessions WHERE id_hash IN ${list(idHashes)}`);
}

/** Keys by id (revocation and expiry), for re-checking many stream viewers in one statement. */
export function keysById(
  ex: Executor,
  ids: readonly string[],
): Promise<{ id: string; revoked_at: number | null; expires_at: number | null }[]> {
  if (ids.length === 0) return Promise.resolve([]);
  return ex.all(sql`SELECT id, revoked_at, expires_at FROM tokens WHERE id IN ${list(ids)}`);
}

/** Of these refresh families, the live ones (one unrevoked token: store/families.ts), in one statement. */
export async function liveFamilies(ex: Executor, familyIds: readonly string[]): Promise<Set<string>> {
  if (familyIds.length === 0) return new Set();
  const rows = await ex.all<{ family_id: string }>(
    sql`SELECT DISTINCT family_id FROM refresh_tokens WHERE family_id IN ${list(familyIds)} AND revoked_at IS NULL`,
  );
  return new Set(rows.map((r) => r.family_id));
}
