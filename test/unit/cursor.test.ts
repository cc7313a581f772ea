import { describe, expect, it } from 'vitest';
import { decodeCursor, decodePosition, encodeCursor, encodePosition, encodePositions } from '../../src/core/cursor.js';
import { BatonError } from '../../src/core/errors.js';

describe('the cursor codec', () => {
  it('round-trips a position and is bound to its listing', () => {
    const c = encodeCursor('tasks', [5, 1_700_000_000_000, 'tsk_x']);
    expect(c).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor('tasks', c, ['int', 'int', 'str'])).toEqual([5, 1_700_000_000_000, 'tsk_x']);
    // Another listing's cursor, a wrong shape, garbage: one stable refusal.
    for (const [kind, cursor] of [
      ['locks', c],
      ['tasks', encodeCursor('tasks', [5, 'x', 'tsk_x'])],
      ['tasks', encodeCursor('tasks', [5, 1])],
      ['tasks', 'garbage!'],
      ['tasks', Buffer.from('[1,2').toString('base64url')],
      ['tasks', 'A'.repeat(1000)],
    ] as const) {
      let err: unknown;
      try {
        decodeCursor(kind, cursor, ['int', 'int', 'str']);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BatonError);
      expect((err as BatonError).code).toBe('invalid_input');
    }
  });

  it('sealed: reveals nothing, round-trips in its scope only, and refuses tampering', () => {
    const secret = Buffer.alloc(32, 7);
    const mine = { secret, scope: 'prj_a' };
    const c = encodeCursor('messages', [123_456], mine);
    expect(Buffer.from(c, 'base64url').toString('latin1')).not.toMatch(/messages|123456/);
    expect(c).not.toBe(encodeCursor('messages', [123_456], mine)); // a fresh nonce each time
    expect(decodeCursor('messages', c, ['int'], mine)).toEqual([123_456]);
    const refused = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return (e as BatonError).code;
      }
      return undefined;
    };
    expect(refused(() => decodeCursor('messages', c, ['int'], { secret, scope: 'prj_b' }))).toBe('invalid_input');
    expect(refused(() => decodeCursor('messages', c, ['int'], { secret: Buffer.alloc(32, 8), scope: 'prj_a' }))).toBe('invalid_input');
    const raw = Buffer.from(c, 'base64url');
    raw.writeUInt8(raw.readUInt8(raw.length - 1) ^ 1, raw.length - 1);
    expect(refused(() => decodeCursor('messages', raw.toString('base64url'), ['int'], mine))).toBe('invalid_input');
    expect(refused(() => decodeCursor('messages', encodeCursor('messages', [1]), ['int'], mine))).toBe('invalid_input');
  });

  it('sealed cursors have one length whatever the size of the position', () => {
    const mine = { secret: Buffer.alloc(32, 7), scope: 'prj_a' };
    const lengths = new Set([0, 9, 12_345, 2 ** 40, Number.MAX_SAFE_INTEGER].map((n) => encodeCursor('messages', [n], mine).length));
    expect(lengths.size).toBe(1);
  });
});

describe('sealed positions', () => {
  const secret = Buffer.alloc(32, 7);
  const mine = { secret, scope: 'prj_a' };
  const refused = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (e) {
      return (e as BatonError).code;
    }
    return undefined;
  };

  it('round-trip in their listing and scope, deterministically, in 22 characters that show neither size nor order', () => {
    const ns = [0, 1, 2, 255, 256, 12_345, 2 ** 32, Number.MAX_SAFE_INTEGER];
    const cs = ns.map((n) => encodePosition('events', n, mine));
    for (const [i, c] of cs.entries()) {
      expect(c).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(decodePosition('events', c, mine)).toBe(ns[i]);
      expect(encodePosition('events', ns[i]!, mine)).toBe(c); // stable: an event's id is the same on every read
    }
    // Sealed in one batch, the same strings.
    expect(encodePositions('events', ns, mine)).toEqual(cs);
    expect(encodePositions('events', [], mine)).toEqual([]);
    // Consecutive positions share no prefix pattern and do not sort in order.
    expect([...cs].sort()).not.toEqual(cs);
    const a = Buffer.from(encodePosition('events', 1000, mine), 'base64url');
    const b = Buffer.from(encodePosition('events', 1001, mine), 'base64url');
    let same = 0;
    for (let i = 0; i < 16; i++) if (a[i] === b[i]) same++;
    expect(same).toBeLessThan(6);
  });

  it('are refused in another scope, another listing, under another secret, and when tampered with', () => {
    const c = encodePosition('events', 4242, mine);
    expect(refused(() => decodePosition('events', c, { secret, scope: 'prj_b' }))).toBe('invalid_input');
    expect(refused(() => decodePosition('messages', c, mine))).toBe('invalid_input');
    expect(refused(() => decodePosition('events', c, { secret: Buffer.alloc(32, 8), scope: 'prj_a' }))).toBe('invalid_input');
    const raw = Buffer.from(c, 'base64url');
    for (let bit = 0; bit < 128; bit += 7) {
      const t = Buffer.from(raw);
      t[bit >> 3]! ^= 1 << (bit & 7);
      expect(refused(() => decodePosition('events', t.toString('base64url'), mine)), `bit ${bit}`).toBe('invalid_input');
    }
    // Another spelling of the same bytes (the unused low bits of the last character) is refused too.
    const last = c[21]!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const other = alphabet[alphabet.indexOf(last) ^ 1]!;
    expect(refused(() => decodePosition('events', c.slice(0, 21) + other, mine))).toBe('invalid_input');
    for (const junk of ['', 'start', '4242', 'A'.repeat(21), 'A'.repeat(23), `${c.slice(0, 21)}!`, encodeCursor('events', [4242])]) {
      expect(refused(() => decodePosition('events', junk, mine)), junk).toBe('invalid_input');
    }
  });
});

