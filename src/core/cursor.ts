import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { BatonError } from './errors.js';

/**
 * The one cursor codec of every paged listing: a cursor names the listing it belongs to (its
 * `kind`) and the position after which the next page starts, and decoding checks both, so a
 * cursor of one listing is refused by another and a forged one is refused with one stable
 * message. Cursors are opaque to clients by contract (base64url, never to be parsed). A listing
 * whose position would tell something about other projects (a global sequence number counts every
 * project's rows) passes a `Seal`: the cursor is then encrypted and authenticated (AES-256-GCM
 * under a key derived from the server secret, the project as associated data), so it reveals
 * nothing and is refused in another project (S9).
 */
export type CursorField = 'int' | 'str';
type Decoded<S extends readonly CursorField[]> = { [K in keyof S]: S[K] extends 'int' ? number : string };

const MAX_CURSOR = 600;

export interface Seal {
  /** The server secret the cursor key is derived from. */
  secret: Buffer;
  /** What the cursor is bound to (the project id). */
  scope: string;
}

const keys = new WeakMap<Buffer, Buffer>();
function keyOf(secret: Buffer): Buffer {
  let k = keys.get(secret);
  if (k === undefined) {
    k = createHmac('sha256', secret).update('baton cursor v1').digest();
    keys.set(secret, k);
  }
  return k;
}

function seal(plain: Buffer, s: Seal): Buffer {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', keyOf(s.secret), iv);
  c.setAAD(Buffer.from(s.scope));
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([iv, c.getAuthTag(), body]);
}

function unseal(sealed: Buffer, s: Seal): Buffer {
  const d = createDecipheriv('aes-256-gcm', keyOf(s.secret), sealed.subarray(0, 12));
  d.setAAD(Buffer.from(s.scope));
  d.setAuthTag(sealed.subarray(12, 28));
  return Buffer.concat([d.update(sealed.subarray(28)), d.final()]);
}

export function encodeCursor(kind: string, parts: readonly (number | string)[], sealWith?: Seal): string {
  const plain = Buffer.from(JSON.stringify([kind, ...parts]));
  return (sealWith === undefined ? plain : seal(plain, sealWith)).toString('base64url');
}

export function decodeCursor<const S extends readonly CursorField[]>(
  kind: string,
  cursor: string,
  shape: S,
  sealedWith?: Seal,
): Decoded<S> {
  if (cursor.length <= MAX_CURSOR && /^[A-Za-z0-9_-]+$/.test(cursor)) {
    try {
      const raw = Buffer.from(cursor, 'base64url');
      const v: unknown = JSON.parse((sealedWith === undefined ? raw : unseal(raw, sealedWith)).toString('utf8'));
      if (Array.isArray(v) && v.length === shape.length + 1 && v[0] === kind) {
        const parts = v.slice(1);
        if (parts.every((p, i) => (shape[i] === 'int' ? Number.isSafeInteger(p) : typeof p === 'string'))) {
          return parts as Decoded<S>;
        }
      }
    } catch {
      // fall through
    }
  }
  throw new BatonError('invalid_input', 'cursor: not a cursor this server issued for this listing');
}
