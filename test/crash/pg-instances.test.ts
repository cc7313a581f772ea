/**
 * Two `baton serve` processes on one PostgreSQL schema (needs `npm run build`): 16 agents over
 * MCP HTTP, half on each, claim and complete; a claim waiting on one instance is woken by a task
 * created on the other (NOTIFY); one instance is SIGKILLed mid-storm and its agents move to the
 * survivor. Afterwards every task is done exactly once, every acknowledged claim and completion
 * is in the database, and no lease token was granted twice (the harness's Ledger and storm).
 */
import { join } from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { call, createKey, openHub, storeEnvOf, TEST_DATABASE_URL, woken, type TestHub } from '../helpers.js';
import { crashRng, httpClient, kill9, Ledger, sleep, startServe, storm, until, type Served } from './harness.js';

const TASKS = 400;
const AGENTS = 16;

describe('two baton serve processes on one PostgreSQL schema', () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it(`${AGENTS} agents over MCP HTTP on both, cross-instance wake-up, kill -9 of one mid-storm: nothing lost, nothing done twice`, async () => {
    const r = crashRng('pg-instances');
    const t: TestHub = await openHub({ backend: 'postgres' });
    cleanups.push(() => t.close());
    const data = join(t.dir, 'data');
    // No periodic re-check of waits: only the cross-instance doorbell (NOTIFY) can wake one.
    // Leases of 5 s (the harness's 2 s, with room for a loaded machine: no lease may run out
    // before the kill, see "zero duplicate claims" below).
    const env: Record<string, string> = { ...storeEnvOf(data), BATON_WAIT_RECHECK_MS: '0', BATON_LEASE_MS: '5000' };
    const schema = env.BATON_DATABASE_SCHEMA!;
    const lead = await createKey(t, 'lead', 'lead');
    const names = Array.from({ length: AGENTS }, (_, i) => `agent${i + 1}`);
    const keys = new Map<string, string>();
    for (const n of names) keys.set(n, await createKey(t, n, 'worker'));
    const leadP = await t.hub.authenticate(lead);

    const a: Served = await startServe(data, env);
    cleanups.push(() => kill9(a.child));
    const b: Served = await startServe(data, env);
    cleanups.push(() => kill9(b.child));

    // Cross-instance wake-up: a claim waiting on b, a task created through a.
    const waiter = httpClient('mcp', () => b.url, keys.get(names[0]!)!);
    const leadA = httpClient('mcp', () => a.url, lead);
    cleanups.push(() => waiter.close(), () => leadA.close());
    // Far longer than woken()'s bound: without the doorbell the wait would end only at its deadline
    // (whose last attempt would find the task anyway).
    const waiting = waiter.tool('task_claim', { wait_ms: 45_000 });
    // The wait is listening once b's LISTEN connection is up (it rings once when it comes up, so
    // a create before then would wake the claim without NOTIFY).
    const watcher = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await watcher.connect();
    try {
      const listening = async (): Promise<boolean> =>
        (await watcher.query({ text: "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'", values: [`baton:${schema}:listen`] })).rowCount! > 0;
      await until(listening, 20_000, "b's LISTEN connection");
    } finally {
      await watcher.end();
    }
    await sleep(200);
    const created = await leadA.tool('task_create', { tasks: [{ title: 'wake-up' }] });
    expect(created.ok).toBe(true);
    const woke = await woken(waiting);
    expect(woke.ok && (woke.data.task as { title: string } | null)?.title).toBe('wake-up');
    const first = woke.ok ? (woke.data.task as { id: string; lease: { token: number } }) : null;
    await waiter.tool('task_complete', { id: first!.id, lease_token: first!.lease.token, result: { summary: 'woken' } });

    // The storm's board, made in-process (a third instance on the same schema).
    for (let start = 0; start < TASKS; start += 100) {
      await call(t.hub, leadP, 'task_create', { tasks: Array.from({ length: 100 }, (_, i) => ({ title: `storm ${start + i}`, max_attempts: 100 })) });
    }

    const ledger = new Ledger();
    let stopped = false;
    let aAlive = true;
    let claimsBeforeKill = 0;
    // Agents on a move to b when a is killed (as behind a load balancer).
    const clients = names.map((n, i) => httpClient('mcp', () => (i % 2 === 0 && aAlive ? a.url : b.url), keys.get(n)!));
    cleanups.push(() => clients.forEach((c) => c.close()));
    const agents = names.map((n, i) => storm(n, () => clients[i]!, ledger, r.fork(i + 1), () => stopped));
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await admin.connect();
    cleanups.push(() => admin.end());
    await admin.query(`SET search_path = "${schema}"`);
    const notDone = async (): Promise<number> => Number((await admin.query<{ n: string }>("SELECT count(*) AS n FROM tasks WHERE status <> 'done'")).rows[0]!.n);
    try {
      await until(() => ledger.completions.length >= TASKS / 4, 60_000, () => `a quarter done (${ledger.completions.length}; a: ${a.stderr().slice(-1000)})`);
      await sleep(r.int(0, 200));
      claimsBeforeKill = ledger.claims.length;
      await kill9(a.child);
      aAlive = false;
      // Leases held through a run out (5 s) and b's sweep hands those tasks out again.
      await until(async () => (await notDone()) === 0, 90_000, () => `every task done (left: ?; b: ${b.stderr().slice(-1000)})`);
    } finally {
      stopped = true;
      await Promise.all(agents);
    }

    const tasks = (await admin.query<{ id: string; status: string; lease_token: string; finish_owner: string | null; finish_token: string | null }>(
      'SELECT id, status, lease_token, finish_owner, finish_token FROM tasks',
    )).rows;
    expect(tasks).toHaveLength(TASKS + 1);
    expect(tasks.filter((x) => x.status !== 'done')).toEqual([]);
    const doneEvents = (await admin.query<{ subject: string; n: string }>("SELECT subject, count(*) AS n FROM events WHERE type = 'task.done' GROUP BY subject")).rows;
    expect(doneEvents).toHaveLength(TASKS + 1);
    expect(doneEvents.filter((e) => Number(e.n) !== 1), 'tasks done more than once').toEqual([]);
    const claimed = new Set(
      (await admin.query<{ k: string }>("SELECT subject || '/' || (data::json->>'owner') || '/' || (data::json->>'attempt') AS k FROM events WHERE type = 'task.claimed'")).rows.map((x) => x.k),
    );
    const byId = new Map(tasks.map((x) => [x.id, x]));
    // Zero duplicate claims: before the kill no lease ran out (5 s; every claim is completed at
    // once), so no task may have been handed out twice, whatever the fencing would have refused later.
    const early = ledger.claims.slice(0, claimsBeforeKill).map((c) => c.id);
    expect(early.length).toBeGreaterThan(0);
    expect(early.length - new Set(early).size, 'tasks claimed twice before the kill').toBe(0);
    const tokens = new Set<string>();
    for (const c of ledger.claims) {
      expect(claimed.has(`${c.id}/${c.agent}/${c.attempt}`), `acknowledged claim ${JSON.stringify(c)} is recorded`).toBe(true);
      expect(tokens.has(`${c.id}/${c.token}`), `lease token ${c.token} of ${c.id} granted twice`).toBe(false);
      tokens.add(`${c.id}/${c.token}`);
    }
    const completed = new Set<string>();
    for (const c of ledger.completions) {
      expect(completed.has(c.id), `${c.id} acknowledged as completed twice`).toBe(false);
      completed.add(c.id);
      const row = byId.get(c.id)!;
      expect([row.status, row.finish_owner, Number(row.finish_token)]).toEqual(['done', c.agent, c.token]);
    }
    expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });
    process.stderr.write(
      `[crash pg-instances] seed ${r.seed}: ${ledger.claims.length} acknowledged claims, ${ledger.completions.length} completions, ${ledger.gone} calls cut by the kill, refusals ${JSON.stringify(Object.fromEntries(ledger.refused))}\n`,
    );
  }, 180_000);
});
