import { execFile } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import { isBatonError } from '../../src/core/errors.js';
import { releaseAgentLocks, releaseTaskLocks, sweepLocks } from '../../src/store/locks.js';
import { sql } from '../../src/store/sql.js';
import { BIN, call, createKey, httpAgent, openHub, serve, stdioAgent, storeEnvOf, tempDir, type TestHub } from '../helpers.js';

const run = promisify(execFile);

interface LockOut {
  id: string;
  agent: string;
  mode: 'exclusive' | 'shared';
  paths: string[];
  reason: string | null;
  task_id: string | null;
  created_at: string;
  expires_at: string;
}
interface Holder {
  lock_id: string;
  agent: string;
  mode: string;
  paths: string[];
  expires_at: string;
}

async function principal(t: TestHub, name: string, role = 'worker', project?: string): Promise<Principal> {
  return t.hub.authenticate(await createKey(t, name, role, project));
}

/** The BatonError an op call refuses with (fails the test if it succeeds). */
async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string; details: Record<string, unknown> | undefined }> {
  try {
    await p;
  } catch (err) {
    if (isBatonError(err)) return { code: err.code, message: err.message, details: err.details };
    throw err;
  }
  throw new Error('expected a refusal');
}

const acquire = (t: TestHub, who: Principal, input: Record<string, unknown>): Promise<{ lock: LockOut }> =>
  call<{ lock: LockOut }>(t.hub, who, 'lock_acquire', input);

async function lockCount(t: TestHub): Promise<number> {
  const row = await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM locks`));
  return row?.n ?? 0;
}

async function eventsOf(t: TestHub, subject: string): Promise<{ type: string; data: Record<string, unknown> }[]> {
  const rows = await t.hub.db.read((ex) =>
    ex.all<{ type: string; data: string | null }>(sql`SELECT type, data FROM events WHERE subject = ${subject} ORDER BY id`),
  );
  return rows.map((r) => ({ type: r.type, data: r.data === null ? {} : (JSON.parse(r.data) as Record<string, unknown>) }));
}

describe('locks over MCP (HTTP): racing acquirers', () => {
  let t: TestHub;
  let http: HttpHandle;
  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('two agents racing for overlapping locks (src/** vs src/a.ts): exactly one wins, the other learns who holds it and until when', async () => {
    const a = await httpAgent('v2', http.url, await createKey(t, 'racer-a', 'worker'));
    const b = await httpAgent('v1', http.url, await createKey(t, 'racer-b', 'worker'));
    const winners = new Set<string>();
    for (let round = 0; round < 8; round++) {
      const [ra, rb] = await Promise.all([
        a.call('lock_acquire', { paths: ['src/**'], reason: 'refactor' }),
        b.call('lock_acquire', { paths: ['./src/a.ts'], ttl_s: 60 }),
      ]);
      expect([ra.isError, rb.isError].filter((e) => !e)).toHaveLength(1);
      const [win, lose, winner, loser] = ra.isError ? [rb, ra, 'racer-b', b] : [ra, rb, 'racer-a', a];
      winners.add(winner);
      const lock = win.data.lock as LockOut;
      expect(lock.agent).toBe(winner);
      const error = lose.data.error as { code: string; message: string; details: { holders: Holder[] } };
      expect(error.code).toBe('conflict');
      expect(error.message).toBe(`paths are locked by ${winner} (exclusive, until ${lock.expires_at})`);
      expect(error.details.holders).toEqual([
        { lock_id: lock.id, agent: winner, mode: 'exclusive', paths: lock.paths, expires_at: lock.expires_at },
      ]);
      expect(Date.parse(error.details.holders[0]!.expires_at)).toBeGreaterThan(Date.now());
      // Who holds src/a.ts? Both agents get the same answer.
      const who = await loser.ok<{ locks: LockOut[] }>('lock_list', { path: 'src/a.ts' });
      expect(who.locks.map((l) => [l.id, l.agent])).toEqual([[lock.id, winner]]);
      const owner = winner === 'racer-a' ? a : b;
      expect(await owner.ok('lock_release', { id: lock.id })).toEqual({ released: true });
    }
    expect(await lockCount(t)).toBe(0);
    await Promise.all([a.close(), b.close()]);
  });

  it('refusals are tool errors with stable codes; nothing is written', async () => {
    const a = await httpAgent('v2-modern', http.url, await createKey(t, 'bad-paths', 'worker'));
    const cases: [Record<string, unknown>, string][] = [
      [{ paths: ['../outside'] }, 'invalid_input'],
      [{ paths: ['src/../../x'] }, 'invalid_input'],
      [{ paths: ['/etc/passwd'] }, 'invalid_input'],
      [{ paths: ['C:\\Windows'] }, 'invalid_input'],
      [{ paths: ['a\u0000b'] }, 'invalid_input'],
      [{ paths: ['src/[ab].ts'] }, 'invalid_input'],
      [{ paths: [] }, 'invalid_input'],
      [{ paths: ['x'], ttl_s: 0 }, 'invalid_input'],
      [{ paths: ['x'], ttl_s: 86_401 }, 'invalid_input'],
      [{ paths: ['x'], mode: 'write' }, 'invalid_input'],
      [{ paths: ['x'], holder: 'someone-else' }, 'invalid_input'],
      [{ paths: Array.from({ length: 51 }, (_, i) => `f${i}`) }, 'too_large'],
      [{ paths: ['x'.repeat(1025)] }, 'too_large'],
      [{ paths: ['x'], reason: 'r'.repeat(501) }, 'too_large'],
    ];
    for (const [input, code] of cases) {
      const r = await a.call('lock_acquire', input);
      expect(r.isError, JSON.stringify(input).slice(0, 80)).toBe(true);
      expect((r.data.error as { code: string }).code).toBe(code);
    }
    const bracket = await a.call('lock_acquire', { paths: ['src/{a,b}.ts'] });
    expect(JSON.stringify(bracket.data)).toContain('not supported');
    expect(await lockCount(t)).toBe(0);
    await a.close();
  });

  it('REST: POST /api/v1/locks, GET /api/v1/locks?path=…, DELETE /api/v1/locks/:id', async () => {
    const key = await createKey(t, 'rest-locker', 'worker');
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const made = await fetch(`${http.url}/api/v1/locks`, { method: 'POST', headers, body: JSON.stringify({ paths: ['docs/**'], mode: 'shared' }) });
    expect(made.status).toBe(200);
    const { lock } = (await made.json()) as { lock: LockOut };
    expect(lock).toMatchObject({ agent: 'rest-locker', mode: 'shared', paths: ['docs/**'] });
    const listed = (await (await fetch(`${http.url}/api/v1/locks?path=docs/x.md`, { headers })).json()) as { locks: LockOut[] };
    expect(listed.locks.map((l) => l.id)).toEqual([lock.id]);
    const none = (await (await fetch(`${http.url}/api/v1/locks?path=src/x.ts`, { headers })).json()) as { locks: LockOut[] };
    expect(none.locks).toEqual([]);
    const other = await createKey(t, 'rest-other', 'worker');
    const conflict = await fetch(`${http.url}/api/v1/locks`, {
      method: 'POST',
      headers: { ...headers, authorization: `Bearer ${other}` },
      body: JSON.stringify({ paths: ['docs/a.md'] }),
    });
    expect(conflict.status).toBe(409);
    expect(await conflict.json()).toMatchObject({ error: { code: 'conflict', details: { holders: [{ agent: 'rest-locker' }] } } });
    const del = await fetch(`${http.url}/api/v1/locks/${lock.id}`, { method: 'DELETE', headers });
    expect(del.status).toBe(200);
    expect(await lockCount(t)).toBe(0);
  });
});

describe('locks across processes (MCP stdio, one SQLite file; needs `npm run build`)', () => {
  it('two separate processes racing for overlapping locks: exactly one wins each round, and a waiter in one process wakes on a release in the other', async () => {
    const t = await openHub();
    const data = join(t.dir, 'data');
    const p1 = await stdioAgent('v2', data, { BATON_TOKEN: await createKey(t, 'proc-1', 'worker') });
    const p2 = await stdioAgent('v1', data, { BATON_TOKEN: await createKey(t, 'proc-2', 'worker'), BATON_WAIT_RECHECK_MS: '0' });
    try {
      for (let round = 0; round < 5; round++) {
        const [r1, r2] = await Promise.all([
          p1.call('lock_acquire', { paths: ['lib/*.ts'] }),
          p2.call('lock_acquire', { paths: ['lib/x.*'], mode: 'shared' }),
        ]);
        expect([r1.isError, r2.isError].filter((e) => !e)).toHaveLength(1);
        const [win, lose, owner, name] = r1.isError ? [r2, r1, p2, 'proc-2'] : [r1, r2, p1, 'proc-1'];
        const holders = (lose.data.error as { details: { holders: Holder[] } }).details.holders;
        expect(holders.map((h) => h.agent)).toEqual([name]);
        await owner.ok('lock_release', { id: (win.data.lock as LockOut).id });
      }
      const held = await p1.ok<{ lock: LockOut }>('lock_acquire', { paths: ['lib/**'] });
      const waiting = p2.call('lock_acquire', { paths: ['lib/y.ts'], wait_ms: 10_000 });
      await new Promise((r) => setTimeout(r, 200));
      const started = Date.now();
      await p1.ok('lock_release', { id: held.lock.id });
      const got = await waiting;
      expect(got.isError).toBe(false);
      expect((got.data.lock as LockOut).agent).toBe('proc-2');
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      await Promise.all([p1.close(), p2.close()]);
      await t.close();
    }
  });
});

/**
 * Costly patterns (at the caps, never matching each other) force the overlap work outside the
 * write transaction (ops/locks.ts): the first attempt hands it off, a later one decides the locks
 * that appeared meanwhile. The two requests overlap only through their last, cheap pattern.
 */
const costly = (tail: string): string => ('*' + 'a'.repeat(31)).repeat(8).slice(0, 256 - tail.length) + tail;
const costlySets = (): [string[], string[], string[]] => [
  [costly('c1'), costly('c2'), costly('c3')],
  [costly('a1'), costly('a2'), 'shared/x.ts'],
  [costly('b1'), costly('b2'), 'shared/**'],
];

describe('racing acquirers whose matching runs outside the write transaction', () => {
  it('in one process: of two overlapping exclusive requests exactly one wins, every round', async () => {
    const t = await openHub();
    try {
      const [held, wantA, wantB] = costlySets();
      await acquire(t, await principal(t, 'bystander'), { paths: held });
      const a = await principal(t, 'costly-a');
      const b = await principal(t, 'costly-b');
      for (let round = 0; round < 6; round++) {
        const [ra, rb] = await Promise.allSettled([acquire(t, a, { paths: wantA }), acquire(t, b, { paths: wantB })]);
        const won = [ra, rb].filter((r) => r.status === 'fulfilled');
        expect(won).toHaveLength(1);
        const lock = (won[0] as PromiseFulfilledResult<{ lock: LockOut }>).value.lock;
        const lost = (ra.status === 'rejected' ? ra : rb) as PromiseRejectedResult;
        expect(isBatonError(lost.reason) && lost.reason.code).toBe('conflict');
        const holders = (lost.reason as { details: { holders: Holder[] } }).details.holders;
        expect(holders.map((h) => [h.lock_id, h.paths])).toEqual([[lock.id, [lock.paths[2]]]]);
        await call(t.hub, lock.agent === 'costly-a' ? a : b, 'lock_release', { id: lock.id });
      }
    } finally {
      await t.close();
    }
  });

  it('across two `baton mcp` processes on one file: exactly one wins, every round', async () => {
    const t = await openHub();
    const data = join(t.dir, 'data');
    const [held, wantA, wantB] = costlySets();
    await acquire(t, await principal(t, 'bystander'), { paths: held });
    const p1 = await stdioAgent('v2', data, { BATON_TOKEN: await createKey(t, 'proc-a', 'worker') });
    const p2 = await stdioAgent('v1', data, { BATON_TOKEN: await createKey(t, 'proc-b', 'worker') });
    try {
      for (let round = 0; round < 5; round++) {
        const [r1, r2] = await Promise.all([p1.call('lock_acquire', { paths: wantA }), p2.call('lock_acquire', { paths: wantB })]);
        expect([r1.isError, r2.isError].filter((e) => !e)).toHaveLength(1);
        const [win, lose, owner, name] = r1.isError ? [r2, r1, p2, 'proc-b'] : [r1, r2, p1, 'proc-a'];
        const error = lose.data.error as { code: string; details: { holders: Holder[] } };
        expect(error.code).toBe('conflict');
        expect(error.details.holders.map((h) => h.agent)).toEqual([name]);
        await owner.ok('lock_release', { id: (win.data.lock as LockOut).id });
      }
    } finally {
      await Promise.all([p1.close(), p2.close()]);
      await t.close();
    }
  });
});

describe('lock rules (store level, manual clock)', () => {
  let t: TestHub;
  let clock: ManualClock;
  let a: Principal;
  let b: Principal;
  let lead: Principal;
  let observer: Principal;
  beforeAll(async () => {
    clock = new ManualClock();
    t = await openHub({ clock });
    a = await principal(t, 'agent-a');
    b = await principal(t, 'agent-b');
    lead = await principal(t, 'the-lead', 'lead');
    observer = await principal(t, 'watcher', 'observer');
  });
  afterAll(async () => {
    await t.close();
  });

  async function clear(): Promise<void> {
    await t.hub.db.write((ex) => ex.run(sql`DELETE FROM locks`));
  }

  it('shared + shared is fine; shared vs exclusive conflicts either way; an agent never conflicts with itself', async () => {
    await clear();
    const s1 = await acquire(t, a, { paths: ['src/*.ts'], mode: 'shared' });
    const s2 = await acquire(t, b, { paths: ['src/a.*'], mode: 'shared' });
    expect(s2.lock.mode).toBe('shared');
    const x = await refusal(acquire(t, b, { paths: ['src/a.ts'] }));
    expect(x.code).toBe('conflict');
    expect((x.details?.holders as Holder[]).map((h) => [h.lock_id, h.agent, h.mode, h.paths])).toEqual([
      [s1.lock.id, 'agent-a', 'shared', ['src/*.ts']],
    ]);
    // a's own shared lock does not stop a from taking the same paths exclusively... but b's does.
    const y = await refusal(acquire(t, a, { paths: ['src/a.ts'] }));
    expect((y.details?.holders as Holder[]).map((h) => h.agent)).toEqual(['agent-b']);
    await call(t.hub, b, 'lock_release', { id: s2.lock.id });
    const mine = await acquire(t, a, { paths: ['src/a.ts'], reason: 'editing' });
    expect(mine.lock).toMatchObject({ agent: 'agent-a', mode: 'exclusive', paths: ['src/a.ts'], reason: 'editing' });
    // An exclusive lock refuses a shared request too.
    const z = await refusal(acquire(t, b, { paths: ['src'], mode: 'shared' }));
    expect((z.details?.holders as Holder[]).map((h) => h.lock_id)).toEqual([mine.lock.id]);
    // Non-overlapping paths are independent.
    await acquire(t, b, { paths: ['src/b.js', 'test/**'] });
  });

  it('TTL: an expired lock no longer counts, is swept and announced; defaults to 30 minutes', async () => {
    await clear();
    const l = await acquire(t, a, { paths: ['lib/**'], ttl_s: 60 });
    expect(Date.parse(l.lock.expires_at) - Date.parse(l.lock.created_at)).toBe(60_000);
    clock.advance(59_999);
    expect((await refusal(acquire(t, b, { paths: ['lib/x.ts'] }))).code).toBe('conflict');
    clock.advance(1);
    expect((await call<{ locks: LockOut[] }>(t.hub, b, 'lock_list', {})).locks).toEqual([]);
    const taken = await acquire(t, b, { paths: ['lib/x.ts'] });
    expect(Date.parse(taken.lock.expires_at) - clock.now()).toBe(1_800_000);
    expect((await eventsOf(t, l.lock.id)).map((e) => [e.type, e.data.reason])).toEqual([
      ['lock.acquired', undefined],
      ['lock.released', 'expired'],
    ]);
  });

  it('acquiring exactly what you hold renews that lock; anything else is a new lock', async () => {
    await clear();
    const l = await acquire(t, a, { paths: ['renew/me', 'renew/too'], ttl_s: 10 });
    clock.advance(5_000);
    const r = await acquire(t, a, { paths: ['renew/too', 'renew/me'], ttl_s: 100 });
    expect(r.lock.id).toBe(l.lock.id);
    expect(Date.parse(r.lock.expires_at)).toBe(clock.now() + 100_000);
    expect(await lockCount(t)).toBe(1);
    const shared = await acquire(t, a, { paths: ['renew/me', 'renew/too'], mode: 'shared' });
    expect(shared.lock.id).not.toBe(l.lock.id);
    expect(await lockCount(t)).toBe(2);
    expect((await refusal(acquire(t, b, { paths: ['renew/me'] }))).code).toBe('conflict');
  });

  it('release: owner only; another agent is forbidden; a lead force-releases; a worker may not force', async () => {
    await clear();
    const l = await acquire(t, a, { paths: ['core/**'] });
    expect((await refusal(call(t.hub, b, 'lock_release', { id: l.lock.id }))).code).toBe('forbidden');
    expect((await refusal(call(t.hub, b, 'lock_force_release', { id: l.lock.id }))).code).toBe('forbidden');
    expect((await refusal(call(t.hub, observer, 'lock_acquire', { paths: ['x'] }))).code).toBe('forbidden');
    expect(await lockCount(t)).toBe(1);
    const forced = await call<{ released: boolean; lock: LockOut }>(t.hub, lead, 'lock_force_release', {
      id: l.lock.id,
      reason: 'agent-a is stuck',
    });
    expect(forced).toMatchObject({ released: true, lock: { id: l.lock.id, agent: 'agent-a' } });
    expect(await lockCount(t)).toBe(0);
    const events = await eventsOf(t, l.lock.id);
    expect(events[events.length - 1]).toEqual({
      type: 'lock.released',
      data: { paths: ['core/**'], mode: 'exclusive', agent: 'agent-a', reason: 'forced', by: 'the-lead' },
    });
    expect((await refusal(call(t.hub, a, 'lock_release', { id: l.lock.id }))).code).toBe('not_found');
    // The audit names the op and the lock (refusals are audited too, in batches).
    const audit = await t.hub.db.read((ex) =>
      ex.all<{ op: string; outcome: string }>(sql`SELECT op, outcome FROM audit WHERE target = ${l.lock.id} AND outcome = 'ok' ORDER BY id`),
    );
    expect(audit.map((r) => `${r.op}:${r.outcome}`)).toEqual(['lock_acquire:ok', 'lock_force_release:ok']);
  });

  it('another project cannot see, release or force-release a lock (not_found), nor is it blocked by it', async () => {
    await clear();
    const l = await acquire(t, a, { paths: ['shared/name.ts'] });
    const outsider = await principal(t, 'outsider', 'admin', 'other-project');
    for (const op of ['lock_release', 'lock_force_release']) {
      expect((await refusal(call(t.hub, outsider, op, { id: l.lock.id }))).code).toBe('not_found');
    }
    expect((await call<{ locks: LockOut[] }>(t.hub, outsider, 'lock_list', {})).locks).toEqual([]);
    const theirs = await acquire(t, outsider, { paths: ['shared/name.ts'] });
    expect(theirs.lock.agent).toBe('outsider');
    expect(await lockCount(t)).toBe(2);
  });

  it('lock_list: who holds a path (glob or concrete), by agent, paged', async () => {
    await clear();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push((await acquire(t, i % 2 === 0 ? a : b, { paths: [`pkg${i}/**`], mode: 'shared' })).lock.id);
      clock.advance(1);
    }
    const who = await call<{ locks: LockOut[] }>(t.hub, observer, 'lock_list', { path: 'pkg3/src/index.ts' });
    expect(who.locks.map((l) => [l.id, l.agent])).toEqual([[ids[3], 'agent-b']]);
    const glob = await call<{ locks: LockOut[] }>(t.hub, observer, 'lock_list', { path: 'pkg*/README.md' });
    expect(glob.locks.map((l) => l.id)).toEqual(ids);
    const byA = await call<{ locks: LockOut[] }>(t.hub, observer, 'lock_list', { agent: 'agent-a' });
    expect(byA.locks.map((l) => l.id)).toEqual([ids[0], ids[2], ids[4]]);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { locks: LockOut[]; next_cursor: string | null } = await call(t.hub, observer, 'lock_list', {
        limit: 2,
        path: '**',
        ...(cursor === null ? {} : { cursor }),
      });
      expect(page.locks.length).toBeLessThanOrEqual(2);
      seen.push(...page.locks.map((l) => l.id));
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(seen).toEqual(ids);
    expect((await refusal(call(t.hub, observer, 'lock_list', { path: '../x' }))).code).toBe('invalid_input');
    expect((await refusal(call(t.hub, observer, 'lock_list', { cursor: 'bogus' }))).code).toBe('invalid_input');
  });

  it('locks for a task end with it; an agent’s locks end with its session; the sweeper ends expired ones', async () => {
    await clear();
    expect((await refusal(acquire(t, a, { paths: ['t/x'], task_id: 'tsk_' + 'a'.repeat(26) }))).code).toBe('not_found');
    const task = await call<{ tasks: { id: string }[] }>(t.hub, lead, 'task_create', { tasks: [{ title: 'locked work' }] });
    const taskId = task.tasks[0]!.id;
    const withTask = await acquire(t, a, { paths: ['t/x'], task_id: taskId });
    expect(withTask.lock.task_id).toBe(taskId);
    const other = await acquire(t, a, { paths: ['t/y'] });
    const short = await acquire(t, b, { paths: ['t/z'], ttl_s: 1 });
    const projectId = a.projectId;

    const byTask = await t.hub.db.write((ex) => releaseTaskLocks(ex, projectId, taskId, clock.now()));
    expect(byTask.map((l) => [l.id, l.paths, l.agentName, l.projectId])).toEqual([[withTask.lock.id, ['t/x'], 'agent-a', projectId]]);
    expect(await t.hub.db.write((ex) => releaseTaskLocks(ex, 'prj_other', taskId, clock.now()))).toEqual([]);

    clock.advance(1_000);
    const swept = await t.hub.db.write((ex) => sweepLocks(ex, clock.now()));
    expect(swept.map((l) => l.id)).toEqual([short.lock.id]);

    const byAgent = await t.hub.db.write((ex) => releaseAgentLocks(ex, projectId, a.agentId, clock.now()));
    expect(byAgent.map((l) => l.id)).toEqual([other.lock.id]);
    expect(await lockCount(t)).toBe(0);
  });

  it('an agent may hold at most 100 live locks', async () => {
    await clear();
    for (let i = 0; i < 100; i++) await acquire(t, b, { paths: [`many/${i}`] });
    const r = await refusal(acquire(t, b, { paths: ['many/100'] }));
    expect(r.code).toBe('conflict');
    expect(await lockCount(t)).toBe(100);
  });
});

describe('waiting for a lock (real clock)', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await openHub({ config: { waitMaxMs: 10_000, waitRecheckMs: 0 } });
  });
  afterAll(async () => {
    await t.close();
  });

  it('a waiting acquire gets the paths as soon as the holder releases', async () => {
    const a = await principal(t, 'holder');
    const b = await principal(t, 'waiter');
    const held = await acquire(t, a, { paths: ['app/**'] });
    const started = Date.now();
    const waiting = acquire(t, b, { paths: ['app/main.ts'], wait_ms: 8_000 });
    await new Promise((r) => setTimeout(r, 150));
    await call(t.hub, a, 'lock_release', { id: held.lock.id });
    const got = await waiting;
    const took = Date.now() - started;
    expect(got.lock).toMatchObject({ agent: 'waiter', paths: ['app/main.ts'] });
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(3_000);
  });

  it('a wait that runs out is refused with the holder; waits above the maximum are refused at once', async () => {
    const a = await principal(t, 'holder2');
    const b = await principal(t, 'waiter2');
    const held = await acquire(t, a, { paths: ['srv/**'] });
    const started = Date.now();
    const r = await refusal(acquire(t, b, { paths: ['srv/x'], wait_ms: 300 }));
    const took = Date.now() - started;
    expect(r.code).toBe('conflict');
    expect((r.details?.holders as Holder[]).map((h) => [h.lock_id, h.agent])).toEqual([[held.lock.id, 'holder2']]);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(2_000);
    expect((await refusal(acquire(t, b, { paths: ['srv/x'], wait_ms: 10_001 }))).code).toBe('invalid_input');
  });
});

// ---------------------------------------------------------------- the git guard (needs `npm run build`)

describe('baton guard (git pre-commit hook)', () => {
  const tmp = tempDir('baton-guard-');
  let t: TestHub;
  let repo: string;
  let data: string;
  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: tmp.dir,
    GIT_CONFIG_NOSYSTEM: '1',
    BATON_LOG_LEVEL: 'warn',
    // The hook's `baton guard check` reaches the hub's store (PostgreSQL: its URL and schema).
    ...(data === undefined ? {} : storeEnvOf(data)),
    ...extra,
  });
  const git = (args: string[], extra: Record<string, string> = {}) =>
    run('git', args, { cwd: repo, env: env(extra), encoding: 'utf8' });
  async function exec(cmd: string, args: string[], extra: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await run(cmd, args, { cwd: repo, env: env(extra), encoding: 'utf8', timeout: 30_000 });
      return { code: 0, stdout, stderr };
    } catch (err) {
      const e = err as { code?: unknown; stdout?: string; stderr?: string };
      if (typeof e.code !== 'number') throw err;
      return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
    }
  }

  beforeAll(async () => {
    repo = join(tmp.dir, 'repo');
    mkdirSync(join(repo, 'src'), { recursive: true });
    t = await openHub({ dir: join(tmp.dir, 'hub') });
    data = join(tmp.dir, 'hub', 'data');
    await git(['init', '-q']);
    await git(['config', 'user.name', 'Guard Test']);
    await git(['config', 'user.email', 'guard@example.invalid']);
    await git(['config', 'commit.gpgsign', 'false']);
    writeFileSync(join(repo, 'README.md'), 'hello\n');
    await git(['add', 'README.md']);
    await git(['commit', '-q', '-m', 'initial']);
  });
  afterAll(async () => {
    await t.close();
    tmp.cleanup();
  });

  it('install refuses to replace a foreign hook without --force, then writes an executable Baton hook', async () => {
    const hook = join(repo, '.git', 'hooks', 'pre-commit');
    writeFileSync(hook, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const refused = await exec(process.execPath, [BIN, 'guard', 'install', '--data', data]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('--force');
    expect(readFileSync(hook, 'utf8')).toBe('#!/bin/sh\nexit 0\n');
    const ok = await exec(process.execPath, [BIN, 'guard', 'install', '--data', data, '--force']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim().split('\n')).toEqual([hook, join(repo, '.git', 'hooks', 'pre-push')]);
    const text = readFileSync(hook, 'utf8');
    expect(text).toContain('# baton-guard');
    expect(text).toContain(`'${data}'`);
    expect(statSync(hook).mode & 0o111).not.toBe(0);
    accessSync(hook, constants.X_OK);
    expect(readFileSync(join(repo, '.git', 'hooks', 'pre-commit.before-baton'), 'utf8')).toBe('#!/bin/sh\nexit 0\n');
    // Installing again over Baton's own hook needs no --force.
    expect((await exec(process.execPath, [BIN, 'guard', 'install', '--data', data])).code).toBe(0);
  });

  it('a commit touching a path another agent holds is refused naming the holder; the holder may commit', async () => {
    const a = await t.hub.localPrincipal('agent-a', 'worker');
    const lock = await acquire(t, a, { paths: ['src/**'], reason: 'refactoring src' });
    writeFileSync(join(repo, 'src', 'a.ts'), 'export const a = 1;\n');
    writeFileSync(join(repo, 'notes.txt'), 'free\n');
    await git(['add', 'src/a.ts', 'notes.txt']);

    const asB = await exec('git', ['commit', '-m', 'b edits a.ts'], { BATON_AGENT: 'agent-b' });
    expect(asB.code).not.toBe(0);
    expect(asB.stderr).toContain(`src/a.ts — locked by agent-a (exclusive, until ${lock.lock.expires_at})`);
    expect(asB.stderr).not.toContain('notes.txt —');
    expect((await git(['log', '--format=%s'])).stdout.trim().split('\n')).toEqual(['initial']);

    // Without a name every holder is "another agent".
    const anonymous = await exec('git', ['commit', '-m', 'nobody']);
    expect(anonymous.code).not.toBe(0);
    expect(anonymous.stderr).toContain('locked by agent-a');

    const asA = await exec('git', ['commit', '-q', '-m', 'a edits a.ts'], { BATON_AGENT: 'agent-a' });
    expect(asA.code).toBe(0);
    expect((await git(['log', '--format=%s'])).stdout.trim().split('\n')).toEqual(['a edits a.ts', 'initial']);

    // Once released, anyone may commit there.
    await call(t.hub, a, 'lock_release', { id: lock.lock.id });
    writeFileSync(join(repo, 'src', 'a.ts'), 'export const a = 2;\n');
    await git(['add', 'src/a.ts']);
    expect((await exec('git', ['commit', '-q', '-m', 'b after release'], { BATON_AGENT: 'agent-b' })).code).toBe(0);
  });

  it('guard check: a baked --agent, renames and deletions count, odd file names are handled without a shell', async () => {
    const a = await t.hub.localPrincipal('agent-a', 'worker');
    const lock = await acquire(t, a, { paths: ['src/a.ts', 'docs/*.md'], mode: 'shared' });
    await git(['mv', 'src/a.ts', 'moved.ts']);
    const odd = 'docs/$(touch pwned) `x`; \'q\'.md';
    mkdirSync(join(repo, 'docs'), { recursive: true });
    writeFileSync(join(repo, odd), 'x\n');
    await git(['add', '--', odd]);
    const r = await exec(process.execPath, [BIN, 'guard', 'check', '--data', data, '--agent', 'agent-b']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`src/a.ts — locked by agent-a (shared, until ${lock.lock.expires_at})`);
    expect(r.stderr).toContain(`${odd} — locked by agent-a`);
    expect(r.stderr).not.toContain('moved.ts —');
    expect(() => statSync(join(repo, 'pwned'))).toThrow();
    expect((await exec(process.execPath, [BIN, 'guard', 'check', '--data', data, '--agent', 'agent-a'])).code).toBe(0);

    // A hook with the agent baked in ignores BATON_AGENT.
    expect((await exec(process.execPath, [BIN, 'guard', 'install', '--data', data, '--agent', 'agent-b'])).code).toBe(0);
    const baked = await exec('git', ['commit', '-m', 'baked'], { BATON_AGENT: 'agent-a' });
    expect(baked.code).not.toBe(0);
    expect(baked.stderr).toContain('locked by agent-a');
    expect((await exec(process.execPath, [BIN, 'guard', 'install', '--agent', 'bad name; rm -rf /'])).code).toBe(2);
    await call(t.hub, a, 'lock_release', { id: lock.lock.id });
    expect((await exec('git', ['commit', '-q', '-m', 'after'], { BATON_AGENT: 'agent-a' })).code).toBe(0);
  });
});
