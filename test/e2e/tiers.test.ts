import { Client } from '@modelcontextprotocol/client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { INSTRUCTIONS } from '../../src/api/mcp/identity.js';
import { TIERS, tierShows } from '../../src/core/tiers.js';
import { CATALOG } from '../../src/ops/index.js';
import { keyTools, setKeyTools } from '../../src/store/tiers.js';
import { BIN, call, createKey, openHub, runBaton, serve, storeEnvOf, type TestHub } from '../helpers.js';

/**
 * Tool tiers (issue 11): what tools/list shows per key and per connection, over both HTTP paths
 * (lean and SDK) and stdio, with the SDK client; and that a tier never narrows what may be called.
 */
const CORE = CATALOG.filter((op) => op.tier === 'core').map((op) => op.name);
const STANDARD = CATALOG.filter((op) => tierShows('standard', op.tier)).map((op) => op.name);

async function httpClient(url: string, key: string, opts: { query?: string; header?: string } = {}): Promise<Client> {
  const endpoint = new URL('/mcp', url);
  if (opts.query !== undefined) endpoint.searchParams.set('tools', opts.query);
  const headers: Record<string, string> = { Authorization: `Bearer ${key}` };
  if (opts.header !== undefined) headers['X-Baton-Tools'] = opts.header;
  const client = new Client({ name: 'tiers-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(endpoint, { requestInit: { headers } }));
  return client;
}

async function names(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t) => t.name);
}

describe('the catalog’s tiers', () => {
  it('every op has a tier; core is the daily loop in at most 8 tools, all callable by a worker', async () => {
    for (const op of CATALOG) expect(TIERS).toContain(op.tier);
    expect(CORE.length).toBeGreaterThan(0);
    expect(CORE.length).toBeLessThanOrEqual(8);
    expect(CORE).toEqual(
      expect.arrayContaining(['prime', 'task_claim', 'task_heartbeat', 'task_complete', 'task_fail', 'message_send', 'message_inbox', 'lock_acquire']),
    );
    const t = await openHub();
    try {
      const worker = await t.hub.localPrincipal('w', 'worker');
      const visible = t.hub.runner.visibleOps(worker).map((op) => op.name);
      for (const name of CORE) expect(visible).toContain(name);
    } finally {
      await t.close();
    }
  });

  it('the server instructions stay under 1 KB and name only core tools', () => {
    expect(Buffer.byteLength(INSTRUCTIONS)).toBeLessThanOrEqual(1024);
    const named = INSTRUCTIONS.match(/\b[a-z_]+\b/g) ?? [];
    const tools = new Set(CATALOG.map((op) => op.name));
    const mentioned = named.filter((n) => tools.has(n));
    expect(mentioned.length).toBeGreaterThanOrEqual(6);
    for (const n of mentioned) expect(CORE).toContain(n);
  });
});

describe.each([true, false])('tool tiers over HTTP (lean path: %s)', (lean) => {
  let t: TestHub;
  let http: HttpHandle;
  let coreKey: string;
  let plainKey: string;
  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub, lean);
    coreKey = (await call<{ key: string }>(t.hub, t.admin, 'token_create', { name: 'lean-w', role: 'worker', tools: 'core' })).key;
    plainKey = await createKey(t, 'plain-w', 'worker');
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('a core key lists the core tools in ≤ 4 KB; a key without a tier lists everything its role may call', async () => {
    const core = await httpClient(http.url, coreKey);
    const list = (await core.listTools()).tools;
    expect(list.map((x) => x.name)).toEqual(CORE);
    // The measure the issue sets: the tools array as the client receives it.
    expect(Buffer.byteLength(JSON.stringify({ tools: list }))).toBeLessThanOrEqual(4096);
    expect(core.getInstructions()).toBe(INSTRUCTIONS);
    await core.close();
    const plain = await httpClient(http.url, plainKey);
    const all = await names(plain);
    // Everything its role may call, no more and no less.
    const mayCall = t.hub.runner.visibleOps(await t.hub.authenticate(plainKey)).map((op) => op.name);
    expect([...all].sort()).toEqual([...mayCall].sort());
    expect(all.length).toBeGreaterThan(STANDARD.filter((n) => all.includes(n)).length);
    await plain.close();
  });

  it('a connection chooses its own tier: ?tools= wins over X-Baton-Tools, either over the key', async () => {
    const widened = await httpClient(http.url, coreKey, { query: 'all' });
    expect((await names(widened)).length).toBeGreaterThan(CORE.length);
    await widened.close();
    const header = await httpClient(http.url, plainKey, { header: 'core' });
    expect(await names(header)).toEqual(CORE);
    await header.close();
    const both = await httpClient(http.url, plainKey, { query: 'standard', header: 'core' });
    const std = await names(both);
    expect(std).toContain('task_create');
    expect(std).not.toContain('token_create');
    await both.close();
  });

  it('a tier that does not exist is refused with a message naming the tiers, not silently defaulted', async () => {
    const url = new URL('/mcp', http.url);
    url.searchParams.set('tools', 'everything');
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${coreKey}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { message: string } };
    expect(body.error.message).toContain('core, standard, all');
    const res2 = await fetch(new URL('/mcp', http.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${coreKey}`, 'x-baton-tools': 'CORE', 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    });
    expect(res2.status).toBe(400);
  });

  it('a tool outside the tier is still callable over MCP and REST (a tier is not a permission)', async () => {
    const core = await httpClient(http.url, coreKey);
    expect(await names(core)).not.toContain('whoami');
    const r = (await core.callTool({ name: 'whoami', arguments: {} })) as { isError?: boolean; structuredContent?: { agent: { name: string } } };
    expect(r.isError).not.toBe(true);
    expect(r.structuredContent?.agent.name).toBe('lean-w');
    // …but never beyond the role: a worker still cannot mint keys.
    const denied = (await core.callTool({ name: 'token_create', arguments: { name: 'x', role: 'worker' } })) as { isError?: boolean; structuredContent?: { error: { code: string } } };
    expect(denied.isError).toBe(true);
    expect(denied.structuredContent?.error.code).toBe('forbidden');
    await core.close();
    const rest = await fetch(new URL('/api/v1/agents', http.url), { headers: { authorization: `Bearer ${coreKey}` } });
    expect(rest.status).toBe(200);
  });
});

describe('tool tiers per key and over stdio', () => {
  let t: TestHub;
  beforeAll(async () => {
    t = await openHub();
  });
  afterAll(async () => {
    await t.close();
  });

  it('token_create --tools is kept with the key and listed; a bad tier is refused', async () => {
    const made = await call<{ token: { id: string; tools: string | null } }>(t.hub, t.admin, 'token_create', { name: 'k1', role: 'worker', tools: 'standard' });
    expect(made.token.tools).toBe('standard');
    const listed = await call<{ tokens: { id: string; tools: string | null }[] }>(t.hub, t.admin, 'token_list', {});
    expect(listed.tokens.find((x) => x.id === made.token.id)?.tools).toBe('standard');
    expect(listed.tokens.find((x) => x.id !== made.token.id)?.tools).toBeNull();
    await expect(call(t.hub, t.admin, 'token_create', { name: 'k2', role: 'worker', tools: 'most' })).rejects.toMatchObject({ code: 'invalid_input' });
    // Migration 13's CHECK: the column holds a tier or NULL, whatever writes it.
    await expect(t.hub.db.write((ex) => setKeyTools(ex, made.token.id, 'most'))).rejects.toThrow(/CHECK|check constraint/);
    expect(await t.hub.db.read((ex) => keyTools(ex, made.token.id))).toBe('standard');
  });

  it('the CLI mints a core key; stdio lists its core tools; BATON_TOOLS overrides; a bad BATON_TOOLS is said', async () => {
    const data = `${t.dir}/data`;
    const made = await runBaton(['token', 'create', '--name', 'cli-w', '--role', 'worker', '--tools', 'core', '--data', data]);
    expect(made.code).toBe(0);
    const key = made.stdout.trim();
    const connect = async (env: Record<string, string>): Promise<Client> => {
      const client = new Client({ name: 'tiers-stdio', version: '1.0.0' });
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: [BIN, 'mcp', '--data', data],
          env: { ...getDefaultEnvironment(), ...storeEnvOf(data), BATON_LOG_LEVEL: 'warn', BATON_TOKEN: key, ...env },
          stderr: 'pipe',
        }),
      );
      return client;
    };
    const core = await connect({});
    expect(await names(core)).toEqual(CORE);
    await core.close();
    const all = await connect({ BATON_TOOLS: 'all' });
    expect((await names(all)).length).toBeGreaterThan(CORE.length);
    await all.close();
    const bad = await connect({ BATON_TOOLS: 'tiny' });
    await expect(bad.listTools()).rejects.toThrow(/BATON_TOOLS.*core, standard, all/);
    await bad.close();
  });

  it('a key without a tier follows the server default (toolsDefault)', async () => {
    const lean = await openHub({ config: { toolsDefault: 'core' } });
    const http = await serve(lean.hub);
    try {
      const client = await httpClient(http.url, await createKey(lean, 'dflt', 'worker'));
      expect(await names(client)).toEqual(CORE);
      await client.close();
    } finally {
      await http.close();
      await lean.close();
    }
  });
});
