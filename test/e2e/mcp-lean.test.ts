import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, httpAgent, openHub, serve, type TestHub } from '../helpers.js';

/**
 * The lean HTTP path must answer exactly as the SDK path does. The same raw JSON-RPC requests go
 * to a lean server and to an SDK-only server on one hub, and the results must be equal.
 */
const MODERN = '2026-07-28';

async function post(url: string, key: string, body: Record<string, unknown>, headers: Record<string, string>) {
  const res = await fetch(`${url}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  let json: Record<string, unknown> | null = null;
  if (type.includes('text/event-stream')) {
    const data = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).filter((l) => l.trim() !== '');
    json = JSON.parse(data[data.length - 1]!) as Record<string, unknown>;
  } else if (text !== '') json = JSON.parse(text) as Record<string, unknown>;
  return { status: res.status, json };
}

const legacyHeaders = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
const modernMeta = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientCapabilities': {},
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
};
const modernHeaders = (method: string, name?: string): Record<string, string> => ({
  accept: 'application/json, text/event-stream',
  'mcp-protocol-version': MODERN,
  'mcp-method': method,
  ...(name === undefined ? {} : { 'mcp-name': name }),
});

/** Request ids and timestamps differ between any two calls; everything else must not. */
function normalise(v: unknown): unknown {
  return JSON.parse(
    JSON.stringify(v)
      .replace(/req_[A-Za-z0-9_-]+/g, 'req_X')
      .replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, 'T'),
  );
}

describe('lean HTTP path ≡ SDK path', () => {
  let t: TestHub;
  let lean: HttpHandle;
  let sdk: HttpHandle;
  let key: string;
  const keys: Record<string, string> = {};
  beforeAll(async () => {
    t = await openHub();
    lean = await serve(t.hub, true);
    sdk = await serve(t.hub, false);
    key = await createKey(t, 'cmp', 'lead');
    for (const role of ['lead', 'worker', 'observer']) keys[role] = await createKey(t, `cmp-${role}`, role);
  });
  afterAll(async () => {
    await lean.close();
    await sdk.close();
    await t.close();
  });

  const legacyNoVersion = { accept: 'application/json, text/event-stream' };
  type Shape = 'legacy' | 'legacy-no-version' | 'modern';
  const withShape = (shape: Shape, body: Record<string, unknown>, name?: string): [Record<string, unknown>, Record<string, string>] => {
    if (shape !== 'modern') return [body, shape === 'legacy' ? legacyHeaders : legacyNoVersion];
    const params = { ...((body.params as Record<string, unknown> | undefined) ?? {}), _meta: modernMeta };
    return [{ ...body, params }, modernHeaders(body.method as string, name)];
  };
  const calls: [string, Record<string, unknown>, string?][] = [
    ['tools/list', { jsonrpc: '2.0', id: 1, method: 'tools/list' }],
    ['tools/call', { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'whoami', arguments: {} } }, 'whoami'],
    ['tools/call without arguments', { jsonrpc: '2.0', id: 'two', method: 'tools/call', params: { name: 'plan_get' } }, 'plan_get'],
    ['tools/call with a tool error', { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'task_get', arguments: { id: 'nope' } } }, 'task_get'],
    ['tools/call refused by role or schema', { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'task_create', arguments: { tasks: [] } } }, 'task_create'],
  ];
  const roles = ['lead', 'worker', 'observer'];
  const shapes: Shape[] = ['legacy', 'legacy-no-version', 'modern'];

  for (const role of roles) {
    for (const shape of shapes) {
      for (const [what, raw, name] of calls) {
        it(`${role} · ${shape} · ${what}`, async () => {
          const [body, headers] = withShape(shape, raw, name);
          const k = keys[role]!;
          const before = lean.stats.lean;
          const a = await post(lean.url, k, body, headers);
          expect(lean.stats.lean).toBe(before + 1);
          const b = await post(sdk.url, k, body, headers);
          expect(sdk.stats.lean).toBe(0);
          expect(a.status).toBe(200);
          expect(b.status).toBe(200);
          expect(normalise(a.json)).toEqual(normalise(b.json));
        });
      }
    }
  }
  it('legacy ping', async () => {
    const before = lean.stats.lean;
    const a = await post(lean.url, key, { jsonrpc: '2.0', id: 'p', method: 'ping' }, legacyHeaders);
    expect(lean.stats.lean).toBe(before + 1);
    const b = await post(sdk.url, key, { jsonrpc: '2.0', id: 'p', method: 'ping' }, legacyHeaders);
    expect(normalise(a.json)).toEqual(normalise(b.json));
  });

  /** What the SDK refuses, the lean path must refuse the same way (it leaves them to the SDK). */
  const LOG_LEVEL = 'io.modelcontextprotocol/logLevel';
  const rejections: [string, Shape, Record<string, unknown>, Record<string, string>?][] = [
    ['a fractional id', 'legacy', { jsonrpc: '2.0', id: 1.5, method: 'tools/list' }],
    ['a fractional id (modern)', 'modern', { jsonrpc: '2.0', id: 2.5, method: 'tools/list' }],
    ['_meta that is not an object', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: 'x' } }],
    ['a malformed progress token', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', _meta: { progressToken: { a: 1 } } } }],
    ['an invalid log level', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { [LOG_LEVEL]: 'loud' } } }],
    ['an invalid log level (modern)', 'modern', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', _meta: { ...modernMeta, [LOG_LEVEL]: 'loud' } } }],
    ['a tool name that is not a string', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 7 } }],
    ['arguments that are not an object', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', arguments: [1] } }],
    ['a cursor that is not a string', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { cursor: 5 } }],
    ['application/json-seq', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { 'content-type': 'application/json-seq' }],
    ['text/plain', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { 'content-type': 'text/plain' }],
    ['no accept header', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { accept: '' }],
    ['jsonrpc 1.0', 'legacy', { jsonrpc: '1.0', id: 1, method: 'tools/list' }],
    ['a null id', 'legacy', { jsonrpc: '2.0', id: null, method: 'tools/list' }],
    // tools/call's usual shape is checked by hand (lean.ts plainToolCall); these are just outside it.
    ['a fractional id on tools/call', 'legacy', { jsonrpc: '2.0', id: 1.5, method: 'tools/call', params: { name: 'whoami' } }],
    ['a key JSON-RPC does not define, on tools/call', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami' }, extra: 1 }],
    ['a malformed task on tools/call', 'legacy', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', task: 'soon' } }],
  ];
  for (const [what, shape, raw, extra] of rejections) {
    it(`rejection: ${what} is answered as the SDK answers it`, async () => {
      const [body, headers] = shape === 'modern' ? [raw, modernHeaders(raw.method as string, ((raw.params ?? {}) as { name?: string }).name)] : [raw, legacyHeaders];
      const h = { ...headers, ...(extra ?? {}) };
      const a = await post(lean.url, key, body, h);
      const b = await post(sdk.url, key, body, h);
      expect(a.status).toBe(b.status);
      expect(normalise(a.json)).toEqual(normalise(b.json));
    });
  }

  it('real SDK clients (v1, v2, v2 modern) take the lean path for tools/list and tools/call', async () => {
    for (const line of ['v1', 'v2', 'v2-modern'] as const) {
      const agent = await httpAgent(line, lean.url, keys.worker!);
      try {
        const leanBefore = lean.stats.lean;
        const sdkBefore = lean.stats.sdk;
        expect((await agent.tools()).length).toBeGreaterThan(0);
        await agent.ok('whoami');
        expect(lean.stats.lean - leanBefore, line).toBe(2);
        expect(lean.stats.sdk - sdkBefore, line).toBe(0);
      } finally {
        await agent.close();
      }
    }
  });

  it('anything off the happy path is left to the SDK: missing headers, bad versions, unknown tools', async () => {
    const wrongName = await post(
      lean.url,
      key,
      { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 'whoami', _meta: modernMeta } },
      modernHeaders('tools/call', 'plan_get'),
    );
    expect(wrongName.status).toBe(400);
    expect((wrongName.json?.error as { code: number }).code).toBe(-32020);
    const badVersion = await post(lean.url, key, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, {
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '1999-01-01',
    });
    expect(badVersion.status).toBe(400);
    const unknown = await post(
      lean.url,
      key,
      { jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'rm_rf' } },
      legacyHeaders,
    );
    expect((unknown.json?.error as { code: number }).code).toBe(-32602);
    const notAcceptable = await post(lean.url, key, { jsonrpc: '2.0', id: 11, method: 'tools/list' }, { accept: 'application/json' });
    expect(notAcceptable.status).toBe(406);
  });
});
