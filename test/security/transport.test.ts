import { existsSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CSP, ConnectionGuard, RequestGuard, checkTransport, clientAddress } from '../../src/api/http/guard.js';
import { isLoopbackHost } from '../../src/core/net.js';
import type { HttpHandle } from '../../src/api/http/server.js';
import { ConfigError, ConfigSchema, type Config } from '../../src/config.js';
import { createKey, openHub, serve, type TestHub } from '../helpers.js';

/**
 * Transport guards over plain HTTP (S20–S24, S26): Host/Origin checks on /mcp, REST and WebSocket
 * upgrades, security headers on every answer, CORS off by default and by allowlist, the 413 body
 * limit, client address allow/deny lists, connection limits and the idle timeout.
 */
interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: Record<string, unknown>;
}

function req(
  url: string,
  method: string,
  path: string,
  opts: { key?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Res> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        agent: false,
        headers: {
          ...(opts.key === undefined ? {} : { authorization: `Bearer ${opts.key}` }),
          ...(opts.body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(opts.body) }),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: Record<string, unknown> = {};
          try {
            body = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
          } catch {
            body = { raw: text };
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body });
        });
      },
    );
    r.on('error', reject);
    if (opts.body !== undefined) r.write(opts.body);
    r.end();
  });
}

/** Sends a WebSocket upgrade request and returns the raw status line and body. */
function upgrade(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; raw: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname);
    let raw = '';
    s.on('data', (c: Buffer) => (raw += c.toString('utf8')));
    s.on('error', reject);
    s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0), raw }));
    const lines = {
      host: `${u.hostname}:${u.port}`,
      connection: 'Upgrade',
      upgrade: 'websocket',
      'sec-websocket-version': '13',
      'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
      ...headers,
    };
    s.write(`GET ${path} HTTP/1.1\r\n${Object.entries(lines).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
  });
}

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};

function expectSecurityHeaders(r: { headers: Record<string, string | string[] | undefined> }, what: string): void {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) expect(r.headers[k], `${what}: ${k}`).toBe(v);
  expect(r.headers['strict-transport-security'], `${what}: no HSTS without TLS`).toBeUndefined();
  expect(r.headers['access-control-allow-origin'], `${what}: no CORS by default`).toBeUndefined();
}

const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
});
const MCP_HEADERS = { accept: 'application/json, text/event-stream' };

describe('transport: Host, Origin, WebSocket, headers, CORS off (defaults)', () => {
  let t: TestHub;
  let http: HttpHandle;
  let worker: string;

  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
    worker = await createKey(t, 'w1', 'worker');
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('refuses foreign Origin and Host with 403 on /mcp, REST and WebSocket upgrades; local ones pass', async () => {
    const port = new URL(http.url).port;
    const targets: [string, string, string | undefined][] = [
      ['POST', '/mcp', INIT],
      ['GET', '/api/v1/whoami', undefined],
      ['POST', '/api/v1/tasks', '{"tasks":[{"title":"x"}]}'],
    ];
    for (const [method, path, body] of targets) {
      for (const origin of ['https://evil.example', 'null', 'http://localhost.evil.example', `http://localhost.evil.example:${port}`]) {
        const r = await req(http.url, method, path, { key: worker, body, headers: { ...MCP_HEADERS, origin } });
        expect(r.status, `${method} ${path} Origin ${origin}`).toBe(403);
        expect((r.body.error as { code: string }).code).toBe('forbidden');
        expectSecurityHeaders(r, `${path} 403`);
        const ws = await upgrade(http.url, path, { origin });
        expect(ws.status, `upgrade ${path} Origin ${origin}`).toBe(403);
        expect(ws.raw).toContain(`content-security-policy: ${CSP}`);
      }
      for (const host of ['evil.example', `evil.example:${port}`, `localhost.evil.example:${port}`]) {
        const r = await req(http.url, method, path, { key: worker, body, headers: { ...MCP_HEADERS, host } });
        expect(r.status, `${method} ${path} Host ${host}`).toBe(403);
        const ws = await upgrade(http.url, path, { host });
        expect(ws.status, `upgrade ${path} Host ${host}`).toBe(403);
      }
    }
    // Nothing was written by the refused task_create.
    const list = await req(http.url, 'GET', '/api/v1/tasks', { key: worker });
    expect(list.status).toBe(200);
    expect((list.body.tasks as unknown[]).length).toBe(0);
    // A loopback Origin and Host pass.
    const ok = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { origin: `http://localhost:${port}` } });
    expect(ok.status).toBe(200);
    const ok6 = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { host: `[::1]:${port}` } });
    expect(ok6.status).toBe(200);
  });

  it('refuses every WebSocket upgrade clearly (there is no WebSocket endpoint)', async () => {
    for (const path of ['/mcp', '/api/v1/events', '/ws']) {
      const ws = await upgrade(http.url, path, { origin: `http://localhost:${new URL(http.url).port}`, authorization: `Bearer ${worker}` });
      expect(ws.status, path).toBe(400);
      expect(ws.raw).toContain('WebSocket) is not supported');
      expect(ws.raw).not.toContain('101 Switching');
    }
    // An Upgrade header without `Connection: upgrade` reaches the request handler: refused as well.
    const r = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { upgrade: 'websocket' } });
    expect(r.status).toBe(400);
    expect(r.text).toContain('not supported');
  });

  it('sends the security headers on every response (ok, errors, SDK path, 405, 413)', async () => {
    const cases: [string, Promise<Res>, number][] = [
      ['healthz', req(http.url, 'GET', '/healthz'), 200],
      ['rest ok', req(http.url, 'GET', '/api/v1/whoami', { key: worker }), 200],
      ['rest 401', req(http.url, 'GET', '/api/v1/whoami'), 401],
      ['rest 404', req(http.url, 'GET', '/api/v1/nope', { key: worker }), 404],
      ['rest 400', req(http.url, 'POST', '/api/v1/tasks', { key: worker, body: '{"tasks":"x"}' }), 400],
      ['mcp sdk initialize', req(http.url, 'POST', '/mcp', { key: worker, body: INIT, headers: MCP_HEADERS }), 200],
      ['mcp 405', req(http.url, 'GET', '/mcp', { key: worker }), 405],
      ['mcp 401', req(http.url, 'POST', '/mcp', { body: INIT, headers: MCP_HEADERS }), 401],
      ['no route', req(http.url, 'GET', '/nope', { key: worker }), 404],
      // The dashboard's page (dist/web, served at / when built).
      ...(existsSync(resolve(import.meta.dirname, '../../dist/web/index.html')) ? [['dashboard', req(http.url, 'GET', '/'), 200] as [string, Promise<Res>, number]] : []),
    ];
    for (const [what, p, status] of cases) {
      const r = await p;
      expect(r.status, what).toBe(status);
      expectSecurityHeaders(r, what);
    }
    // The 405 is JSON too (a JSON-RPC error: no request id to answer), and says what is allowed.
    for (const method of ['GET', 'DELETE']) {
      const r = await req(http.url, method, '/mcp', { key: worker });
      expect(r.status).toBe(405);
      expect(r.headers.allow).toBe('POST');
      expect(r.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000 } });
    }
  });

  it('answers an oversized body with 413 on /mcp and REST, with the headers', async () => {
    const big = JSON.stringify({ tasks: [{ title: 'x'.repeat(t.hub.config.maxBodyBytes + 10) }] });
    for (const path of ['/mcp', '/api/v1/tasks']) {
      const r = await req(http.url, 'POST', path, { key: worker, body: big, headers: MCP_HEADERS });
      expect(r.status, path).toBe(413);
      expect((r.body.error as { code: string }).code).toBe('body_too_large');
      expectSecurityHeaders(r, `${path} 413`);
    }
  });

  it('CORS is off by default: no ACAO even for an allowed origin, and preflights are refused', async () => {
    const origin = `http://localhost:${new URL(http.url).port}`;
    const r = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { origin } });
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
    const pre = await req(http.url, 'OPTIONS', '/api/v1/whoami', {
      headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(pre.status).toBe(403);
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    expect(pre.headers['access-control-allow-methods']).toBeUndefined();
    expectSecurityHeaders(pre, 'preflight');
  });
});

describe('transport: CORS allowlist', () => {
  let t: TestHub;
  let http: HttpHandle;
  let worker: string;

  beforeAll(async () => {
    t = await openHub({
      config: { allowedHosts: ['app.example'], corsOrigins: ['https://app.example:8443', 'https://other.example'] },
    });
    http = await serve(t.hub);
    worker = await createKey(t, 'w1', 'worker');
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('gives ACAO only to listed origins, and answers their preflights', async () => {
    const listed = 'https://app.example:8443';
    const r = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { origin: listed } });
    expect(r.status).toBe(200);
    expect(r.headers['access-control-allow-origin']).toBe(listed);
    expect(r.headers['access-control-allow-credentials']).toBeUndefined();
    expect(String(r.headers.vary)).toMatch(/origin/i);
    const mcp = await req(http.url, 'POST', '/mcp', { key: worker, body: INIT, headers: { ...MCP_HEADERS, origin: listed } });
    expect(mcp.status).toBe(200);
    expect(mcp.headers['access-control-allow-origin']).toBe(listed);

    const pre = await req(http.url, 'OPTIONS', '/api/v1/whoami', {
      headers: { origin: listed, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers['access-control-allow-origin']).toBe(listed);
    expect(String(pre.headers['access-control-allow-headers'])).toContain('authorization');

    // Same allowed host, another port: passes the Origin check but is not on the CORS list.
    const unlisted = 'https://app.example:9999';
    const r2 = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { origin: unlisted } });
    expect(r2.status).toBe(200);
    expect(r2.headers['access-control-allow-origin']).toBeUndefined();
    const pre2 = await req(http.url, 'OPTIONS', '/api/v1/whoami', {
      headers: { origin: unlisted, 'access-control-request-method': 'GET' },
    });
    expect(pre2.status).toBe(403);
    expect(pre2.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('a listed origin whose host is not allowed still fails the Origin check (403, no ACAO)', async () => {
    const r = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { origin: 'https://other.example' } });
    expect(r.status).toBe(403);
    expect(r.headers['access-control-allow-origin']).toBeUndefined();
    const ws = await upgrade(http.url, '/mcp', { origin: 'https://other.example' });
    expect(ws.status).toBe(403);
  });

  it('accepts a configured extra Host name', async () => {
    const r = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { host: 'app.example:8443' } });
    expect(r.status).toBe(200);
  });
});

function testConfig(overrides: Partial<Config>): Config {
  return ConfigSchema.parse({ logLevel: 'silent', ...overrides });
}

describe('transport: client address allow/deny lists', () => {
  it('matches IPv4 and IPv6 addresses and CIDR blocks; deny wins; mapped IPv4 counts as IPv4', () => {
    const g = (ipAllow: string[], ipDeny: string[]): ConnectionGuard =>
      new ConnectionGuard(testConfig({ ipAllow, ipDeny }), () => 0, () => undefined);
    const open = g([], []);
    expect(open.addressAllowed('203.0.113.9')).toBe(true);
    const allow = g(['10.0.0.0/8', '2001:db8::/32', '127.0.0.1'], ['10.1.0.0/16', '2001:db8:dead::/48']);
    expect(allow.addressAllowed('10.2.3.4')).toBe(true);
    expect(allow.addressAllowed('10.1.3.4')).toBe(false);
    expect(allow.addressAllowed('11.0.0.1')).toBe(false);
    expect(allow.addressAllowed('127.0.0.1')).toBe(true);
    expect(allow.addressAllowed('127.0.0.2')).toBe(false);
    expect(allow.addressAllowed('2001:db8:1::5')).toBe(true);
    expect(allow.addressAllowed('2001:db8:dead::5')).toBe(false);
    expect(allow.addressAllowed('2001:db9::1')).toBe(false);
    expect(allow.addressAllowed(clientAddress('::ffff:10.2.3.4'))).toBe(true);
    expect(allow.addressAllowed('not-an-ip')).toBe(false);
    const deny = g([], ['::1', '192.168.0.0/24']);
    expect(deny.addressAllowed('::1')).toBe(false);
    expect(deny.addressAllowed('192.168.0.77')).toBe(false);
    expect(deny.addressAllowed('192.168.1.77')).toBe(true);
  });

  it('refuses bad list entries at start', () => {
    for (const bad of ['10.0.0.0/33', '::1/129', 'example.com', '10.0.0', '']) {
      expect(ConfigSchema.safeParse({ ipDeny: [bad] }).success, bad).toBe(false);
    }
  });

  const cases: [string, Partial<Config>, boolean][] = [
    ['127.0.0.1 allowed', { ipAllow: ['127.0.0.1/32'] }, true],
    ['127.0.0.1 not on the allowlist', { ipAllow: ['10.0.0.0/8', '::1'] }, false],
    ['127.0.0.1 denied', { ipDeny: ['127.0.0.0/8'] }, false],
    ['127.0.0.1 allowed and denied: deny wins', { ipAllow: ['127.0.0.1'], ipDeny: ['127.0.0.1'] }, false],
  ];
  it.each(cases)('%s', async (_name, config, served) => {
    const t = await openHub({ config });
    const http = await serve(t.hub);
    try {
      const r = req(http.url, 'GET', '/healthz');
      if (served) expect((await r).status).toBe(200);
      else await expect(r).rejects.toThrow(/ECONNRESET|socket hang up/);
    } finally {
      await http.close();
      await t.close();
    }
  });
});

/** Opens a raw TCP connection; resolves with the socket and a promise of its close. */
async function rawConnect(url: string): Promise<{ socket: Socket; closed: Promise<number> }> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  socket.on('error', () => undefined);
  socket.resume(); // flowing, so the server's close is seen even when nothing reads
  const start = Date.now();
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - start)));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  return { socket, closed };
}

/** Does a plain GET /healthz on this raw socket get answered? */
function probe(socket: Socket, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    let data = '';
    const timer = setTimeout(() => resolve(false), 2_000);
    socket.on('data', (c: Buffer) => {
      data += c.toString('utf8');
      if (data.includes('\r\n\r\n')) {
        clearTimeout(timer);
        resolve(data.startsWith('HTTP/1.1 200'));
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(false);
    });
    socket.write(`GET /healthz HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
  });
}

describe('transport: connection limits and idle timeout', () => {
  const servers: { http: HttpHandle; t: TestHub }[] = [];
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    for (const { http, t } of servers.splice(0)) {
      await http.close();
      await t.close();
    }
  });
  async function start(config: Partial<Config>): Promise<HttpHandle> {
    const t = await openHub({ config });
    const http = await serve(t.hub);
    servers.push({ http, t });
    return http;
  }
  async function open(url: string): Promise<{ socket: Socket; closed: Promise<number> }> {
    const c = await rawConnect(url);
    sockets.push(c.socket);
    return c;
  }

  it('limits open connections per address', async () => {
    const http = await start({ maxConnectionsPerAddress: 2 });
    const host = new URL(http.url).host;
    const a = await open(http.url);
    const b = await open(http.url);
    expect(await probe(a.socket, host)).toBe(true);
    expect(await probe(b.socket, host)).toBe(true);
    const c = await open(http.url);
    expect(await probe(c.socket, host)).toBe(false);
    // One closes: a new one is accepted again.
    a.socket.destroy();
    await a.closed;
    await new Promise((r) => setTimeout(r, 50));
    const d = await open(http.url);
    expect(await probe(d.socket, host)).toBe(true);
  });

  it('limits open connections in total', async () => {
    const http = await start({ maxConnections: 2 });
    const host = new URL(http.url).host;
    const a = await open(http.url);
    const b = await open(http.url);
    expect(await probe(a.socket, host)).toBe(true);
    expect(await probe(b.socket, host)).toBe(true);
    const c = await open(http.url);
    expect(await probe(c.socket, host)).toBe(false);
  });

  it('limits new connections per address per minute', async () => {
    const http = await start({ connectionRatePerMin: 3 });
    const host = new URL(http.url).host;
    for (let i = 0; i < 3; i++) {
      const c = await open(http.url);
      expect(await probe(c.socket, host), `connection ${i + 1}`).toBe(true);
      c.socket.destroy();
    }
    const over = await open(http.url);
    expect(await probe(over.socket, host)).toBe(false);
  });

  it('closes idle connections: between requests and before a first request', async () => {
    const http = await start({ idleTimeoutMs: 300 });
    const host = new URL(http.url).host;
    const kept = await open(http.url);
    expect(await probe(kept.socket, host)).toBe(true);
    const keptFor = await kept.closed;
    expect(keptFor).toBeGreaterThanOrEqual(250);
    expect(keptFor).toBeLessThan(3_000);
    const silent = await open(http.url);
    const silentFor = await silent.closed;
    expect(silentFor).toBeGreaterThanOrEqual(250);
    expect(silentFor).toBeLessThan(5_000);
  });

  it('keeps connections open by default for well over the test idle time', async () => {
    const http = await start({});
    const host = new URL(http.url).host;
    const c = await open(http.url);
    expect(await probe(c.socket, host)).toBe(true);
    const closedEarly = await Promise.race([c.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 1_000))]);
    expect(closedEarly).toBe(false);
  });
});

describe('transport: plain HTTP beyond loopback (unit)', () => {
  it('knows loopback hosts', () => {
    for (const h of ['localhost', '127.0.0.1', '127.1.2.3', '::1', '[::1]']) expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '192.168.1.2', 'example.com', 'localhost.evil.example']) expect(isLoopbackHost(h), h).toBe(false);
  });

  it('refuses a non-loopback host without TLS unless allowInsecureHttp', () => {
    expect(() => checkTransport(testConfig({ host: '0.0.0.0' }))).toThrow(ConfigError);
    expect(() => checkTransport(testConfig({ host: '0.0.0.0' }))).toThrow(/--allow-insecure-http/);
    expect(checkTransport(testConfig({ host: '0.0.0.0', allowInsecureHttp: true }))).toBeNull();
    expect(checkTransport(testConfig({ host: '127.0.0.1' }))).toBeNull();
    expect(() => checkTransport(testConfig({ tlsCert: '/nonexistent/cert.pem' }))).toThrow(/together/);
    expect(() => checkTransport(testConfig({ tlsCert: '/nonexistent/cert.pem', tlsKey: '/nonexistent/key.pem' }))).toThrow(
      /cannot be read/,
    );
  });

  it('binds the configured host into the Host allowlist, but never the wildcard', () => {
    expect([...new RequestGuard(testConfig({}), '0.0.0.0', false).hosts].sort()).toEqual(['127.0.0.1', '[::1]', 'localhost']);
    expect(new RequestGuard(testConfig({}), '192.168.1.5', false).hosts.has('192.168.1.5')).toBe(true);
    expect(new RequestGuard(testConfig({}), 'fd00::5', false).hosts.has('[fd00::5]')).toBe(true);
  });
});
