import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { BIN, createKey, openHub, serve, type TestHub } from '../helpers.js';

/**
 * Long waits clients survive (issue 11): one MCP call waits at most mcpWaitCapMs whatever its
 * wait_ms asks, and answers its empty result at the cap; while it waits, a request with a
 * progressToken gets progress notifications (SDK client's onprogress), over HTTP and stdio.
 *
 * Each call asks for a 250 s wait under a 1 s cap: without the cap it would outlast both the test
 * timeout and the client's own 60 s request timeout, so a broken cap fails the test (no timing
 * assertion needed).
 */
const ASK = 250_000;
const CAP = 1_000;
const EVERY = 100;

interface Tick {
  progress: number;
  total?: number;
  message?: string;
}

async function claimWithProgress(client: Client, withToken: boolean): Promise<{ task: unknown; ticks: Tick[] }> {
  const ticks: Tick[] = [];
  const r = (await client.callTool(
    { name: 'task_claim', arguments: { wait_ms: ASK } },
    withToken ? { onprogress: (p: Tick) => ticks.push(p) } : {},
  )) as { isError?: boolean; structuredContent?: { task: unknown } };
  expect(r.isError).not.toBe(true);
  return { task: r.structuredContent?.task, ticks };
}

function expectTicks(ticks: Tick[]): void {
  expect(ticks.length).toBeGreaterThanOrEqual(1);
  for (let i = 1; i < ticks.length; i++) expect(ticks[i]!.progress).toBeGreaterThan(ticks[i - 1]!.progress);
  expect(ticks[0]!.total).toBe(CAP);
  expect(ticks[0]!.message).toMatch(/^waiting/);
}

describe.each([true, false])('an MCP wait over HTTP is capped and reports progress (lean path: %s)', (lean) => {
  let t: TestHub;
  let http: HttpHandle;
  let key: string;
  beforeAll(async () => {
    t = await openHub({ config: { mcpWaitCapMs: CAP, waitProgressMs: EVERY, waitMaxMs: 300_000 } });
    http = await serve(t.hub, lean);
    key = await createKey(t, 'waiter', 'worker');
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  const connect = async (modern = false): Promise<Client> => {
    const client = new Client({ name: 'long-wait', version: '1.0.0' }, modern ? { versionNegotiation: { mode: 'auto' } } : {});
    await client.connect(new StreamableHTTPClientTransport(new URL('/mcp', http.url), { requestInit: { headers: { Authorization: `Bearer ${key}` } } }));
    return client;
  };

  it('with a progressToken: progress notifications while it waits, then the empty result at the cap', async () => {
    const client = await connect();
    const { task, ticks } = await claimWithProgress(client, true);
    expect(task).toBeNull();
    expectTicks(ticks);
    await client.close();
  });

  it('the same in the 2026-07-28 era (the negotiated modern protocol)', async () => {
    const client = await connect(true);
    expect(client.getNegotiatedProtocolVersion()).toBe('2026-07-28');
    const { task, ticks } = await claimWithProgress(client, true);
    expect(task).toBeNull();
    expectTicks(ticks);
    await client.close();
  });

  it('without one: the same capped, empty answer', async () => {
    const client = await connect();
    const { task, ticks } = await claimWithProgress(client, false);
    expect(task).toBeNull();
    expect(ticks).toHaveLength(0);
    await client.close();
  });

  it('REST is not capped by the MCP cap: a wait there is bounded by waitMaxMs only', async () => {
    // Asking more than waitMaxMs is refused as before (S15) on every surface.
    const res = await fetch(new URL('/api/v1/tasks/claim', http.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ wait_ms: 300_001 }),
    });
    expect(res.status).toBe(400);
  });
});

describe('an MCP wait over stdio is capped and reports progress', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await openHub();
  });
  afterAll(async () => {
    await t.close();
  });

  it('onprogress ticks, then the empty result at the cap', async () => {
    const client = new Client({ name: 'long-wait-stdio', version: '1.0.0' });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [BIN, 'mcp', '--data', `${t.dir}/data`],
        env: {
          ...getDefaultEnvironment(),
          BATON_LOG_LEVEL: 'warn',
          BATON_AGENT: 'stdio-waiter',
          BATON_MCP_WAIT_CAP_MS: String(CAP),
          BATON_WAIT_PROGRESS_MS: String(EVERY),
          BATON_WAIT_MAX_MS: '300000',
        },
        stderr: 'pipe',
      }),
    );
    try {
      const { task, ticks } = await claimWithProgress(client, true);
      expect(task).toBeNull();
      expectTicks(ticks);
    } finally {
      await client.close();
    }
  });
});
