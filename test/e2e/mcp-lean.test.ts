import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, openHub, serve, type TestHub } from '../helpers.js';

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
  beforeAll(async () => {
    t = await openHub();
    lean = await serve(t.hub, true);
    sdk = await serve(t.hub, false);
    key = await createKey(t, 'cmp', 'lead');
  });
  afterAll(async () => {
    await lean.close();
    await sdk.close();
    await t.close();
  });

  const cases: [string, Record<string, unknown>, Record<string, string>][] = [
    ['legacy tools/list', { jsonrpc: '2.0', id: 1, method: 'tools/list' }, legacyHeaders],
    ['legacy ping', { jsonrpc: '2.0', id: 'p', method: 'ping' }, legacyHeaders],
    [
      'legacy tools/call',
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'whoami', arguments: {} } },
      legacyHeaders,
    ],
    [
      'legacy tools/call with a tool error',
      { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'task_get', arguments: { id: 'nope' } } },
      legacyHeaders,
    ],
    [
      'legacy without a version header (2025-03-26 assumed)',
      { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'plan_get' } },
      { accept: 'application/json, text/event-stream' },
    ],
    [
      'modern tools/list',
      { jsonrpc: '2.0', id: 5, method: 'tools/list', params: { _meta: modernMeta } },
      modernHeaders('tools/list'),
    ],
    [
      'modern tools/call',
      { jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'whoami', arguments: {}, _meta: modernMeta } },
      modernHeaders('tools/call', 'whoami'),
    ],
    [
      'modern tools/call with a tool error',
      {
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: { name: 'task_create', arguments: { tasks: [] }, _meta: modernMeta },
      },
      modernHeaders('tools/call', 'task_create'),
    ],
  ];

  for (const [name, body, headers] of cases) {
    it(name, async () => {
      const before = lean.stats.lean;
      const a = await post(lean.url, key, body, headers);
      expect(lean.stats.lean).toBe(before + 1);
      const b = await post(sdk.url, key, body, headers);
      expect(sdk.stats.lean).toBe(0);
      expect(a.status).toBe(200);
      expect(b.status).toBe(200);
      expect(normalise(a.json)).toEqual(normalise(b.json));
    });
  }

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
