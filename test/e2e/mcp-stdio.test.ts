import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, openHub, stdioAgent, type Agent, type ClientLine, type TestHub, woken } from '../helpers.js';
import { assertBoardIntegrity, dagSpec, runWorkers } from './scenario.js';

/** Every agent here is its own `baton mcp` process; all share one SQLite file. */
describe('MCP over stdio, many processes on one SQLite file', () => {
  let t: TestHub;
  let data: string;
  beforeAll(async () => {
    t = await openHub();
    data = join(t.dir, 'data');
  });
  afterAll(async () => {
    await t.close();
  });

  it('8 worker processes (v1, v2, v2-modern clients) finish a 120-task graph exactly once, in dependency order', async () => {
    const lines: ClientLine[] = ['v1', 'v2', 'v2-modern'];
    const lead = await stdioAgent('v2', data, { BATON_TOKEN: await createKey(t, 'lead', 'lead') });
    const created = await lead.ok<{ tasks: { id: string }[] }>('task_create', { tasks: dagSpec(120, 7) });
    const workers: Agent[] = await Promise.all(
      Array.from({ length: 8 }, async (_, i) =>
        stdioAgent(lines[i % 3]!, data, { BATON_TOKEN: await createKey(t, `stdio-w${i}`, 'worker') }),
      ),
    );
    const counts = await runWorkers(workers, 120);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(120);
    await assertBoardIntegrity(
      t.hub,
      created.tasks.map((x) => x.id),
    );
    const me = await workers[0]!.ok<{ agent: { name: string; role: string } }>('whoami');
    expect(me.agent).toMatchObject({ name: 'stdio-w0', role: 'worker' });
    await Promise.all([lead, ...workers].map((a) => a.close()));
  });

  it('a claim waiting in one process is woken by a task created in another', async () => {
    const waiter = await stdioAgent('v2', data, { BATON_TOKEN: await createKey(t, 'waiter', 'worker'), BATON_WAIT_RECHECK_MS: '0' });
    const maker = await stdioAgent('v1', data, { BATON_TOKEN: await createKey(t, 'maker', 'lead') });
    const waiting = waiter.ok<{ task: { title: string } | null }>('task_claim', { wait_ms: 20_000, capabilities: ['wake-test'] });
    await new Promise((r) => setTimeout(r, 300));
    await maker.ok('task_create', { tasks: [{ title: 'wake up', capabilities: ['wake-test'] }] });
    const got = await woken(waiting);
    expect(got.task?.title).toBe('wake up');
    await Promise.all([waiter.close(), maker.close()]);
  });

  it('a key revoked while a stdio agent runs is refused on its next call', async () => {
    const key = await createKey(t, 'doomed', 'worker');
    const a = await stdioAgent('v2', data, { BATON_TOKEN: key });
    await a.ok('whoami');
    const tokens = await t.hub.call('token_list', {}, t.admin, { requestId: 'r1', transport: 'internal' });
    const id = (tokens as { tokens: { id: string; name: string }[] }).tokens.find((x) => x.name === 'doomed')!.id;
    await t.hub.call('token_revoke', { id }, t.admin, { requestId: 'r2', transport: 'internal' });
    await expect(a.call('whoami')).rejects.toThrow(/invalid credentials/);
    await a.close().catch(() => undefined);
  });

  it('without a key, runs only as a named local agent (BATON_AGENT)', async () => {
    const a = await stdioAgent('v2', data, { BATON_AGENT: 'local-dev', BATON_ROLE: 'worker' });
    const me = await a.ok<{ agent: { name: string; role: string }; server_admin: boolean }>('whoami');
    expect(me.agent).toMatchObject({ name: 'local-dev', role: 'worker' });
    expect(me.server_admin).toBe(false);
    expect((await a.tools()).map((x) => x.name)).not.toContain('token_create');
    await a.close();
    await expect(stdioAgent('v2', data, {})).rejects.toThrow();
  });

  it('an invalid key stops the process at start', async () => {
    await expect(stdioAgent('v1', data, { BATON_TOKEN: 'bat_' + 'x'.repeat(43) })).rejects.toThrow();
  });
});
