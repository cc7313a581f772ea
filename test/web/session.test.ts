import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSP } from '../../src/api/http/guard.js';
import type { HttpHandle } from '../../src/api/http/server.js';
import { ManualClock } from '../../src/core/clock.js';
import { call, createKey, openHub, serve, type TestHub } from '../helpers.js';
import { cookieOf, errorCode, http, type Reply } from './http.js';

/**
 * Browser sessions (issue 10, S23 CSRF half): a key exchanged for an HttpOnly cookie; every
 * cookie write needs the CSRF token and a same-origin request; bearer requests are unaffected;
 * /mcp never takes the cookie; logout, revocation and both timeouts end a session.
 */
let t: TestHub;
let h: HttpHandle;
let worker: string;
let observer: string;
const clock = new ManualClock(Date.UTC(2026, 5, 1));

beforeAll(async () => {
  t = await openHub({ clock, config: { authFailuresPerMinute: 3, authBlockMs: 60_000 } });
  h = await serve(t.hub);
  worker = await createKey(t, 'w1', 'worker');
  observer = await createKey(t, 'obs', 'observer');
});
afterAll(async () => {
  await h.close();
  await t.close();
});

const origin = (): string => h.url;
async function login(key: string, headers: Record<string, string> = {}): Promise<{ r: Reply; cookie: string; csrf: string }> {
  const r = await http(h.url, 'POST', '/api/v1/session', { body: { key }, headers: { origin: origin(), ...headers } });
  expect(r.status, r.text).toBe(200);
  return { r, cookie: cookieOf(r), csrf: r.json.csrf as string };
}

describe('POST /api/v1/session', () => {
  it('exchanges a key for an HttpOnly, SameSite=Strict cookie and tells the page who it is and what it may do', async () => {
    const { r, cookie, csrf } = await login(worker);
    const set = String(r.headers['set-cookie']);
    expect(set).toMatch(/^baton_session=[A-Za-z0-9_-]{43}; /);
    expect(set).toContain('HttpOnly');
    expect(set).toContain('SameSite=Strict');
    expect(set).toContain('Path=/');
    expect(set).not.toContain('Secure'); // plain HTTP on loopback; TLS adds it (transport-tls)
    expect(r.json).toMatchObject({ agent: 'w1', role: 'worker', project: 'default', server_admin: false });
    expect(csrf).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const ops = r.json.ops as string[];
    expect(ops).toContain('task_claim');
    expect(ops).not.toContain('token_create');
    expect(Date.parse(r.json.idle_expires_at as string)).toBe(clock.now() + 30 * 60_000);
    expect(Date.parse(r.json.expires_at as string)).toBe(clock.now() + 12 * 3_600_000);
    // The cookie's value is not the key, nor stored as is.
    expect(cookie).not.toContain(worker);
    expect(r.headers['content-security-policy']).toBe(CSP);
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['referrer-policy']).toBe('no-referrer');

    // The cookie alone (what another server on this host receives: cookies are not port-scoped)
    // neither reads the view nor learns the token.
    const alone = await http(h.url, 'GET', '/api/v1/session', { headers: { cookie } });
    expect(alone.status).toBe(403);
    expect(errorCode(alone)).toBe('csrf');
    expect(alone.text).not.toContain(csrf);
    const again = await http(h.url, 'GET', '/api/v1/session', { headers: { cookie, 'x-csrf-token': csrf } });
    expect(again.status).toBe(200);
    expect(again.json).toMatchObject({ agent: 'w1', role: 'worker' });
    expect(again.text).not.toContain(csrf); // only the login response carries it
  });

  it('an observer session lists only read ops', async () => {
    const { r } = await login(observer);
    const ops = r.json.ops as string[];
    expect(ops).toContain('task_list');
    expect(ops).not.toContain('task_create');
    expect(ops).not.toContain('approval_decide');
  });

  it('refuses a bad key with a generic 401, then throttles the address (S6)', async () => {
    const bad = `bat_${'A'.repeat(43)}`;
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await http(h.url, 'POST', '/api/v1/session', { body: { key: bad }, headers: { origin: origin(), 'x-forwarded-for': 'ignored' } });
      seen.push(r.status);
      expect(r.headers['set-cookie']).toBeUndefined();
      if (r.status === 401) expect(r.json.error).toMatchObject({ code: 'unauthenticated', message: 'missing or invalid credentials' });
    }
    expect(seen.slice(0, 3)).toEqual([401, 401, 401]);
    expect(seen.at(-1)).toBe(429);
    // A valid key still logs in from the throttled address: only failures are refused.
    await login(worker);
    clock.advance(61_000);
  });

  it('refuses malformed bodies and a login from another site', async () => {
    for (const body of ['not json', '[]', { key: worker, extra: 1 }, { token: worker }]) {
      const r = await http(h.url, 'POST', '/api/v1/session', { body, headers: { origin: origin() } });
      expect([400, 401], JSON.stringify(body)).toContain(r.status);
    }
    clock.advance(61_000);
    const cross = await http(h.url, 'POST', '/api/v1/session', { body: { key: worker }, headers: { origin: 'http://localhost:1' } });
    expect(cross.status).toBe(403);
    expect(errorCode(cross)).toBe('csrf');
    const fetchSite = await http(h.url, 'POST', '/api/v1/session', { body: { key: worker }, headers: { 'sec-fetch-site': 'cross-site' } });
    expect(errorCode(fetchSite)).toBe('csrf');
    // A non-browser client (no Origin, no Sec-Fetch-Site) may log in.
    const curl = await http(h.url, 'POST', '/api/v1/session', { body: { key: worker } });
    expect(curl.status).toBe(200);
  });
});

describe('cookie-authenticated REST', () => {
  it('the cookie alone authorizes nothing: a read needs the token too (403 csrf), a write the token AND a same-origin request', async () => {
    const { cookie, csrf } = await login(worker);
    for (const path of ['/api/v1/tasks', '/api/v1/ops', '/api/v1/events?limit=1']) {
      const alone = await http(h.url, 'GET', path, { headers: { cookie } });
      expect(alone.status, path).toBe(403);
      expect(errorCode(alone), path).toBe('csrf');
      const wrong = await http(h.url, 'GET', path, { headers: { cookie, 'x-csrf-token': 'A'.repeat(43) } });
      expect(wrong.status, path).toBe(403);
    }
    const list = await http(h.url, 'GET', '/api/v1/tasks', { headers: { cookie, 'x-csrf-token': csrf } });
    expect(list.status, list.text).toBe(200);

    const body = { tasks: [{ title: 'from the browser' }] };
    const refusals: [string, Record<string, string>][] = [
      ['no token', { cookie, origin: origin() }],
      ['wrong token', { cookie, origin: origin(), 'x-csrf-token': `${csrf.slice(0, -1)}A` === csrf ? `${csrf.slice(0, -1)}B` : `${csrf.slice(0, -1)}A` }],
      ['token, cross-site origin', { cookie, origin: 'http://localhost:1', 'x-csrf-token': csrf }],
      ['token, no origin', { cookie, 'x-csrf-token': csrf }],
      ['token, cross-site fetch', { cookie, 'x-csrf-token': csrf, 'sec-fetch-site': 'same-site' }],
    ];
    for (const [what, headers] of refusals) {
      const r = await http(h.url, 'POST', '/api/v1/tasks', { body, headers });
      expect(r.status, what).toBe(403);
      expect(errorCode(r), what).toBe('csrf');
    }
    const none = await call<{ tasks: unknown[] }>(t.hub, t.admin, 'task_list', {});
    expect(none.tasks).toHaveLength(0); // nothing was written by the refused requests

    const ok = await http(h.url, 'POST', '/api/v1/tasks', { body, headers: { cookie, origin: origin(), 'x-csrf-token': csrf } });
    expect(ok.status, ok.text).toBe(200);
    const viaFetchSite = await http(h.url, 'POST', '/api/v1/tasks', {
      body: { tasks: [{ title: 'second' }] },
      headers: { cookie, 'sec-fetch-site': 'same-origin', 'x-csrf-token': csrf },
    });
    expect(viaFetchSite.status, viaFetchSite.text).toBe(200);
    const tasks = await call<{ tasks: { title: string; created_by?: string }[] }>(t.hub, t.admin, 'task_list', {});
    expect(tasks.tasks.map((x) => x.title).sort()).toEqual(['from the browser', 'second']);
  });

  it('a bearer request ignores any cookie and needs no CSRF token', async () => {
    const { cookie } = await login(observer);
    const r = await http(h.url, 'POST', '/api/v1/tasks', {
      body: { tasks: [{ title: 'bearer' }] },
      headers: { cookie, authorization: `Bearer ${worker}`, origin: 'http://localhost:1' },
    });
    expect(r.status, r.text).toBe(200);
  });

  it('an observer session is refused writes by its role, not let through', async () => {
    const { cookie, csrf } = await login(observer);
    const r = await http(h.url, 'POST', '/api/v1/tasks', { body: { tasks: [{ title: 'nope' }] }, headers: { cookie, origin: origin(), 'x-csrf-token': csrf } });
    expect(r.status).toBe(403);
    expect(errorCode(r)).toBe('forbidden');
  });

  it('the cookie never authenticates /mcp', async () => {
    const { cookie } = await login(worker);
    const r = await http(h.url, 'POST', '/mcp', {
      body: { jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} },
      headers: { cookie, origin: origin(), accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
    });
    expect(r.status).toBe(401);
  });

  it('a garbage or unknown cookie is 401', async () => {
    for (const cookie of ['baton_session=nope', `baton_session=${'A'.repeat(43)}`]) {
      const r = await http(h.url, 'GET', '/api/v1/tasks', { headers: { cookie } });
      expect(r.status, cookie).toBe(401);
    }
    clock.advance(61_000);
  });

  it('a bogus cookie on an unknown route or a wrong method is a failed credential (401, counted), not a 404 or 400', async () => {
    const cookie = `baton_session=${'B'.repeat(43)}`;
    const seen: number[] = [];
    const tries = [['GET', '/api/v1/no-such-route'], ['PUT', '/api/v1/session'], ['POST', '/api/v1/events/stream'], ['PATCH', '/api/v1/tasks'], ['GET', '/api/v1/x']] as const;
    for (const [method, path] of tries) {
      const r = await http(h.url, method, path, { headers: { cookie } });
      seen.push(r.status);
    }
    // authFailuresPerMinute is 3: then throttled like any failed authentication (S6).
    expect(seen.slice(0, 3)).toEqual([401, 401, 401]);
    expect(seen.at(-1)).toBe(429);
    clock.advance(61_000);
    // A live session on an unknown route: the session is checked first (token required), then 404.
    const { cookie: live, csrf } = await login(worker);
    expect(errorCode(await http(h.url, 'GET', '/api/v1/no-such-route', { headers: { cookie: live } }))).toBe('csrf');
    expect((await http(h.url, 'GET', '/api/v1/no-such-route', { headers: { cookie: live, 'x-csrf-token': csrf } })).status).toBe(404);
    clock.advance(61_000);
  });

  it('a 401 from a route that never reads the cookie (/mcp, /metrics), or a cross-site request, does not clear it', async () => {
    const { cookie, csrf } = await login(worker);
    // What a page on another port of this host can make the browser send (no-cors, credentials included).
    const attempts: [string, string, Record<string, string>][] = [
      ['GET', '/metrics', { cookie, origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site' }],
      ['POST', '/mcp', { cookie, origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site' }],
      ['GET', '/metrics', { cookie }],
      ['POST', '/mcp', { cookie, accept: 'application/json, text/event-stream' }],
      ['GET', '/api/v1/tasks', { cookie, origin: 'http://127.0.0.1:1', 'sec-fetch-site': 'same-site' }],
    ];
    const statuses: number[] = [];
    for (const [method, path, headers] of attempts) {
      const r = await http(h.url, method, path, { headers, ...(method === 'POST' ? { body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } } : {}) });
      statuses.push(r.status);
      expect(r.headers['set-cookie'], `${method} ${path}`).toBeUndefined();
    }
    // /metrics and /mcp never take the cookie (401: no credential; a cookie they read would give
    // the worker 403 or 200); the cross-site API read is refused as such.
    expect(statuses).toEqual([401, 401, 401, 401, 403]);
    expect((await http(h.url, 'GET', '/api/v1/session', { headers: { cookie, 'x-csrf-token': csrf } })).status).toBe(200);
    clock.advance(61_000); // the refused requests counted against the address
  });
});

describe('session end', () => {
  it('logout needs CSRF, ends the session server-side and clears the cookie', async () => {
    const { cookie, csrf } = await login(worker);
    const noToken = await http(h.url, 'DELETE', '/api/v1/session', { headers: { cookie, origin: origin() } });
    expect(noToken.status).toBe(403);
    expect(errorCode(noToken)).toBe('csrf');
    const out = await http(h.url, 'DELETE', '/api/v1/session', { headers: { cookie, origin: origin(), 'x-csrf-token': csrf } });
    expect(out.status).toBe(204);
    expect(String(out.headers['set-cookie'])).toMatch(/^baton_session=; .*Max-Age=0/);
    // The old cookie (a copy kept by an attacker) is dead.
    expect((await http(h.url, 'GET', '/api/v1/session', { headers: { cookie } })).status).toBe(401);
    const dead = await http(h.url, 'GET', '/api/v1/tasks', { headers: { cookie } });
    expect(dead.status).toBe(401);
    // The 401 clears the dead cookie, so the browser stops sending it.
    expect(String(dead.headers['set-cookie'])).toMatch(/^baton_session=; .*Max-Age=0/);
  });

  it('a key holds at most 20 sessions: the 21st login ends the oldest', async () => {
    const key = await createKey(t, 'many', 'worker');
    const sessions: { cookie: string; csrf: string }[] = [];
    for (let i = 0; i < 21; i++) {
      sessions.push(await login(key));
      clock.advance(1); // distinct creation times
    }
    const [first, ...rest] = sessions;
    expect((await http(h.url, 'GET', '/api/v1/session', { headers: { cookie: first!.cookie, 'x-csrf-token': first!.csrf } })).status).toBe(401);
    for (const { cookie, csrf } of rest) expect((await http(h.url, 'GET', '/api/v1/session', { headers: { cookie, 'x-csrf-token': csrf } })).status).toBe(200);
    clock.advance(61_000);
  });

  it('revoking the key ends its sessions at the next request', async () => {
    const key = await createKey(t, 'short', 'worker');
    const { cookie, csrf } = await login(key);
    expect((await http(h.url, 'GET', '/api/v1/tasks', { headers: { cookie, 'x-csrf-token': csrf } })).status).toBe(200);
    const tokens = await call<{ tokens: { id: string; name: string }[] }>(t.hub, t.admin, 'token_list', {});
    await call(t.hub, t.admin, 'token_revoke', { id: tokens.tokens.find((x) => x.name === 'short')!.id });
    expect((await http(h.url, 'GET', '/api/v1/tasks', { headers: { cookie } })).status).toBe(401);
    expect((await http(h.url, 'GET', '/api/v1/session', { headers: { cookie } })).status).toBe(401);
  });

  it('ends after the idle timeout; use keeps it alive until the absolute timeout', async () => {
    const idle = await login(worker);
    clock.advance(31 * 60_000);
    expect((await http(h.url, 'GET', '/api/v1/session', { headers: { cookie: idle.cookie } })).status).toBe(401);

    const busy = await login(worker);
    // Used every 20 minutes: never idle for 30, but 12 hours after login it ends.
    for (let i = 0; i < 35; i++) {
      clock.advance(20 * 60_000);
      expect((await http(h.url, 'GET', '/api/v1/tasks', { headers: { cookie: busy.cookie, 'x-csrf-token': busy.csrf } })).status, `after ${(i + 1) * 20} min`).toBe(200);
    }
    clock.advance(20 * 60_000); // 12 h 0 min since login
    expect((await http(h.url, 'GET', '/api/v1/tasks', { headers: { cookie: busy.cookie } })).status).toBe(401);
  });
});

describe('GET /api/v1/ops', () => {
  it('lists what the caller may call, by bearer or session; nothing without a credential', async () => {
    const names = (r: { json: Record<string, unknown> }): string[] => (r.json.ops as { name: string }[]).map((o) => o.name);
    const bearer = await http(h.url, 'GET', '/api/v1/ops', { headers: { authorization: `Bearer ${worker}` } });
    expect(bearer.status).toBe(200);
    expect(names(bearer)).toContain('task_claim');
    expect(names(bearer)).not.toContain('token_create');
    expect((bearer.json.ops as { name: string; method: string; path: string }[]).find((o) => o.name === 'task_create')).toMatchObject({ method: 'POST', path: '/api/v1/tasks' });
    const { cookie, csrf } = await login(observer);
    const viaCookie = await http(h.url, 'GET', '/api/v1/ops', { headers: { cookie, 'x-csrf-token': csrf } });
    expect(viaCookie.status).toBe(200);
    expect(names(viaCookie)).toContain('task_list');
    expect(names(viaCookie)).not.toContain('task_create');
    expect((await http(h.url, 'GET', '/api/v1/ops')).status).toBe(401);
    clock.advance(61_000);
  });

  it('GET /api/v1/session reports the idle limit from the latest use', async () => {
    const { cookie, csrf } = await login(worker);
    clock.advance(5 * 60_000);
    const r = await http(h.url, 'GET', '/api/v1/session', { headers: { cookie, 'x-csrf-token': csrf } });
    expect(Date.parse(r.json.idle_expires_at as string)).toBe(clock.now() + 30 * 60_000);
  });
});

describe('per-principal rate limits (S25) on the session routes', () => {
  it('login, GET /api/v1/ops and GET /api/v1/session take from the read/write buckets like any op', async () => {
    const rt = await openHub({ config: { rateLimitReadPerMin: 3, rateLimitWritePerMin: 2 } });
    const rh = await serve(rt.hub);
    try {
      const key = await createKey(rt, 'rl', 'worker');
      const logins: number[] = [];
      let first: Reply | undefined;
      for (let i = 0; i < 3; i++) {
        const r = await http(rh.url, 'POST', '/api/v1/session', { body: { key } });
        first ??= r;
        logins.push(r.status);
      }
      expect(logins).toEqual([200, 200, 429]);
      const cookie = cookieOf(first!);
      const headers = { cookie, 'x-csrf-token': first!.json.csrf as string };
      const reads: number[] = [];
      for (const path of ['/api/v1/session', '/api/v1/ops', '/api/v1/session', '/api/v1/ops']) reads.push((await http(rh.url, 'GET', path, { headers })).status);
      expect(reads).toEqual([200, 200, 200, 429]);
      const viaBearer = await http(rh.url, 'GET', '/api/v1/ops', { headers: { authorization: `Bearer ${key}` } });
      expect(viaBearer.status).toBe(429); // the same principal's bucket
      // Each refusal is counted with the ops' own (one login, one session read, one ops read).
      const metrics = await http(rh.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${rt.adminKey}` } });
      expect(metrics.text).toMatch(/^baton_rate_limited_total\{layer="op"\} 3$/m);
    } finally {
      await rh.close();
      await rt.close();
    }
  });
});
