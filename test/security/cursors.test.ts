/**
 * S9: event ids, event and inbox cursors and message positions are global row ids inside the hub;
 * what an agent sees of them is sealed to its project. A cursor of another project (or a tampered
 * one) is refused, the strings show no count of other projects' activity, and resuming from them
 * loses and repeats nothing. Through MCP over HTTP and REST, on real sockets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { sql } from '../../src/store/sql.js';
import { createKey, httpAgent, openHub, serve, type Agent, type TestHub } from '../helpers.js';

type Events = { events: { id: string; type: string; subject: string; data: Record<string, unknown> | null }[]; cursor: string };
type Inbox = { messages: { id: string; body: string; cursor: string }[]; cursor: string };
type Search = { messages: { id: string; cursor: string }[]; next_cursor: string | null };

const OPAQUE = /^[A-Za-z0-9_-]{22}$/;

describe('cursors and ids are opaque and per project (S9)', () => {
  let t: TestHub;
  let http: HttpHandle;
  const keys: Record<string, string> = {};
  const agents: Record<string, Agent> = {};

  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
    for (const [name, role, project] of [
      ['a-lead', 'lead', 'alpha'],
      ['a-worker', 'worker', 'alpha'],
      ['b-lead', 'lead', 'beta'],
      ['b-worker', 'worker', 'beta'],
      ['a-admin', 'admin', 'alpha'],
      ['b-admin', 'admin', 'beta'],
    ] as const) {
      keys[name] = await createKey(t, name, role, project);
      agents[name] = await httpAgent('v2', http.url, keys[name]);
    }
  });
  afterAll(async () => {
    await Promise.all(Object.values(agents).map((a) => a.close()));
    await http.close();
    await t.close();
  });

  const code = async (who: string, op: string, args: Record<string, unknown>): Promise<string | undefined> => {
    const r = await agents[who]!.call(op, args);
    return r.isError ? (r.data.error as { code: string }).code : undefined;
  };
  const rest = async (who: string, path: string, init: RequestInit = {}): Promise<{ status: number; code?: string }> => {
    const res = await fetch(`${http.url}/api/v1${path}`, {
      ...init,
      headers: { authorization: `Bearer ${keys[who]}`, 'content-type': 'application/json' },
    });
    const body = (await res.json()) as { error?: { code: string } };
    return { status: res.status, code: body.error?.code };
  };

  it("another project's cursors and ids are refused with invalid_input; so is a tampered one", async () => {
    await agents['a-lead']!.ok('message_send', { to_agents: ['a-worker'], body: 'one', visibility: 'public' });
    await agents['a-lead']!.ok('message_send', { to_agents: ['a-worker'], body: 'two', visibility: 'public' });
    await agents['a-lead']!.ok('task_create', { tasks: [{ title: 'alpha task' }] });
    const ev = await agents['a-worker']!.ok<Events>('events_wait', { after: 'start' });
    expect(ev.events.length).toBeGreaterThanOrEqual(3);
    const box = await agents['a-worker']!.ok<Inbox>('message_inbox', { mark_read: false });
    const search = await agents['a-worker']!.ok<Search>('message_search', { limit: 1 });
    expect(search.next_cursor).not.toBeNull();
    const received = ev.events.find((e) => e.type === 'message.received')!;
    const fromA = {
      eventsCursor: ev.cursor,
      eventId: ev.events[0]!.id,
      inboxCursor: box.cursor,
      messageCursor: box.messages[0]!.cursor,
      eventDataCursor: received.data!.cursor as string,
      searchCursor: search.next_cursor!,
    };
    for (const c of Object.values(fromA)) expect(c).toMatch(OPAQUE);

    // In their own project they work: the event id is the cursor right after that event.
    const afterFirst = await agents['a-worker']!.ok<Events>('events_wait', { after: fromA.eventId });
    expect(afterFirst.events.map((e) => e.id)).toEqual(ev.events.slice(1).map((e) => e.id));
    expect(await code('a-worker', 'message_inbox', { after: fromA.messageCursor, mark_read: false })).toBeUndefined();
    expect(await code('a-worker', 'message_search', { cursor: fromA.searchCursor })).toBeUndefined();

    for (const [name, c] of Object.entries(fromA)) {
      expect(await code('b-worker', 'events_wait', { after: c }), `${name} in events_wait`).toBe('invalid_input');
      expect(await code('b-worker', 'message_inbox', { after: c }), `${name} in message_inbox`).toBe('invalid_input');
      expect(await code('b-worker', 'message_search', { cursor: c }), `${name} in message_search`).toBe('invalid_input');
      expect(await rest('b-worker', `/events?after=${c}`), `${name} over REST`).toEqual({ status: 400, code: 'invalid_input' });
      expect(await rest('b-worker', '/messages/inbox', { method: 'POST', body: JSON.stringify({ after: c }) })).toEqual({
        status: 400,
        code: 'invalid_input',
      });
    }
    // One character changed: refused, never read as some other position.
    const c = fromA.eventsCursor;
    const tampered = c.slice(0, 5) + (c[5] === 'A' ? 'B' : 'A') + c.slice(6);
    expect(await code('a-worker', 'events_wait', { after: tampered })).toBe('invalid_input');
    expect(await code('a-worker', 'message_inbox', { after: tampered })).toBe('invalid_input');
    // The old numeric form is refused by the schema.
    expect(await code('a-worker', 'events_wait', { after: 0 })).toBe('invalid_input');
  });

  it("cursors and ids show nothing of another project's volume", async () => {
    const bw = agents['b-worker']!;
    const quietEvents = (await bw.ok<Events>('events_wait', {})).cursor;
    const quietInbox = (await bw.ok<Inbox>('message_inbox', { after: 'start', mark_read: false })).cursor;
    // Project alpha writes a lot: hundreds of events and dozens of messages.
    await agents['a-lead']!.ok('task_create', { tasks: Array.from({ length: 100 }, (_, i) => ({ title: `a${i}` })) });
    for (let i = 0; i < 20; i++) await agents['a-lead']!.ok('message_send', { to_agents: ['a-worker'], body: `busy ${i}` });
    // Beta's positions did not move, and neither did what beta sees of them.
    expect((await bw.ok<Events>('events_wait', {})).cursor).toBe(quietEvents);
    expect((await bw.ok<Events>('events_wait', { after: quietEvents })).cursor).toBe(quietEvents);
    expect((await bw.ok<Inbox>('message_inbox', { after: quietInbox, mark_read: false })).cursor).toBe(quietInbox);

    // Beta's own new events: ids of one length, no digits run, not in order (no counter to read).
    await agents['b-lead']!.ok('task_create', { tasks: Array.from({ length: 30 }, (_, i) => ({ title: `b${i}` })) });
    await agents['b-lead']!.ok('message_send', { to_agents: ['b-worker'], body: 'hello beta' });
    const got = await bw.ok<Events>('events_wait', { after: quietEvents, limit: 200 });
    expect(got.events.length).toBe(31);
    const ids = got.events.map((e) => e.id);
    for (const id of ids) expect(id).toMatch(OPAQUE);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).not.toEqual(ids);
    const rowIds = await t.hub.db.read((ex) =>
      ex.all<{ id: number }>(sql`SELECT e.id FROM events e JOIN projects p ON p.id = e.project_id WHERE p.name = ${'beta'} ORDER BY e.id`),
    );
    for (const { id } of rowIds) {
      const be = Buffer.alloc(8);
      be.writeBigUInt64BE(BigInt(id));
      for (const s of [...ids, got.cursor]) expect(Buffer.from(s, 'base64url').includes(be)).toBe(false);
    }
    const box = await bw.ok<Inbox>('message_inbox', { after: quietInbox, mark_read: false });
    expect(box.messages.map((m) => m.body)).toEqual(['hello beta']);
    expect(box.cursor).toMatch(OPAQUE);
    expect(box.cursor).toBe(box.messages[0]!.cursor);
  });

  it('paging with cursors and ids loses and repeats nothing while another project writes', async () => {
    const bw = agents['b-worker']!;
    const from = (await bw.ok<Events>('events_wait', {})).cursor;
    const created: string[] = [];
    for (let round = 0; round < 4; round++) {
      await agents['a-lead']!.ok('task_create', { tasks: Array.from({ length: 5 }, (_, i) => ({ title: `noise ${round}.${i}` })) });
      const made = await agents['b-lead']!.ok<{ tasks: { id: string }[] }>('task_create', {
        tasks: Array.from({ length: 4 }, (_, i) => ({ title: `beta ${round}.${i}` })),
      });
      created.push(...made.tasks.map((x) => x.id));
    }
    const seen: string[] = [];
    let cursor = from;
    for (let page = 0; page < 20; page++) {
      const r = await bw.ok<Events>('events_wait', { after: cursor, types: ['task.created'], limit: 3 });
      if (r.events.length === 0) break;
      seen.push(...r.events.map((e) => e.subject));
      // Alternate: resume from the page's cursor, or from the id of its last event.
      cursor = page % 2 === 0 ? r.cursor : r.events[r.events.length - 1]!.id;
    }
    expect(seen).toEqual(created);
  });

  it('a message.received event written before cursors were sealed shows a sealed cursor', async () => {
    const bw = agents['b-worker']!;
    const from = (await bw.ok<Events>('events_wait', {})).cursor;
    await t.hub.db.write((ex) =>
      ex.run(sql`INSERT INTO events (project_id, type, subject, actor, data, created_at, audience)
        SELECT id, 'message.received', 'msg_legacy', NULL, ${JSON.stringify({ from: 'x', cursor: 123_456 })}, 0, 'project'
        FROM projects WHERE name = ${'beta'}`),
    );
    const got = await bw.ok<Events>('events_wait', { after: from, types: ['message.received'] });
    expect(got.events.map((e) => e.subject)).toEqual(['msg_legacy']);
    const c = got.events[0]!.data!.cursor as string;
    expect(c).toMatch(OPAQUE);
    expect(await code('b-worker', 'message_inbox', { after: c, mark_read: false })).toBeUndefined();
  });

  it('audit row ids and cursors are sealed too: paging works in the project, its cursor nowhere else', async () => {
    type Audit = { rows: { id: string; op: string }[]; next_cursor: string | null };
    const aa = agents['a-admin']!;
    const first = await aa.ok<Audit>('audit_query', { limit: 3 });
    expect(first.next_cursor).toMatch(OPAQUE);
    const second = await aa.ok<Audit>('audit_query', { limit: 3, cursor: first.next_cursor });
    // Audit rows are written behind the answer: newer ones may have come since, never in between.
    const all = (await aa.ok<Audit>('audit_query', { limit: 500 })).rows.map((r) => r.id);
    expect(all.length).toBeGreaterThan(6);
    for (const id of all) expect(id).toMatch(OPAQUE);
    const at = all.indexOf(first.rows[0]!.id);
    expect(at).toBeGreaterThanOrEqual(0);
    expect([...first.rows, ...second.rows].map((r) => r.id)).toEqual(all.slice(at, at + 6));
    expect(await code('b-admin', 'audit_query', { cursor: first.next_cursor })).toBe('invalid_input');
    expect(await rest('b-admin', `/audit?cursor=${first.next_cursor}`)).toEqual({ status: 400, code: 'invalid_input' });
  });
});
