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
});
