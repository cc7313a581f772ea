import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { openHub, serve, type TestHub } from '../helpers.js';
import { ensureDashboardBuilt } from './browser.js';

/** A raw request: the path goes on the wire exactly as written (fetch would normalise `..`). */
function raw(url: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const u = new URL(url);
  return new Promise((ok, fail) => {
    const req = request({ host: u.hostname, port: u.port, path, method, headers: { host: u.host, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', fail);
    req.end();
  });
}

describe('the dashboard files at /', () => {
  let t: TestHub;
  let http: HttpHandle;
  let asset = '';

  beforeAll(async () => {
    // The hub serves what the build wrote (dist/web): build it the way `npm run build` does when
    // it is missing (the build replaces files atomically, so other test files may be reading it).
    ensureDashboardBuilt();
    t = await openHub();
    http = await serve(t.hub);
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('serves index.html with the strict CSP, never cached, naming hashed assets and no inline script or style', async () => {
    const r = await raw(http.url, '/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['cache-control']).toBe('no-cache');
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("style-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    const html = r.body.toString();
    const scripts = [...html.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]);
    expect(scripts.length).toBe(1);
    expect(scripts[0]).toMatch(/src="\/assets\/app-[0-9a-f]{12}\.js"/);
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
    asset = /src="(\/assets\/app-[0-9a-f]{12}\.js)"/.exec(html)![1]!;
    expect((await raw(http.url, '/index.html')).body.equals(r.body)).toBe(true);
  });

  it('serves hashed assets with their type, a year-long immutable cache, gzip when asked, and 304 on a matching ETag', async () => {
    const plain = await raw(http.url, asset);
    expect(plain.status).toBe(200);
    expect(plain.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(plain.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(plain.headers['content-encoding']).toBeUndefined();
    const gz = await raw(http.url, asset, { 'accept-encoding': 'gzip, br' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).equals(plain.body)).toBe(true);
    // The budget the build enforces, checked on what is actually served.
    expect(gz.body.length).toBeLessThanOrEqual(150 * 1024);
    const css = /href="(\/assets\/app-[0-9a-f]{12}\.css)"/.exec((await raw(http.url, '/')).body.toString())![1]!;
    expect((await raw(http.url, css)).headers['content-type']).toBe('text/css; charset=utf-8');
    const etag = String((await raw(http.url, '/')).headers.etag);
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{22}"$/);
    const again = await raw(http.url, '/', { 'if-none-match': etag });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    const head = await raw(http.url, asset, {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
  });

  it('answers 404 to every path outside the built files: traversal, encoded dots, directories, other methods', async () => {
    for (const path of [
      '/assets/../package.json',
      '/assets/%2e%2e/package.json',
      '/assets/..%2fpackage.json',
      '/assets/%2e%2e%2f%2e%2e%2fpackage.json',
      '/%2e%2e/package.json',
      // These reach real files (dist/hub.js, the repo's package.json) from dist/web if joined onto the disk path.
      '/%2e%2e/hub.js',
      '/assets/%2e%2e/%2e%2e/hub.js',
      '/%2e%2e/%2e%2e/package.json',
      '/assets/%2e%2e/%2e%2e/%2e%2e/package.json',
      '/assets/..%2f..%2f..%2fpackage.json',
      '/assets/..\\..\\package.json',
      '//etc/passwd',
      '/assets/',
      '/assets',
      '/index.html/',
      '/../dist/web/index.html',
      '/assets/app.js.map',
      '/favicon.ico',
    ]) {
      const r = await raw(http.url, path);
      expect(r.status, path).toBe(404);
      expect(r.headers['content-type'], path).toBe('application/json');
      expect(r.body.toString(), path).not.toContain('"name"');
    }
    expect((await raw(http.url, asset, {}, 'POST')).status).toBe(404);
    expect((await raw(http.url, '/', {}, 'DELETE')).status).toBe(404);
  });

  it('fetching the dashboard does not vouch for a connection: keyless page loads cannot hold an address\'s slots', async () => {
    const small = await openHub({ config: { maxConnectionsPerAddress: 2, idleTimeoutMs: 600_000 } });
    const smallHttp = await serve(small.hub);
    const u = new URL(smallHttp.url);
    const held: Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const s = connect(Number(u.port), u.hostname);
        s.on('error', () => undefined);
        held.push(s);
        const answered = await new Promise<string>((ok) => {
          let out = '';
          s.on('data', (c: Buffer) => {
            out += c.toString('latin1');
            if (/\r\n\r\n[\s\S]*<\/html>/.test(out)) ok(out);
          });
          s.write(`GET / HTTP/1.1\r\nhost: ${u.host}\r\n\r\n`);
        });
        expect(answered.startsWith('HTTP/1.1 200')).toBe(true);
      }
      // Both slots are taken by keep-alive connections that only loaded the page: the operator's
      // request takes the oldest one's slot instead of being refused.
      const res = await fetch(`${smallHttp.url}/api/v1/whoami`, { headers: { authorization: `Bearer ${small.adminKey}` }, signal: AbortSignal.timeout(15_000) }).catch(() => null);
      expect(res?.status).toBe(200);
    } finally {
      for (const s of held) s.destroy();
      await smallHttp.close();
      await small.close();
    }
  });
});
