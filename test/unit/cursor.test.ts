import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor } from '../../src/core/cursor.js';
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
});
