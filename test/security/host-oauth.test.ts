import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, openHub, serve, type TestHub } from '../helpers.js';

/** Sends raw bytes and returns the status line's code (0 when the connection closes without one). */
function raw(url: string, text: string): Promise<{ status: number; text: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect(Number(u.port), u.hostname);
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', reject);
    s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(out)?.[1] ?? 0), text: out }));
    // Not half-closed after the request: Node's HTTP server ends a connection at the client's FIN
    // and drops an answer still to come (a durable read waits for the WAL's fsync); the request
    // says Connection: close, so the server closes once it has answered.
    s.write(text);
  });
}

describe('issue 8: Host header syntax and duplicates (S21); OAuth metadata only with an issuer (S5)', () => {
  let t: TestHub;
  let h: HttpHandle;
  let key: string;
  beforeAll(async () => {
    t = await openHub();
    h = await serve(t.hub);
    key = await createKey(t, 'w', 'worker');
  });
  afterAll(async () => {
    await h.close();
    await t.close();
  });

  const req = (hostLines: string[], path = '/api/v1/whoami'): string =>
    `GET ${path} HTTP/1.1\r\n${hostLines.map((x) => `Host: ${x}\r\n`).join('')}Authorization: Bearer ${key}\r\nConnection: close\r\n\r\n`;

  it('accepts a well-formed allowed Host (the control)', async () => {
    const port = new URL(h.url).port;
    expect((await raw(h.url, req([`localhost:${port}`]))).status).toBe(200);
    expect((await raw(h.url, req(['127.0.0.1']))).status).toBe(200);
  });

  it('refuses Host values that are not host[:port]: userinfo, paths, junk', async () => {
    for (const bad of ['localhost:80@evil.com', 'localhost@evil.com', 'localhost/evil', 'localhost:80/x', 'local host', 'localhost:abc', '127.0.0.1:80:80']) {
      const r = await raw(h.url, req([bad]));
      expect(r.status, bad).toBe(403);
    }
  });

  it('refuses a request with two Host headers, whichever comes first', async () => {
    expect((await raw(h.url, req(['localhost', 'evil.com']))).status).toBe(403);
    expect((await raw(h.url, req(['evil.com', 'localhost']))).status).toBe(403);
    expect((await raw(h.url, req(['localhost', 'localhost']))).status).toBe(403);
  });

  it('without an external issuer: no OAuth metadata (404) and a 401 that says a Baton key is required', async () => {
    for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
      expect((await fetch(new URL(path, h.url))).status).toBe(404);
    }
    const none = await fetch(new URL('/mcp', h.url), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(none.status).toBe(401);
    const challenge = none.headers.get('www-authenticate') ?? '';
    expect(challenge).not.toContain('resource_metadata');
    expect(challenge).toMatch(/^Bearer realm="baton", error="invalid_token", error_description="a Baton API key is required/);
    expect(((await none.json()) as { error: { message: string } }).error.message).toMatch(/Baton API key is required/);
    const wrong = await fetch(new URL('/api/v1/whoami', h.url), { headers: { authorization: `Bearer bat_${'x'.repeat(43)}` } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).not.toContain('resource_metadata');
  });
});
