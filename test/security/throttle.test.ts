import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { ManualClock } from '../../src/core/clock.js';
import { createKey, httpAgent, openHub, serve, type TestHub } from '../helpers.js';

/**
 * Issue 8, item 6: one bad client must not lock out every local agent. All local agents share
 * 127.0.0.1; other loopback addresses (127.0.0.2, …) stand for "another client address".
 */
const START = Date.UTC(2026, 0, 1);

function get(url: string, path: string, headers: Record<string, string> = {}, from = '127.0.0.1'): Promise<{ status: number; retryAfter: string | undefined }> {
  const u = new URL(path, url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'GET', headers: { host: `127.0.0.1:${u.port}`, ...headers }, localAddress: from },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

describe('S6/S25: throttling failures never punishes valid credentials', () => {
  const clock = new ManualClock(START);
  let t: TestHub;
  let h: HttpHandle;

  beforeAll(async () => {
    t = await openHub({ clock, config: { authFailuresPerMinute: 10, authBlockMs: 60_000, rateLimitAddressPerMin: 20 } });
    h = await serve(t.hub);
  });
  afterAll(async () => {
    await h.close();
    await t.close();
  });

  it('a client retrying a revoked key blocks only failures from 127.0.0.1: other agents there keep working (REST and SDK MCP)', async () => {
    const good = await createKey(t, 'good', 'worker');
    const old = await createKey(t, 'old', 'worker');
    const id = ((await t.hub.call('token_list', {}, t.admin, { requestId: 'r', transport: 'internal' })) as { tokens: { id: string; name: string }[] }).tokens.find(
      (x) => x.name === 'old',
    )!.id;
    await t.hub.call('token_revoke', { id }, t.admin, { requestId: 'r2', transport: 'internal' });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await get(h.url, '/api/v1/whoami', bearer(old))).status);
    expect(statuses.slice(0, 11)).toEqual(Array(11).fill(401));
    const refused = await get(h.url, '/api/v1/whoami', bearer(old));
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThan(0);
    // Another wrong key from the blocked address is refused too.
    expect((await get(h.url, '/api/v1/whoami', bearer(`bat_${'Q'.repeat(43)}`))).status).toBe(429);
    // The valid key authenticates from the blocked address, over REST and over MCP (a real SDK client).
    expect((await get(h.url, '/api/v1/whoami', bearer(good))).status).toBe(200);
    const agent = await httpAgent('v2', h.url, good);
    try {
      expect((await agent.ok<{ agent: { name: string } }>('whoami')).agent.name).toBe('good');
    } finally {
      await agent.close();
    }
    clock.advance(60_001);
  });

  it('eleven wrong keys sharing a victim key\'s shown prefix never lock out the victim, from any address', async () => {
    const victim = await createKey(t, 'victim', 'worker');
    const prefix = victim.slice(0, 10);
    for (let i = 0; i < 11; i++) {
      const forged = prefix + String.fromCharCode(65 + i).repeat(victim.length - 10);
      expect((await get(h.url, '/api/v1/whoami', bearer(forged), '127.0.0.2')).status).toBe(401);
    }
    expect((await get(h.url, '/api/v1/whoami', bearer(victim), '127.0.0.3')).status).toBe(200);
    expect((await get(h.url, '/api/v1/whoami', bearer(victim), '127.0.0.2')).status).toBe(200);
    clock.advance(60_001);
  });

  it('one wrong credential retried from many addresses is blocked everywhere (per credential, not per prefix)', async () => {
    const wrong = `bat_${'Z'.repeat(43)}`;
    for (let i = 0; i < 11; i++) expect((await get(h.url, '/api/v1/whoami', bearer(wrong), `127.0.1.${i + 1}`)).status).toBe(401);
    expect((await get(h.url, '/api/v1/whoami', bearer(wrong), '127.0.2.1')).status).toBe(429);
    // A fresh address with another (wrong) key is not blocked by it.
    expect((await get(h.url, '/api/v1/whoami', bearer(`bat_${'Y'.repeat(43)}`), '127.0.2.1')).status).toBe(401);
    clock.advance(60_001);
  });

  it('unauthenticated health checks use up only the unauthenticated budget, never an authenticated principal\'s', async () => {
    const admin = t.adminKey;
    const health: number[] = [];
    for (let i = 0; i < 25; i++) health.push((await get(h.url, '/healthz', {}, '127.0.0.9')).status);
    expect(health).toContain(429);
    // A credential header does not exempt a health probe, or any route that does not check it.
    expect((await get(h.url, '/healthz', bearer(admin), '127.0.0.9')).status).toBe(429);
    expect((await get(h.url, '/no-such-route', bearer(admin), '127.0.0.9')).status).toBe(429);
    // The admin from the same address is not rate-limited by them.
    for (let i = 0; i < 25; i++) expect((await get(h.url, '/api/v1/whoami', bearer(admin), '127.0.0.9')).status).toBe(200);
  });
});
