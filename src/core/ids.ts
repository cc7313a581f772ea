import { randomBytes } from 'node:crypto';

/**
 * Ids are random, never sequential (S9): a prefix naming the kind, then 128 bits in base32
 * (lower case, no padding) so they are safe in URLs, file names and shells.
 */
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

export type IdKind = 'tsk' | 'agt' | 'tok' | 'prj' | 'req' | 'evt' | 'msg' | 'mem' | 'dsc' | 'dec' | 'apr' | 'lck' | 'ses' | 'hof' | 'chk' | 'fam';

export function newId(kind: IdKind): string {
  return `${kind}_${base32(randomBytes(16))}`;
}

export function base32(buf: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

const patterns = new Map<IdKind, RegExp>();

/**
 * The one pattern of an id of `kind`: the prefix, then 26 base32 characters. Every schema and
 * check of an id uses it (one RegExp per kind, without flags: `test` keeps no state).
 */
export function ID_PATTERN(kind: IdKind): RegExp {
  let re = patterns.get(kind);
  if (re === undefined) {
    re = new RegExp(`^${kind}_[a-z2-7]{26}$`);
    patterns.set(kind, re);
  }
  return re;
}
