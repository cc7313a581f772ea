import { createHmac, randomBytes } from 'node:crypto';

/**
 * API keys: `bat_` + 256 random bits (base64url). Stored only as HMAC-SHA256 under the server's
 * key pepper, so a stolen database alone does not yield usable keys. Lookup is by the keyed hash
 * (an index probe on a value the attacker cannot choose), so no comparison of secrets happens
 * in a way whose timing depends on the secret.
 */
export const KEY_PREFIX = 'bat_';
const KEY_PATTERN = /^bat_[A-Za-z0-9_-]{43}$/;

export function generateKey(): string {
  return KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function looksLikeKey(value: string): boolean {
  return KEY_PATTERN.test(value);
}

export function hashKey(pepper: Buffer, key: string): string {
  return createHmac('sha256', pepper).update(key).digest('base64url');
}

/** What may be shown of a key later: its prefix, enough to recognise it, useless to use it. */
export function keyPrefix(key: string): string {
  return key.slice(0, KEY_PREFIX.length + 6);
}
