/**
 * The catalog walk (S8, S9, S10): every op × every built-in role, over MCP and over REST, is
 * allowed or refused exactly as test/security/policy.ts says; ids from another project answer
 * not_found; lists never show another project's records. An op without a policy entry fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { CATALOG } from '../../src/ops/index.js';
import { createKey, httpAgent, openHub, serve, type Agent, type TestHub } from '../helpers.js';
import { POLICY, ROLES, type Role } from './policy.js';

async function rest(url: string, key: string, method: string, path: string, input: Record<string, unknown>) {
  let p = path;
  const body: Record<string, unknown> = { ...input };
  for (const seg of path.split('/').filter((s) => s.startsWith(':'))) {
    const name = seg.slice(1);
    p = p.replace(seg, encodeURIComponent(String(body[name] ?? 'x')));
    delete body[name];
  }
  let target = `${url}/api/v1${p}`;
  const init: RequestInit = { method, headers: { authorization: `Bearer ${key}` } };
  if (method === 'GET' || method === 'DELETE') {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(body)) q.set(k, Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v));
    if ([...q.keys()].length > 0) target += `?${q.toString()}`;
  } else {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(target, init);
  const json = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: json.error?.code ?? null, json };
}

describe('security: the catalog walk', () => {
  let t: TestHub;
  let http: HttpHandle;
  const keys = {} as Record<Role, string>;
  const agents = {} as Record<Role, Agent>;
  const other: Record<string, string> = {};

  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
    for (const role of ROLES) {
      keys[role] = await createKey(t, `walk-${role}`, role);
      agents[role] = await httpAgent('v2', http.url, keys[role]);
    }
    // Another project, with one of everything.
    const oLead = await httpAgent('v1', http.url, await createKey(t, 'o-lead', 'lead', 'other'));
    const oWorker = await httpAgent('v1', http.url, await createKey(t, 'o-worker', 'worker', 'other'));
    const oAdminKey = await createKey(t, 'o-admin', 'admin', 'other');
    const oAdmin = await httpAgent('v1', http.url, oAdminKey);
    const tasks = await oLead.ok<{ tasks: { id: string }[] }>('task_create', { tasks: [{ title: 'other-secret-task' }, { title: 'held' }] });
    other.task = tasks.tasks[0]!.id;
    const held = await oWorker.ok<{ task: { id: string } }>('task_claim', { id: tasks.tasks[1]!.id });
    other.message = (await oLead.ok<{ id: string }>('message_send', { to_all: true, body: 'other-secret-message', visibility: 'public' })).id;
    other.approval = (await oWorker.ok<{ id: string }>('approval_request', { action: 'other-secret-approval', risk: 'low' })).id;
    other.lock = (await oWorker.ok<{ lock: { id: string } }>('lock_acquire', { paths: ['other/**'] })).lock.id;
    await oWorker.ok('session_start', {});
    other.handoff = (
      await oWorker.ok<{ handoff: { id: string } }>('session_end', { handoff: { summary: 'other-secret-handoff', task_ids: [held.task.id] } })
    ).handoff.id;
    await oWorker.ok('memory_set', { scope: 'project', key: 'other-key', value: 'other-secret-memory' });
    await oWorker.ok('discovery_add', { content: 'other-secret-discovery' });
    await oWorker.ok('decision_record', { what: 'other-secret-decision', why: 'because' });
    const tokens = await oAdmin.ok<{ tokens: { id: string; name: string }[] }>('token_list', {});
    other.token = tokens.tokens.find((x) => x.name === 'o-lead')!.id;
    await Promise.all([oLead.close(), oWorker.close(), oAdmin.close()]);
  });
  afterAll(async () => {
    await Promise.all(Object.values(agents).map((a) => a.close()));
    await http.close();
    await t.close();
  });

  it('has a policy entry for every op, and none for ops that do not exist', () => {
    const names = CATALOG.map((o) => o.name);
    expect(names.filter((n) => !(n in POLICY)), 'ops without a policy entry').toEqual([]);
    expect(Object.keys(POLICY).filter((n) => !names.includes(n)), 'policy entries without an op').toEqual([]);
  });

  it('each role lists exactly the tools the policy allows it', async () => {
    for (const role of ROLES) {
      const listed = (await agents[role].tools()).map((x) => x.name).sort();
      const allowed = CATALOG.filter((o) => POLICY[o.name]?.includes(role)).map((o) => o.name).sort();
      expect(listed, role).toEqual(allowed);
    }
  });

  for (const op of CATALOG) {
    it(`${op.name}: allowed or forbidden per policy, over MCP and REST`, async () => {
      for (const role of ROLES) {
        const allowed = POLICY[op.name]?.includes(role) ?? false;
        const mcp = await agents[role].call(op.name, {});
        const mcpCode = mcp.isError ? (mcp.data.error as { code: string }).code : null;
        const r = await rest(http.url, keys[role], op.rest.method, op.rest.path, {});
        if (allowed) {
          expect(mcpCode, `${role} over MCP`).not.toBe('forbidden');
          expect(r.code, `${role} over REST`).not.toBe('forbidden');
        } else {
          expect(mcpCode, `${role} over MCP`).toBe('forbidden');
          expect([r.status, r.code], `${role} over REST`).toEqual([403, 'forbidden']);
        }
      }
    });
  }

  it('ids from another project answer not_found, whatever the role (S9)', async () => {
    const T = () => other.task!;
    const cases: [string, Record<string, unknown>][] = [
      ['task_get', { id: T() }],
      ['task_claim', { id: T() }],
      ['task_start', { id: T(), lease_token: 1 }],
      ['task_heartbeat', { id: T(), lease_token: 1 }],
      ['task_complete', { id: T(), lease_token: 1, result: { summary: 'x' } }],
      ['task_fail', { id: T(), lease_token: 1, error: 'x' }],
      ['task_release', { id: T(), lease_token: 1 }],
      ['task_cancel', { id: T() }],
      ['task_update', { id: T(), title: 'x' }],
      ['task_create', { tasks: [{ title: 'x', depends_on: [T()] }] }],
      ['task_create', { tasks: [{ title: 'x', parent_id: T() }] }],
      ['message_send', { to_all: true, body: 'x', reply_to: other.message }],
      ['approval_get', { id: other.approval }],
      ['approval_decide', { id: other.approval, decision: 'grant' }],
      ['approval_request', { action: 'x', risk: 'low', task_id: T() }],
      ['lock_release', { id: other.lock }],
      ['lock_force_release', { id: other.lock }],
      ['lock_acquire', { paths: ['x'], task_id: T() }],
      ['handoff_accept', { id: other.handoff }],
      ['token_revoke', { id: other.token }],
      ['discovery_add', { content: 'x', task_ids: [T()] }],
      ['decision_record', { what: 'x', why: 'y', task_id: T() }],
      ['memory_get', { scope: 'project', key: 'other-key' }],
    ];
    for (const [name, input] of cases) {
      const op = CATALOG.find((o) => o.name === name)!;
      for (const role of ROLES.filter((r) => POLICY[name]!.includes(r))) {
        const mcp = await agents[role].call(name, input);
        expect(mcp.isError, `${name} as ${role}`).toBe(true);
        expect((mcp.data.error as { code: string }).code, `${name} as ${role} over MCP`).toBe('not_found');
        const r = await rest(http.url, keys[role], op.rest.method, op.rest.path, input);
        expect([r.status, r.code], `${name} as ${role} over REST`).toEqual([404, 'not_found']);
      }
    }
  });

  it('no list, search or wait ever shows another project\u2019s records', async () => {
    const lists: [string, Record<string, unknown>][] = [
      ['task_list', { status: ['ready', 'claimed', 'blocked'] }],
      ['agent_list', {}],
      ['message_search', {}],
      ['message_inbox', {}],
      ['discovery_search', {}],
      ['decision_list', {}],
      ['lock_list', {}],
      ['handoff_list', {}],
      ['approval_list', {}],
      ['memory_list', { scope: 'project' }],
      ['events_wait', { after: 'start', limit: 200 }],
      ['token_list', {}],
      ['audit_query', {}],
    ];
    for (const [name, input] of lists) {
      if (!CATALOG.some((o) => o.name === name)) continue;
      for (const role of ROLES.filter((r) => POLICY[name]!.includes(r))) {
        const r = await agents[role].call(name, input);
        const text = JSON.stringify(r.data);
        expect(text, `${name} as ${role}`).not.toMatch(/other-secret|o-lead|o-worker|o-admin/);
        // The audit trail holds this project's own refused attempts on those ids (above): ids
        // there are the caller's own requests, not the other project's records.
        if (name === 'audit_query') continue;
        for (const id of Object.values(other)) expect(text, `${name} as ${role}`).not.toContain(id);
      }
    }
  });
});
