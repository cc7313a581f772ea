import { BatonError } from './errors.js';

/**
 * The one cursor codec of every paged listing: a cursor names the listing it belongs to (its
 * `kind`) and the position after which the next page starts, and decoding checks both, so a
 * cursor of one listing is refused by another and a forged one is refused with one stable
 * message. Cursors are opaque to clients by contract (base64url, never to be parsed), but not
 * sealed: they carry the position (a time and an id, a key). Sealing them per project (S9) only
 * changes these two functions.
 */
export type CursorField = 'int' | 'str';
type Decoded<S extends readonly CursorField[]> = { [K in keyof S]: S[K] extends 'int' ? number : string };

const MAX_CURSOR = 600;

export function encodeCursor(kind: string, parts: readonly (number | string)[]): string {
  return Buffer.from(JSON.stringify([kind, ...parts])).toString('base64url');
}

export function decodeCursor<const S extends readonly CursorField[]>(kind: string, cursor: string, shape: S): Decoded<S> {
  if (cursor.length <= MAX_CURSOR && /^[A-Za-z0-9_-]+$/.test(cursor)) {
    try {
      const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
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
