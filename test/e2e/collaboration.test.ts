import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, type TestHub } from '../helpers.js';

/** How the collaboration areas work together: locks follow tasks and sessions; retention sweeps. */
describe('collaboration: areas working together', () => {
  let t: TestHub;
  let clock: ManualClock;
  let lead: Principal;
  let a: Principal;
  let b: Principal;
  beforeEach(async () => {
    clock = new ManualClock(Date.UTC(2026, 10, 1));
    t = await openHub({ clock, config: { sessionRetentionMs: 86_400_000 } });
    lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    a = await t.hub.authenticate(await createKey(t, 'a', 'worker'));
    b = await t.hub.authenticate(await createKey(t, 'b', 'worker'));
  });
  afterEach(async () => {
    await t.close();
  });

  const locks = async (): Promise<string[]> =>
    (await t.hub.db.read((ex) => ex.all<{ id: string }>(sql`SELECT id FROM locks ORDER BY id`))).map((r) => r.id);
  const claimAndLock = async (p: Principal, title: string) => {
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', { tasks: [{ title }] });
    const id = tasks[0]!.id;
    const { task } = await call<{ task: { lease: { token: number } } }>(t.hub, p, 'task_claim', { id });
    const { lock } = await call<{ lock: { id: string } }>(t.hub, p, 'lock_acquire', { paths: [`src/${title}/**`], task_id: id });
    return { id, token: task.lease.token, lock: lock.id };
  };

  it('a lock taken for a task is released when the task completes, fails, is released or cancelled', async () => {
    const done = await claimAndLock(a, 'one');
    const failed = await claimAndLock(a, 'two');
    const released = await claimAndLock(a, 'three');
    const cancelled = await claimAndLock(a, 'four');
    const untied = (await call<{ lock: { id: string } }>(t.hub, a, 'lock_acquire', { paths: ['docs/**'] })).lock.id;
    expect(await locks()).toHaveLength(5);
    await call(t.hub, a, 'task_complete', { id: done.id, lease_token: done.token, result: { summary: 'ok' } });
    await call(t.hub, a, 'task_fail', { id: failed.id, lease_token: failed.token, error: 'boom' });
    await call(t.hub, a, 'task_release', { id: released.id, lease_token: released.token });
    await call(t.hub, lead, 'task_cancel', { id: cancelled.id });
    expect(await locks()).toEqual([untied]);
    const evts = await t.hub.db.read((ex) =>
      ex.all<{ subject: string; data: string }>(sql`SELECT subject, data FROM events WHERE type = 'lock.released'`),
    );
    expect(evts.map((e) => JSON.parse(e.data).reason)).toEqual(['task_ended', 'task_ended', 'task_ended', 'task_ended']);
    // b can now take what a held.
    expect((await call<{ lock: { agent: string } }>(t.hub, b, 'lock_acquire', { paths: ['src/**'] })).lock.agent).toBe('b');
  });

  it('a lock taken for a task is released when its lease expires', async () => {
    const x = await claimAndLock(a, 'slow');
    clock.advance(t.hub.config.leaseMs + 1);
    expect(await t.hub.sweep()).toBe(1);
    expect(await locks()).toEqual([]);
    expect((await call<{ lock: { agent: string } }>(t.hub, b, 'lock_acquire', { paths: ['src/slow/x.ts'] })).lock.agent).toBe('b');
    expect(x.lock).toMatch(/^lck_/);
  });

  it('ending a session releases the ender\u2019s locks', async () => {
    await call(t.hub, a, 'session_start', { goal: 'work' });
    await call(t.hub, a, 'lock_acquire', { paths: ['lib/**'] });
    await call(t.hub, b, 'lock_acquire', { paths: ['other/**'] });
    await call(t.hub, a, 'session_end', { summary: 'bye' });
    const left = await t.hub.db.read((ex) => ex.all<{ agent_name: string }>(sql`SELECT agent_name FROM locks`));
    expect(left.map((l) => l.agent_name)).toEqual(['b']);
  });

  it('retention: expired memory and locks, and old finished sessions go; nothing still held goes', async () => {
    await call(t.hub, a, 'memory_set', { key: 'short', value: 'x', ttl_s: 60 });
    await call(t.hub, a, 'memory_set', { key: 'long', value: 'y' });
    await call(t.hub, a, 'lock_acquire', { paths: ['brief/**'], ttl_s: 60 });
    await call(t.hub, b, 'lock_acquire', { paths: ['lasting/**'], ttl_s: 86_400 });
    await call(t.hub, a, 'session_start', {});
    await call(t.hub, a, 'session_end', { summary: 'old' });
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', { tasks: [{ title: 'handed' }] });
    const held = await call<{ task: { lease: { token: number } } }>(t.hub, b, 'task_claim', { id: tasks[0]!.id, lease_ms: 3_600_000 });
    await call(t.hub, b, 'session_start', {});
    await call(t.hub, b, 'session_end', { handoff: { summary: 'take it', task_ids: [tasks[0]!.id] } });
    await call(t.hub, lead, 'session_start', {});
    expect(held.task.lease.token).toBe(1);

    clock.advance(2 * 86_400_000);
    await t.hub.sweep();
    const memory = await t.hub.db.read((ex) => ex.all<{ key: string }>(sql`SELECT key FROM memory`));
    expect(memory.map((m) => m.key)).toEqual(['long']);
    expect(await locks()).toEqual([]); // both expired by now
    const sessions = await t.hub.db.read((ex) => ex.all<{ status: string; agent_id: string }>(sql`SELECT status, agent_id FROM sessions ORDER BY started_at`));
    // a's ended session is gone; b's is kept (its handoff is still pending); lead's is open.
    expect(sessions.map((s) => [s.agent_id, s.status])).toEqual([
      [b.agentId, 'ended'],
      [lead.agentId, 'open'],
    ]);
  });

  it('whoami tells a reconnecting agent its locks and unread mail', async () => {
    const http = await serve(t.hub);
    try {
      const agent = await httpAgent('v2-modern', http.url, await createKey(t, 'c', 'worker'));
      await agent.ok('lock_acquire', { paths: ['mine/**'] });
      await call(t.hub, lead, 'message_send', { to_agents: ['c'], body: 'hi' });
      const me = await agent.ok<{ locks: { paths: string[] }[]; unread: number; session: unknown }>('whoami');
      expect(me.locks.map((l) => l.paths)).toEqual([['mine/**']]);
      expect(me.unread).toBe(1);
      expect(me.session).toBeNull();
      await agent.close();
    } finally {
      await http.close();
    }
  });
});
