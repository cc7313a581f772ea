import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { sql } from '../../src/store/sql.js';
import { createKey, openHub, serve, type TestHub } from '../helpers.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON answers, checked field by field
type Body = any;

/**
 * A finish whose answer was lost (the connection dropped after the commit) is retried by the
 * agent with the same lease token: it gets the same answer again, not `lease_lost`.
 */
describe('idempotent finishing over REST', () => {
  let t: TestHub;
  let http: HttpHandle;
  let lead: string;
  let w1: string;
  let w2: string;

  const rest = async (key: string, method: string, path: string, body?: object): Promise<{ status: number; body: Body }> => {
    const res = await fetch(`${http.url}/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  };
  const create = async (tasks: object[]): Promise<string[]> =>
    ((await rest(lead, 'POST', '/tasks', { tasks })).body.tasks as { id: string }[]).map((x) => x.id);
  const claim = async (key: string, id: string): Promise<number> => {
    const r = await rest(key, 'POST', '/tasks/claim', { id });
    expect(r.status).toBe(200);
    return r.body.task.lease.token as number;
  };

  beforeAll(async () => {
    t = await openHub({ config: { backoffBaseMs: 0 } }); // retries are claimable at once
    http = await serve(t.hub);
    lead = await createKey(t, 'lead', 'lead');
    w1 = await createKey(t, 'w1', 'worker');
    w2 = await createKey(t, 'w2', 'worker');
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('a repeated task_complete returns the first answer, unblocked list included', async () => {
    const [a, b, c] = await create([{ ref: 'a', title: 'a' }, { ref: 'b', title: 'b', depends_on: ['a'] }, { ref: 'c', title: 'c', depends_on: ['a'] }]);
    const token = await claim(w1, a!);
    const first = await rest(w1, 'POST', `/tasks/${a}/complete`, { lease_token: token, result: { summary: 'ok' } });
    expect(first.status).toBe(200);
    expect(first.body.unblocked).toEqual([b, c].sort());
    // Meanwhile the world moved on: b was claimed and finished.
    await rest(w2, 'POST', `/tasks/${b}/complete`, { lease_token: await claim(w2, b!), result: { summary: 'b' } });
    const again = await rest(w1, 'POST', `/tasks/${a}/complete`, { lease_token: token, result: { summary: 'ok' } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    // The stored result is the first one.
    expect((await rest(lead, 'GET', `/tasks/${a}`)).body.task.result).toEqual({ summary: 'ok' });
    // Another agent with the same token, or another op with it, is still refused.
    const other = await rest(w2, 'POST', `/tasks/${a}/complete`, { lease_token: token, result: { summary: 'x' } });
    expect(other.body.error.code).toBe('lease_lost');
    const failAfter = await rest(w1, 'POST', `/tasks/${a}/fail`, { lease_token: token, error: 'oops' });
    expect(failAfter.body.error.code).toBe('lease_lost');
    const releaseAfter = await rest(w1, 'POST', `/tasks/${a}/release`, { lease_token: token });
    expect(releaseAfter.body.error.code).toBe('lease_lost');
  });

  it('a repeated task_fail returns the first answer even after another agent claimed the task', async () => {
    const [x] = await create([{ title: 'x', max_attempts: 3 }]);
    const token = await claim(w1, x!);
    const first = await rest(w1, 'POST', `/tasks/${x}/fail`, { lease_token: token, error: 'flaky' });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ id: x, status: 'ready', attempts: 1 });
    const token2 = await claim(w2, x!);
    expect(token2).toBeGreaterThan(token);
    const again = await rest(w1, 'POST', `/tasks/${x}/fail`, { lease_token: token, error: 'flaky' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    // The retry changed nothing: w2 still holds it with its own token.
    const now = (await rest(lead, 'GET', `/tasks/${x}`)).body.task;
    expect(now.lease).toMatchObject({ owner: 'w2', token: token2 });
    expect(now.attempts).toBe(2);
    // A complete with the old token is a different op: refused.
    expect((await rest(w1, 'POST', `/tasks/${x}/complete`, { lease_token: token, result: { summary: 'x' } })).body.error.code).toBe('lease_lost');
  });

  it('a repeated task_release returns the first answer and does not give back an attempt twice', async () => {
    const [y] = await create([{ title: 'y' }]);
    const token = await claim(w1, y!);
    const first = await rest(w1, 'POST', `/tasks/${y}/release`, { lease_token: token });
    expect(first.body).toEqual({ id: y, status: 'ready' });
    const again = await rest(w1, 'POST', `/tasks/${y}/release`, { lease_token: token });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect((await rest(lead, 'GET', `/tasks/${y}`)).body.task.attempts).toBe(0);
  });

  it('a repeated task_fail returns the first answer after the next attempt finished too', async () => {
    const [x] = await create([{ title: 'x2', max_attempts: 3 }]);
    const token = await claim(w1, x!);
    const first = await rest(w1, 'POST', `/tasks/${x}/fail`, { lease_token: token, error: 'flaky' });
    expect(first.body).toMatchObject({ id: x, status: 'ready', attempts: 1 });
    // w2 claims the retry and completes it: the task's last finish is now w2's.
    const done = await rest(w2, 'POST', `/tasks/${x}/complete`, { lease_token: await claim(w2, x!), result: { summary: 'w2' } });
    expect(done.status).toBe(200);
    const again = await rest(w1, 'POST', `/tasks/${x}/fail`, { lease_token: token, error: 'flaky' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    const now = (await rest(lead, 'GET', `/tasks/${x}`)).body.task;
    expect(now).toMatchObject({ status: 'done', attempts: 2, result: { summary: 'w2' } });
    // Still only the same agent, op and token.
    expect((await rest(w2, 'POST', `/tasks/${x}/fail`, { lease_token: token, error: 'x' })).body.error.code).toBe('lease_lost');
    expect((await rest(w1, 'POST', `/tasks/${x}/release`, { lease_token: token })).body.error.code).toBe('lease_lost');
  });

  it('a repeated task_release returns the first answer after others released, and after its agent reclaimed and completed', async () => {
    const [y] = await create([{ title: 'y2' }]);
    const token = await claim(w1, y!);
    const first = await rest(w1, 'POST', `/tasks/${y}/release`, { lease_token: token });
    expect(first.body).toEqual({ id: y, status: 'ready' });
    // w2 claims and releases too.
    expect((await rest(w2, 'POST', `/tasks/${y}/release`, { lease_token: await claim(w2, y!) })).status).toBe(200);
    expect(await rest(w1, 'POST', `/tasks/${y}/release`, { lease_token: token })).toEqual({ status: 200, body: first.body });
    // w1 itself claims again and completes; its first release, repeated, still gets its first answer.
    const token3 = await claim(w1, y!);
    expect((await rest(w1, 'POST', `/tasks/${y}/complete`, { lease_token: token3, result: { summary: 'y' } })).status).toBe(200);
    expect(await rest(w1, 'POST', `/tasks/${y}/release`, { lease_token: token })).toEqual({ status: 200, body: first.body });
    expect((await rest(lead, 'GET', `/tasks/${y}`)).body.task).toMatchObject({ status: 'done', attempts: 1 });
  });

  it('a task claimed and released without end keeps its last 16 finishes, no more', async () => {
    const [z] = await create([{ title: 'bouncing' }]);
    const tokens: number[] = [];
    for (let i = 0; i < 20; i++) {
      const token = await claim(w1, z!);
      tokens.push(token);
      expect((await rest(w1, 'POST', `/tasks/${z}/release`, { lease_token: token })).status).toBe(200);
    }
    const kept = await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM task_finishes WHERE task_id = ${z}`));
    expect(kept!.n).toBeLessThanOrEqual(16);
    // A recent release still replays; the first one is past keeping.
    expect(await rest(w1, 'POST', `/tasks/${z}/release`, { lease_token: tokens[15]! })).toEqual({ status: 200, body: { id: z, status: 'ready' } });
    expect((await rest(w1, 'POST', `/tasks/${z}/release`, { lease_token: tokens[0]! })).body.error.code).toBe('lease_lost');
  });
});
