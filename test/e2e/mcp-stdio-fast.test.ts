import { PassThrough } from 'node:stream';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStdio } from '../../src/api/mcp/stdio.js';
import { LEGACY_PROTOCOL_VERSIONS } from '../../src/api/mcp/stdio-fast.js';
import { TIERS } from '../../src/core/tiers.js';
import { call, createKey, openHub, type TestHub } from '../helpers.js';

/**
 * `baton mcp` answers the plain handshake (initialize, initialized, tools/list) without the MCP
 * SDK (src/api/mcp/stdio-fast.ts) and hands everything else to the SDK. Its answers must be the
 * SDK's, byte for byte: each session here runs twice, on the fast path and with the SDK answering
 * everything (`fast: false`), and the two outputs are compared.
 */

type Msg = Record<string, unknown>;

const init = (protocolVersion: string, more: Msg = {}): Msg => ({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion, capabilities: {}, clientInfo: { name: 'fast-test', version: '1' }, ...more },
});
const INITIALIZED: Msg = { jsonrpc: '2.0', method: 'notifications/initialized' };
const list = (id: number, params?: Msg): Msg => ({ jsonrpc: '2.0', id, method: 'tools/list', ...(params ? { params } : {}) });

/**
 * One session: each message is written once the previous request has its answer (or, for a
 * notification, at once); then stdin ends. The answers, as the lines written to stdout.
 */
async function session(
  t: TestHub,
  opts: { token?: string; agent?: string; tools?: string; fast: boolean; onTakeOver?: () => void },
  messages: (Msg | string)[],
): Promise<string[]> {
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
  const running = runStdio(t.hub, { ...opts, stdin, stdout });
  for (const m of messages) {
    const expects = typeof m === 'string' ? undefined : m.id;
    const before = out.split('\n').length;
    stdin.write(typeof m === 'string' ? m : `${JSON.stringify(m)}\n`);
    if (expects === undefined) continue;
    for (let i = 0; i < 200 && out.split('\n').length === before; i++) await new Promise((r) => setTimeout(r, 5));
  }
  stdin.end();
  await running;
  return out.split('\n').filter((l) => l !== '');
}

/** Both paths on the same messages: the same bytes out; returns them and whether the SDK took over the fast one. */
async function same(t: TestHub, opts: { token?: string; agent?: string; tools?: string }, messages: (Msg | string)[]): Promise<string[] & { tookOver: boolean }> {
  let tookOver = false;
  const fast = await session(t, { ...opts, fast: true, onTakeOver: () => (tookOver = true) }, messages);
  const sdk = await session(t, { ...opts, fast: false }, messages);
  expect(fast).toEqual(sdk);
  return Object.assign(fast, { tookOver });
}

describe('baton mcp: the fast handshake answers as the SDK does', () => {
  let t: TestHub;
  const keys: Record<string, string> = {};
  beforeAll(async () => {
    t = await openHub();
    for (const role of ['worker', 'lead', 'admin', 'observer']) keys[role] = await createKey(t, `fast-${role}`, role);
  });
  afterAll(async () => {
    await t.close();
  });

  it('its protocol versions are the SDK’s', () => {
    expect(LEGACY_PROTOCOL_VERSIONS).toEqual(SUPPORTED_PROTOCOL_VERSIONS);
  });

  it('initialize and tools/list, byte for byte, for every role and tier (and the key’s own tier)', async () => {
    for (const role of Object.keys(keys)) {
      for (const tools of [undefined, ...TIERS]) {
        const out = await same(t, { token: keys[role], tools }, [init('2025-06-18'), INITIALIZED, list(2)]);
        expect(out).toHaveLength(2);
        expect(out.tookOver).toBe(false); // answered on the fast path
        expect(JSON.parse(out[1]!)).toMatchObject({ id: 2, result: { tools: expect.any(Array) } });
      }
    }
    // A keyless local agent (development mode) too.
    expect((await same(t, { agent: 'fast-local' }, [init('2025-06-18'), INITIALIZED, list(2)])).tookOver).toBe(false);
  });

  it('each protocol version, unknown ones and the client shapes the fast path takes or leaves', async () => {
    for (const v of [...LEGACY_PROTOCOL_VERSIONS, '2023-01-01', '2026-07-28']) {
      const out = await same(t, { token: keys.worker }, [init(v), INITIALIZED, list(2)]);
      expect(out).toHaveLength(2);
      expect(out.tookOver).toBe(!LEGACY_PROTOCOL_VERSIONS.includes(v));
    }
    const shapes: Msg[] = [
      init('2025-11-25', { capabilities: { roots: { listChanged: true }, sampling: {}, elicitation: {} } }),
      init('2025-11-25', { capabilities: { roots: {} }, clientInfo: { name: 'c', version: '2', title: 'C' } }),
      // Left to the SDK: fields beyond the plain shape, malformed ones.
      init('2025-11-25', { capabilities: { experimental: { x: {} } } }),
      init('2025-11-25', { capabilities: { roots: { listChanged: 'yes' } } }),
      init('2025-11-25', { clientInfo: { name: 'c' } }),
      init('2025-11-25', { _meta: { progressToken: 1 } }),
      { ...init('2025-11-25'), id: 1.5 },
      { ...init('2025-11-25'), id: 'one' },
    ];
    const taken = [];
    for (const m of shapes) taken.push((await same(t, { token: keys.worker }, [m, INITIALIZED, list(2)])).tookOver);
    expect(taken).toEqual([false, false, true, true, true, true, true, false]);
    // tools/list with a cursor, with _meta, before initialized; a line that is not JSON.
    await same(t, { token: keys.worker }, [init('2025-06-18'), INITIALIZED, list(2, { cursor: 'x' }), list(3, {}), list(4, { _meta: { progressToken: 't' } })]);
    await same(t, { token: keys.worker }, [init('2025-06-18'), INITIALIZED, list(2, { cursor: 5 })]);
    await same(t, { token: keys.worker }, [init('2025-06-18'), INITIALIZED, { ...list(2), jsonrpc: '1.0' }, { ...list(3), id: null }]);
    await same(t, { token: keys.worker }, [init('2025-06-18'), list(2), INITIALIZED, list(3)]);
    await same(t, { token: keys.worker }, [init('2025-06-18'), 'not json\n', INITIALIZED, list(2)]);
    // A 2026-era opening goes to the SDK from its first line.
    await same(t, { token: keys.worker }, [{ jsonrpc: '2.0', id: 1, method: 'server/discover', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }]);
  });

  it('after the handshake the SDK serves the session (the handshake replayed, its answers not repeated)', async () => {
    const ping = (id: number): Msg => ({ jsonrpc: '2.0', id, method: 'ping' });
    const whoami = { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'whoami', arguments: {} } };
    let tookOver = 0;
    const fast = await session(t, { token: keys.worker, fast: true, onTakeOver: () => tookOver++ }, [init('2025-06-18'), INITIALIZED, list(2), ping(3), whoami, list(5), ping(6)]);
    expect(tookOver).toBe(1);
    const sdk = await session(t, { token: keys.worker, fast: false }, [init('2025-06-18'), INITIALIZED, list(2), ping(3), whoami, list(5), ping(6)]);
    expect(fast.map((l) => (JSON.parse(l) as Msg).id)).toEqual([1, 2, 3, 4, 5, 6]);
    // whoami's answer carries times; the rest is the same bytes.
    expect(fast.filter((_, i) => i !== 3)).toEqual(sdk.filter((_, i) => i !== 3));
    expect(JSON.parse(fast[3]!)).toMatchObject({ id: 4, result: { structuredContent: { agent: { name: 'fast-worker' } } } });
    expect(JSON.parse(fast[3]!).result.isError).toBeUndefined();
  });

  it('a read error on stdin ends the session as the SDK does, during the handshake and after the SDK took over', async () => {
    const whoami = { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'whoami', arguments: {} } };
    for (const fast of [true, false]) {
      for (const before of [[init('2025-06-18')], [init('2025-06-18'), INITIALIZED, list(2), whoami]]) {
        const stdin = new PassThrough();
        const stdout = new PassThrough();
        let out = '';
        stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
        const running = runStdio(t.hub, { token: keys.worker, stdin, stdout, fast });
        for (const m of before) {
          const lines = out.split('\n').length;
          stdin.write(`${JSON.stringify(m)}\n`);
          if (!('id' in m)) continue;
          for (let i = 0; i < 400 && out.split('\n').length === lines; i++) await new Promise((r) => setTimeout(r, 5));
        }
        expect(out.split('\n').filter((l) => l !== '')).toHaveLength(before.filter((m) => 'id' in m).length);
        // An EIO on the pipe: no uncaught error (it would fail this run), and the session ends.
        stdin.destroy(new Error('EIO: read error'));
        await running;
      }
    }
  });

  it('a key revoked before tools/list: the SDK answers with the same refusal', async () => {
    const outs: string[][] = [];
    for (const fast of [true, false]) {
      const key = await createKey(t, `fast-doomed-${String(fast)}`, 'worker');
      const stdin = new PassThrough();
      const stdout = new PassThrough();
      let out = '';
      stdout.on('data', (d: Buffer) => (out += d.toString('utf8')));
      const running = runStdio(t.hub, { token: key, stdin, stdout, fast });
      stdin.write(`${JSON.stringify(init('2025-06-18'))}\n${JSON.stringify(INITIALIZED)}\n`);
      for (let i = 0; i < 400 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 5));
      await call(t.hub, t.admin, 'token_revoke', { id: (await t.hub.authenticate(key)).tokenId });
      stdin.write(`${JSON.stringify(list(2))}\n`);
      for (let i = 0; i < 400 && out.split('\n').length < 3; i++) await new Promise((r) => setTimeout(r, 5));
      stdin.end();
      await running;
      outs.push(out.split('\n').filter((l) => l !== ''));
    }
    expect(outs[0]).toEqual(outs[1]);
    expect(JSON.parse(outs[0]![1]!)).toMatchObject({ id: 2, error: { message: expect.stringMatching(/credentials/) } });
  });
});
