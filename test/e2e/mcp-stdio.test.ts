import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { Client as V2Client } from '@modelcontextprotocol/client';
import { StdioClientTransport as V2Stdio, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from '../../src/store/sql.js';
import { BIN, createKey, openHub, stdioAgent, storeEnvOf, type Agent, type ClientLine, type TestHub, woken } from '../helpers.js';
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

  /**
   * A raw `baton mcp` child (JSON-RPC lines on stdio) that has initialized and sent a task_claim
   * waiting 20 s for work that never comes; `lines` collects what it answers.
   */
  async function waitingClaim(
    key: string,
    options: { env?: Record<string, string>; capabilities?: string[] } = {},
  ): Promise<{ child: ChildProcessWithoutNullStreams; lines: string[]; exited: Promise<number | null> }> {
    const child = spawn(process.execPath, [BIN, 'mcp', '--data', data], {
      env: { ...process.env, ...storeEnvOf(data), BATON_TOKEN: key, BATON_LOG_LEVEL: 'warn', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    // Listened for from the start: a child that dies early is an exit code, not a hung test.
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const lines: string[] = [];
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const parts = buf.split('\n');
      buf = parts.pop()!;
      lines.push(...parts);
    });
    const send = (m: unknown): boolean => child.stdin.write(`${JSON.stringify(m)}\n`);
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    for (let i = 0; i < 200 && lines.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const capabilities = options.capabilities ?? ['never-posted'];
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 20_000, capabilities } } });
    await new Promise((r) => setTimeout(r, 500)); // the claim is waiting
    return { child, lines, exited };
  }

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
    await expect(a.call('whoami')).rejects.toThrow(/invalid credentials: BATON_TOKEN is no longer a valid Baton key \(revoked or expired\): create one with `baton token create/);
    await a.close().catch(() => undefined);
  });

  it('without a key, runs only as a named local agent (BATON_AGENT)', async () => {
    const a = await stdioAgent('v2', data, { BATON_AGENT: 'local-dev', BATON_ROLE: 'worker' });
    const me = await a.ok<{ agent: { name: string; role: string }; server_admin: boolean }>('whoami');
    expect(me.agent).toMatchObject({ name: 'local-dev', role: 'worker' });
    expect(me.server_admin).toBe(false);
    expect((await a.tools()).map((x) => x.name)).not.toContain('token_create');
    await a.close();
  });

  /** A v2 SDK client over `baton mcp`, with the process's stderr collected. */
  async function rawStdio(env: Record<string, string>): Promise<{ client: V2Client; stderr: () => string }> {
    const transport = new V2Stdio({
      command: process.execPath,
      args: [BIN, 'mcp', '--data', data],
      env: { ...getDefaultEnvironment(), BATON_LOG_LEVEL: 'warn', ...storeEnvOf(data), ...env },
      stderr: 'pipe',
    });
    let err = '';
    transport.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const client = new V2Client({ name: 'refused', version: '1' });
    await client.connect(transport);
    return { client, stderr: () => err };
  }

  const refusals: [string, Record<string, string>, RegExp][] = [
    ['a key that is not a key', { BATON_TOKEN: 'not-a-key' }, /BATON_TOKEN is not a Baton key/],
    ['an unknown (mistyped) key', { BATON_TOKEN: 'bat_' + 'x'.repeat(43) }, /BATON_TOKEN is not a valid Baton key \(revoked/],
    ['no key and no BATON_AGENT', {}, /no credentials: set BATON_TOKEN/],
  ];
  for (const [what, env, message] of refusals) {
    it(`${what}: the client connects, and every request is refused with the problem and the fix (also said once on stderr)`, async () => {
      const { client, stderr } = await rawStdio(env);
      try {
        const r = (await client.callTool({ name: 'whoami', arguments: {} })) as { isError?: boolean; content: { text: string }[] };
        expect(r.isError).toBe(true);
        expect(r.content[0]!.text).toMatch(message);
        expect(r.content[0]!.text).toMatch(/baton token create --name NAME --role worker/);
        await expect(client.listTools()).rejects.toThrow(message);
        await new Promise((res) => setTimeout(res, 100)); // stderr is read asynchronously
        expect(stderr().match(new RegExp(message.source, 'g'))?.length).toBe(1);
      } finally {
        await client.close();
      }
    });
  }

  it('a revoked key: the client connects and is told the key is not valid', async () => {
    const key = await createKey(t, 'revoked-at-start', 'worker');
    const tokens = await t.hub.call('token_list', {}, t.admin, { requestId: 'r3', transport: 'internal' });
    const id = (tokens as { tokens: { id: string; name: string }[] }).tokens.find((x) => x.name === 'revoked-at-start')!.id;
    await t.hub.call('token_revoke', { id }, t.admin, { requestId: 'r4', transport: 'internal' });
    const { client } = await rawStdio({ BATON_TOKEN: key });
    try {
      const r = (await client.callTool({ name: 'task_list', arguments: {} })) as { isError?: boolean; content: { text: string }[] };
      expect(r.isError).toBe(true);
      expect(r.content[0]!.text).toMatch(/not a valid Baton key/);
    } finally {
      await client.close();
    }
  });

  it('drains when stdin closes: a call in flight finishes and is audited, then the process exits 0', async () => {
    const { child, exited } = await waitingClaim(await createKey(t, 'drainer', 'worker'));
    child.stdin.end();
    expect(await exited).toBe(0);
    const agent = await t.hub.db.read((ex) => ex.get<{ id: string }>(sql`SELECT id FROM agents WHERE name = 'drainer'`));
    const rows = await t.hub.db.read((ex) =>
      ex.all<{ op: string; code: string | null }>(sql`SELECT op, code FROM audit WHERE principal = ${agent!.id} AND op = 'task_claim'`),
    );
    // The wait ended before the process did, and was audited as the client going away (stdin
    // closed: the call's signal fires before the drain's final attempt).
    expect(rows).toHaveLength(1);
    expect(rows[0]!.code).toBe('unavailable');
  });

  it('stdin closing right after work arrived: the departed client claims nothing (the drain does not make its final attempt for it)', async () => {
    // The child hears of other processes' commits only by its poll, once a second here, and
    // never re-checks on a timer: the task created below is unseen when stdin closes a moment
    // later, and a final attempt made for the departed client would claim it. Should the poll
    // fall in that moment (the claim then rightly the client's), the round is run again: a
    // broken build claims in every round.
    const lead = await t.hub.authenticate(await createKey(t, 'leaver-lead', 'lead'));
    const round = async (n: number): Promise<{ status: string; attempts: number } | undefined> => {
      const label = `after-stdin-close-${n}`;
      const { child, exited } = await waitingClaim(await createKey(t, `leaver${n}`, 'worker'), {
        env: { BATON_POLL_MS: '1000', BATON_WAIT_RECHECK_MS: '0' },
        capabilities: [label],
      });
      const created = (await t.hub.call('task_create', { tasks: [{ title: label, capabilities: [label] }] }, lead, { requestId: `r-leave${n}`, transport: 'internal' })) as {
        tasks: { id: string }[];
      };
      child.stdin.end();
      expect(await exited).toBe(0);
      const id = created.tasks[0]!.id;
      return t.hub.db.read((ex) => ex.get<{ status: string; attempts: number }>(sql`SELECT status, attempts FROM tasks WHERE id = ${id}`));
    };
    let row = await round(0);
    for (let n = 1; n < 3 && row?.status !== 'ready'; n++) row = await round(n);
    expect(row).toEqual({ status: 'ready', attempts: 0 });
  });

  it('drains on SIGTERM too: a waiting claim is answered with its empty result, then the process exits 0', async () => {
    const { child, lines, exited } = await waitingClaim(await createKey(t, 'sigtermer', 'worker'));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    const answer = lines.map((l) => JSON.parse(l) as { id?: number; result?: { structuredContent?: unknown } }).find((m) => m.id === 2);
    expect(answer?.result?.structuredContent).toEqual({ task: null });
  });
});
