import { afterEach, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Config } from '../../src/config.js';
import { ManualClock } from '../../src/core/clock.js';
import { isBatonError } from '../../src/core/errors.js';
import { CATALOG } from '../../src/ops/index.js';
import { OpRateLimiter, TokenBuckets, opClass } from '../../src/ops/ratelimit.js';
import { call, createKey, httpAgent, openHub, serve, type TestHub } from '../helpers.js';

/**
 * Rate limits (S25): per principal and op class in the runner (every transport but the local
 * operator's CLI), per client address on HTTP; refusals are `rate_limited` (HTTP 429 with
 * Retry-After; a tool error over MCP), audited as 'limited', and write nothing.
 */
describe('rate limits: token buckets', () => {
  it('grants a minute of tokens, then refuses with the seconds until the next one', () => {
    const b = new TokenBuckets(3);
    const t0 = 1_000_000;
    expect([b.take('a', t0), b.take('a', t0), b.take('a', t0)]).toEqual([0, 0, 0]);
    expect(b.take('a', t0)).toBe(20); // one token per 20 s
    expect(b.take('b', t0)).toBe(0); // keys are independent
    expect(b.take('a', t0 + 10_000)).toBe(10);
    expect(b.take('a', t0 + 20_000)).toBe(0);
    expect(b.take('a', t0 + 20_000)).toBe(20);
    // Refill is capped at the bucket size; a clock going back grants nothing.
    expect(b.take('a', t0 + 3_600_000)).toBe(0);
    expect(b.take('a', t0)).toBe(0);
    expect(b.take('a', t0)).toBe(0);
    expect(b.take('a', t0)).toBeGreaterThan(0);
  });

  it('keeps the number of keys bounded', () => {
    const b = new TokenBuckets(10, 100);
    for (let i = 0; i < 1_000; i++) b.take(`k${i}`, 0);
    expect(b.size).toBeLessThanOrEqual(100);
  });

  it('classes ops by permission tier and kind', () => {
    const byName = new Map(CATALOG.map((op) => [op.name, op]));
    const cls = (n: string): string => opClass(byName.get(n)!);
    expect(cls('task_list')).toBe('read');
    expect(cls('whoami')).toBe('read');
    expect(cls('task_create')).toBe('write');
    expect(cls('message_send')).toBe('write');
    expect(cls('token_create')).toBe('admin');
    expect(cls('token_list')).toBe('admin');
    expect(cls('lock_force_release')).toBe('admin');
    expect(cls('task_cancel')).toBe('admin');
  });

  it('is off entirely with rateLimit=false', () => {
    expect(OpRateLimiter.fromConfig({ rateLimit: false } as Config)).toBeNull();
  });
});

describe('rate limits: runner (per principal, per op class)', () => {
  let t: TestHub | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('refuses over the class limit with rate_limited + retry_after_s, writes nothing, audits "limited"', async () => {
    const clock = new ManualClock();
    t = await openHub({ clock, config: { rateLimitWritePerMin: 2, rateLimitReadPerMin: 3 } });
    const w1 = await t.hub.authenticate(await createKey(t, 'w1', 'worker'));
    const w2 = await t.hub.authenticate(await createKey(t, 'w2', 'worker'));
    const create = (p = w1) => call(t!.hub, p, 'task_create', { tasks: [{ title: 'x' }] });
    await create();
    await create();
    const err = await create().catch((e: unknown) => e);
    expect(isBatonError(err) && err.code).toBe('rate_limited');
    expect(isBatonError(err) && err.details).toEqual({ retry_after_s: 30 });
    // Limits come before validation: even invalid input is refused as rate_limited.
    const bad = await call(t.hub, w1, 'task_create', { nope: 1 }).catch((e: unknown) => e);
    expect(isBatonError(bad) && bad.code).toBe('rate_limited');
    // Nothing was written.
    const list = await call<{ tasks: unknown[] }>(t.hub, w1, 'task_list', {});
    expect(list.tasks).toHaveLength(2);
    // Another class (read) and another principal are not affected.
    await call(t.hub, w1, 'task_list', {});
    await create(w2);
    // Reads have their own limit (3 a minute).
    await call(t.hub, w1, 'task_get', { id: 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa' }).catch(() => undefined);
    const readErr = await call(t.hub, w1, 'task_list', {}).catch((e: unknown) => e);
    expect(isBatonError(readErr) && readErr.code).toBe('rate_limited');
    // Time refills the bucket.
    clock.advance(30_000);
    await create();
    // The refusals are in the audit trail as 'limited'.
    await t.hub.deferred.flush();
    const audit = await call<{ rows: { op: string; outcome: string; code: string | null }[] }>(t.hub, t.admin, 'audit_query', {
      outcome: 'limited',
    });
    expect(audit.rows.map((r) => [r.op, r.code])).toEqual([
      ['task_list', 'rate_limited'],
      ['task_create', 'rate_limited'],
      ['task_create', 'rate_limited'],
    ]);
  });

  it('limits the admin class separately', async () => {
    t = await openHub({ config: { rateLimitAdminPerMin: 1 } });
    const lead = await t.hub.authenticate(await createKey(t, 'l1', 'admin'));
    await call(t.hub, lead, 'token_list', {});
    const err = await call(t.hub, lead, 'token_list', {}).catch((e: unknown) => e);
    expect(isBatonError(err) && err.code).toBe('rate_limited');
    await call(t.hub, lead, 'task_list', {});
  });

  it('does not limit the local operator on the CLI transport, and nothing with rateLimit off', async () => {
    t = await openHub({ config: { rateLimitReadPerMin: 1 } });
    const op = await t.hub.localPrincipal('operator', 'admin');
    for (let i = 0; i < 3; i++) await t.hub.call('task_list', {}, op, { requestId: `r${i}`, transport: 'cli' });
    await t.close();
    t = await openHub({ config: { rateLimitReadPerMin: 1, rateLimit: false } });
    for (let i = 0; i < 3; i++) await call(t.hub, t.admin, 'task_list', {});
  });
});

describe('rate limits: HTTP', () => {
  let t: TestHub | undefined;
  let http: HttpHandle | undefined;
  afterEach(async () => {
    await http?.close();
    await t?.close();
    http = undefined;
    t = undefined;
  });

  it('per principal over REST: 429 with Retry-After; over MCP: a tool error with code rate_limited', async () => {
    t = await openHub({ config: { rateLimitReadPerMin: 2 } });
    http = await serve(t.hub);
    const key = await createKey(t, 'w1', 'worker');
    const get = () => fetch(`${http!.url}/api/v1/tasks`, { headers: { authorization: `Bearer ${key}` } });
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(200);
    const r = await get();
    expect(r.status).toBe(429);
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(Number(r.headers.get('retry-after'))).toBeLessThanOrEqual(30);
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    const body = (await r.json()) as { error: { code: string; details: { retry_after_s: number } } };
    expect(body.error.code).toBe('rate_limited');
    expect(body.error.details.retry_after_s).toBe(Number(r.headers.get('retry-after')));

    // Over MCP (lean path), the same principal's tools/call is a tool error per the protocol.
    const agent = await httpAgent('v2', http.url, key);
    try {
      const res = await agent.call('task_list', {});
      expect(res.isError).toBe(true);
      expect((res.data.error as { code: string }).code).toBe('rate_limited');
      // Writes are another class: still allowed.
      await agent.ok('task_create', { tasks: [{ title: 'ok' }] });
    } finally {
      await agent.close();
    }
  });

  it('per client address: unauthenticated requests get 429 with Retry-After on REST, /mcp and /healthz; valid credentials are not counted', async () => {
    t = await openHub({ config: { rateLimitAddressPerMin: 4 } });
    http = await serve(t.hub);
    const k1 = await createKey(t, 'w1', 'worker');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${http.url}/api/v1/whoami`)).status);
    expect(statuses).toEqual([401, 401, 401, 401]);
    const rest = await fetch(`${http.url}/api/v1/whoami`);
    expect(rest.status).toBe(429);
    expect(Number(rest.headers.get('retry-after'))).toBe(15);
    const mcp = await fetch(`${http.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    expect(mcp.status).toBe(429);
    expect(mcp.headers.get('retry-after')).not.toBeNull();
    expect((await fetch(`${http.url}/healthz`)).status).toBe(429);
    // Requests with a valid key are limited per principal (above), not by their address (issue 8, item 6).
    for (let i = 0; i < 6; i++) {
      expect((await fetch(`${http.url}/api/v1/whoami`, { headers: { authorization: `Bearer ${k1}` } })).status).toBe(200);
    }
  });
});
