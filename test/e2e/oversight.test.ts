import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { audiencesOf } from '../../src/core/audience.js';
import { ManualClock } from '../../src/core/clock.js';
import { isBatonError } from '../../src/core/errors.js';
import { eventsAfter } from '../../src/store/journal.js';
import { approvalGranted } from '../../src/store/oversight.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, type TestHub, runBaton, type CliResult } from '../helpers.js';

/**
 * Decisions and approvals. The CLI cases run bin/baton.js over dist/: `npm run build` first.
 */

interface Approval {
  id: string;
  action: string;
  details: string;
  risk: string;
  task_id: string | null;
  status: 'pending' | 'granted' | 'denied';
  requested_by: string;
  decided_by: string | null;
  decided_at: string | null;
  reason: string | null;
  created_at: string;
}
interface Decision {
  id: string;
  what: string;
  why: string;
  alternatives: string[];
  task_id: string | null;
  author: string;
  created_at: string;
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (isBatonError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal');
}

async function count(t: TestHub, table: 'approvals' | 'decisions'): Promise<number> {
  const q = table === 'approvals' ? sql`SELECT count(*) AS n FROM approvals` : sql`SELECT count(*) AS n FROM decisions`;
  return (await t.hub.db.read((ex) => ex.get<{ n: number }>(q)))!.n;
}

const baton = (args: string[]): Promise<CliResult> => runBaton(args);

async function post(url: string, key: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Resolves `p`, recording whether it settled before `ms` passed (to prove a call really waited). */
function watch<T>(p: Promise<T>): { settled: () => boolean; done: Promise<T> } {
  let settled = false;
  const done = p.finally(() => {
    settled = true;
  });
  return { settled: () => settled, done };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('decisions', () => {
  let t: TestHub;
  let clock: ManualClock;
  let worker: Principal;
  let lead: Principal;
  let observer: Principal;
  let other: Principal;
  let taskId: string;

  beforeAll(async () => {
    clock = new ManualClock(Date.UTC(2025, 5, 1));
    t = await openHub({ clock });
    worker = await t.hub.authenticate(await createKey(t, 'w', 'worker'));
    lead = await t.hub.authenticate(await createKey(t, 'l', 'lead'));
    observer = await t.hub.authenticate(await createKey(t, 'o', 'observer'));
    other = await t.hub.authenticate(await createKey(t, 'x', 'admin', 'elsewhere'));
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', { tasks: [{ title: 'pick a db' }] });
    taskId = tasks[0]!.id;
  });
  afterAll(async () => {
    await t.close();
  });

  it('records what, why and the alternatives, linked to a task, and lists them newest first with paging', async () => {
    const first = await call<{ id: string; created_at: string }>(t.hub, worker, 'decision_record', {
      what: 'Use SQLite',
      why: 'embedded, one file',
      alternatives: ['PostgreSQL', 'files'],
      task_id: taskId,
    });
    expect(first.id).toMatch(/^dec_[a-z2-7]{26}$/);
    const ids = [first.id];
    for (let i = 0; i < 4; i++) {
      clock.advance(1000);
      ids.push((await call<{ id: string }>(t.hub, lead, 'decision_record', { what: `d${i}`, why: 'because' })).id);
    }
    const all = await call<{ decisions: Decision[]; next_cursor: string | null }>(t.hub, observer, 'decision_list', {});
    expect(all.decisions.map((d) => d.id)).toEqual([...ids].reverse());
    expect(all.next_cursor).toBeNull();
    expect(all.decisions[4]).toEqual({
      id: first.id,
      what: 'Use SQLite',
      why: 'embedded, one file',
      alternatives: ['PostgreSQL', 'files'],
      task_id: taskId,
      author: 'w',
      created_at: first.created_at,
    });
    const ofTask = await call<{ decisions: Decision[] }>(t.hub, observer, 'decision_list', { task_id: taskId });
    expect(ofTask.decisions.map((d) => d.id)).toEqual([first.id]);

    const p1 = await call<{ decisions: Decision[]; next_cursor: string | null }>(t.hub, worker, 'decision_list', { limit: 3 });
    expect(p1.decisions.map((d) => d.id)).toEqual([ids[4], ids[3], ids[2]]);
    const p2 = await call<{ decisions: Decision[]; next_cursor: string | null }>(t.hub, worker, 'decision_list', {
      limit: 3,
      cursor: p1.next_cursor,
    });
    expect(p2.decisions.map((d) => d.id)).toEqual([ids[1], ids[0]]);
    expect(p2.next_cursor).toBeNull();

    const ev = await t.hub.db.read((ex) =>
      ex.get<{ type: string; data: string }>(sql`SELECT type, data FROM events WHERE subject = ${first.id}`),
    );
    expect(ev).toEqual({ type: 'decision.recorded', data: JSON.stringify({ task_id: taskId }) });
  });

  it('refuses bad input, unknown tasks and observers, writing nothing; never crosses projects', async () => {
    const before = await count(t, 'decisions');
    const cases: [Record<string, unknown>, string][] = [
      [{ what: '', why: 'x' }, 'invalid_input'],
      [{ what: 'x' }, 'invalid_input'],
      [{ what: 'x'.repeat(2001), why: 'y' }, 'too_large'],
      [{ what: 'x', why: 'y'.repeat(10_001) }, 'too_large'],
      [{ what: 'x', why: 'y', alternatives: Array.from({ length: 21 }, () => 'a') }, 'too_large'],
      [{ what: 'x', why: 'y', alternatives: ['a'.repeat(2001)] }, 'too_large'],
      [{ what: 'x', why: 'y', task_id: 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa' }, 'not_found'],
      [{ what: 'x', why: 'y', author: 'someone-else' }, 'invalid_input'],
    ];
    for (const [input, code] of cases) {
      expect((await refusal(call(t.hub, worker, 'decision_record', input))).code, JSON.stringify(input).slice(0, 60)).toBe(code);
    }
    expect((await refusal(call(t.hub, observer, 'decision_record', { what: 'x', why: 'y' }))).code).toBe('forbidden');
    // Another project's task is not found, from either side.
    expect((await refusal(call(t.hub, other, 'decision_record', { what: 'x', why: 'y', task_id: taskId }))).code).toBe('not_found');
    expect(await count(t, 'decisions')).toBe(before);
    await call(t.hub, other, 'decision_record', { what: 'theirs', why: 'theirs' });
    const mine = await call<{ decisions: Decision[] }>(t.hub, worker, 'decision_list', { limit: 200 });
    expect(mine.decisions.map((d) => d.what)).not.toContain('theirs');
    expect((await call<{ decisions: Decision[] }>(t.hub, other, 'decision_list', {})).decisions.map((d) => d.what)).toEqual(['theirs']);
    expect((await call<{ decisions: Decision[] }>(t.hub, other, 'decision_list', { task_id: taskId })).decisions).toEqual([]);
    expect((await refusal(call(t.hub, worker, 'decision_list', { cursor: 'bm9wZQ' }))).code).toBe('invalid_input');
  });
});

describe('approvals', () => {
  let t: TestHub;
  let http: HttpHandle;
  let adminKey: string;
  let workerKey: string;
  let worker: Principal;
  let bystander: Principal;
  let lead: Principal;
  let observer: Principal;
  let other: Principal;

  const request = (p: Principal, input: Record<string, unknown>): Promise<{ id: string; status: string }> =>
    call(t.hub, p, 'approval_request', input);
  const get = async (p: Principal, id: string, waitMs?: number): Promise<Approval | null> =>
    (await call<{ approval: Approval | null }>(t.hub, p, 'approval_get', { id, ...(waitMs === undefined ? {} : { wait_ms: waitMs }) }))
      .approval;
  const decide = (p: Principal, id: string, decision: 'grant' | 'deny', reason?: string): Promise<{ approval: Approval }> =>
    call(t.hub, p, 'approval_decide', { id, decision, ...(reason === undefined ? {} : { reason }) });

  beforeAll(async () => {
    t = await openHub({ config: { waitRecheckMs: 0 } }); // waits wake on the doorbell only
    http = await serve(t.hub);
    adminKey = t.adminKey;
    workerKey = await createKey(t, 'builder', 'worker');
    worker = await t.hub.authenticate(workerKey);
    bystander = await t.hub.authenticate(await createKey(t, 'bystander', 'worker'));
    lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    observer = await t.hub.authenticate(await createKey(t, 'watcher', 'observer'));
    other = await t.hub.authenticate(await createKey(t, 'intruder', 'admin', 'elsewhere'));
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('a worker requests over MCP and waits; an admin grants over REST; the waiting call returns granted', async () => {
    const agent = await httpAgent('v2-modern', http.url, workerKey);
    const req = await agent.ok<{ id: string; status: string }>('approval_request', {
      action: 'drop the users table',
      details: 'migration 12 replaces it',
      risk: 'critical',
    });
    expect(req.id).toMatch(/^apr_[a-z2-7]{26}$/);
    expect(req.status).toBe('pending');
    const started = Date.now();
    const waiting = watch(agent.ok<{ approval: Approval }>('approval_get', { id: req.id, wait_ms: 20_000 }));
    await sleep(300);
    expect(waiting.settled()).toBe(false);

    const res = await post(`${http.url}/api/v1/approvals/${req.id}/decide`, adminKey, { decision: 'grant', reason: 'backed up' });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ approval: { id: req.id, status: 'granted', reason: 'backed up' } });

    const got = await waiting.done;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(got.approval).toMatchObject({
      id: req.id,
      action: 'drop the users table',
      details: 'migration 12 replaces it',
      risk: 'critical',
      task_id: null,
      status: 'granted',
      requested_by: 'builder',
      decided_by: 'admin',
      reason: 'backed up',
    });
    expect(got.approval.decided_at).not.toBeNull();
    await agent.close();
  });

  it('a worker may request but not decide (forbidden on MCP and REST); the approval stays pending', async () => {
    const agent = await httpAgent('v1', http.url, workerKey);
    const { id } = await agent.ok<{ id: string }>('approval_request', { action: 'force push', risk: 'high' });
    const r = await agent.call('approval_decide', { id, decision: 'grant' });
    expect(r.isError).toBe(true);
    expect(r.data).toMatchObject({ error: { code: 'forbidden' } });
    const rest = await post(`${http.url}/api/v1/approvals/${id}/decide`, workerKey, { decision: 'grant' });
    expect(rest.status).toBe(403);
    for (const p of [lead, observer]) expect((await refusal(decide(p, id, 'grant'))).code).toBe('forbidden');
    expect((await get(worker, id))!.status).toBe('pending');
    const tools = (await agent.tools()).map((x) => x.name);
    expect(tools).toEqual(expect.arrayContaining(['approval_request', 'approval_get', 'decision_record']));
    // Listing every approval is for the humans who decide them.
    expect(tools).not.toContain('approval_list');
    expect(tools).not.toContain('approval_decide');
    await agent.close();
  });

  it('decides once: a second decision is a conflict and changes nothing', async () => {
    const { id } = await request(worker, { action: 'rotate the signing key', risk: 'medium' });
    const denied = await decide(t.admin, id, 'deny', 'not during the release');
    expect(denied.approval).toMatchObject({ status: 'denied', reason: 'not during the release', decided_by: 'admin' });
    const again = await refusal(decide(t.admin, id, 'grant'));
    expect(again.code).toBe('conflict');
    const deniedAgain = await refusal(decide(t.admin, id, 'deny'));
    expect(deniedAgain.code).toBe('conflict');
    expect(await get(worker, id)).toMatchObject({ status: 'denied', reason: 'not during the release' });
    const rest = await post(`${http.url}/api/v1/approvals/${id}/decide`, adminKey, { decision: 'grant' });
    expect(rest.status).toBe(409);
    expect(rest.body).toMatchObject({ error: { code: 'conflict' } });
    // A decided approval answers at once even when asked to wait.
    const started = Date.now();
    expect(await get(worker, id, 10_000)).toMatchObject({ status: 'denied' });
    const viaRest = await fetch(`${http.url}/api/v1/approvals/${id}?wait_ms=10000`, { headers: { authorization: `Bearer ${workerKey}` } });
    expect(viaRest.status).toBe(200);
    expect(await viaRest.json()).toMatchObject({ approval: { id, status: 'denied' } });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('tells only the requester of a decision (the event audience is its agent)', async () => {
    const { id } = await request(worker, { action: 'delete the staging bucket', risk: 'high' });
    await decide(t.admin, id, 'grant');
    const row = await t.hub.db.read((ex) =>
      ex.get<{ audience: string; data: string }>(
        sql`SELECT audience, data FROM events WHERE type = 'approval.decided' AND subject = ${id}`,
      ),
    );
    expect(row).toEqual({ audience: `agent:${worker.agentId}`, data: JSON.stringify({ status: 'granted', task_id: null }) });
    const seenBy = async (p: Principal): Promise<boolean> => {
      const rows = await t.hub.db.read((ex) => eventsAfter(ex, p.projectId, audiencesOf(p), 0, 10_000));
      return rows.some((e) => e.type === 'approval.decided' && e.subject === id);
    };
    expect(await seenBy(worker)).toBe(true);
    expect(await seenBy(bystander)).toBe(false);
    expect(await seenBy(lead)).toBe(false);
    expect(await seenBy(t.admin)).toBe(false);
    // The request itself is announced to the project.
    const requested = await t.hub.db.read((ex) =>
      ex.get<{ audience: string; data: string }>(
        sql`SELECT audience, data FROM events WHERE type = 'approval.requested' AND subject = ${id}`,
      ),
    );
    expect(requested).toEqual({ audience: 'project', data: JSON.stringify({ risk: 'high', task_id: null }) });
  });

  it('a bounded wait that ends with the approval still pending answers it as pending; waits above the maximum are refused', async () => {
    const { id } = await request(worker, { action: 'wait for me', risk: 'low' });
    const started = Date.now();
    expect(await get(worker, id, 300)).toMatchObject({ id, status: 'pending' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(await get(worker, id, 0)).toMatchObject({ id, status: 'pending' });
    expect(await get(observer, id)).toMatchObject({ id, status: 'pending' });
    expect((await refusal(get(worker, id, t.hub.config.waitMaxMs + 1))).code).toBe('invalid_input');
    expect((await refusal(get(worker, id, 300_001))).code).toBe('invalid_input');
  });

  it('refuses bad requests and unknown tasks, writing nothing; observers may read but not request', async () => {
    const before = await count(t, 'approvals');
    const cases: [Record<string, unknown>, string][] = [
      [{ action: 'x', risk: 'extreme' }, 'invalid_input'],
      [{ action: 'x' }, 'invalid_input'],
      [{ action: '', risk: 'low' }, 'invalid_input'],
      [{ action: 'x'.repeat(501), risk: 'low' }, 'too_large'],
      [{ action: 'x', risk: 'low', details: 'd'.repeat(10_001) }, 'too_large'],
      [{ action: 'x', risk: 'low', task_id: 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa' }, 'not_found'],
      [{ action: 'x', risk: 'low', status: 'granted' }, 'invalid_input'],
    ];
    for (const [input, code] of cases) {
      expect((await refusal(request(worker, input))).code, JSON.stringify(input).slice(0, 60)).toBe(code);
    }
    expect((await refusal(request(observer, { action: 'x', risk: 'low' }))).code).toBe('forbidden');
    expect(await count(t, 'approvals')).toBe(before);
    expect((await refusal(get(worker, 'apr_aaaaaaaaaaaaaaaaaaaaaaaaaa'))).code).toBe('not_found');
    expect((await refusal(get(worker, 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa'))).code).toBe('invalid_input');
    const { id } = await request(worker, { action: 'valid', risk: 'low' });
    expect((await refusal(decide(t.admin, id, 'grant', 'r'.repeat(2001)))).code).toBe('too_large');
    expect((await get(worker, id))!.status).toBe('pending');
  });

  it('never crosses projects: another project sees not_found and cannot decide', async () => {
    const { id } = await request(worker, { action: 'ours', risk: 'low' });
    expect((await refusal(get(other, id))).code).toBe('not_found');
    expect((await refusal(decide(other, id, 'grant'))).code).toBe('not_found');
    expect((await get(worker, id))!.status).toBe('pending');
    const theirs = await request(other, { action: 'theirs', risk: 'low' });
    expect((await refusal(get(worker, theirs.id))).code).toBe('not_found');
    expect((await refusal(decide(t.admin, theirs.id, 'grant'))).code).toBe('not_found');
    const list = await call<{ approvals: Approval[] }>(t.hub, t.admin, 'approval_list', { limit: 200 });
    expect(list.approvals.map((a) => a.id)).toContain(id);
    expect(list.approvals.map((a) => a.id)).not.toContain(theirs.id);
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', { tasks: [{ title: 'ours' }] });
    expect((await refusal(request(other, { action: 'x', risk: 'low', task_id: tasks[0]!.id }))).code).toBe('not_found');
  });

  it('lists approvals newest first, by status, with paging', async () => {
    const h = await openHub({ clock: new ManualClock(Date.UTC(2025, 0, 1)) });
    try {
      const w = await h.hub.authenticate(await createKey(h, 'w', 'worker'));
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push((await call<{ id: string }>(h.hub, w, 'approval_request', { action: `a${i}`, risk: 'low' })).id);
      }
      await call(h.hub, h.admin, 'approval_decide', { id: ids[1], decision: 'grant' });
      await call(h.hub, h.admin, 'approval_decide', { id: ids[3], decision: 'deny' });
      type Page = { approvals: Approval[]; next_cursor: string | null };
      const list = (input: Record<string, unknown>): Promise<Page> => call<Page>(h.hub, h.admin, 'approval_list', input);
      expect((await refusal(call(h.hub, w, 'approval_list', {}))).code).toBe('forbidden');
      // Same created_at everywhere (a manual clock that never moved): the id breaks ties, newest-first order stays total.
      const all = await list({});
      expect(all.approvals).toHaveLength(5);
      expect(new Set(all.approvals.map((a) => a.id))).toEqual(new Set(ids));
      expect((await list({ status: 'pending' })).approvals.map((a) => a.action).sort()).toEqual(['a0', 'a2', 'a4']);
      expect((await list({ status: 'granted' })).approvals.map((a) => a.id)).toEqual([ids[1]]);
      expect((await list({ status: 'denied' })).approvals.map((a) => a.id)).toEqual([ids[3]]);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const p: Page = await list({ limit: 2, ...(cursor === null ? {} : { cursor }) });
        seen.push(...p.approvals.map((a) => a.id));
        cursor = p.next_cursor;
      } while (cursor !== null);
      expect(seen).toEqual(all.approvals.map((a) => a.id));
      expect((await refusal(list({ status: 'maybe' }))).code).toBe('invalid_input');
    } finally {
      await h.close();
    }
  });

  it('approvalGranted is true only for a granted approval of that task in that project', async () => {
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', {
      tasks: [{ title: 'ship it', needs_approval: true }, { title: 'other' }],
    });
    const [a, b] = [tasks[0]!.id, tasks[1]!.id];
    const granted = (taskId: string, projectId = worker.projectId): Promise<boolean> =>
      t.hub.db.read((ex) => approvalGranted(ex, projectId, taskId));
    expect(await granted(a)).toBe(false);
    const denied = await request(worker, { action: 'ship', risk: 'high', task_id: a });
    await decide(t.admin, denied.id, 'deny');
    expect(await granted(a)).toBe(false);
    const pending = await request(worker, { action: 'ship', risk: 'high', task_id: a });
    expect(await granted(a)).toBe(false);
    await decide(t.admin, pending.id, 'grant');
    expect(await granted(a)).toBe(true);
    expect(await granted(b)).toBe(false);
    expect(await granted(a, other.projectId)).toBe(false);
  });

  it('a task with needs_approval cannot complete without a granted approval (also not after a denial)', async () => {
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', {
      tasks: [{ title: 'deploy', needs_approval: true, assignee: 'bystander' }],
    });
    const id = tasks[0]!.id;
    const claimed = await call<{ task: { lease: { token: number } } }>(t.hub, bystander, 'task_claim', { id });
    const token = claimed.task.lease.token;
    const complete = (): Promise<unknown> =>
      call(t.hub, bystander, 'task_complete', { id, lease_token: token, result: { summary: 'deployed' } });
    expect((await refusal(complete())).code).toBe('approval_required');
    const r = await request(bystander, { action: 'deploy to prod', risk: 'critical', task_id: id });
    expect((await refusal(complete())).code).toBe('approval_required');
    await decide(t.admin, r.id, 'deny');
    expect((await refusal(complete())).code).toBe('approval_required');
  });

  it('a task with needs_approval completes after `baton approve` grants its approval', async () => {
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', {
      tasks: [{ title: 'migrate', needs_approval: true, assignee: 'builder' }],
    });
    const id = tasks[0]!.id;
    const claimed = await call<{ task: { lease: { token: number } } }>(t.hub, worker, 'task_claim', { id });
    const token = claimed.task.lease.token;
    const complete = (): Promise<{ status: string }> =>
      call(t.hub, worker, 'task_complete', { id, lease_token: token, result: { summary: 'migrated' } });
    expect((await refusal(complete())).code).toBe('approval_required');
    const r = await request(worker, { action: 'run the migration', risk: 'high', task_id: id });
    const cli = await baton(['approve', r.id, '--data', join(t.dir, 'data'), '--json']);
    expect(cli.code).toBe(0);
    expect((await complete()).status).toBe('done');
  });

  it('`baton approve` in another process wakes the waiting agent; `baton deny` of a decided one is a conflict', async () => {
    const agent = await httpAgent('v2', http.url, workerKey);
    const { id } = await agent.ok<{ id: string }>('approval_request', { action: 'publish 2.0', risk: 'high' });
    const started = Date.now();
    const waiting = watch(agent.ok<{ approval: Approval }>('approval_get', { id, wait_ms: 30_000 }));
    const data = join(t.dir, 'data');
    await sleep(200);
    expect(waiting.settled()).toBe(false);
    const out = await baton(['approve', id, '--data', data, '--reason', 'release notes ok', '--as', 'maria', '--json']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const printed = JSON.parse(out.stdout) as { approval: Approval };
    expect(printed.approval).toMatchObject({ id, status: 'granted', decided_by: 'maria', reason: 'release notes ok' });
    const got = await waiting.done;
    expect(got.approval).toMatchObject({ id, status: 'granted', decided_by: 'maria' });
    expect(Date.now() - started).toBeLessThan(20_000);
    await agent.close();

    const deny = await baton(['deny', id, '--data', data]);
    expect(deny.code).toBe(1);
    expect(deny.stderr).toMatch(/conflict/);
    expect((await get(worker, id))!.status).toBe('granted');

    // A human-readable line without --json; deny records the reason.
    const second = await request(worker, { action: 'wipe cache', risk: 'low' });
    const plain = await baton(['deny', second.id, '--data', data, '--reason', 'no']);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toBe(`${second.id} denied (low: wipe cache; requested by builder)\n`);
    expect(await get(worker, second.id)).toMatchObject({ status: 'denied', reason: 'no', decided_by: 'operator' });

    // Another project's approval is not found from the default project; --in-project reaches it.
    const theirs = await request(other, { action: 'theirs', risk: 'low' });
    expect((await baton(['approve', theirs.id, '--data', data])).code).toBe(1);
    expect((await baton(['approve', theirs.id, '--data', data, '--in-project', 'elsewhere'])).code).toBe(0);
    expect((await get(other, theirs.id))!.status).toBe('granted');

    // No data dir: refused, and none is created.
    const missing = await baton(['approve', id, '--data', join(t.dir, 'nothing-here')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`no Baton database in ${join(t.dir, 'nothing-here')}`);
    expect(missing.stdout).toBe('');
  });
});
