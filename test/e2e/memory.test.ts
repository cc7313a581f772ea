/**
 * Memory (issue 3, item 2; S11): private agent scope that no other agent can read or modify,
 * whatever its role; shared project scope that only writers write; versions and CAS; TTL;
 * prefix listing; limits; project isolation; events that never carry values.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { buildProgram } from '../../src/cli/main.js';
import { ManualClock } from '../../src/core/clock.js';
import { BatonError } from '../../src/core/errors.js';
import { MEMORY_LIMITS } from '../../src/ops/memory.js';
import { putMemory, sweepMemory } from '../../src/store/memory.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, type TestHub } from '../helpers.js';

type SetOut = { key: string; scope: string; version: number; expires_at: string | null };
type GetOut = SetOut & { value: string; updated_at: string; updated_by: string };
type Entry = { key: string; version: number; size: number; updated_at: string; expires_at: string | null };
type ListOut = { scope: string; keys: Entry[]; next_cursor: string | null };

async function refusal(p: Promise<unknown>): Promise<BatonError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BatonError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

const START = Date.UTC(2026, 10, 1);

describe('memory over the runner', () => {
  let t: TestHub;
  let clock: ManualClock;
  let owner: Principal; // B: owns the private keys under attack
  let lead: Principal;
  let admin: Principal;
  let worker: Principal;
  let observer: Principal;

  beforeEach(async () => {
    clock = new ManualClock(START);
    t = await openHub({ clock });
    owner = await t.hub.authenticate(await createKey(t, 'b-owner', 'worker'));
    lead = await t.hub.authenticate(await createKey(t, 'a-lead', 'lead'));
    admin = await t.hub.authenticate(await createKey(t, 'a-admin', 'admin'));
    worker = await t.hub.authenticate(await createKey(t, 'a-worker', 'worker'));
    observer = await t.hub.authenticate(await createKey(t, 'obs', 'observer'));
  });
  afterEach(async () => {
    await t.close();
  });

  const set = (p: Principal, input: Record<string, unknown>) => call<SetOut>(t.hub, p, 'memory_set', input);
  const get = (p: Principal, input: Record<string, unknown>) => call<GetOut>(t.hub, p, 'memory_get', input);
  const list = (p: Principal, input: Record<string, unknown> = {}) => call<ListOut>(t.hub, p, 'memory_list', input);
  const del = (p: Principal, input: Record<string, unknown>) => call<{ deleted: boolean }>(t.hub, p, 'memory_delete', input);
  const rows = () =>
    t.hub.db.read((ex) =>
      ex.all<{ owner: string; key: string; version: number; value: string; expires_at: number | null }>(
        sql`SELECT owner, key, version, value, expires_at FROM memory ORDER BY owner, key`,
      ),
    );

  it('no other agent can read, overwrite or delete an agent-scoped key, whatever its role (S11)', async () => {
    const mine = await set(owner, { key: 'notes/plan', value: 'B private' });
    expect(mine).toEqual({ key: 'notes/plan', scope: 'agent', version: 1, expires_at: null });
    await set(owner, { key: 'notes/plan', value: 'B private v2' });

    for (const a of [admin, t.admin, lead, worker, observer]) {
      expect((await refusal(get(a, { key: 'notes/plan' }))).code).toBe('not_found');
      expect((await refusal(get(a, { scope: 'agent', key: 'notes/plan' }))).code).toBe('not_found');
      expect((await list(a, { scope: 'agent' })).keys).toEqual([]);
      if (a === observer) continue;
      // Deleting answers "nothing of yours here", never forbidden; CAS against B's version sees 0.
      expect(await del(a, { key: 'notes/plan' })).toEqual({ deleted: false });
      const cas = await refusal(del(a, { key: 'notes/plan', if_version: 2 }));
      expect(cas.code).toBe('version_conflict');
      expect(cas.details).toEqual({ version: 0 });
      expect((await refusal(set(a, { key: 'notes/plan', value: 'hijack', if_version: 2 }))).details).toEqual({ version: 0 });
    }
    // There is no way to name an owner: strict inputs refuse it.
    for (const op of ['memory_get', 'memory_set', 'memory_delete', 'memory_list']) {
      const e = await refusal(call(t.hub, admin, op, { key: 'notes/plan', value: 'x', owner: owner.agentId }));
      expect(e.code, op).toBe('invalid_input');
    }

    // The same key name in A's own scope is an independent entry.
    expect(await set(admin, { key: 'notes/plan', value: 'A own' })).toMatchObject({ version: 1 });
    expect(await set(lead, { key: 'notes/plan', value: 'lead own' })).toMatchObject({ version: 1 });
    expect(await get(admin, { key: 'notes/plan' })).toMatchObject({ value: 'A own', version: 1, updated_by: 'a-admin' });
    expect(await del(lead, { key: 'notes/plan' })).toEqual({ deleted: true });

    const b = await get(owner, { key: 'notes/plan' });
    expect(b).toMatchObject({ key: 'notes/plan', scope: 'agent', value: 'B private v2', version: 2, updated_by: 'b-owner' });
    expect(b.updated_at).toBe(new Date(START).toISOString());
    expect((await list(owner)).keys.map((k) => k.key)).toEqual(['notes/plan']);
    // B's row is untouched in the store; only A's own row was added.
    const stored = await rows();
    expect(stored.filter((r) => r.owner === owner.agentId)).toEqual([
      { owner: owner.agentId, key: 'notes/plan', version: 2, value: 'B private v2', expires_at: null },
    ]);
    expect(stored.filter((r) => r.owner === admin.agentId).map((r) => r.value)).toEqual(['A own']);
    // Project scope is a separate namespace from every agent scope.
    expect((await refusal(get(owner, { scope: 'project', key: 'notes/plan' }))).code).toBe('not_found');
  });

  it('project scope: everyone reads; writers write; an observer is refused and nothing changes', async () => {
    await set(worker, { scope: 'project', key: 'conventions', value: 'use pnpm' });
    for (const p of [observer, owner, lead, admin]) {
      expect(await get(p, { scope: 'project', key: 'conventions' })).toMatchObject({ value: 'use pnpm', version: 1, updated_by: 'a-worker' });
      expect((await list(p, { scope: 'project' })).keys.map((k) => k.key)).toEqual(['conventions']);
    }
    expect(await set(lead, { scope: 'project', key: 'conventions', value: 'use npm' })).toMatchObject({ version: 2 });

    for (const [op, input] of [
      ['memory_set', { scope: 'project', key: 'conventions', value: 'observer was here' }],
      ['memory_set', { scope: 'project', key: 'new', value: 'x' }],
      ['memory_set', { key: 'mine', value: 'x' }],
      ['memory_delete', { scope: 'project', key: 'conventions' }],
    ] as const) {
      expect((await refusal(call(t.hub, observer, op, input))).code, op).toBe('forbidden');
    }
    expect(await get(observer, { scope: 'project', key: 'conventions' })).toMatchObject({ value: 'use npm', version: 2 });
    expect((await rows()).map((r) => r.key)).toEqual(['conventions']);
    expect(await del(owner, { scope: 'project', key: 'conventions' })).toEqual({ deleted: true });
    expect((await refusal(get(observer, { scope: 'project', key: 'conventions' }))).code).toBe('not_found');
  });

  it('compare-and-set: if_version 0 creates only; a stale version is refused with the current one; nothing written', async () => {
    expect(await set(worker, { scope: 'project', key: 'lock:db', value: 'w', if_version: 0 })).toMatchObject({ version: 1 });
    const dup = await refusal(set(lead, { scope: 'project', key: 'lock:db', value: 'l', if_version: 0 }));
    expect(dup.code).toBe('version_conflict');
    expect(dup.details).toEqual({ version: 1 });
    expect(await set(worker, { scope: 'project', key: 'lock:db', value: 'w2', if_version: 1 })).toMatchObject({ version: 2 });
    const stale = await refusal(set(lead, { scope: 'project', key: 'lock:db', value: 'stale', if_version: 1 }));
    expect(stale.details).toEqual({ version: 2 });
    expect(await get(worker, { scope: 'project', key: 'lock:db' })).toMatchObject({ value: 'w2', version: 2, updated_by: 'a-worker' });

    const staleDel = await refusal(del(lead, { scope: 'project', key: 'lock:db', if_version: 1 }));
    expect(staleDel.code).toBe('version_conflict');
    expect(staleDel.details).toEqual({ version: 2 });
    expect((await refusal(del(lead, { scope: 'project', key: 'lock:db', if_version: 0 }))).details).toEqual({ version: 2 });
    expect((await get(worker, { scope: 'project', key: 'lock:db' })).value).toBe('w2');
    expect(await del(lead, { scope: 'project', key: 'lock:db', if_version: 2 })).toEqual({ deleted: true });
    expect(await del(lead, { scope: 'project', key: 'lock:db', if_version: 0 })).toEqual({ deleted: false });
    expect((await refusal(get(worker, { scope: 'project', key: 'lock:db' }))).code).toBe('not_found');
    // Absent again: counts as version 0; a new entry starts at 1.
    expect(await set(lead, { scope: 'project', key: 'lock:db', value: 'l', if_version: 0 })).toMatchObject({ version: 1 });

    // Refusals were audited as such and wrote no memory.* event.
    const events = await t.hub.db.read((ex) =>
      ex.all<{ type: string; data: string }>(sql`SELECT type, data FROM events WHERE type LIKE 'memory.%' ORDER BY id`),
    );
    expect(events.map((e) => [e.type, (JSON.parse(e.data) as { version: number }).version])).toEqual([
      ['memory.set', 1],
      ['memory.set', 2],
      ['memory.deleted', 2],
      ['memory.set', 1],
    ]);
  });

  it('TTL: an entry expires at ctx.now + ttl_s, then behaves as absent until the sweep removes it', async () => {
    const out = await set(owner, { key: 'scratch', value: 'temp', ttl_s: 60 });
    expect(out.expires_at).toBe(new Date(START + 60_000).toISOString());
    await set(owner, { key: 'keep', value: 'k', ttl_s: 10 });
    // Setting again without ttl_s clears the TTL.
    expect(await set(owner, { key: 'keep', value: 'k2' })).toMatchObject({ version: 2, expires_at: null });
    await set(owner, { scope: 'project', key: 'shared-tmp', value: 's', ttl_s: 30 });

    clock.advance(59_999);
    expect(await get(owner, { key: 'scratch' })).toMatchObject({ value: 'temp', expires_at: new Date(START + 60_000).toISOString() });
    expect((await list(owner)).keys.map((k) => [k.key, k.expires_at])).toEqual([
      ['keep', null],
      ['scratch', new Date(START + 60_000).toISOString()],
    ]);
    clock.advance(1);
    expect((await refusal(get(owner, { key: 'scratch' }))).code).toBe('not_found');
    expect((await refusal(get(lead, { scope: 'project', key: 'shared-tmp' }))).code).toBe('not_found');
    expect((await list(owner)).keys.map((k) => k.key)).toEqual(['keep']);
    expect((await list(lead, { scope: 'project' })).keys).toEqual([]);
    expect(await del(owner, { key: 'scratch' })).toEqual({ deleted: false });
    // For CAS an expired entry is version 0.
    expect((await refusal(set(owner, { key: 'scratch', value: 'x', if_version: 1 }))).details).toEqual({ version: 0 });
    expect((await rows()).map((r) => r.key).sort()).toEqual(['keep', 'scratch', 'shared-tmp']);

    const removed = await t.hub.db.write((ex) => sweepMemory(ex, clock.now()));
    expect(removed).toBe(2);
    expect((await rows()).map((r) => r.key)).toEqual(['keep']);
    expect(await t.hub.db.write((ex) => sweepMemory(ex, clock.now()))).toBe(0);
    expect(await get(owner, { key: 'keep' })).toMatchObject({ value: 'k2', version: 2, expires_at: null });

    // Re-created after expiry: a fresh entry at version 1 (also before a sweep).
    await set(owner, { key: 'gone', value: 'g', ttl_s: 1 });
    clock.advance(1_000);
    expect(await set(owner, { key: 'gone', value: 'again', if_version: 0 })).toMatchObject({ version: 1, expires_at: null });
    expect(await get(owner, { key: 'gone' })).toMatchObject({ value: 'again', version: 1 });
  });

  it('lists by prefix in key order with paging; never returns values', async () => {
    const keys = ['a/1', 'a/2', 'a/3', 'a/4', 'a/5', 'a/6', 'a/7', 'ab', 'a', 'b/1', 'A/1'];
    for (const k of [...keys].reverse()) await set(worker, { scope: 'project', key: k, value: `value-of-${k}` });
    await set(worker, { key: 'a/private', value: 'p' });

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await list(observer, { scope: 'project', prefix: 'a/', limit: 3, ...(cursor ? { cursor } : {}) });
      pages++;
      expect(page.keys.length).toBeLessThanOrEqual(3);
      for (const e of page.keys) {
        expect(Object.keys(e).sort()).toEqual(['expires_at', 'key', 'size', 'updated_at', 'updated_by', 'version']);
        expect(e.size).toBe(`value-of-${e.key}`.length);
      }
      expect(JSON.stringify(page)).not.toContain('value-of-');
      seen.push(...page.keys.map((e) => e.key));
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
    expect(seen).toEqual(['a/1', 'a/2', 'a/3', 'a/4', 'a/5', 'a/6', 'a/7']);
    expect(pages).toBe(3);

    expect((await list(observer, { scope: 'project', prefix: 'a' })).keys.map((e) => e.key)).toEqual([
      'a',
      'a/1',
      'a/2',
      'a/3',
      'a/4',
      'a/5',
      'a/6',
      'a/7',
      'ab',
    ]);
    expect((await list(observer, { scope: 'project' })).keys).toHaveLength(keys.length);
    expect((await list(observer, { scope: 'project', prefix: 'zzz' })).keys).toEqual([]);
    expect((await list(worker, { prefix: 'a/' })).keys.map((e) => e.key)).toEqual(['a/private']);
    expect((await refusal(list(observer, { scope: 'project', cursor: '!!not-a-cursor' }))).code).toBe('invalid_input');
    expect((await refusal(list(observer, { scope: 'project', limit: 201 }))).code).toBe('invalid_input');
    expect((await refusal(list(observer, { scope: 'project', prefix: 'a b' }))).code).toBe('invalid_input');
  });

  it('limits: value, key, ttl and per-owner quota; a refusal writes nothing', async () => {
    const max = 'v'.repeat(MEMORY_LIMITS.value);
    expect(await set(worker, { key: 'big', value: max })).toMatchObject({ version: 1 });
    expect((await get(worker, { key: 'big' })).value).toHaveLength(65_536);
    expect((await refusal(set(worker, { key: 'bigger', value: max + 'v' }))).code).toBe('too_large');
    expect((await refusal(set(worker, { key: 'big', value: max + 'v' }))).code).toBe('too_large');
    expect(await set(worker, { key: 'k'.repeat(200), value: 'x' })).toMatchObject({ version: 1 });
    expect((await refusal(set(worker, { key: 'k'.repeat(201), value: 'x' }))).code).toBe('too_large');
    for (const bad of ['', 'a b', '/abs', '.hidden', '-x', 'ünï', 'a\nb', 'a\u0000b', 'x~y', 'x?y', 'x%2F']) {
      expect((await refusal(set(worker, { key: bad, value: 'x' }))).code, JSON.stringify(bad)).toBe('invalid_input');
      expect((await refusal(get(worker, { key: bad }))).code, JSON.stringify(bad)).toBe('invalid_input');
    }
    for (const ttl of [0, -1, 1.5, MEMORY_LIMITS.ttlS + 1]) {
      expect((await refusal(set(worker, { key: 'ttl', value: 'x', ttl_s: ttl }))).code).toBe('invalid_input');
    }
    expect((await refusal(set(worker, { key: 'v', value: 'x', if_version: -1 }))).code).toBe('invalid_input');
    expect((await refusal(set(worker, { key: 'v', value: 'x', scope: 'global' }))).code).toBe('invalid_input');
    expect((await refusal(set(worker, { key: 'v', value: { json: true } }))).code).toBe('invalid_input');
    expect((await rows()).map((r) => r.key).sort()).toEqual(['big', 'k'.repeat(200)]);
    expect(await get(worker, { key: 'big' })).toMatchObject({ version: 1 });
  });

  it('quota: at most 10,000 live keys per owner; overwrites still work; other owners unaffected', async () => {
    await t.hub.db.write(async (ex) => {
      for (let i = 0; i < MEMORY_LIMITS.quota - 1; i++) {
        const at = { projectId: worker.projectId, owner: worker.agentId, key: `k${i}` };
        await putMemory(ex, at, { value: 'x', version: 1, updatedBy: 'a-worker', now: START, expiresAt: null });
      }
    });
    expect(await set(worker, { key: 'last', value: 'x' })).toMatchObject({ version: 1 });
    const full = await refusal(set(worker, { key: 'one-too-many', value: 'x' }));
    expect(full.code).toBe('too_large');
    expect(full.message).toBe('memory quota reached');
    expect(await set(worker, { key: 'k0', value: 'y' })).toMatchObject({ version: 2 });
    expect(await set(owner, { key: 'one-too-many', value: 'x' })).toMatchObject({ version: 1 });
    expect(await set(worker, { scope: 'project', key: 'one-too-many', value: 'x' })).toMatchObject({ version: 1 });
    // An entry that expired frees its slot.
    await set(worker, { key: 'last', value: 'x', ttl_s: 1 });
    clock.advance(1_000);
    expect(await set(worker, { key: 'one-too-many', value: 'x' })).toMatchObject({ version: 1 });
    expect((await refusal(get(worker, { key: 'last' }))).code).toBe('not_found');
  });

  it('projects are isolated: another project sees none of it and its keys are independent', async () => {
    const other = await t.hub.authenticate(await createKey(t, 'x-admin', 'admin', 'other'));
    expect(other.projectId).not.toBe(owner.projectId);
    await set(owner, { key: 'k', value: 'default private' });
    await set(owner, { scope: 'project', key: 'k', value: 'default shared' });
    expect((await refusal(get(other, { scope: 'project', key: 'k' }))).code).toBe('not_found');
    expect((await refusal(get(other, { key: 'k' }))).code).toBe('not_found');
    expect((await list(other, { scope: 'project' })).keys).toEqual([]);
    expect(await del(other, { scope: 'project', key: 'k' })).toEqual({ deleted: false });
    expect(await set(other, { scope: 'project', key: 'k', value: 'other shared', if_version: 0 })).toMatchObject({ version: 1 });
    expect((await get(owner, { scope: 'project', key: 'k' })).value).toBe('default shared');
    expect((await get(other, { scope: 'project', key: 'k' })).value).toBe('other shared');
  });

  it('events name the key, scope and version, reach only the owner for agent scope, and never carry values', async () => {
    const SECRET = 'SECRET-VALUE-7f3a9c';
    await set(owner, { key: 'creds-note', value: `${SECRET} private` });
    await set(worker, { scope: 'project', key: 'shared-note', value: `${SECRET} shared`, ttl_s: 5 });
    await del(owner, { key: 'creds-note' });
    const events = await t.hub.db.read((ex) =>
      ex.all<{ type: string; subject: string; data: string; audience: string; actor: string }>(
        sql`SELECT type, subject, data, audience, actor FROM events WHERE type LIKE 'memory.%' ORDER BY id`,
      ),
    );
    expect(events).toEqual([
      {
        type: 'memory.set',
        subject: 'creds-note',
        data: JSON.stringify({ scope: 'agent', version: 1, size: SECRET.length + 8 }),
        audience: `agent:${owner.agentId}`,
        actor: owner.agentId,
      },
      {
        type: 'memory.set',
        subject: 'shared-note',
        data: JSON.stringify({ scope: 'project', version: 1, size: SECRET.length + 7 }),
        audience: 'project',
        actor: worker.agentId,
      },
      {
        type: 'memory.deleted',
        subject: 'creds-note',
        data: JSON.stringify({ scope: 'agent', version: 1 }),
        audience: `agent:${owner.agentId}`,
        actor: owner.agentId,
      },
    ]);
    await t.hub.deferred.flush();
    const leaks = await t.hub.db.read((ex) =>
      ex.all<{ n: number }>(sql`SELECT count(*) AS n FROM events WHERE data LIKE ${'%' + SECRET + '%'}`),
    );
    expect(leaks[0]?.n).toBe(0);
    const audit = await t.hub.db.read((ex) =>
      ex.all<{ op: string; target: string | null; params: string }>(
        sql`SELECT op, target, params FROM audit WHERE op LIKE 'memory_%' ORDER BY id`,
      ),
    );
    expect(audit.length).toBeGreaterThanOrEqual(3);
    for (const a of audit) expect(a.params).not.toContain(SECRET);
    // A private key's name stays out of the audit target; a shared one is named.
    expect(audit.map((a) => [a.op, a.target])).toEqual([
      ['memory_set', null],
      ['memory_set', 'shared-note'],
      ['memory_delete', null],
    ]);
  });

  it('the CLI has memory set/get/list/delete, taking the key as a positional argument', () => {
    const group = buildProgram().commands.find((c) => c.name() === 'memory');
    expect(group?.commands.map((c) => c.name()).sort()).toEqual(['delete', 'get', 'list', 'set']);
    for (const name of ['set', 'get', 'delete']) {
      const cmd = group?.commands.find((c) => c.name() === name);
      expect(cmd?.registeredArguments.map((a) => a.name())).toEqual(['key']);
    }
  });
});

describe('memory over MCP (Streamable HTTP) and REST', () => {
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

  it('an admin or lead MCP client cannot read, overwrite or delete another agent\'s private key', async () => {
    const b = await httpAgent('v2', http.url, await createKey(t, 'mcp-b', 'worker'));
    const adminA = await httpAgent('v2-modern', http.url, await createKey(t, 'mcp-admin', 'admin'));
    const leadA = await httpAgent('v1', http.url, await createKey(t, 'mcp-lead', 'lead'));
    expect(await b.ok('memory_set', { key: 'todo/next', value: 'B secret plan' })).toEqual({
      key: 'todo/next',
      scope: 'agent',
      version: 1,
      expires_at: null,
    });
    for (const a of [adminA, leadA]) {
      const read = await a.call('memory_get', { key: 'todo/next' });
      expect(read.isError).toBe(true);
      expect(read.data).toMatchObject({ error: { code: 'not_found' } });
      expect(JSON.stringify(read.data)).not.toContain('B secret');
      expect(await a.ok('memory_list', {})).toEqual({ scope: 'agent', keys: [], next_cursor: null });
      expect(await a.ok('memory_delete', { key: 'todo/next' })).toEqual({ deleted: false });
      const cas = await a.call('memory_set', { key: 'todo/next', value: 'overwrite', if_version: 1 });
      expect(cas.data).toMatchObject({ error: { code: 'version_conflict' } });
      const named = await a.call('memory_get', { key: 'todo/next', agent: 'mcp-b' });
      expect(named.data).toMatchObject({ error: { code: 'invalid_input' } });
    }
    expect(await adminA.ok('memory_set', { key: 'todo/next', value: 'admin own' })).toMatchObject({ version: 1 });
    expect(await b.ok('memory_get', { key: 'todo/next' })).toMatchObject({ value: 'B secret plan', version: 1, updated_by: 'mcp-b' });
    expect(await adminA.ok('memory_get', { key: 'todo/next' })).toMatchObject({ value: 'admin own', updated_by: 'mcp-admin' });
    await Promise.all([b, adminA, leadA].map((a) => a.close()));
  });

  it('observers see the read tools only, read project memory, and are refused writes', async () => {
    const w = await httpAgent('v2', http.url, await createKey(t, 'mcp-w', 'worker'));
    const obs = await httpAgent('v1', http.url, await createKey(t, 'mcp-obs', 'observer'));
    const names = (await obs.tools()).map((x) => x.name);
    expect(names).toContain('memory_get');
    expect(names).toContain('memory_list');
    expect(names).not.toContain('memory_set');
    expect(names).not.toContain('memory_delete');
    expect((await w.tools()).map((x) => x.name)).toEqual(expect.arrayContaining(['memory_set', 'memory_get', 'memory_list', 'memory_delete']));

    await w.ok('memory_set', { scope: 'project', key: 'build/cmd', value: '{"cmd":"npm test"}' });
    expect(await obs.ok('memory_get', { scope: 'project', key: 'build/cmd' })).toMatchObject({ value: '{"cmd":"npm test"}', version: 1 });
    const refused = await obs.call('memory_set', { scope: 'project', key: 'build/cmd', value: 'rm -rf' });
    expect(refused.data).toMatchObject({ error: { code: 'forbidden' } });
    const big = await w.call('memory_set', { key: 'big', value: 'x'.repeat(65_537) });
    expect(big.data).toMatchObject({ error: { code: 'too_large' } });
    expect(await obs.ok('memory_get', { scope: 'project', key: 'build/cmd' })).toMatchObject({ value: '{"cmd":"npm test"}', version: 1 });
    await Promise.all([w, obs].map((a) => a.close()));
  });

  it('REST: POST /memory, GET /memory?scope&key, GET /memory/list, DELETE /memory?…', async () => {
    const key = await createKey(t, 'rest-mem', 'worker');
    const other = await createKey(t, 'rest-other', 'lead');
    const rest = async (k: string, method: string, path: string, body?: object) => {
      const r = await fetch(new URL(`/api/v1${path}`, http.url), {
        method,
        headers: { authorization: `Bearer ${k}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return { status: r.status, body: (await r.json()) as Record<string, unknown> };
    };
    const q = new URLSearchParams({ scope: 'agent', key: 'dir/sub:x@y' }).toString();
    expect((await rest(key, 'POST', '/memory', { key: 'dir/sub:x@y', value: 'v1', ttl_s: 3600 })).body).toMatchObject({ version: 1 });
    expect((await rest(key, 'GET', `/memory?${q}`)).body).toMatchObject({ key: 'dir/sub:x@y', value: 'v1', version: 1 });
    const hidden = await rest(other, 'GET', `/memory?${q}`);
    expect(hidden.status).toBe(404);
    expect(hidden.body).toMatchObject({ error: { code: 'not_found' } });
    expect((await rest(key, 'GET', '/memory/list?prefix=dir/&limit=5')).body).toMatchObject({ keys: [{ key: 'dir/sub:x@y', version: 1 }] });
    const stale = await rest(key, 'DELETE', `/memory?${q}&if_version=2`);
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ error: { code: 'version_conflict' } });
    expect((await rest(other, 'DELETE', `/memory?${q}`)).body).toEqual({ deleted: false });
    expect((await rest(key, 'DELETE', `/memory?${q}&if_version=1`)).body).toEqual({ deleted: true });
    expect((await rest(key, 'GET', `/memory?${q}`)).status).toBe(404);
  });
});
