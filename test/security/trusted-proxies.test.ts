import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { ConfigError, loadConfig } from '../../src/config.js';
import { ManualClock } from '../../src/core/clock.js';
import { call, createKey, openHub, runBaton, serve, tempDir, type TestHub } from '../helpers.js';

/**
 * Issue 9: N instances behind a load balancer. `X-Forwarded-For` / `X-Forwarded-Proto` are
 * believed only from a trusted proxy (`trustedProxies`), over real HTTP. Loopback addresses stand
 * for hosts: 127.0.0.2 is the load balancer, 127.0.0.1 and 127.0.0.3 clients that reach the hub
 * directly.
 */
const START = Date.UTC(2026, 0, 1);
const PROXY = '127.0.0.2';

interface Answer {
  status: number;
  setCookie: string;
}

function send(url: string, method: string, path: string, headers: Record<string, string>, from: string, body?: unknown): Promise<Answer> {
  const u = new URL(path, url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method, headers: { host: `127.0.0.1:${u.port}`, ...headers }, localAddress: from },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, setCookie: String(res.headers['set-cookie'] ?? '') }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const whoami = (url: string, key: string, from: string, xff?: string): Promise<Answer> =>
  send(url, 'GET', '/api/v1/whoami', { authorization: `Bearer ${key}`, ...(xff === undefined ? {} : { 'x-forwarded-for': xff }) }, from);

/**
 * Wrong keys of the right shape, each new (counted per address, and per credential too: one key
 * repeated would block itself from every address).
 */
let wrongSeq = 0;
const wrong = (): string => `bat_${String(wrongSeq++).padStart(6, '0')}${'Q'.repeat(37)}`;

/** Fails `n` authentications; `xff(i)` is the header of the i-th. */
async function fail(url: string, from: string, n: number, xff: (i: number) => string | undefined): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await whoami(url, wrong(), from, xff(i))).status);
  return out;
}

async function auditAddresses(t: TestHub, op: string): Promise<string[]> {
  await t.hub.deferred.flush();
  // Failed authentications belong to no project.
  const input = op === 'auth' ? { limit: 500, no_project: true } : { limit: 500 };
  const rows = (await call<{ rows: { op: string; address: string | null }[] }>(t.hub, t.admin, 'audit_query', input)).rows;
  return rows.filter((r) => r.op === op).map((r) => r.address ?? '');
}

describe('trusted proxies: the client address', () => {
  const clock = new ManualClock(START);
  let t: TestHub;
  let h: HttpHandle;

  beforeAll(async () => {
    t = await openHub({ clock, config: { authFailuresPerMinute: 10, authBlockMs: 60_000, trustedProxies: [PROXY, '10.0.0.0/8'], ipDeny: ['192.0.2.0/24'] } });
    h = await serve(t.hub);
  });
  afterAll(async () => {
    await h.close();
    await t.close();
  });

  it('from a peer that is not trusted, X-Forwarded-For is ignored: the throttle hits the peer, whatever the header says', async () => {
    const statuses = await fail(h.url, '127.0.0.1', 12, (i) => `198.51.100.${i + 1}`);
    expect(statuses.slice(0, 11)).toEqual(Array(11).fill(401));
    expect(statuses[11]).toBe(429);
    // A fresh forged address does not get the peer out of its block.
    expect((await whoami(h.url, wrong(), '127.0.0.1', '198.51.100.200')).status).toBe(429);
    // Another peer is not blocked.
    expect((await whoami(h.url, wrong(), '127.0.0.3')).status).toBe(401);
    const addresses = await auditAddresses(t, 'auth');
    expect(addresses).toContain('127.0.0.1');
    expect(addresses.some((a) => a.startsWith('198.51.100.'))).toBe(false);
    clock.advance(60_001);
  });

  it('from the trusted proxy, the forwarded client is throttled and audited; other clients behind the same proxy are not blocked', async () => {
    const statuses = await fail(h.url, PROXY, 12, () => '203.0.113.7');
    expect(statuses.slice(0, 11)).toEqual(Array(11).fill(401));
    expect(statuses[11]).toBe(429);
    // Another client behind the same balancer: not blocked.
    expect((await whoami(h.url, wrong(), PROXY, '203.0.113.8')).status).toBe(401);
    const good = await createKey(t, 'good', 'worker');
    expect((await whoami(h.url, good, PROXY, '203.0.113.8')).status).toBe(200);
    const addresses = await auditAddresses(t, 'auth');
    expect(addresses).toContain('203.0.113.7');
    expect(addresses).not.toContain(PROXY);
    // An op's audit row names the forwarded client too.
    expect(await auditAddresses(t, 'whoami')).toContain('203.0.113.8');
    clock.advance(60_001);
  });

  it('a chain: the rightmost untrusted entry is the client; a forged leftmost entry changes nothing', async () => {
    // The client wrote the first entry; its edge proxy appended what it saw; an inner proxy (10/8) appended the edge.
    const statuses = await fail(h.url, PROXY, 12, (i) => `192.168.77.${i + 1}, 198.51.100.9, 10.1.2.3`);
    expect(statuses.slice(0, 11)).toEqual(Array(11).fill(401));
    expect(statuses[11]).toBe(429);
    expect((await whoami(h.url, wrong(), PROXY, '1.1.1.1, 198.51.100.9, 10.1.2.3')).status).toBe(429);
    const addresses = await auditAddresses(t, 'auth');
    expect(addresses).toContain('198.51.100.9');
    expect(addresses.some((a) => a.startsWith('192.168.77.') || a === '10.1.2.3')).toBe(false);
    // Two header lines are one list, in order (the client in the second: the first alone, or the
    // two reversed, would name 1.1.1.1, which is not blocked).
    expect((await send(h.url, 'GET', '/api/v1/whoami', { authorization: `Bearer ${wrong()}`, 'x-forwarded-for': ['1.1.1.1', '198.51.100.9, 10.1.2.3'] as unknown as string }, PROXY)).status).toBe(429);
    clock.advance(60_001);
  });

  it('the address lists apply to the forwarded client', async () => {
    const good = await createKey(t, 'listed', 'worker');
    expect((await whoami(h.url, good, PROXY, '192.0.2.44')).status).toBe(403);
    expect((await whoami(h.url, good, PROXY, '198.51.100.44')).status).toBe(200);
  });
});

describe('trusted proxies: X-Forwarded-Proto and the session cookie', () => {
  let t: TestHub;
  let h: HttpHandle;

  beforeAll(async () => {
    t = await openHub({ config: { trustedProxies: [PROXY] } });
    h = await serve(t.hub);
  });
  afterAll(async () => {
    await h.close();
    await t.close();
  });

  let n = 0;
  const login = async (from: string, proto: string | undefined, scheme = proto === 'https' && from === PROXY ? 'https' : 'http'): Promise<Answer> => {
    const key = await createKey(t, `w${n++}`, 'worker');
    const origin = `${scheme}://127.0.0.1:${new URL(h.url).port}`;
    return send(h.url, 'POST', '/api/v1/session', { 'content-type': 'application/json', origin, ...(proto === undefined ? {} : { 'x-forwarded-proto': proto }) }, from, { key });
  };

  it('https at the trusted proxy: a __Host- Secure cookie; the same header from a client directly: ignored', async () => {
    const viaProxy = await login(PROXY, 'https');
    expect(viaProxy.status).toBe(200);
    expect(viaProxy.setCookie).toMatch(/^__Host-baton_session=[A-Za-z0-9_-]{43}; /);
    expect(viaProxy.setCookie).toContain('; Secure');
    const direct = await login('127.0.0.1', 'https');
    expect(direct.status).toBe(200);
    expect(direct.setCookie).toMatch(/^baton_session=/);
    expect(direct.setCookie).not.toContain('Secure');
    const plainProxy = await login(PROXY, 'http');
    expect(plainProxy.setCookie).toMatch(/^baton_session=/);
    // The page is https at the balancer, so an http:// origin is another origin (a downgrade).
    expect((await login(PROXY, 'https', 'http')).status).toBe(403);
  });
});

describe('trusted proxies: MCP tool calls are audited with the forwarded client', () => {
  let t: TestHub;
  const servers: HttpHandle[] = [];

  beforeAll(async () => {
    t = await openHub({ config: { trustedProxies: [PROXY] } });
    servers.push(await serve(t.hub, true), await serve(t.hub, false));
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await t.close();
  });

  it('on the lean path and through the SDK', async () => {
    const key = await createKey(t, 'mcp', 'worker');
    const body = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'whoami', arguments: {} } };
    const headers = {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': '2025-11-25',
    };
    const [lean, sdk] = servers;
    expect((await send(lean!.url, 'POST', '/mcp', { ...headers, 'x-forwarded-for': '198.51.100.31' }, PROXY, body)).status).toBe(200);
    expect((await send(sdk!.url, 'POST', '/mcp', { ...headers, 'x-forwarded-for': '198.51.100.32' }, PROXY, body)).status).toBe(200);
    expect(servers.map((s) => s.stats)).toEqual([{ lean: 1, sdk: 0 }, { lean: 0, sdk: 1 }]);
    const addresses = await auditAddresses(t, 'whoami');
    expect(addresses).toContain('198.51.100.31');
    expect(addresses).toContain('198.51.100.32');
  });
});

describe('trusted proxies: the per-address request budget', () => {
  let t: TestHub;
  let h: HttpHandle;

  beforeAll(async () => {
    t = await openHub({ clock: new ManualClock(START), config: { trustedProxies: [PROXY], rateLimitAddressPerMin: 5 } });
    h = await serve(t.hub);
  });
  afterAll(async () => {
    await h.close();
    await t.close();
  });

  it('counts each forwarded client on its own, not the balancer they share; a direct client with a forged header is counted as itself', async () => {
    const health = async (from: string, xff: string): Promise<number> => (await send(h.url, 'GET', '/healthz', { 'x-forwarded-for': xff }, from)).status;
    const first: number[] = [];
    for (let i = 0; i < 6; i++) first.push(await health(PROXY, '198.51.100.1'));
    expect(first).toEqual([200, 200, 200, 200, 200, 429]);
    expect(await health(PROXY, '198.51.100.2')).toBe(200);
    const direct: number[] = [];
    for (let i = 0; i < 6; i++) direct.push(await health('127.0.0.1', `198.51.100.${10 + i}`));
    expect(direct).toEqual([200, 200, 200, 200, 200, 429]);
  });
});

describe('trusted proxies: configuration', () => {
  it('a value that is not an IP address or CIDR block stops the start, naming the setting and its source', () => {
    expect(loadConfig({ env: { BATON_TRUSTED_PROXIES: '10.0.0.0/8, 2001:db8::/32' } }).trustedProxies).toEqual(['10.0.0.0/8', '2001:db8::/32']);
    for (const bad of ['lb.internal', '10.0.0.0/33', '2001:db8::/129', '10.0.0.1:443']) {
      expect(() => loadConfig({ env: { BATON_TRUSTED_PROXIES: bad } })).toThrow(ConfigError);
      expect(() => loadConfig({ env: { BATON_TRUSTED_PROXIES: bad } })).toThrow(/trustedProxies\.0 \(environment BATON_TRUSTED_PROXIES\): expected an IP address or CIDR block/);
    }
    expect(() => loadConfig({ flags: { trustedProxies: 'nope' } })).toThrow(/trustedProxies\.0 \(command-line flag\)/);
    expect(() => loadConfig({ env: { BATON_TRUSTED_PROXIES: '10.0.0.1, 0.0.0.0/0' } })).toThrow(/trustedProxies\.1 .*a \/0 block would trust every client/);
    expect(() => loadConfig({ env: { BATON_TRUSTED_PROXIES: '::/0' } })).toThrow(/a \/0 block/);
  });

  it('baton serve --trusted-proxies: a bad entry stops the start before anything listens', async () => {
    const tmp = tempDir();
    try {
      const r = await runBaton(['serve', '--data', join(tmp.dir, 'data'), '--port', '0', '--trusted-proxies', '10.0.0.0/8,lb.internal']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/trustedProxies\.1 \(command-line flag\): expected an IP address or CIDR block/);
      expect(r.stderr).not.toMatch(/listening on/);
    } finally {
      tmp.cleanup();
    }
  });
});
