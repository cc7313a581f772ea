/**
 * Issue 8, item 1: a CPU bomb in lock patterns. Long patterns with many `*` made the overlap
 * check explore |p|·|q| states per segment on the event loop, so every call of every project
 * waited seconds. Now patterns are capped (length, stars) in the op's schema, and one call's
 * overlap work has a fixed budget: past it the call is refused with `too_complex` (400).
 * (The latency of another project's `whoami` during the attack is measured in bench/glob-bomb.ts.)
 */
import { describe, expect, it, vi } from 'vitest';
import { GLOB_BUDGET, GlobBudget, MAX_LENGTH, MAX_STARS } from '../../src/core/globs.js';
import { INLINE_WORK } from '../../src/ops/locks.js';
import { call, createKey, openHub, serve } from '../helpers.js';

/** A pattern at the caps that never matches its siblings: every star used, one long segment. */
const bomb = (tail: string): string =>
  ('*' + 'a'.repeat(MAX_LENGTH / MAX_STARS - 1)).repeat(MAX_STARS).slice(0, MAX_LENGTH - tail.length) + tail;

describe('security: lock patterns cannot stall the hub (issue 8 item 1)', () => {
  it('refuses over-long and over-starred patterns at the schema, naming the limit', async () => {
    const t = await openHub();
    const http = await serve(t.hub);
    try {
      const key = await createKey(t, 'w1', 'worker');
      const post = (paths: string[]): Promise<Response> =>
        fetch(`${http.url}/api/v1/locks`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ paths }),
        });
      const long = await post(['a'.repeat(MAX_LENGTH + 1)]);
      expect(long.status).toBe(400);
      expect(JSON.stringify(await long.json())).toContain(`at most ${MAX_LENGTH} characters`);
      const starry = await post([Array.from({ length: MAX_STARS + 1 }, () => 'x*').join('/')]);
      expect(starry.status).toBe(400);
      expect(JSON.stringify(await starry.json())).toContain(`more than ${MAX_STARS} * wildcards`);
    } finally {
      await http.close();
      await t.close();
    }
  });

  it('a worst-case pattern set is refused with too_complex after a bounded amount of work; other calls still answer', async () => {
    const t = await openHub();
    const http = await serve(t.hub);
    try {
      const holder = await createKey(t, 'holder', 'worker');
      const attacker = await createKey(t, 'attacker', 'worker');
      const bystander = await createKey(t, 'other', 'worker', 'other-project');
      const req = (key: string, method: string, path: string, body?: unknown): Promise<Response> =>
        fetch(`${http.url}/api/v1${path}`, {
          method,
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      // One agent holds 50 worst-case patterns (its own locks never conflict with each other).
      const held = Array.from({ length: 50 }, (_, i) => bomb(`b${String(i).padStart(2, '0')}`));
      const hold = await req(holder, 'POST', '/locks', { paths: held });
      expect(hold.status).toBe(200);
      // Another asks for 50 more: 2,500 worst-case pairs, far beyond the budget.
      const wanted = Array.from({ length: 50 }, (_, i) => bomb(`z${String(i).padStart(2, '0')}`));
      const [attack, who] = await Promise.all([
        req(attacker, 'POST', '/locks', { paths: wanted }),
        req(bystander, 'GET', '/whoami'),
      ]);
      expect(attack.status).toBe(400);
      const body = (await attack.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('too_complex');
      expect(body.error.message).toContain('too complex');
      expect(who.status).toBe(200);
      // Ordinary patterns against the same held set stay cheap and are decided exactly.
      const plain = await req(attacker, 'POST', '/locks', { paths: ['src/a.ts', 'docs/*.md'] });
      expect(plain.status).toBe(200);
      const overlapping = await req(attacker, 'POST', '/locks', { paths: ['**'] });
      expect(overlapping.status).toBe(409);
      // The lock listing with a path filter is bounded the same way.
      const list = await req(attacker, 'GET', `/locks?path=${encodeURIComponent(bomb('z'))}`);
      expect([200, 400]).toContain(list.status);
      expect(GLOB_BUDGET).toBeGreaterThan(0);
    } finally {
      await http.close();
      await t.close();
    }
  });

  it('the overlap work of lock_acquire and lock_list runs with no transaction open, beyond a small inline part', async () => {
    const t = await openHub();
    // Whether the store's connection is inside a transaction (a read or the write lock) right now.
    const conn = (t.hub.db as unknown as { conn: { inTransaction: boolean } }).conn;
    let inside = 0;
    let outside = 0;
    const original = GlobBudget.prototype.spend;
    const spend = vi.spyOn(GlobBudget.prototype, 'spend').mockImplementation(function (this: GlobBudget, n: number) {
      if (conn.inTransaction) inside += n;
      else outside += n;
      original.call(this, n);
    });
    try {
      const holder = await t.hub.authenticate(await createKey(t, 'holder', 'worker'));
      const attacker = await t.hub.authenticate(await createKey(t, 'attacker', 'worker'));
      const bombs = await call<{ lock: { id: string } }>(t.hub, holder, 'lock_acquire', { paths: Array.from({ length: 50 }, (_, i) => bomb(`b${String(i).padStart(2, '0')}`)) });
      inside = 0;
      outside = 0;
      const wanted = Array.from({ length: 50 }, (_, i) => bomb(`z${String(i).padStart(2, '0')}`));
      await expect(call(t.hub, attacker, 'lock_acquire', { paths: wanted })).rejects.toMatchObject({ code: 'too_complex' });
      // The whole budget was spent, all but the first attempt's inline part (at most INLINE_WORK
      // plus the one pair that overran it) with no transaction open.
      expect(inside + outside).toBeGreaterThan(GLOB_BUDGET);
      expect(inside).toBeLessThanOrEqual(INLINE_WORK + 2_500);
      // The listing with a path filter matches outside its read the same way.
      inside = 0;
      outside = 0;
      await expect(call(t.hub, attacker, 'lock_list', { path: bomb('z') })).rejects.toMatchObject({ code: 'too_complex' });
      expect(outside).toBeGreaterThan(0);
      expect(inside).toBeLessThanOrEqual(INLINE_WORK + 2_500);
      // Ordinary patterns are still decided inside, in the one attempt.
      await call(t.hub, holder, 'lock_release', { id: bombs.lock.id });
      await call(t.hub, holder, 'lock_acquire', { paths: ['docs/**', 'lib/*.ts', 'docs/**/*.md'] });
      inside = 0;
      outside = 0;
      await call(t.hub, attacker, 'lock_acquire', { paths: ['src/**', 'test/*.ts'] });
      expect(outside).toBe(0);
      expect(inside).toBeGreaterThan(0);
    } finally {
      spend.mockRestore();
      await t.close();
    }
  });
});
