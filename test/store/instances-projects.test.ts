/**
 * Writers on PostgreSQL take turns per project, not per server (docs/ARCHITECTURE.md "Writers
 * on PostgreSQL"): a write of one project does not wait for another project's, a project's own
 * writes still take turns, and the audit chain (the one point every audited write passes) stays
 * one unforked chain while projects write side by side on two instances.
 */
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/auth/principal.js';
import { Hub } from '../../src/hub.js';
import { projectLockKey } from '../../src/store/postgres.js';
import { call, createKey, openHub, testConfig, TEST_DATABASE_URL, type TestHub } from '../helpers.js';

describe('per-project writers on PostgreSQL', () => {
  let t: TestHub;
  let other: Hub;
  const config = { waitRecheckMs: 0, rateLimit: false, busyTimeoutMs: 60_000 } as const;

  beforeEach(async () => {
    t = await openHub({ backend: 'postgres', config });
    other = await Hub.open(testConfig(join(t.dir, 'data'), config), { checkOutputs: true, log: pino({ level: 'silent' }) });
  });
  afterEach(async () => {
    await other.close();
    await t.close();
  });

  it("a project's write waits for its project's lock while another project's write commits meanwhile, on the same instance", async () => {
    const a = await t.hub.authenticate(await createKey(t, 'lead-a', 'lead', 'alpha'));
    const b = await t.hub.authenticate(await createKey(t, 'lead-b', 'lead', 'beta'));
    const schema = t.hub.config.databaseSchema!;
    // An outside transaction holds project alpha's writer lock, as a long write of alpha's on
    // another instance would.
    const holder = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    let aDone = false;
    try {
      await holder.query('BEGIN');
      await holder.query({ text: 'SELECT pg_advisory_xact_lock($1)', values: [projectLockKey(schema, a.projectId)] });
      const pendingA = call(t.hub, a, 'task_create', { tasks: [{ title: 'alpha' }] }).then((r) => {
        aDone = true;
        return r;
      });
      // Beta's write is queued after alpha's, on the same hub, and commits while alpha's waits.
      await call(t.hub, b, 'task_create', { tasks: [{ title: 'beta' }] });
      expect(aDone).toBe(false);
      const listA = await call<{ tasks: unknown[] }>(t.hub, a, 'task_list', {});
      expect(listA.tasks).toHaveLength(0);
      await holder.query('COMMIT');
      await pendingA;
      expect(aDone).toBe(true);
    } finally {
      await holder.end();
    }
    const listA = await call<{ tasks: { title: string }[] }>(t.hub, a, 'task_list', {});
    expect(listA.tasks.map((x) => x.title)).toEqual(['alpha']);
  });

  it('eight projects writing side by side on two instances: every claim unique per project and one unforked audit chain', async () => {
    const projects = Array.from({ length: 8 }, (_, i) => `p${i}`);
    const leads: { hub: Hub; p: Principal }[] = [];
    const workers: { hub: Hub; p: Principal; project: string }[] = [];
    for (const [i, name] of projects.entries()) {
      const hub = i % 2 === 0 ? t.hub : other;
      leads.push({ hub, p: await hub.authenticate(await createKey(t, `lead-${name}`, 'lead', name)) });
      for (let w = 0; w < 4; w++) {
        const wh = w % 2 === 0 ? t.hub : other;
        workers.push({ hub: wh, p: await wh.authenticate(await createKey(t, `w${w}-${name}`, 'worker', name)), project: name });
      }
    }
    await Promise.all(leads.map((l) => call(l.hub, l.p, 'task_create', { tasks: Array.from({ length: 10 }, (_, k) => ({ title: `t${k}` })) })));
    // Every worker claims and completes until its project has nothing left.
    const done = new Map<string, string[]>();
    await Promise.all(
      workers.map(async (w) => {
        for (;;) {
          const got = await call<{ task: { id: string; lease: { token: number } } | null }>(w.hub, w.p, 'task_claim', {});
          if (got.task === null) return;
          await call(w.hub, w.p, 'task_complete', { id: got.task.id, lease_token: got.task.lease.token, result: { summary: 'ok' } });
          const list = done.get(w.project) ?? [];
          list.push(got.task.id);
          done.set(w.project, list);
        }
      }),
    );
    for (const name of projects) {
      const ids = done.get(name) ?? [];
      expect(ids, name).toHaveLength(10);
      expect(new Set(ids).size, name).toBe(10);
    }
    await t.hub.deferred.flush();
    await other.deferred.flush();
    const verdict = await t.hub.verifyAudit();
    expect(verdict).toMatchObject({ ok: true });
    expect(verdict.rows).toBeGreaterThanOrEqual(8 * 10 * 2);
  });
});
