import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { ManualClock } from '../../src/core/clock.js';
import { createKey, httpAgent, openHub, serve, type Agent, type ClientLine, type TestHub } from '../helpers.js';
import { assertBoardIntegrity, dagSpec, runWorkers } from './scenario.js';

const LINES: ClientLine[] = ['v1', 'v2', 'v2-modern'];

describe('MCP over Streamable HTTP', () => {
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

  it('a lead builds a 120-task graph; 8 concurrent workers (v1, v2, v2-modern) finish it exactly once, in dependency order', async () => {
    const lead = await httpAgent('v2-modern', http.url, await createKey(t, 'lead-http', 'lead'));
    const spec = dagSpec(120);
    const created = await lead.ok<{ tasks: { id: string }[] }>('task_create', { tasks: spec });
    expect(created.tasks).toHaveLength(120);
    const workers: Agent[] = [];
    for (let i = 0; i < 8; i++) {
      workers.push(await httpAgent(LINES[i % 3]!, http.url, await createKey(t, `http-w${i}`, 'worker')));
    }
    const counts = await runWorkers(workers, 120);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(120);
    expect(counts.filter((c) => c > 0).length).toBeGreaterThan(1);
    await assertBoardIntegrity(
      t.hub,
      created.tasks.map((x) => x.id),
    );
    await Promise.all([lead, ...workers].map((a) => a.close()));
  });

  it('each role sees only the tools it may call; a worker list stays under 16 KB', async () => {
    const sizes: Record<string, number> = {};
    for (const role of ['admin', 'lead', 'worker', 'observer']) {
      const a = await httpAgent('v2', http.url, await createKey(t, `list-${role}`, role));
      const tools = await a.tools();
      const names = tools.map((x) => x.name);
      sizes[role] = JSON.stringify({ tools }).length;
      if (role === 'observer') expect(names.sort()).toEqual(['agent_list',  'approval_get',  'decision_list',  'discovery_search',  'events_wait',  'handoff_list',  'lock_list',  'memory_get',  'memory_list',  'message_ack',  'message_inbox',  'message_search',  'plan_get',  'prime',  'task_get',  'task_list',  'whoami']);
      if (role === 'worker') {
        expect(names).toContain('task_complete');
        expect(names).not.toContain('task_cancel');
        expect(names).not.toContain('token_create');
      }
      if (role === 'lead') {
        expect(names).toContain('task_cancel');
        expect(names).not.toContain('token_create');
      }
      if (role === 'admin') expect(names).toContain('token_revoke');
      for (const tool of tools) expect(tool.description?.length ?? 0).toBeGreaterThan(10);
      await a.close();
    }
    // 16 KB since the list advertises additionalProperties: false and the likely-hit bounds (issue 8, item 14; docs/ARCHITECTURE.md).
    expect(sizes.worker).toBeLessThanOrEqual(16 * 1024);
  });

  it('a call a role may not make is a tool error with code forbidden, and is audited', async () => {
    const a = await httpAgent('v1', http.url, await createKey(t, 'obs', 'observer'));
    const r = await a.call('task_create', { tasks: [{ title: 'x' }] });
    expect(r.isError).toBe(true);
    expect(r.data).toMatchObject({ error: { code: 'forbidden' } });
    await a.close();
  });

  for (const line of LINES) {
    it(`malformed and oversized arguments get tool errors with stable codes (${line})`, async () => {
      const a = await httpAgent(line, http.url, await createKey(t, `bad-${line}`, 'lead'));
      const cases: [string, Record<string, unknown>, string][] = [
        ['task_create', { tasks: [{ title: 42 }] }, 'invalid_input'],
        ['task_create', { tasks: [] }, 'invalid_input'],
        ['task_create', { tasks: [{ title: 'x', owner: 'me' }] }, 'invalid_input'],
        ['task_create', { tasks: [{ title: 'x'.repeat(201) }] }, 'too_large'],
        ['task_create', { tasks: [{ title: 'x', description: 'y'.repeat(10_001) }] }, 'too_large'],
        ['task_create', { tasks: [{ title: 'x', depends_on: Array.from({ length: 101 }, (_, i) => `r${i}`) }] }, 'too_large'],
        ['task_create', { tasks: [{ title: 'x', context: { files: ['../../etc/passwd'] } }] }, 'invalid_input'],
        ['task_get', { id: "tsk_' OR 1=1 --" }, 'invalid_input'],
        ['task_get', { id: 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa' }, 'not_found'],
        ['task_list', { limit: 10_000 }, 'invalid_input'],
        ['task_claim', { wait_ms: 10_000_000 }, 'invalid_input'],
        ['task_complete', { id: 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa', lease_token: 1 }, 'invalid_input'],
        ['whoami', { as: 'someone-else' }, 'invalid_input'],
      ];
      for (const [tool, args, code] of cases) {
        const r = await a.call(tool, args);
        expect(r.isError, `${tool} ${JSON.stringify(args).slice(0, 80)}`).toBe(true);
        expect((r.data.error as { code: string }).code, `${tool} ${JSON.stringify(args).slice(0, 80)}`).toBe(code);
        expect(JSON.stringify(r.data)).not.toMatch(/at .*\.(ts|js):\d+|SELECT|sqlite|\/work\//i);
      }
      await expect(a.call('no_such_tool', {})).rejects.toThrow(/no_such_tool/);
      await a.close();
    });
  }
});

describe('leases over MCP HTTP (injected clock)', () => {
  it('a lease expires: another worker reclaims the task and the first worker\u2019s late completion is refused', async () => {
    const clock = new ManualClock(Date.UTC(2026, 10, 1));
    const t = await openHub({ clock });
    const http = await serve(t.hub);
    try {
      const lead = await httpAgent('v2', http.url, await createKey(t, 'lead', 'lead'));
      const a = await httpAgent('v1', http.url, await createKey(t, 'slow', 'worker'));
      const b = await httpAgent('v2-modern', http.url, await createKey(t, 'fast', 'worker'));
      await lead.ok('task_create', { tasks: [{ title: 'the one task' }] });
      const first = (await a.ok<{ task: { id: string; lease: { token: number } } }>('task_claim', { lease_ms: 10_000 })).task;
      await a.ok('task_start', { id: first.id, lease_token: first.lease.token });
      expect((await b.ok<{ task: unknown }>('task_claim')).task).toBeNull();
      clock.advance(10_001);
      const second = (await b.ok<{ task: { id: string; lease: { token: number; owner: string } } }>('task_claim')).task;
      expect(second.id).toBe(first.id);
      expect(second.lease.owner).toBe('fast');
      const late = await a.call('task_complete', { id: first.id, lease_token: first.lease.token, result: { summary: 'late' } });
      expect(late.isError).toBe(true);
      expect(late.data).toMatchObject({ error: { code: 'lease_lost' } });
      await b.ok('task_complete', { id: second.id, lease_token: second.lease.token, result: { summary: 'ok' } });
      const final = await lead.ok<{ task: { status: string; result: { summary: string } } }>('task_get', { id: first.id });
      expect(final.task).toMatchObject({ status: 'done', result: { summary: 'ok' } });
      await Promise.all([lead, a, b].map((x) => x.close()));
    } finally {
      await http.close();
      await t.close();
    }
  });
});
