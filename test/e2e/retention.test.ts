import { afterEach, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import { sql } from '../../src/store/sql.js';
import { join } from 'node:path';
import { call, createKey, openHub, runBaton, serve, type TestHub } from '../helpers.js';

const DAY = 86_400_000;
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON answers, checked field by field
type Body = any;

describe('retention', () => {
  let t: TestHub;
  let http: HttpHandle | null = null;
  let clock: ManualClock;
  afterEach(async () => {
    await http?.close();
    http = null;
    await t.close();
  });

  const open = async (config: Record<string, unknown>): Promise<Principal> => {
    clock = new ManualClock(Date.UTC(2026, 10, 1));
    t = await openHub({ clock, config: { retentionChunk: 100, ...config } });
    return t.hub.authenticate(await createKey(t, 'lead', 'lead'));
  };
  const COUNTS = {
    events: sql`SELECT count(*) AS n FROM events`,
    tasks: sql`SELECT count(*) AS n FROM tasks`,
    messages: sql`SELECT count(*) AS n FROM messages`,
    task_finishes: sql`SELECT count(*) AS n FROM task_finishes`,
  };
  const count = (table: keyof typeof COUNTS): Promise<number> =>
    t.hub.db.read(async (ex) => (await ex.get<{ n: number }>(COUNTS[table]))!.n);
  const createMany = (p: Principal, n: number) =>
    call<{ tasks: { id: string }[] }>(t.hub, p, 'task_create', { tasks: Array.from({ length: n }, (_, i) => ({ title: `t${i}` })) });

  it('prunes events beyond the count in bounded chunks; an older cursor gets cursor_expired (410) with the newest cursor', async () => {
    const lead = await open({ eventRetentionMax: 50, eventRetentionMs: 0 });
    const key = await createKey(t, 'watcher', 'worker');
    http = await serve(t.hub);
    const events = async (after: string, limit = 50): Promise<{ status: number; body: Body }> => {
      const res = await fetch(`${http!.url}/api/v1/events?after=${after}&types=task.created&limit=${limit}`, { headers: { authorization: `Bearer ${key}` } });
      return { status: res.status, body: (await res.json()) as Body };
    };
    const first = await events('start');
    expect(first.status).toBe(200);
    const oldCursor = first.body.cursor as string;
    await createMany(lead, 400);
    // One chunk per call: each call removes at most retentionChunk (100) rows.
    expect((await t.hub.prune(1)).events).toBe(100);
    const rest = await t.hub.prune();
    expect(rest.events).toBeGreaterThan(0);
    expect(await count('events')).toBe(50);

    const expired = await events(oldCursor);
    expect(expired.status).toBe(410);
    expect(expired.body.error.code).toBe('cursor_expired');
    const newest = expired.body.error.details.cursor as string;
    // The CLI says the same, with the cursor to resume from (its message points to details.cursor).
    const cli = await runBaton(['events', 'wait', '--after', oldCursor, '--types', 'task.created', '--data', join(t.dir, 'data')]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('baton: cursor_expired: ');
    expect(cli.stderr).toContain(`  details: {"cursor":"${newest}"}`);
    const resumed = await events(newest);
    expect(resumed.status).toBe(200);
    expect(resumed.body.events).toEqual([]);
    // 'start' is the oldest event kept (never expired); an event's id is the cursor after it, so
    // a cursor inside what is kept still reads, and the newest kept event's id is details.cursor.
    const all = await events('start', 200);
    expect(all.status).toBe(200);
    expect(all.body.events.length).toBe(50);
    expect(all.body.cursor).toBe(newest);
    expect(all.body.events[49].id).toBe(newest);
    const kept = await events(all.body.events[39].id as string);
    expect(kept.status).toBe(200);
    expect(kept.body.events.map((e: { id: string }) => e.id)).toEqual(all.body.events.slice(40).map((e: { id: string }) => e.id));
    // Pruning events leaves the audit chain alone: it still verifies.
    await t.hub.deferred.flush();
    expect((await t.hub.verifyAudit()).ok).toBe(true);
  });

  it('prunes events by age and never the newest', async () => {
    const lead = await open({ eventRetentionMs: 3_600_000, eventRetentionMax: 0 });
    await createMany(lead, 30);
    clock.advance(2 * 3_600_000);
    expect((await t.hub.prune()).events).toBeGreaterThanOrEqual(29);
    expect(await count('events')).toBe(1); // the newest row stays: ids continue from it
    await createMany(lead, 3);
    // Once it is no longer the newest, the old one goes; the three young ones stay.
    expect((await t.hub.prune()).events).toBe(1);
    expect(await count('events')).toBe(3);
  });

  it('purges finished tasks a quarter of retentionChunk at a time, and a whole run catches up', async () => {
    const lead = await open({ taskRetentionMs: DAY, eventRetentionMax: 0, eventRetentionMs: 0 });
    const w = await t.hub.authenticate(await createKey(t, 'w', 'worker'));
    await createMany(lead, 60);
    for (;;) {
      const { task } = await call<{ task: { id: string; lease: { token: number } } | null }>(t.hub, w, 'task_claim', {});
      if (task === null) break;
      await call(t.hub, w, 'task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
    }
    clock.advance(2 * DAY);
    // retentionChunk is 100 here: a task chunk is 25 (each deleted task touches pages of its own).
    expect((await t.hub.prune(1)).tasks).toBe(25);
    expect(await count('tasks')).toBe(35);
    // A run goes on (paced: it pauses after each chunk) until nothing is left.
    expect((await t.hub.prune()).tasks).toBe(35);
    expect(await count('tasks')).toBe(0);
  });

  it('purges finished tasks past their age, never one a task still depends on', async () => {
    const lead = await open({ taskRetentionMs: DAY, eventRetentionMax: 0, eventRetentionMs: 0, backoffBaseMs: 0 });
    const w = await t.hub.authenticate(await createKey(t, 'w', 'worker'));
    const made = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', {
      tasks: [
        { ref: 'a', title: 'a', priority: 1 },
        { ref: 'd', title: 'd', priority: 9 },
        { ref: 'b', title: 'b', depends_on: ['a'], priority: 2 },
        { ref: 'c', title: 'c', depends_on: ['a', 'd'], priority: 3 },
        { ref: 'x', title: 'lonely', priority: 1 },
      ],
    });
    const [a, d, b, c, x] = made.tasks.map((r) => r.id);
    const finish = async (id: string): Promise<void> => {
      const task = (await call<{ task: { lease: { token: number } } }>(t.hub, w, 'task_claim', { id })).task;
      await call(t.hub, w, 'task_complete', { id, lease_token: task.lease.token, result: { summary: 'ok' } });
    };
    await finish(a!);
    // x is released once first: its release is kept (task_finishes) when it is claimed again.
    const held = (await call<{ task: { lease: { token: number } } }>(t.hub, w, 'task_claim', { id: x })).task;
    await call(t.hub, w, 'task_release', { id: x, lease_token: held.lease.token });
    await finish(x!);
    expect(await count('task_finishes')).toBe(1);
    clock.advance(2 * DAY);
    await t.hub.prune();
    expect(await count('task_finishes')).toBe(0); // gone with its task
    const status = async (id: string): Promise<string | null> =>
      (await t.hub.db.read((ex) => ex.get<{ status: string }>(sql`SELECT status FROM tasks WHERE id = ${id}`)))?.status ?? null;
    expect(await status(x!)).toBeNull(); // nothing points at it: purged
    expect(await status(a!)).toBe('done'); // b and c depend on it: kept
    expect(await status(c!)).toBe('blocked');
    // The rest of the graph works as before: d done frees c, b is claimable.
    await finish(d!);
    expect(await status(c!)).toBe('ready');
    await finish(b!);
    await finish(c!);
    clock.advance(2 * DAY);
    let removed = 0;
    for (let i = 0; i < 4; i++) removed += (await t.hub.prune()).tasks;
    expect(removed).toBe(4); // b and c first, then a and d
    expect(await count('tasks')).toBe(0);
  });

  it('purges whole threads once every message is read and old; unread ones stay', async () => {
    const lead = await open({ messageRetentionMs: DAY, eventRetentionMax: 0, eventRetentionMs: 0 });
    const bob = await t.hub.authenticate(await createKey(t, 'bob', 'worker'));
    const read = await call<{ id: string }>(t.hub, lead, 'message_send', { to_agents: ['bob'], body: 'read me' });
    await call(t.hub, bob, 'message_send', { to_agents: ['lead'], body: 'reply', reply_to: read.id });
    await call(t.hub, bob, 'message_inbox', {});
    await call(t.hub, lead, 'message_inbox', {});
    await call(t.hub, bob, 'message_send', { to_agents: ['lead'], body: 'not read yet' });
    clock.advance(2 * DAY);
    expect((await t.hub.prune()).threads).toBe(1);
    expect(await count('messages')).toBe(1);
    // The thread of the unread one goes once it is read (and old).
    await call(t.hub, lead, 'message_inbox', {});
    expect((await t.hub.prune()).threads).toBe(1);
    expect(await count('messages')).toBe(0);
    // An acknowledgement that was asked for and not given keeps a read thread.
    const ask = await call<{ id: string }>(t.hub, lead, 'message_send', { to_agents: ['bob'], body: 'ack me', ack_required: true });
    await call(t.hub, bob, 'message_inbox', {});
    clock.advance(2 * DAY);
    expect((await t.hub.prune()).threads).toBe(0);
    await call(t.hub, bob, 'message_ack', { ids: [ask.id] });
    expect((await t.hub.prune()).threads).toBe(1);
  });
});
