import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import { BatonError } from '../../src/core/errors.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, type Agent, type TestHub } from '../helpers.js';

type Lease = { owner: string; token: number; expires_at: string };
type Task = { id: string; status: string; lease: Lease | null };
type Handoff = { id: string; from: string; to: Record<string, string>; status: string; task_ids: string[]; summary: string };
type Who = {
  agent: { name: string };
  session: null | { id: string; status: string; goal: string | null; checkpoints: number; last_checkpoint: null | Record<string, unknown> };
  pending_handoffs: { count: number; first: { id: string; from: string; summary: string; tasks: number }[] };
  held_tasks: { id: string }[];
};
type Accepted = { handoff: Handoff; tasks: { id: string; lease: Lease }[]; not_transferred: { id: string; status: string }[] };

function codeOf(r: { isError: boolean; data: Record<string, unknown> }): string {
  return r.isError ? (r.data.error as { code: string }).code : 'ok';
}

async function refusal(p: Promise<unknown>): Promise<BatonError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BatonError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

function gitIn(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8' });
}

describe('sessions and handoffs over MCP HTTP', () => {
  let t: TestHub;
  let http: HttpHandle;
  const agents: Agent[] = [];
  const temp: string[] = [];
  beforeAll(async () => {
    // Checkpoint commits may go only to allowed repositories: the test repos live under tmpdir.
    t = await openHub({ config: { gitRepos: [realpathSync(tmpdir())] } });
    http = await serve(t.hub);
  });
  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await http.close();
    await t.close();
    for (const d of temp) rmSync(d, { recursive: true, force: true });
  });
  const agent = async (name: string, role: string, line: 'v1' | 'v2' | 'v2-modern' = 'v2'): Promise<Agent> => {
    const a = await httpAgent(line, http.url, await createKey(t, name, role));
    agents.push(a);
    return a;
  };

  it('acceptance: A checkpoints and hands two tasks to B; B resumes from whoami, accepts, completes; A is fenced out', async () => {
    const lead = await agent('lead-acc', 'lead', 'v2-modern');
    const a = await agent('worker-a', 'worker', 'v1');
    const b = await agent('worker-b', 'worker', 'v2');
    await lead.ok('task_create', { tasks: [{ title: 'parse config' }, { title: 'write docs' }] });

    const started = await a.ok<{ session: { id: string; status: string }; abandoned: string | null }>('session_start', {
      goal: 'config work',
    });
    expect(started.session.status).toBe('open');
    expect(started.abandoned).toBeNull();
    const t1 = (await a.ok<{ task: Task }>('task_claim')).task;
    const t2 = (await a.ok<{ task: Task }>('task_claim')).task;
    await a.ok('task_start', { id: t1.id, lease_token: t1.lease!.token });

    const cp = await a.ok<{ checkpoint: { id: number; at: string; commit_sha: string | null } }>('session_checkpoint', {
      summary: 'parser half done',
      completed: ['tokenizer'],
      metrics: { tests_passing: 12, coverage: 0.8 },
    });
    expect(cp.checkpoint).toMatchObject({ id: 1, commit_sha: null });

    // Resume after a crash: whoami tells A its session and last checkpoint.
    const aWho = await a.ok<Who>('whoami');
    expect(aWho.session).toMatchObject({ id: started.session.id, status: 'open', goal: 'config work', checkpoints: 1 });
    expect(aWho.session!.last_checkpoint).toMatchObject({
      id: 1,
      summary: 'parser half done',
      completed: ['tokenizer'],
      metrics: { tests_passing: 12, coverage: 0.8 },
    });
    expect(aWho.held_tasks.map((x) => x.id).sort()).toEqual([t1.id, t2.id].sort());

    const ended = await a.ok<{ session: { status: string; summary: string }; handoff: Handoff }>('session_end', {
      summary: 'stopping for the day',
      handoff: {
        summary: 'Parser is half done; docs not started.',
        next_goals: ['finish parser', 'write docs'],
        task_ids: [t1.id, t2.id],
        memory_keys: ['parser/notes'],
        files: ['src/parser.ts'],
        to: { agent: 'worker-b' },
      },
    });
    expect(ended.session).toMatchObject({ status: 'ended', summary: 'stopping for the day' });
    expect(ended.handoff).toMatchObject({ from: 'worker-a', to: { kind: 'agent', agent: 'worker-b' }, status: 'pending' });
    expect(ended.handoff.task_ids.sort()).toEqual([t1.id, t2.id].sort());
    const hid = ended.handoff.id;
    expect(hid).toMatch(/^hof_[a-z2-7]{26}$/);

    // A's own handoff is not "pending for A"; its session is closed.
    const aAfter = await a.ok<Who>('whoami');
    expect(aAfter.session).toBeNull();
    expect(aAfter.pending_handoffs.count).toBe(0);

    // B, on (re)connect, sees the handoff waiting.
    const bWho = await b.ok<Who>('whoami');
    expect(bWho.pending_handoffs.count).toBe(1);
    expect(bWho.pending_handoffs.first[0]).toMatchObject({ id: hid, from: 'worker-a', tasks: 2 });

    // A third worker sees nothing addressed to it and cannot accept: not_found, not forbidden.
    const c = await agent('worker-c', 'worker');
    expect((await c.ok<Who>('whoami')).pending_handoffs.count).toBe(0);
    expect(codeOf(await c.call('handoff_accept', { id: hid }))).toBe('not_found');

    const acc = await b.ok<Accepted>('handoff_accept', { id: hid });
    expect(acc.handoff).toMatchObject({ status: 'accepted' });
    expect(acc.not_transferred).toEqual([]);
    const leases = new Map(acc.tasks.map((x) => [x.id, x.lease]));
    expect(leases.get(t1.id)).toMatchObject({ owner: 'worker-b', token: t1.lease!.token + 1 });
    expect(leases.get(t2.id)).toMatchObject({ owner: 'worker-b', token: t2.lease!.token + 1 });
    expect(codeOf(await b.call('handoff_accept', { id: hid }))).toBe('conflict');
    expect((await b.ok<Who>('whoami')).pending_handoffs.count).toBe(0);

    // A's old leases are refused while B holds the task...
    const late1 = await a.call('task_complete', { id: t1.id, lease_token: t1.lease!.token, result: { summary: 'late' } });
    expect(codeOf(late1)).toBe('lease_lost');
    expect(codeOf(await a.call('task_heartbeat', { id: t2.id, lease_token: t2.lease!.token }))).toBe('lease_lost');

    // ...B completes both with its new tokens...
    for (const id of [t1.id, t2.id]) {
      await b.ok('task_complete', { id, lease_token: leases.get(id)!.token, result: { summary: `done by b: ${id}` } });
    }
    // ...and A's late completion still changes nothing.
    const late2 = await a.call('task_complete', { id: t2.id, lease_token: t2.lease!.token, result: { summary: 'late' } });
    expect(codeOf(late2)).toBe('lease_lost');
    for (const id of [t1.id, t2.id]) {
      const got = (await lead.ok<{ task: Task & { result: { summary: string } } }>('task_get', { id })).task;
      expect(got.status).toBe('done');
      expect(got.result.summary).toBe(`done by b: ${id}`);
    }

    // Events: the handoff.created event is addressed to B only; nothing in event data is content.
    const events = await t.hub.db.read((ex) =>
      ex.all<{ type: string; audience: string; data: string | null }>(
        sql`SELECT type, audience, data FROM events WHERE subject = ${hid} ORDER BY id`,
      ),
    );
    expect(events.map((e) => e.type)).toEqual(['handoff.created', 'handoff.accepted']);
    expect(events[0]!.audience).toMatch(/^agent:agt_/);
    expect(events[1]!.audience).toBe('project');
    expect(events.map((e) => e.data).join('')).not.toMatch(/Parser is half done|parser\/notes/);
  });

  it('a handoff to role lead is invisible to and not acceptable by a worker; a lead accepts it', async () => {
    const w = await agent('role-w', 'worker');
    const other = await agent('role-w2', 'worker');
    const lead = await agent('role-lead', 'lead');
    await w.ok('session_start', {});
    const out = await w.ok<{ handoff: Handoff }>('session_end', { handoff: { summary: 'needs a lead decision', to: { role: 'lead' } } });
    const hid = out.handoff.id;
    expect(out.handoff.to).toEqual({ kind: 'role', role: 'lead' });

    expect((await other.ok<Who>('whoami')).pending_handoffs.first.map((h) => h.id)).not.toContain(hid);
    expect((await other.ok<{ handoffs: Handoff[] }>('handoff_list', {})).handoffs.map((h) => h.id)).not.toContain(hid);
    expect(codeOf(await other.call('handoff_accept', { id: hid }))).toBe('not_found');
    // The creator lists it but cannot accept one addressed elsewhere.
    expect((await w.ok<{ handoffs: Handoff[] }>('handoff_list', { status: 'pending' })).handoffs.map((h) => h.id)).toContain(hid);
    expect(codeOf(await w.call('handoff_accept', { id: hid }))).toBe('not_found');

    const lw = await lead.ok<Who>('whoami');
    expect(lw.pending_handoffs.first.map((h) => h.id)).toContain(hid);
    const acc = await lead.ok<Accepted>('handoff_accept', { id: hid });
    expect(acc).toMatchObject({ handoff: { status: 'accepted' }, tasks: [], not_transferred: [] });
    expect((await lead.ok<{ handoffs: Handoff[] }>('handoff_list', { status: 'accepted' })).handoffs.map((h) => h.id)).toContain(hid);
  });

  it('refusals: handing over a task you do not hold, unknown agent, no session, secrets; nothing is written', async () => {
    const lead = await agent('ref-lead', 'lead');
    const w = await agent('ref-w', 'worker');
    const w2 = await agent('ref-w2', 'worker');
    await lead.ok('task_create', { tasks: [{ title: 'mine' }, { title: 'theirs' }, { title: 'nobody' }] });
    expect(codeOf(await w.call('session_checkpoint', { summary: 'x' }))).toBe('conflict');
    expect(codeOf(await w.call('session_end', {}))).toBe('conflict');

    const s = await w.ok<{ session: { id: string } }>('session_start', { goal: 'g' });
    const mine = (await w.ok<{ task: Task }>('task_claim')).task;
    const theirs = (await w2.ok<{ task: Task }>('task_claim')).task;
    const nobody = (await lead.ok<{ tasks: { id: string }[] }>('task_list', { status: ['ready'] })).tasks[0]!.id;

    const r = await w.call('session_end', { handoff: { summary: 'h', task_ids: [mine.id, theirs.id, nobody] } });
    expect(codeOf(r)).toBe('conflict');
    const err = r.data.error as { message: string };
    expect(err.message).toContain(theirs.id);
    expect(err.message).toContain(nobody);
    expect(err.message).not.toContain(mine.id);
    expect(codeOf(await w.call('session_end', { handoff: { summary: 'h', to: { agent: 'no-such-agent' } } }))).toBe('not_found');
    expect(codeOf(await w.call('session_end', { handoff: { summary: 'h', to: { role: 'nosuchrole' } } }))).toBe('invalid_input');

    const key = `bat_${'Q'.repeat(43)}`;
    const secretCases: Record<string, unknown>[] = [
      { summary: `rotated key ${key}` },
      { summary: 'ok', completed: ['set AWS AKIAIOSFODNN7EXAMPLE'] },
      { summary: 'ok', metrics: { [`ghp_${'x'.repeat(36)}`]: 1 } },
      { summary: '-----BEGIN RSA PRIVATE KEY-----\nMIIE' },
      { summary: 'ok', commit: { repo: '.', message: `use sk-${'k'.repeat(24)}` } },
    ];
    for (const input of secretCases) {
      const res = await w.call('session_checkpoint', input);
      expect(codeOf(res), JSON.stringify(input).slice(0, 60)).toBe('invalid_input');
      expect(JSON.stringify(res.data)).not.toContain(key);
    }
    expect(codeOf(await w.call('session_end', { handoff: { summary: `token ${key}` } }))).toBe('invalid_input');

    // Still open, no checkpoint, no handoff written by any refusal.
    const who = await w.ok<Who>('whoami');
    expect(who.session).toMatchObject({ id: s.session.id, status: 'open', checkpoints: 0, last_checkpoint: null });
    expect((await w.ok<{ handoffs: Handoff[] }>('handoff_list', {})).handoffs).toEqual([]);
    const stored = await t.hub.db.read((ex) =>
      ex.all<{ n: number }>(sql`SELECT count(*) AS n FROM session_checkpoints WHERE session_id = ${s.session.id}`),
    );
    expect(stored[0]!.n).toBe(0);
  });

  it('limits: oversized fields are too_large, malformed ones invalid_input; observers may not start sessions', async () => {
    const w = await agent('lim-w', 'worker');
    const o = await agent('lim-o', 'observer');
    expect(codeOf(await o.call('session_start', {}))).toBe('forbidden');
    expect(codeOf(await o.call('handoff_accept', { id: 'hof_aaaaaaaaaaaaaaaaaaaaaaaaaa' }))).toBe('forbidden');
    await w.ok('session_start', {});
    const many = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`m${i}`, i]));
    const cases: [string, Record<string, unknown>, string][] = [
      ['session_start', { goal: 'g'.repeat(2001) }, 'too_large'],
      ['session_checkpoint', { summary: '' }, 'invalid_input'],
      ['session_checkpoint', { summary: 's'.repeat(10_001) }, 'too_large'],
      ['session_checkpoint', { summary: 's', completed: Array.from({ length: 101 }, () => 'x') }, 'too_large'],
      ['session_checkpoint', { summary: 's', completed: ['x'.repeat(501)] }, 'too_large'],
      ['session_checkpoint', { summary: 's', metrics: many }, 'too_large'],
      ['session_checkpoint', { summary: 's', metrics: { ['k'.repeat(65)]: 1 } }, 'too_large'],
      ['session_checkpoint', { summary: 's', metrics: { k: 'not a number' } }, 'invalid_input'],
      ['session_checkpoint', { summary: 's', commit: { repo: '.', message: 'm'.repeat(501) } }, 'too_large'],
      ['session_checkpoint', { summary: 's', commit: { repo: 'relative', message: 'm' } }, 'invalid_input'],
      ['session_checkpoint', { summary: 's', commit: { repo: '/tmp', message: 'm', paths: ['../etc/passwd'] } }, 'invalid_input'],
      ['session_checkpoint', { summary: 's', extra: 1 }, 'invalid_input'],
      ['session_end', { handoff: { summary: 'h', next_goals: Array.from({ length: 51 }, () => 'g') } }, 'too_large'],
      ['session_end', { handoff: { summary: 'h', task_ids: ['tsk_x'] } }, 'invalid_input'],
      ['session_end', { handoff: { summary: 'h', files: ['/etc/passwd'] } }, 'invalid_input'],
      ['session_end', { handoff: { summary: 'h', to: { agent: 'a', role: 'lead' } } }, 'invalid_input'],
      ['session_end', { handoff: { summary: 'h', to: {} } }, 'invalid_input'],
      ['handoff_accept', { id: "hof_' OR 1=1 --" }, 'invalid_input'],
      ['handoff_accept', { id: 'hof_aaaaaaaaaaaaaaaaaaaaaaaaaa' }, 'not_found'],
      ['handoff_list', { limit: 1000 }, 'invalid_input'],
    ];
    for (const [tool, args, code] of cases) {
      expect(codeOf(await w.call(tool, args)), `${tool} ${JSON.stringify(args).slice(0, 80)}`).toBe(code);
    }
  });

  it('REST: the same ops under /api/v1 (start, end with handoff, list, accept)', async () => {
    const ka = await createKey(t, 'rest-a', 'worker');
    const kb = await createKey(t, 'rest-b', 'worker');
    const rest = async (key: string, method: string, path: string, body?: object) => {
      const res = await fetch(new URL(`/api/v1${path}`, http.url), {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect((await rest(ka, 'POST', '/sessions', { goal: 'rest' })).status).toBe(200);
    expect((await rest(ka, 'POST', '/sessions/checkpoint', { summary: 'half' })).body).toMatchObject({ checkpoint: { id: 1 } });
    const end = await rest(ka, 'POST', '/sessions/end', { handoff: { summary: 'yours', to: { agent: 'rest-b' } } });
    const hid = (end.body.handoff as { id: string }).id;
    const listed = await rest(kb, 'GET', '/handoffs?status=pending');
    expect((listed.body.handoffs as { id: string }[]).map((h) => h.id)).toContain(hid);
    expect((await rest(kb, 'POST', `/handoffs/${hid}/accept`, {})).body).toMatchObject({ handoff: { status: 'accepted' } });
    const again = await rest(kb, 'POST', `/handoffs/${hid}/accept`, {});
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ error: { code: 'conflict' } });
  });

  it('session_start ends the open session as abandoned', async () => {
    const w = await agent('abandon-w', 'worker');
    const first = await w.ok<{ session: { id: string } }>('session_start', { goal: 'one' });
    const second = await w.ok<{ session: { id: string }; abandoned: string | null }>('session_start', { goal: 'two' });
    expect(second.abandoned).toBe(first.session.id);
    expect((await w.ok<Who>('whoami')).session).toMatchObject({ id: second.session.id, goal: 'two' });
    const rows = await t.hub.db.read((ex) =>
      ex.all<{ id: string; status: string }>(sql`SELECT id, status FROM sessions WHERE id IN (${first.session.id}, ${second.session.id})`),
    );
    expect(new Map(rows.map((r) => [r.id, r.status]))).toEqual(
      new Map([
        [first.session.id, 'abandoned'],
        [second.session.id, 'open'],
      ]),
    );
  });

  it("a checkpoint commit uses the user's own git identity and passes the message verbatim (no shell)", async () => {
    const repo = mkdtempSync(join(tmpdir(), 'baton-sess-git-'));
    temp.push(repo);
    gitIn(repo, 'init', '-q');
    gitIn(repo, 'config', 'user.name', 'Grace Hopper');
    gitIn(repo, 'config', 'user.email', 'grace@example.test');
    gitIn(repo, 'config', 'commit.gpgsign', 'false');
    const w = await agent('git-w', 'worker', 'v2-modern');
    await w.ok('session_start', { goal: 'commit things' });

    writeFileSync(join(repo, 'a.txt'), 'one');
    writeFileSync(join(repo, 'unstaged.txt'), 'stays out');
    const first = await w.ok<{ checkpoint: { commit_sha: string | null } }>('session_checkpoint', {
      summary: 'first file',
      commit: { repo, message: 'Add a.txt', paths: ['a.txt'] },
    });
    expect(first.checkpoint.commit_sha).toMatch(/^[0-9a-f]{40}$/);
    expect(gitIn(repo, 'rev-parse', 'HEAD').trim()).toBe(first.checkpoint.commit_sha);
    expect(gitIn(repo, 'log', '-1', '--format=%an').trim()).toBe('Grace Hopper');
    expect(gitIn(repo, 'log', '-1', '--format=%ae|%cn|%ce').trim()).toBe('grace@example.test|Grace Hopper|grace@example.test');
    expect(gitIn(repo, 'log', '-1', '--format=%an%cn').toLowerCase()).not.toContain('baton');
    expect(gitIn(repo, 'show', '--name-only', '--format=', 'HEAD').trim()).toBe('a.txt');

    const marker = join(repo, 'pwned');
    const message = `"; rm -rf / # $(whoami) \`touch ${marker}\` ; touch ${marker}`;
    writeFileSync(join(repo, 'b.txt'), 'two');
    const second = await w.ok<{ checkpoint: { commit_sha: string | null } }>('session_checkpoint', {
      summary: 'second file',
      commit: { repo, message, paths: ['b.txt'] },
    });
    expect(second.checkpoint.commit_sha).not.toBe(first.checkpoint.commit_sha);
    // Outside the allowed repositories, no commit is made for anyone.
    const outside = await w.call('session_checkpoint', { summary: 'x', commit: { repo: '/', message: 'nope' } });
    expect(outside.data).toMatchObject({ error: { code: 'forbidden' } });
    expect(gitIn(repo, 'log', '-1', '--format=%B').replace(/\n+$/, '')).toBe(message);
    expect(existsSync(marker)).toBe(false);

    // Nothing staged: the checkpoint is recorded, no commit is made.
    const third = await w.ok<{ checkpoint: { id: number; commit_sha: string | null } }>('session_checkpoint', {
      summary: 'nothing new',
      commit: { repo, message: 'nothing' },
    });
    expect(third.checkpoint).toMatchObject({ id: 3, commit_sha: null });
    expect(gitIn(repo, 'rev-list', '--count', 'HEAD').trim()).toBe('2');

    // Not a work tree: refused, and no checkpoint row written.
    const plain = mkdtempSync(join(tmpdir(), 'baton-sess-plain-'));
    temp.push(plain);
    expect(codeOf(await w.call('session_checkpoint', { summary: 'x', commit: { repo: plain, message: 'm' } }))).toBe('invalid_input');
    expect((await w.ok<Who>('whoami')).session).toMatchObject({ checkpoints: 3, last_checkpoint: { id: 3, commit_sha: null } });
  });
});

describe('handoffs at the store level (injected clock)', () => {
  let t: TestHub;
  let clock: ManualClock;
  let lead: Principal;
  let a: Principal;
  let b: Principal;
  beforeEach(async () => {
    clock = new ManualClock(Date.UTC(2026, 10, 1));
    t = await openHub({ clock, config: { leaseMs: 60_000 } });
    lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    a = await t.hub.authenticate(await createKey(t, 'a', 'worker'));
    b = await t.hub.authenticate(await createKey(t, 'b', 'worker'));
  });
  afterEach(async () => {
    await t.close();
  });

  const claim = async (p: Principal) => (await call<{ task: Task }>(t.hub, p, 'task_claim', {})).task;

  it('transfers only leases the ender still holds with the token it handed over', async () => {
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'one' }, { title: 'two' }, { title: 'three' }] });
    await call(t.hub, a, 'session_start', {});
    const expires = await claim(a); // lease until +60s
    clock.advance(30_000);
    const kept = await claim(a); // until +90s
    const finished = await claim(a);
    const end = await call<{ handoff: Handoff }>(t.hub, a, 'session_end', {
      handoff: { summary: 'over to anyone', task_ids: [kept.id, expires.id, finished.id] },
    });
    // After the handoff the ender still holds its leases until someone accepts: it may finish one.
    await call(t.hub, a, 'task_complete', { id: finished.id, lease_token: finished.lease!.token, result: { summary: 'x' } });
    clock.advance(35_000); // +65s: `expires` ran out (unswept), `kept` is live
    const acc = await call<Accepted>(t.hub, b, 'handoff_accept', { id: end.handoff.id });
    expect(acc.tasks.map((x) => x.id)).toEqual([kept.id]);
    expect(acc.tasks[0]!.lease).toEqual({
      owner: 'b',
      token: kept.lease!.token + 1,
      expires_at: new Date(clock.now() + 60_000).toISOString(),
    });
    expect(new Map(acc.not_transferred.map((x) => [x.id, x.status]))).toEqual(
      new Map([
        [expires.id, 'lease_expired'],
        [finished.id, 'done'],
      ]),
    );
    // The expired one was not touched: still A's (expired) lease, so B cannot complete it.
    const e = await refusal(
      call(t.hub, b, 'task_complete', { id: expires.id, lease_token: expires.lease!.token + 1, result: { summary: 'x' } }),
    );
    expect(e.code).toBe('lease_lost');
    await call(t.hub, b, 'task_complete', { id: kept.id, lease_token: kept.lease!.token + 1, result: { summary: 'b did it' } });
    const old = await refusal(call(t.hub, a, 'task_heartbeat', { id: kept.id, lease_token: kept.lease!.token }));
    expect(old.code).toBe('lease_lost');
  });

  it('a lease re-claimed by the ender after expiry is not taken by an old handoff', async () => {
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'one' }] });
    await call(t.hub, a, 'session_start', {});
    const first = await claim(a);
    const end = await call<{ handoff: Handoff }>(t.hub, a, 'session_end', {
      handoff: { summary: 'take it', task_ids: [first.id], to: { agent: 'b' } },
    });
    clock.advance(60_001);
    const again = await claim(a); // the claim sweeps the expired lease, then A claims it afresh
    expect(again.id).toBe(first.id);
    expect(again.lease!.token).toBeGreaterThan(first.lease!.token);
    const acc = await call<Accepted>(t.hub, b, 'handoff_accept', { id: end.handoff.id });
    expect(acc.tasks).toEqual([]);
    expect(acc.not_transferred).toEqual([{ id: first.id, status: 'claimed' }]);
    // A's new lease is intact.
    await call(t.hub, a, 'task_complete', { id: again.id, lease_token: again.lease!.token, result: { summary: 'mine' } });
  });

  it('handoffs never cross projects', async () => {
    const outsider = await t.hub.authenticate(await createKey(t, 'out', 'lead', 'other'));
    await call(t.hub, a, 'session_start', {});
    const end = await call<{ handoff: Handoff }>(t.hub, a, 'session_end', { handoff: { summary: 'for anyone' } });
    expect((await refusal(call(t.hub, outsider, 'handoff_accept', { id: end.handoff.id }))).code).toBe('not_found');
    expect((await call<{ handoffs: Handoff[] }>(t.hub, outsider, 'handoff_list', {})).handoffs).toEqual([]);
    const who = await call<Who>(t.hub, outsider, 'whoami', {});
    expect(who.pending_handoffs.count).toBe(0);
    // In the project, "anyone" means anyone: b sees and takes it.
    expect((await call<Who>(t.hub, b, 'whoami', {})).pending_handoffs.count).toBe(1);
    await call(t.hub, b, 'handoff_accept', { id: end.handoff.id });
  });
});
