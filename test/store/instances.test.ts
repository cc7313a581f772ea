/**
 * Several hub instances on one PostgreSQL database (here: two hubs in this process, each with its
 * own pool and its own LISTEN connection, on one schema; nothing is shared but the database).
 * Claims racing across instances never hand a task out twice, and a claim waiting on one
 * instance is woken by a task created on the other through NOTIFY (the recheck timer is off, so
 * only the doorbell can wake it).
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import { Hub } from '../../src/hub.js';
import pg from 'pg';
import { call, createKey, openHub, testConfig, TEST_DATABASE_URL, woken, type TestHub } from '../helpers.js';

describe('two hub instances on one PostgreSQL database', () => {
  let t: TestHub;
  let other: Hub;
  const config = { waitRecheckMs: 0, rateLimit: false } as const;

  beforeEach(async () => {
    t = await openHub({ backend: 'postgres', config });
    other = await Hub.open(testConfig(join(t.dir, 'data'), config), { checkOutputs: true, log: pino({ level: 'silent' }) });
  });
  afterEach(async () => {
    await other.close();
    await t.close();
  });

  it('shares one store: the second instance runs on the same schema', () => {
    expect(other.db.profile.name).toBe('postgres');
    expect(other.config.databaseSchema).toBe(t.hub.config.databaseSchema);
  });

  it('claims racing across both instances never hand a task out twice, and none comes back empty while tasks are ready', async () => {
    const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    await call(t.hub, lead, 'task_create', { tasks: Array.from({ length: 40 }, (_, i) => ({ title: `t${i}` })) });
    const workers: { hub: Hub; p: Principal }[] = [];
    for (let i = 0; i < 16; i++) {
      const key = await createKey(t, `w${i}`, 'worker');
      const hub = i % 2 === 0 ? t.hub : other;
      workers.push({ hub, p: await hub.authenticate(key) });
    }
    // As many claims as tasks: a claim that lost a race for a row must take another ready one
    // (SKIP LOCKED, or the instances taking turns), not come back empty.
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const w = workers[i % workers.length]!;
        return call<{ task: { id: string } | null }>(w.hub, w.p, 'task_claim', {});
      }),
    );
    const ids = results.flatMap((r) => (r.task === null ? [] : [r.task.id]));
    expect(ids).toHaveLength(40);
    expect(new Set(ids).size).toBe(40);
  });

  it('writes go on after the server drops every connection of the pool (as at its restart)', async () => {
    const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'before' }] });
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    try {
      const killed = await admin.query({
        text: 'SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1',
        values: [`baton:${t.hub.config.databaseSchema}`],
      });
      expect(killed.rowCount).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'after' }] });
    const list = await call<{ tasks: { title: string }[] }>(t.hub, lead, 'task_list', {});
    expect(list.tasks.map((x) => x.title).sort()).toEqual(['after', 'before']);
  });

  it('a claim waiting on one instance wakes when a task is created on the other', async () => {
    const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    const w = await other.authenticate(await createKey(t, 'w', 'worker'));
    // Far longer than woken()'s bound: only the cross-instance doorbell can end this wait in time.
    const waiting = call<{ task: { title: string } | null }>(other, w, 'task_claim', { wait_ms: 60_000 });
    // The claim waits on the doorbell and the other instance LISTENs before the task exists (it
    // rings once when the LISTEN comes up, so a task created before then would be found without NOTIFY).
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    try {
      const ready = async (): Promise<boolean> =>
        other.bus.waiting === 1 &&
        (await admin.query({ text: "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'", values: [`baton:${other.config.databaseSchema}:listen`] }))
          .rowCount! > 0;
      let ok = false;
      for (let i = 0; i < 400 && !(ok = await ready()); i++) await new Promise((r) => setTimeout(r, 25));
      expect(ok).toBe(true);
    } finally {
      await admin.end();
    }
    // The ring of the LISTEN coming up has been answered (the claim is waiting again).
    await new Promise((r) => setTimeout(r, 100));
    expect(other.bus.waiting).toBe(1);
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'from the other instance' }] });
    const got = await woken(waiting);
    expect(got.task?.title).toBe('from the other instance');
  });
});
