import { execFile as execFileCb } from 'node:child_process';
import { request } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, openHub, serve, tempDir, type TestHub } from '../helpers.js';

/** Browser sessions under TLS: the cookie is `Secure`, and only an https page of this host is same-origin. */
const execFile = promisify(execFileCb);
const tmp = tempDir('baton-session-tls-');
let t: TestHub;
let h: HttpHandle;

function https(url: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<{ status: number; headers: Record<string, unknown>; json: Record<string, unknown> }> {
  const u = new URL(url);
  const text = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const r = request(
      { host: u.hostname, port: u.port, path, method, headers: { ...(text === undefined ? {} : { 'content-type': 'application/json' }), ...headers }, rejectUnauthorized: false, agent: false },
      (res) => {
        let out = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (out += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, json: out === '' ? {} : (JSON.parse(out) as Record<string, unknown>) }));
      },
    );
    r.on('error', reject);
    r.end(text);
  });
}

beforeAll(async () => {
  const cert = join(tmp.dir, 'cert.pem');
  const key = join(tmp.dir, 'key.pem');
  await execFile('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  t = await openHub({ config: { tlsCert: cert, tlsKey: key } });
  h = await serve(t.hub);
}, 60_000);
afterAll(async () => {
  await h?.close();
  await t?.close();
  tmp.cleanup();
});

describe('browser session over TLS', () => {
  it('sets a Secure cookie; an http:// page of the same host is not same-origin', async () => {
    expect(h.url).toMatch(/^https:/);
    const worker = await createKey(t, 'w1', 'worker');
    const login = await https(h.url, 'POST', '/api/v1/session', { origin: h.url }, { key: worker });
    expect(login.status).toBe(200);
    const set = String(login.headers['set-cookie']);
    expect(set).toContain('; Secure');
    expect(set).toContain('HttpOnly');
    // The __Host- prefix: the browser takes it only Secure, Path=/ and without Domain.
    expect(set).toMatch(/^__Host-baton_session=[A-Za-z0-9_-]{43}; /);
    expect(set).toContain('Path=/');
    expect(set).not.toMatch(/Domain=/i);
    const cookie = /^(__Host-baton_session=[^;]+)/.exec(set)![1]!;
    const csrf = login.json.csrf as string;
    const body = { tasks: [{ title: 'over tls' }] };
    const downgraded = await https(h.url, 'POST', '/api/v1/tasks', { cookie, 'x-csrf-token': csrf, origin: h.url.replace('https:', 'http:') }, body);
    expect(downgraded.status).toBe(403);
    expect((downgraded.json.error as { code: string }).code).toBe('csrf');
    const ok = await https(h.url, 'POST', '/api/v1/tasks', { cookie, 'x-csrf-token': csrf, origin: h.url }, body);
    expect(ok.status).toBe(200);
    // The plain name is not taken under TLS (one a non-Secure page could have set).
    const plain = await https(h.url, 'GET', '/api/v1/tasks', { cookie: cookie.replace('__Host-', ''), 'x-csrf-token': csrf });
    expect(plain.status).toBe(401);
  });
});
