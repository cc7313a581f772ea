import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, openHub, serve, type TestHub } from '../helpers.js';

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** Raw node:http so Host and Origin can be set freely. */
function req(url: string, method: string, path: string, opts: { key?: string; body?: string | object; headers?: Record<string, string> } = {}): Promise<Res> {
  const u = new URL(url);
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  return new Promise((resolve, reject) => {
    const r = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        headers: {
          ...(opts.key === undefined ? {} : { authorization: `Bearer ${opts.key}` }),
          ...(body === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }),
          ...opts.headers,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> = {};
          try {
            parsed = text === '' ? {} : (JSON.parse(text) as Record<string, unknown>);
          } catch {
            parsed = { raw: text };
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
        });
      },
    );
    r.on('error', reject);
    if (body !== undefined) r.write(body);
    r.end();
  });
}

const LEAK = /at .*\.(ts|js):\d+|\bSELECT\b|\bsqlite\b|\/work\/|\/tmp\/|node_modules|TypeError|SyntaxError/i;

describe('REST /api/v1 and the HTTP surface', () => {
  let t: TestHub;
  let http: HttpHandle;
  let lead: string;
  let worker: string;
  beforeAll(async () => {
    t = await openHub({ config: { maxBodyBytes: 64 * 1024 } });
    http = await serve(t.hub);
    lead = await createKey(t, 'rest-lead', 'lead');
    worker = await createKey(t, 'rest-worker', 'worker');
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('health needs no credentials', async () => {
    const r = await req(http.url, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('ok');
  });

  it('every other route needs a valid key, by Bearer or X-API-Key', async () => {
    const none = await req(http.url, 'GET', '/api/v1/whoami');
    expect(none.status).toBe(401);
    expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(none.body).toMatchObject({ error: { code: 'unauthenticated' } });
    expect((await req(http.url, 'GET', '/api/v1/whoami', { key: 'bat_' + 'A'.repeat(43) })).status).toBe(401);
    expect((await req(http.url, 'POST', '/mcp', { body: {} })).status).toBe(401);
    const viaHeader = await req(http.url, 'GET', '/api/v1/whoami', { headers: { 'x-api-key': worker } });
    expect(viaHeader.status).toBe(200);
    expect(viaHeader.body).toMatchObject({ agent: { name: 'rest-worker', role: 'worker' } });
  });

  it('runs the whole task cycle through generated routes', async () => {
    const created = await req(http.url, 'POST', '/api/v1/tasks', {
      key: lead,
      body: { tasks: [{ ref: 'a', title: 'A', priority: 2 }, { ref: 'b', title: 'B', depends_on: ['a'] }] },
    });
    expect(created.status).toBe(200);
    const [a, b] = (created.body.tasks as { id: string }[]).map((x) => x.id) as [string, string];
    const ready = await req(http.url, 'GET', '/api/v1/tasks?status=ready,blocked&limit=10', { key: worker });
    expect((ready.body.tasks as unknown[]).length).toBe(2);
    const claimed = await req(http.url, 'POST', '/api/v1/tasks/claim', { key: worker, body: {} });
    const task = claimed.body.task as { id: string; lease: { token: number } };
    expect(task.id).toBe(a);
    const wrong = await req(http.url, 'POST', `/api/v1/tasks/${a}/complete`, {
      key: worker,
      body: { lease_token: task.lease.token + 1, result: { summary: 'x' } },
    });
    expect(wrong.status).toBe(409);
    expect(wrong.body).toMatchObject({ error: { code: 'lease_lost' } });
    const done = await req(http.url, 'POST', `/api/v1/tasks/${a}/complete`, {
      key: worker,
      body: { lease_token: task.lease.token, result: { summary: 'ok', files_modified: ['src/a.ts'] } },
    });
    expect(done.body).toMatchObject({ status: 'done', unblocked: [b] });
    const got = await req(http.url, 'GET', `/api/v1/tasks/${b}`, { key: worker });
    expect(got.body).toMatchObject({ task: { id: b, status: 'ready', depends_on: [a] } });
    const patched = await req(http.url, 'PATCH', `/api/v1/tasks/${b}`, { key: lead, body: { priority: 1 } });
    expect(patched.body).toMatchObject({ task: { priority: 1 } });
    const plan = await req(http.url, 'PUT', '/api/v1/plan', { key: lead, body: { goal: 'g', body: 'b' } });
    expect(plan.body).toMatchObject({ plan: { version: 1 } });
    const conflicting = await req(http.url, 'PATCH', `/api/v1/tasks/${b}`, { key: lead, body: { id: a, priority: 2 } });
    expect(conflicting.status).toBe(400);
  });

  it('maps refusals to status codes with a stable code and request id, and leaks nothing', async () => {
    const cases: [string, string, { key?: string; body?: string | object }, number, string][] = [
      ['POST', '/api/v1/tasks', { key: worker, body: { tasks: [{ title: 'x', bogus: 1 }] } }, 400, 'invalid_input'],
      ['POST', '/api/v1/tasks', { key: worker, body: '{"tasks": [' }, 400, 'invalid_input'],
      ['POST', '/api/v1/tasks', { key: worker, body: '[1,2]' }, 400, 'invalid_input'],
      ['POST', '/api/v1/tasks', { key: worker, body: '['.repeat(100) + ']'.repeat(100) }, 400, 'invalid_input'],
      ['GET', '/api/v1/tasks?limit=abc', { key: worker }, 400, 'invalid_input'],
      ['GET', '/api/v1/tasks/tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa', { key: worker }, 404, 'not_found'],
      ['GET', '/api/v1/nothing-here', { key: worker }, 404, 'not_found'],
      ['POST', '/api/v1/tokens', { key: worker, body: { name: 'x', role: 'admin' } }, 403, 'forbidden'],
      ['POST', '/api/v1/tokens', { key: lead, body: { name: 'x', role: 'admin' } }, 403, 'forbidden'],
      ['POST', '/api/v1/tasks', { key: worker, body: { tasks: [{ title: 'x', description: 'y'.repeat(70_000) }] } }, 413, 'body_too_large'],
    ];
    for (const [method, path, opts, status, code] of cases) {
      const r = await req(http.url, method, path, opts);
      expect(r.status, `${method} ${path}`).toBe(status);
      expect(r.body, `${method} ${path}`).toMatchObject({ error: { code } });
      expect((r.body.error as { request_id: string }).request_id).toMatch(/^req_/);
      expect(JSON.stringify(r.body)).not.toMatch(LEAK);
    }
  });

  it('refuses foreign Origin and Host headers (DNS rebinding) on REST and /mcp', async () => {
    for (const path of ['/api/v1/whoami', '/mcp']) {
      const method = path === '/mcp' ? 'POST' : 'GET';
      for (const origin of ['https://evil.example', 'null', 'http://localhost.evil.example', 'file://']) {
        const r = await req(http.url, method, path, { key: worker, headers: { origin }, body: method === 'POST' ? {} : undefined });
        expect(r.status, `${path} Origin ${origin}`).toBe(403);
      }
      const host = await req(http.url, method, path, { key: worker, headers: { host: 'evil.example' }, body: method === 'POST' ? {} : undefined });
      expect(host.status, `${path} Host`).toBe(403);
      const local = await req(http.url, 'GET', '/api/v1/whoami', { key: worker, headers: { origin: `http://localhost:${new URL(http.url).port}` } });
      expect(local.status).toBe(200);
    }
  });

  it('the admin manages keys over REST; a revoked key is refused on its next request', async () => {
    const made = await req(http.url, 'POST', '/api/v1/tokens', { key: t.adminKey, body: { name: 'tmp', role: 'observer' } });
    const { key, token } = made.body as { key: string; token: { id: string } };
    expect((await req(http.url, 'GET', '/api/v1/whoami', { key })).status).toBe(200);
    const listed = await req(http.url, 'GET', '/api/v1/tokens', { key: t.adminKey });
    expect(JSON.stringify(listed.body)).not.toContain(key);
    const revoked = await req(http.url, 'DELETE', `/api/v1/tokens/${token.id}`, { key: t.adminKey });
    expect(revoked.body).toMatchObject({ revoked: true });
    expect((await req(http.url, 'GET', '/api/v1/whoami', { key })).status).toBe(401);
  });
});
