import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { BatonError } from '../../src/core/errors.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, stdioAgent, type Agent, type TestHub, woken } from '../helpers.js';

type Inbox = { messages: { id: string; body: string; read_at: string | null; from: string; cursor: string }[]; cursor: string; unread: number };
type Search = { messages: { id: string; body: string; receipts?: { agent: string; read_at: string | null; acked_at: string | null }[] }[] };
type Events = { events: { type: string; subject: string; data: Record<string, unknown> | null; actor: string | null }[]; cursor: string };

describe('messages: visibility on every read path (S12)', () => {
  let t: TestHub;
  let http: HttpHandle;
  const keys: Record<string, string> = {};
  const agents: Record<string, Agent> = {};
  const who: Record<string, Principal> = {};

  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
    for (const [name, role] of [
      ['ann', 'worker'],
      ['bob', 'worker'],
      ['cat', 'lead'],
      ['dan', 'lead'],
      ['eve', 'admin'],
      ['obs', 'observer'],
    ] as const) {
      keys[name] = await createKey(t, name, role);
      who[name] = await t.hub.authenticate(keys[name]!);
      agents[name] = await httpAgent(name === 'bob' ? 'v1' : 'v2', http.url, keys[name]!);
    }
  });
  afterAll(async () => {
    await Promise.all(Object.values(agents).map((a) => a.close()));
    await http.close();
    await t.close();
  });

  /** Every way `name` could learn about a message whose body contains `marker`. */
  async function sees(name: string, marker: string): Promise<Record<string, boolean>> {
    const a = agents[name]!;
    const inbox = await a.ok<Inbox>('message_inbox', { query: marker, mark_read: false });
    const search = await a.ok<Search>('message_search', { query: marker });
    const all = await a.ok<Search>('message_search', {});
    const ev = await a.ok<Events>('events_wait', { after: 'start', types: ['message.received'], limit: 200 });
    const ids = new Set(all.messages.filter((m) => m.body.includes(marker)).map((m) => m.id));
    const rest = await fetch(`${http.url}/api/v1/messages?query=${encodeURIComponent(marker)}`, {
      headers: { authorization: `Bearer ${keys[name]}` },
    }).then((r) => r.json() as Promise<Search>);
    const threadHits = [...ids].length > 0;
    return {
      inbox: inbox.messages.some((m) => m.body.includes(marker)),
      search: search.messages.length > 0,
      list: threadHits,
      events: ev.events.some((e) => ids.has(e.subject)),
      rest: rest.messages.length > 0,
    };
  }
  const none = { inbox: false, search: false, list: false, events: false, rest: false };

  it('a private message reaches only its recipient; a third agent, even a lead or admin, finds it nowhere', async () => {
    const sent = await agents.ann!.ok<{ id: string; recipients: number }>('message_send', {
      to_agents: ['bob'],
      subject: 'secret plan',
      body: 'private-marker-1 the plan',
      visibility: 'private',
    });
    expect(sent.recipients).toBe(1);
    expect((await sees('bob', 'private-marker-1')).inbox).toBe(true);
    for (const third of ['cat', 'eve', 'obs']) expect(await sees(third, 'private-marker-1'), third).toEqual(none);
    // Not even by id: a reply to it or a thread lookup by a third agent finds nothing.
    const reply = await agents.cat!.call('message_send', { to_agents: ['ann'], body: 'x', reply_to: sent.id });
    expect(reply.data).toMatchObject({ error: { code: 'not_found' } });
    const thread = await agents.eve!.ok<Search>('message_search', { thread_id: sent.id });
    expect(thread.messages).toHaveLength(0);
  });

  it('a role message only reaches that role; admin only admins', async () => {
    await agents.cat!.ok('message_send', { to_role: 'worker', body: 'role-marker-2 for workers', visibility: 'role' });
    expect((await sees('ann', 'role-marker-2')).inbox).toBe(true);
    expect((await sees('bob', 'role-marker-2')).inbox).toBe(true);
    for (const other of ['dan', 'eve', 'obs']) expect(await sees(other, 'role-marker-2'), other).toEqual(none);

    // To everyone, but admin-only: only admins receive it.
    const r = await agents.cat!.ok<{ recipients: number }>('message_send', { to_all: true, body: 'admin-marker-3', visibility: 'admin' });
    expect(r.recipients).toBe(2); // eve and the first-start admin
    expect((await sees('eve', 'admin-marker-3')).inbox).toBe(true);
    for (const other of ['ann', 'bob', 'dan', 'obs']) expect(await sees(other, 'admin-marker-3'), other).toEqual(none);

    // The tier narrows the address, never widens it: a role-visible message to a lead from a
    // worker reaches nobody outside the addressed role.
    const narrowed = await agents.ann!.ok<{ recipients: number }>('message_send', {
      to_agents: ['bob', 'cat'],
      body: 'narrow-marker-4',
      visibility: 'role',
    });
    expect(narrowed.recipients).toBe(1);
    expect((await sees('cat', 'narrow-marker-4')).inbox).toBe(false);
  });

  it('a public message is searchable by everyone but delivered only to its recipients', async () => {
    await agents.dan!.ok('message_send', { to_agents: ['ann'], body: 'public-marker-5', visibility: 'public' });
    const ann = await sees('ann', 'public-marker-5');
    expect(ann.inbox).toBe(true);
    const obs = await sees('obs', 'public-marker-5');
    expect(obs).toMatchObject({ inbox: false, search: true, events: false });
  });

  it('inbox: unread first, marks read, per-recipient ack state visible to the sender', async () => {
    const first = await agents.cat!.ok<{ id: string }>('message_send', { to_agents: ['dan'], body: 'inbox-a', ack_required: true });
    await agents.cat!.ok('message_send', { to_agents: ['dan'], body: 'inbox-b', importance: 'urgent' });
    const box = await agents.dan!.ok<Inbox>('message_inbox', { unread_only: true });
    expect(box.messages.map((m) => m.body)).toEqual(['inbox-a', 'inbox-b']);
    expect(box.unread).toBe(0);
    const again = await agents.dan!.ok<Inbox>('message_inbox', { unread_only: true });
    expect(again.messages).toHaveLength(0);
    expect((await agents.dan!.ok<{ acked: string[] }>('message_ack', { ids: [first.id] })).acked).toEqual([first.id]);
    // Acking someone else's message does nothing.
    expect((await agents.obs!.ok<{ acked: string[] }>('message_ack', { ids: [first.id] })).acked).toEqual([]);
    const mine = await agents.cat!.ok<Search>('message_search', { query: 'inbox-a' });
    expect(mine.messages[0]!.receipts).toEqual([{ agent: 'dan', read_at: expect.any(String), acked_at: expect.any(String) }]);
    const urgent = await agents.dan!.ok<Inbox>('message_inbox', { importance: ['urgent'], mark_read: false });
    expect(urgent.messages.map((m) => m.body)).toEqual(['inbox-b']);
  });

  it('message events carry no content, and refusals write nothing', async () => {
    await agents.ann!.ok('message_send', { to_agents: ['bob'], body: 'content-marker-6 do not leak', subject: 'subject-marker-6' });
    const rows = await t.hub.db.read((ex) => ex.all<{ data: string | null }>(sql`SELECT data FROM events`));
    for (const r of rows) expect(r.data ?? '').not.toMatch(/marker-6/);
    const before = await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM messages`));
    for (const bad of [
      { to_agents: ['nobody'], body: 'x' },
      { to_agents: ['bob'], to_all: true, body: 'x' },
      { to_agents: ['bob'], body: '' },
      { to_agents: ['bob'], body: 'y'.repeat(20_001) },
    ]) {
      const r = await agents.ann!.call('message_send', bad);
      expect(r.isError, JSON.stringify(bad).slice(0, 60)).toBe(true);
    }
    const obs = await agents.obs!.call('message_send', { to_agents: ['bob'], body: 'x' });
    expect(obs.data).toMatchObject({ error: { code: 'forbidden' } });
    const after = await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM messages`));
    expect(after!.n).toBe(before!.n);
  });

  it('other projects never see a message', async () => {
    const outsider = await t.hub.authenticate(await createKey(t, 'ann', 'admin', 'elsewhere'));
    const r = await call<Search>(t.hub, outsider, 'message_search', {});
    expect(r.messages).toHaveLength(0);
    await expect(call(t.hub, outsider, 'message_send', { to_agents: ['bob'], body: 'x' })).rejects.toMatchObject({ code: 'not_found' });
    expect(who.ann!.projectId).not.toBe(outsider.projectId);
  });
});

describe('events_wait', () => {
  it('wakes a waiting agent when a message arrives, and resumes from a cursor without missing any', async () => {
    // The doorbell alone must wake it (no periodic re-check hides a broken bus).
    const t = await openHub({ config: { waitRecheckMs: 0 } });
    const http = await serve(t.hub);
    try {
      const a = await httpAgent('v2-modern', http.url, await createKey(t, 'a', 'worker'));
      const b = await httpAgent('v1', http.url, await createKey(t, 'b', 'worker'));
      const start = await a.ok<Events>('events_wait', {});
      const waiting = a.ok<Events>('events_wait', { after: start.cursor, wait_ms: 20_000 });
      await new Promise((r) => setTimeout(r, 50));
      await b.ok('message_send', { to_agents: ['a'], body: 'wake' });
      const woke = await woken(waiting);
      expect(woke.events.map((e) => e.type)).toEqual(['message.received']);
      expect(woke.events[0]!.actor).toBe('b');
      for (let i = 0; i < 3; i++) await b.ok('message_send', { to_agents: ['a'], body: `m${i}` });
      await b.ok('task_create', { tasks: [{ title: 'claimable' }] });
      const rest = await a.ok<Events>('events_wait', { after: woke.cursor });
      expect(rest.events.map((e) => e.type)).toEqual(['message.received', 'message.received', 'message.received', 'task.created']);
      const none = await a.ok<Events>('events_wait', { after: rest.cursor, wait_ms: 30 });
      expect(none.events).toHaveLength(0);
      expect(none.cursor).toBe(rest.cursor);
      // b's own actions are not news to b; a's reply is.
      const bStart = await b.ok<Events>('events_wait', { after: 'start', types: ['message.received'] });
      expect(bStart.events).toHaveLength(0);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await http.close();
      await t.close();
    }
  });

  it('wakes across separate baton mcp processes on one SQLite file', async () => {
    const t = await openHub();
    try {
      const data = join(t.dir, 'data');
      const a = await stdioAgent('v2', data, { BATON_TOKEN: await createKey(t, 'a', 'worker'), BATON_WAIT_RECHECK_MS: '0' });
      const b = await stdioAgent('v1', data, { BATON_TOKEN: await createKey(t, 'b', 'worker') });
      const start = await a.ok<Events>('events_wait', {});
      const waiting = a.ok<Events>('events_wait', { after: start.cursor, wait_ms: 20_000 });
      await new Promise((r) => setTimeout(r, 200));
      await b.ok('message_send', { to_agents: ['a'], body: 'across processes' });
      const woke = await woken(waiting);
      expect(woke.events.map((e) => e.type)).toEqual(['message.received']);
      const box = await a.ok<Inbox>('message_inbox', {});
      expect(box.messages.map((m) => m.body)).toEqual(['across processes']);
      await Promise.all([a.close(), b.close()]);
    } finally {
      await t.close();
    }
  });

  it('refuses waits beyond the configured maximum', async () => {
    const t = await openHub({ config: { waitMaxMs: 1000 } });
    try {
      const a = await t.hub.authenticate(await createKey(t, 'a', 'worker'));
      const err = await call(t.hub, a, 'events_wait', { wait_ms: 5000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BatonError);
      expect((err as BatonError).code).toBe('invalid_input');
    } finally {
      await t.close();
    }
  });
});
