/**
 * S8: roles grant per-operation permissions; tiers read/write/admin/debug; organisation roles from
 * config (the shipped example: COO, PA, PM, Executive); anything not granted is denied.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { call, createKey, httpAgent, openHub, serve } from '../helpers.js';

const EXAMPLE = resolve(import.meta.dirname, '../../examples/organisation-roles.json');
const example = (JSON.parse(readFileSync(EXAMPLE, 'utf8')) as { roles: Record<string, string[]> }).roles;

describe('security: organisation roles from config (S8)', () => {
  it('the shipped example config loads', () => {
    const cfg = loadConfig({ env: {}, file: EXAMPLE });
    expect(Object.keys(cfg.roles).sort()).toEqual(['coo', 'executive', 'pa', 'pm']);
  });

  it('refuses unknown permissions, unknown tiers and redefined built-in roles, naming them', () => {
    for (const [roles, fragment] of [
      [{ pm: ['tier:read', 'launch.missiles'] }, 'unknown permission "launch.missiles"'],
      [{ pm: ['tier:everything'] }, 'unknown tier "everything"'],
      [{ admin: ['tier:read'] }, 'role "admin" is built in'],
      [{ 'Bad Name': ['read'] }, 'roles.Bad Name (environment BATON_ROLES): invalid name "Bad Name"'],
    ] as const) {
      expect(() => loadConfig({ env: { BATON_ROLES: JSON.stringify(roles) } })).toThrow(fragment);
    }
  });

  it('each organisation role can do what it was granted and nothing else, over MCP', async () => {
    const t = await openHub({ config: { roles: example } });
    const http = await serve(t.hub);
    try {
      const exec = await httpAgent('v2', http.url, await createKey(t, 'ceo', 'executive'));
      const pm = await httpAgent('v1', http.url, await createKey(t, 'pm-1', 'pm'));
      const pa = await httpAgent('v2-modern', http.url, await createKey(t, 'pa-1', 'pa'));
      const worker = await t.hub.authenticate(await createKey(t, 'w', 'worker'));

      // PM plans and manages tasks; may not claim work or administer keys.
      await pm.ok('plan_update', { goal: 'ship it' });
      const { tasks } = await pm.ok<{ tasks: { id: string }[] }>('task_create', { tasks: [{ title: 'x' }] });
      expect((await pm.call('task_claim', {})).data).toMatchObject({ error: { code: 'forbidden' } });
      expect((await pm.call('token_create', { name: 'x', role: 'worker' })).data).toMatchObject({ error: { code: 'forbidden' } });
      await pm.ok('task_update', { id: tasks[0]!.id, priority: 1 });

      // The executive reads everything and decides approvals, nothing more.
      const { id } = await call<{ id: string }>(t.hub, worker, 'approval_request', { action: 'deploy', risk: 'high' });
      await exec.ok('approval_decide', { id, decision: 'grant' });
      expect((await exec.call('task_create', { tasks: [{ title: 'y' }] })).data).toMatchObject({ error: { code: 'forbidden' } });
      expect((await exec.tools()).map((x) => x.name)).toContain('approval_decide');

      // The PA keeps memory and messages; cannot touch tasks.
      await pa.ok('memory_set', { key: 'agenda', value: 'meetings' });
      await pa.ok('message_send', { to_agents: ['ceo'], body: 'your agenda' });
      expect((await pa.call('task_cancel', { id: tasks[0]!.id })).data).toMatchObject({ error: { code: 'forbidden' } });
      expect((await pa.tools()).map((x) => x.name)).not.toContain('task_create');

      await Promise.all([exec.close(), pm.close(), pa.close()]);
    } finally {
      await http.close();
      await t.close();
    }
  });

  it('an undefined role has no permissions at all', async () => {
    const t = await openHub();
    try {
      await expect(call(t.hub, t.admin, 'token_create', { name: 'ghost', role: 'coo' })).rejects.toMatchObject({ code: 'invalid_input' });
    } finally {
      await t.close();
    }
  });
});

describe('security: input limits are configuration with safe defaults (S15)', () => {
  it('lowered limits refuse long strings, long arrays, large pages and deep JSON, and write nothing', async () => {
    const t = await openHub({ config: { maxStringChars: 100, maxArrayItems: 3, maxPageSize: 10, maxJsonDepth: 8 } });
    const http = await serve(t.hub);
    try {
      const lead = await httpAgent('v2', http.url, await createKey(t, 'lim', 'lead'));
      const refused = async (tool: string, args: Record<string, unknown>, code: string) => {
        const r = await lead.call(tool, args);
        expect(r.isError, tool).toBe(true);
        expect((r.data.error as { code: string; message: string }).code, tool).toBe(code);
        return (r.data.error as { message: string }).message;
      };
      expect(await refused('task_create', { tasks: [{ title: 'x', description: 'd'.repeat(101) }] }, 'too_large')).toContain('tasks.0.description');
      expect(await refused('task_create', { tasks: [{ title: 'x', labels: ['a', 'b', 'c', 'd'] }] }, 'too_large')).toContain('more than 3 items');
      expect(await refused('task_list', { limit: 11 }, 'invalid_input')).toContain('largest page is 10');
      await lead.ok('task_create', { tasks: [{ title: 'x', description: 'd'.repeat(100), labels: ['a', 'b', 'c'] }] });
      expect((await lead.ok<{ tasks: unknown[] }>('task_list', { limit: 10 })).tasks).toHaveLength(1);
      const deep = await fetch(`${http.url}/api/v1/tasks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${await createKey(t, 'lim2', 'lead')}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tasks: [{ title: 'x', context: { hints: 'h' } }], extra: [[[[[[[['too deep']]]]]]]] }),
      });
      expect(deep.status).toBe(400);
      await lead.close();
    } finally {
      await http.close();
      await t.close();
    }
  });

  it('the defaults are the documented safe ones', () => {
    const c = loadConfig({ env: {} });
    expect([c.maxStringChars, c.maxArrayItems, c.maxPageSize, c.maxJsonDepth, c.maxBodyBytes, c.waitMaxMs]).toEqual([
      100_000, 500, 500, 32, 1_048_576, 60_000,
    ]);
  });
});
