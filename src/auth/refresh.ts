import { createHmac, randomBytes } from 'node:crypto';
import { newId } from '../core/ids.js';
import type { Executor } from '../store/db.js';
import { familyIsLive } from '../store/families.js';

/**
 * Refresh tokens (S4): opaque `batr_` + 256 random bits, stored only as a keyed hash (HMAC under
 * the key pepper, with its own label so a refresh token's hash never equals an API key's).
 * Single use: a refresh returns a new pair and spends the old token; presenting a spent token
 * again revokes its whole family (every token of that rotation chain).
 */
export const REFRESH_PREFIX = 'batr_';
const REFRESH_PATTERN = /^batr_[A-Za-z0-9_-]{43}$/;

export function generateRefreshToken(): string {
  return REFRESH_PREFIX + randomBytes(32).toString('base64url');
}

export function looksLikeRefreshToken(value: string): boolean {
  return REFRESH_PATTERN.test(value);
}

export function hashRefreshToken(pepper: Buffer, token: string): string {
  return createHmac('sha256', pepper).update('refresh\u0000').update(token).digest('base64url');
}

/** A family id: random, never sequential. */
export function newFamilyId(): string {
  return newId('fam');
}

/**
 * Whether an access token may still be used as far as its refresh family goes: a token issued
 * with a family (`fam`) dies when that family is revoked (reuse of a spent refresh token), not
 * only when its key is. One lookup on the family index, in the request's own transaction.
 */
export async function accessFamilyLive(ex: Executor, claims: { fam?: string }): Promise<boolean> {
  return claims.fam === undefined || familyIsLive(ex, claims.fam);
}
