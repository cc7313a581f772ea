import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { join } from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { call, createKey, openHub, serve, stdioAgent, type TestHub } from '../helpers.js';
import { cookieOf, errorCode, http } from './http.js';
import { SseClient } from './sse.js';

/**
 * The event stream through a real HTTP client: visibility exactly as events_wait, resume by
 * Last-Event-ID without loss or duplicates, caps, slow consumers, cookie auth and its Origin
 * check, revocation, heartbeats, expired cursors and draining.
 */
let t: TestHub;
let h: HttpHandle;
const keys: Record<string, string> = {};
const who: Record<string, Principal> = {};
const open: SseClient[] = [];

async function stream(key: string | null, path = '/api/v1/events/stream', headers: Record<string, string> = {}): Promise<SseClient> {
  const c = await SseClient.open(h.url, path, { ...(key === null ? {} : { authorization: `Bearer ${key}` }), ...headers });
  open.push(c);
  return c;
}

beforeAll(async () => {
  t = await openHub({ config: { streamMaxPerPrincipal: 3, streamBufferBytes: 16_384, streamHeartbeatMs: 200, waitRecheckMs: 0 } });
  h = await serve(t.hub);
  for (const [name, role] of [
    ['alice', 'worker'],
    ['bob', 'worker'],
    ['carol', 'worker'],
    ['lead1', 'lead'],
  ] as const) {
    keys[name] = await createKey(t, name, role);
    who[name] = await t.hub.authenticate(keys[name]);
  }
});
// Every test starts with no stream open on the server (closes are seen by the server a moment later).
afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  for (let i = 0; i < 200 && h.streams.count > 0; i++) await new Promise((r) => setTimeout(r, 10));
  expect(h.streams.count).toBe(0);
});
afterAll(async () => {
  await h.close();
  await t.close();
});

const createTask = (p: Principal, title: string): Promise<{ tasks: { id: string }[] }> => call(t.hub, p, 'task_create', { tasks: [{ title }] });

describe('GET /api/v1/events/stream', () => {
  it('is an event stream: retry hint, id = events_wait cursor, event = type, data = the event as events_wait returns it', async () => {
    const s = await stream(keys.carol!);
    expect(s.status).toBe(200);
    expect(s.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(s.headers['cache-control']).toBe('no-store');
    expect(s.headers['content-security-policy']).toContain("default-src 'self'");
    const before = await call<{ cursor: string }>(t.hub, who.carol!, 'events_wait', {});
    const { tasks } = await createTask(who.alice!, 'streamed');
    const f = await s.next((x) => x.event === 'task.created', 'task.created');
    expect(s.retry).toBe(2000);
    const e = JSON.parse(f.data) as Record<string, unknown>;
    expect(e).toMatchObject({ type: 'task.created', subject: tasks[0]!.id, actor: 'alice', data: { status: 'ready', priority: 5 } });
    expect(f.id).toBe(e.id);
    // The same event, read with events_wait from the cursor before it, is byte for byte the same.
    const waited = await call<{ events: Record<string, unknown>[] }>(t.hub, who.carol!, 'events_wait', { after: before.cursor, types: ['task.created'] });
    expect(waited.events[0]).toEqual(e);
  });

  it('a private message never reaches a third viewer; its recipient sees it', async () => {
    const carol = await stream(keys.carol!);
    const bob = await stream(keys.bob!);
    await call(t.hub, who.alice!, 'message_send', { to_agents: ['bob'], subject: 'secret', body: 'for bob only', visibility: 'private' });
    await call(t.hub, who.alice!, 'memory_set', { key: 'alice-private', value: 'x', scope: 'agent' });
    // A public event after them: once carol has it, she would have had the private ones too.
    const marker = await createTask(who.alice!, 'after the secret');
    await carol.next((f) => f.event === 'task.created' && (JSON.parse(f.data) as { subject: string }).subject === marker.tasks[0]!.id, 'marker');
    const got = await bob.next((f) => f.event === 'message.received', 'bob receives the message');
    expect((JSON.parse(got.data) as { actor: string }).actor).toBe('alice');
    expect(carol.events().map((e) => e.type)).not.toContain('message.received');
    expect(carol.events().map((e) => e.type)).not.toContain('memory.set');
    expect(carol.frames.map((f) => f.data).join('\n')).not.toContain('alice-private');
    carol.close();
    bob.close();
  });

  it('resumes with Last-Event-ID (or ?after=) with no loss and no duplicates', async () => {
    const s = await stream(keys.carol!, '/api/v1/events/stream?types=task.created');
    const titles = Array.from({ length: 12 }, (_, i) => `r${i}`);
    const ids: string[] = [];
    for (const title of titles.slice(0, 5)) ids.push((await createTask(who.alice!, title)).tasks[0]!.id);
    await s.until(() => s.events().length >= 3, 'three events');
    const third = s.frames.filter((f) => f.event === 'task.created')[2]!;
    s.close();
    // Written while nobody listens.
    for (const title of titles.slice(5)) ids.push((await createTask(who.alice!, title)).tasks[0]!.id);
    // A viewer at the head shares the project's reads with the one catching up: it must get
    // neither the older events nor a repeat of the newest.
    const live = await stream(keys.bob!, '/api/v1/events/stream?types=task.created');
    const resumed = await stream(keys.carol!, '/api/v1/events/stream?types=task.created', { 'last-event-id': third.id! });
    await resumed.until(() => resumed.events().length >= 9, 'the rest');
    const final = (await createTask(who.alice!, 'final')).tasks[0]!.id;
    await resumed.until(() => resumed.events().length >= 10, 'the final one');
    await live.until(() => live.events().length >= 1, 'the final one, live');
    const seen = [...s.events().slice(0, 3), ...resumed.events()].map((e) => e.subject);
    expect(seen).toEqual([...ids, final]);
    expect(live.events().map((e) => e.subject)).toEqual([final]);
    ids.push(final);
    // ?after= does the same (Last-Event-ID wins when both are given).
    const viaQuery = await stream(keys.carol!, `/api/v1/events/stream?types=task.created&after=${third.id!}`);
    await viaQuery.until(() => viaQuery.events().length >= 10, 'the rest again');
    expect(viaQuery.events().map((e) => e.subject)).toEqual(ids.slice(3));
    resumed.close();
    viaQuery.close();
  });

  it('sees, live, a task claimed by an agent in another process (baton mcp over stdio on the same data dir)', async () => {
    const s = await stream(keys.carol!, '/api/v1/events/stream?types=task.created,task.claimed');
    const agent = await stdioAgent('v2', join(t.dir, 'data'), { BATON_TOKEN: keys.bob! });
    try {
      const created = await agent.ok<{ tasks: { id: string }[] }>('task_create', { tasks: [{ title: 'from another process' }] });
      const id = created.tasks[0]!.id;
      await s.next((f) => f.event === 'task.created' && (JSON.parse(f.data) as { subject: string }).subject === id, 'created', 15_000);
      await agent.ok('task_claim', { id });
      const claimed = await s.next((f) => f.event === 'task.claimed', 'claimed', 15_000);
      expect(JSON.parse(claimed.data)).toMatchObject({ subject: id, actor: 'bob', data: { owner: 'bob' } });
    } finally {
      await agent.close();
    }
  });

  it('refuses bad cursors, types and parameters before streaming', async () => {
    for (const path of ['?after=nope', '?types=Bad', '?after=start&after=start', '?foo=1']) {
      const s = await stream(keys.carol!, `/api/v1/events/stream${path}`);
      expect(s.status, path).toBe(400);
      s.close();
    }
    const other = await stream(null);
    expect(other.status).toBe(401);
  });

  it('caps open streams per principal (429 with the reason); closing one frees a slot', async () => {
    const mine = [await stream(keys.bob!), await stream(keys.bob!), await stream(keys.bob!)];
    expect(mine.map((x) => x.status)).toEqual([200, 200, 200]);
    const over = await stream(keys.bob!);
    expect(over.status).toBe(429);
    expect(JSON.parse(over.body)).toMatchObject({ error: { code: 'rate_limited' } });
    expect(over.body).toContain('too many open event streams for this principal (at most 3)');
    expect(over.headers['retry-after']).toBe('5');
    // Another principal is not affected.
    expect((await stream(keys.carol!)).status).toBe(200);
    mine[0]!.close();
    for (let i = 0; i < 200 && h.streams.count > 3; i++) await new Promise((r) => setTimeout(r, 10));
    expect((await stream(keys.bob!)).status).toBe(200);
  });

  it('closes a consumer that stops reading with event: error slow_consumer, never buffering without bound', async () => {
    const slow = await stream(keys.lead1!);
    const fast = await stream(keys.carol!);
    slow.pause();
    // Large events: each lock.acquired / lock.released carries 50 paths of 200+ characters (~12 KB).
    const paths = Array.from({ length: 50 }, (_, i) => `d${i}/${'x'.repeat(240)}`);
    for (let i = 0; i < 250; i++) {
      const { lock } = await call<{ lock: { id: string } }>(t.hub, who.alice!, 'lock_acquire', { paths, reason: 'slow test' });
      await call(t.hub, who.alice!, 'lock_release', { id: lock.id });
    }
    const marker = await createTask(who.alice!, 'after the flood');
    // A reading consumer is not affected.
    await fast.next((f) => (JSON.parse(f.data) as { subject?: string }).subject === marker.tasks[0]!.id, 'the marker on the fast stream', 30_000);
    for (let i = 0; i < 100 && h.streams.stats.slow === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(h.streams.stats.slow).toBe(1);
    // Reading again, the slow one finds what was already sent, then the reason, then the end.
    slow.resume();
    await slow.until(() => slow.ended, 'the slow stream ends', 30_000);
    const last = slow.frames.at(-1)!;
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data)).toMatchObject({ reason: 'slow_consumer' });
    expect(slow.frames.some((f) => (JSON.parse(f.data) as { subject?: string }).subject === marker.tasks[0]!.id)).toBe(false);
    expect(fast.ended).toBe(false);
    fast.close();
  });

  it('a revoked key closes its stream at the next event', async () => {
    const key = await createKey(t, 'temp', 'worker');
    const s = await stream(key);
    expect(s.status).toBe(200);
    const tokens = await call<{ tokens: { id: string; name: string }[] }>(t.hub, t.admin, 'token_list', {});
    await call(t.hub, t.admin, 'token_revoke', { id: tokens.tokens.find((x) => x.name === 'temp')!.id });
    await createTask(who.alice!, 'after revoke');
    const f = await s.next((x) => x.event === 'error', 'error frame');
    expect(JSON.parse(f.data)).toMatchObject({ reason: 'unauthenticated' });
    await s.until(() => s.ended, 'end');
    expect(s.events().map((e) => e.type)).not.toContain('task.created');
  });

  it('sends a heartbeat comment on an idle stream', async () => {
    const s = await stream(keys.carol!);
    await s.until(() => s.comments >= 2, 'heartbeats');
    s.close();
  });

  it('an expired cursor opens with event: reset naming the newest cursor, then streams from it', async () => {
    const s0 = await call<{ cursor: string }>(t.hub, who.carol!, 'events_wait', {});
    for (let i = 0; i < 5; i++) await createTask(who.alice!, `old${i}`);
    // Retention keeps the newest 2 events.
    (t.hub.config as { eventRetentionMax: number }).eventRetentionMax = 2;
    (t.hub.config as { eventRetentionMs: number }).eventRetentionMs = 0;
    await t.hub.prune();
    (t.hub.config as { eventRetentionMax: number }).eventRetentionMax = 1_000_000;
    const s = await stream(keys.carol!, '/api/v1/events/stream', { 'last-event-id': s0.cursor });
    const reset = await s.next((f) => f.event === 'reset', 'reset');
    const body = JSON.parse(reset.data) as { cursor: string; reason: string };
    expect(body.reason).toBe('cursor_expired');
    expect(reset.id).toBe(body.cursor);
    const after = await call<{ events: unknown[] }>(t.hub, who.carol!, 'events_wait', { after: body.cursor, types: ['task.created'] });
    expect(after.events).toHaveLength(0); // the newest cursor: nothing after it yet
    const { tasks } = await createTask(who.alice!, 'new');
    const f = await s.next((x) => x.event === 'task.created', 'new event');
    expect((JSON.parse(f.data) as { subject: string }).subject).toBe(tasks[0]!.id);
    s.close();
  });
});

describe('the stream with a browser session', () => {
  it('takes the session cookie with its token (?csrf=) from this origin; refuses the cookie alone or from another origin (403 csrf)', async () => {
    const login = await http(h.url, 'POST', '/api/v1/session', { body: { key: keys.carol }, headers: { origin: h.url } });
    const cookie = cookieOf(login);
    const csrf = login.json.csrf as string;
    const path = `/api/v1/events/stream?csrf=${csrf}`;
    for (const [what, p, headers] of [
      ['cookie alone', '/api/v1/events/stream', { cookie, 'sec-fetch-site': 'same-origin' }],
      ['wrong token', `/api/v1/events/stream?csrf=${'A'.repeat(43)}`, { cookie, 'sec-fetch-site': 'same-origin' }],
    ] as [string, string, Record<string, string>][]) {
      const x = await stream(null, p, headers);
      expect(x.status, what).toBe(403);
      expect(JSON.parse(x.body), what).toMatchObject({ error: { code: 'csrf' } });
      x.close();
    }
    // The query token is for a cookie stream only.
    const bearer = await stream(keys.carol!, path);
    expect(bearer.status).toBe(400);
    bearer.close();
    const s = await stream(null, path, { cookie, 'sec-fetch-site': 'same-origin' });
    expect(s.status).toBe(200);
    const { tasks } = await createTask(who.alice!, 'seen in the browser');
    const f = await s.next((x) => x.event === 'task.created', 'event over the cookie stream');
    expect((JSON.parse(f.data) as { subject: string }).subject).toBe(tasks[0]!.id);
    for (const headers of [{ origin: 'http://localhost:1' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }] as Record<string, string>[]) {
      const x = await stream(null, path, { cookie, ...headers });
      expect(x.status, JSON.stringify(headers)).toBe(403);
      expect(JSON.parse(x.body)).toMatchObject({ error: { code: 'csrf' } });
      x.close();
    }
    // Logging out ends the session's stream at the next event.
    const out = await http(h.url, 'DELETE', '/api/v1/session', { headers: { cookie, origin: h.url, 'x-csrf-token': login.json.csrf as string } });
    expect(out.status).toBe(204);
    await createTask(who.alice!, 'after logout');
    const err = await s.next((x) => x.event === 'error', 'error after logout');
    expect(JSON.parse(err.data)).toMatchObject({ reason: 'unauthenticated' });
    expect(errorCode(await http(h.url, 'GET', '/api/v1/session', { headers: { cookie, 'x-csrf-token': csrf } }))).toBe('unauthenticated');
  });

  it('revoking the key closes its cookie streams at the next event, before any event is sent', async () => {
    const key = await createKey(t, 'browser-temp', 'worker');
    const login = await http(h.url, 'POST', '/api/v1/session', { body: { key }, headers: { origin: h.url } });
    const s = await stream(null, `/api/v1/events/stream?csrf=${login.json.csrf as string}`, { cookie: cookieOf(login), 'sec-fetch-site': 'same-origin' });
    expect(s.status).toBe(200);
    const tokens = await call<{ tokens: { id: string; name: string }[] }>(t.hub, t.admin, 'token_list', {});
    await call(t.hub, t.admin, 'token_revoke', { id: tokens.tokens.find((x) => x.name === 'browser-temp')!.id });
    await createTask(who.alice!, 'after the key of a session is revoked');
    const f = await s.next((x) => x.event === 'error', 'error frame');
    expect(JSON.parse(f.data)).toMatchObject({ reason: 'unauthenticated' });
    await s.until(() => s.ended, 'end');
    expect(s.events().map((e) => e.type)).not.toContain('task.created');
  });
});

describe('draining', () => {
  it('a graceful stop closes every stream with event: error shutting_down and finishes in time', async () => {
    const own = await openHub();
    const server = await serve(own.hub);
    try {
      const key = await createKey(own, 'watcher', 'worker');
      const s = await SseClient.open(server.url, '/api/v1/events/stream', { authorization: `Bearer ${key}` });
      expect(s.status).toBe(200);
      const drained = server.drain(5_000);
      const f = await s.next((x) => x.event === 'error', 'shutdown frame');
      expect(JSON.parse(f.data)).toMatchObject({ reason: 'shutting_down' });
      await s.until(() => s.ended, 'end');
      expect(await drained).toBe(true);
    } finally {
      await server.close();
      await own.close();
    }
  });
});

describe('a cookie stream and the idle limit', () => {
  it('an open stream is use of its session: it outlives sessionIdleMs while open', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const own = await openHub({ clock, config: { sessionIdleMs: 60_000 } });
    const server = await serve(own.hub);
    try {
      const key = await createKey(own, 'tab', 'worker');
      const login = await http(server.url, 'POST', '/api/v1/session', { body: { key }, headers: { origin: server.url } });
      const cookie = cookieOf(login);
      const csrf = login.json.csrf as string;
      const s = await SseClient.open(server.url, `/api/v1/events/stream?csrf=${csrf}`, { cookie, 'sec-fetch-site': 'same-origin' });
      expect(s.status).toBe(200);
      // No request but the stream for 40 s, then 40 s more: 80 s since the login, past the 60 s idle limit.
      for (const [i, title] of ['at 40 s', 'at 80 s', 'at 120 s'].entries()) {
        clock.advance(40_000);
        await call(own.hub, own.admin, 'task_create', { tasks: [{ title }] });
        await s.until(() => s.events().length === i + 1 || s.ended, title);
        expect(s.ended, title).toBe(false); // not closed with event: error unauthenticated
        expect(s.events(), title).toHaveLength(i + 1);
      }
      expect(s.ended).toBe(false);
      const view = await http(server.url, 'GET', '/api/v1/session', { headers: { cookie, 'x-csrf-token': csrf } });
      expect(view.status, view.text).toBe(200);
      s.close();
    } finally {
      await server.close();
      await own.close();
    }
  });
});

describe('a stream opened with an access token', () => {
  it('ends when the token expires, at the next event', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const own = await openHub({ clock });
    const server = await serve(own.hub);
    try {
      const key = await createKey(own, 'jwt-viewer', 'worker');
      const pair = await http(server.url, 'POST', '/api/v1/auth/token', { headers: { authorization: `Bearer ${key}` } });
      expect(pair.status, pair.text).toBe(200);
      const s = await SseClient.open(server.url, '/api/v1/events/stream', { authorization: `Bearer ${pair.json.access_token as string}` });
      expect(s.status).toBe(200);
      const admin = own.admin;
      await call(own.hub, admin, 'task_create', { tasks: [{ title: 'before expiry' }] });
      await s.next((f) => f.event === 'task.created', 'an event while the token is valid');
      clock.advance(own.hub.config.accessTokenTtlMs + 1_000);
      await call(own.hub, admin, 'task_create', { tasks: [{ title: 'after expiry' }] });
      const f = await s.next((x) => x.event === 'error', 'error after expiry');
      expect(JSON.parse(f.data)).toMatchObject({ reason: 'unauthenticated' });
      expect(s.events()).toHaveLength(1);
      s.close();
    } finally {
      await server.close();
      await own.close();
    }
  });

  it('ends when its refresh family is revoked (a spent refresh token presented again, S4)', async () => {
    const own = await openHub();
    const server = await serve(own.hub);
    try {
      const key = await createKey(own, 'jwt-viewer', 'worker');
      const pair = await http(server.url, 'POST', '/api/v1/auth/token', { headers: { authorization: `Bearer ${key}` } });
      const s = await SseClient.open(server.url, '/api/v1/events/stream', { authorization: `Bearer ${pair.json.access_token as string}` });
      expect(s.status).toBe(200);
      const refresh = { refresh_token: pair.json.refresh_token as string };
      expect((await http(server.url, 'POST', '/api/v1/auth/refresh', { body: refresh })).status).toBe(200);
      expect((await http(server.url, 'POST', '/api/v1/auth/refresh', { body: refresh })).status).toBe(401); // reuse: the family is revoked
      await call(own.hub, own.admin, 'task_create', { tasks: [{ title: 'after the family died' }] });
      const f = await s.next((x) => x.event === 'error', 'error after revocation');
      expect(JSON.parse(f.data)).toMatchObject({ reason: 'unauthenticated' });
      expect(s.events()).toHaveLength(0);
      s.close();
    } finally {
      await server.close();
      await own.close();
    }
  });
});
