import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { RawDb as Database } from '../raw-db.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Hub } from '../../src/hub.js';
import { contentSummary, createLogger, scrubText, scrubValue } from '../../src/log.js';
import { httpAgent, serve, tempDir, testConfig } from '../helpers.js';
import type { HttpHandle } from '../../src/api/http/server.js';

/**
 * S28: a whole scenario runs with the real logger writing to a captured stream, at the most
 * verbose level; afterwards no key, token, message body or memory value is found in the text.
 */
const SECRETS = {
  openai: 'sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789',
  github: 'ghp_abcdefghijklmnopqrstuvwxyz0123456789',
  aws: 'AKIAIOSFODNN7EXAMPLE',
  jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ',
  refresh: 'batr_Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5',
  pem: '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretsecretsecret\n-----END RSA PRIVATE KEY-----',
};
const BODY = `please use ${SECRETS.openai} and ${SECRETS.github} for the deploy (body-marker-7f3a)`;
const MEMORY_VALUE = `memory-marker-91c2 ${SECRETS.aws}`;

describe('logs carry no secrets and no content (S28)', () => {
  const { dir, cleanup } = tempDir();
  let captured = '';
  let hub: Hub;
  let http: HttpHandle;
  const keys: string[] = [];

  beforeAll(async () => {
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => {
      captured += chunk.toString('utf8');
    });
    hub = await Hub.open(testConfig(join(dir, 'data')), { log: createLogger('trace', stream) });
    keys.push(hub.firstStartKey!);
    http = await serve(hub);
  });
  afterAll(async () => {
    await http.close();
    await hub.close();
    cleanup();
  });

  it('runs keys, token creation, secret-looking messages and memory, bad credentials and an internal error', async () => {
    const admin = await httpAgent('v2', http.url, keys[0]!);
    const created = await admin.ok<{ key: string }>('token_create', { name: 'w1', role: 'worker' });
    keys.push(created.key);
    const worker = await httpAgent('v2', http.url, created.key);
    await worker.ok('message_send', { to_agents: ['admin'], body: BODY, subject: SECRETS.jwt });
    await worker.ok('memory_set', { key: 'deploy', value: MEMORY_VALUE });
    await admin.ok('message_inbox', {});
    await worker.ok('memory_get', { key: 'deploy' });

    // REST with the key in a header, then a refused request whose Authorization is a real-looking key.
    const rest = await fetch(`${http.url}/api/v1/memory?key=deploy`, { headers: { 'x-api-key': created.key } });
    expect(rest.status).toBe(200);
    const bad = await fetch(`${http.url}/api/v1/whoami`, { headers: { authorization: `Bearer ${created.key.slice(0, -2)}xx` } });
    expect(bad.status).toBe(401);
    const badMcp = await fetch(`${http.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRETS.jwt}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(badMcp.status).toBe(401);

    // An internal error: the memory table disappears under the server.
    const db = new Database(join(dir, 'data', 'baton.db'));
    db.exec('DROP TABLE memory');
    db.close();
    const failed = await worker.call('memory_set', { key: 'other', value: MEMORY_VALUE });
    expect(failed.isError).toBe(true);
    expect((failed.data as { error: { code: string } }).error.code).toBe('internal');

    // Code that logs carelessly is still scrubbed: names at any depth, shapes in any string, errors.
    hub.log.info(
      {
        req: { headers: { authorization: `Bearer ${keys[0]}`, cookie: `sid=${SECRETS.refresh}` } },
        deep: { a: { b: { refresh_token: 'opaque-refresh-value-1', password: 'hunter2-password', client_secret: 'cs-value-1' } } },
        list: [`token ${created.key}`],
      },
      `careless ${SECRETS.github} ${SECRETS.pem}`,
    );
    hub.log.error({ err: new Error(`upstream said ${SECRETS.openai}`) }, 'with an error');
    hub.log.child({ key: created.key }).warn('child bindings %s', SECRETS.aws);

    await admin.close();
    await worker.close();
    await hub.deferred.flush();
  });

  it('the captured log is not empty: the internal error is there with its request id', () => {
    expect(captured).toContain('"level":50');
    expect(captured).toMatch(/"requestId":"req_[A-Za-z0-9_-]+"/);
    expect(captured).toContain('careless');
    expect(captured).toContain('[redacted]');
    for (const line of captured.trim().split('\n')) expect(() => JSON.parse(line) as unknown).not.toThrow();
  });

  it('holds no key, token, secret, message body or memory value', () => {
    const forbidden = [
      ...keys,
      ...Object.values(SECRETS),
      'MIIEowIBAAKCAQEAsecretsecretsecret',
      'body-marker-7f3a',
      'memory-marker-91c2',
      'opaque-refresh-value-1',
      'hunter2-password',
      'cs-value-1',
    ];
    for (const secret of forbidden) expect(captured, secret).not.toContain(secret);
    for (const k of keys) expect(captured).not.toContain(k.slice(4, 24));
  });
});

describe('scrubText and contentSummary', () => {
  it('replaces each known shape and leaves ordinary text alone', () => {
    for (const s of Object.values(SECRETS)) expect(scrubText(`x ${s} y`)).toBe('x [redacted] y');
    expect(scrubText('Authorization: Bearer abcdefghijkl123')).toBe('Authorization: Bearer [redacted]');
    expect(scrubText('task tsk_abcdefghijklmnopqrstuvwxyz done in 12 ms')).toBe('task tsk_abcdefghijklmnopqrstuvwxyz done in 12 ms');
  });

  it('redacts a password in a URL, and camelCase secret names (metricsToken, jwtSecret) but not lookalikes', () => {
    expect(scrubText('connect postgres://baton:S3cret-pw@db.internal:5432/baton failed')).toBe(
      'connect postgres://baton:[redacted]@db.internal:5432/baton failed',
    );
    expect(scrubText('postgres://baton@db/baton and http://host/a:b@c')).toBe('postgres://baton@db/baton and http://host/a:b@c');
    const v = scrubValue({ metricsToken: 'm-value-1234567890', jwtSecret: 'j-value', databaseUrl: 'postgres://u@h/d', monkey: 'banana', tokenCount: 3 }) as Record<string, unknown>;
    expect(v).toEqual({ metricsToken: '[redacted]', jwtSecret: '[redacted]', databaseUrl: '[redacted]', monkey: 'banana', tokenCount: 3 });
  });

  it('summarises content as length and a short hash', () => {
    const s = contentSummary(BODY);
    expect(s).toEqual({ len: BODY.length, sha256: expect.stringMatching(/^[0-9a-f]{12}$/) as unknown });
    expect(JSON.stringify(s)).not.toContain('marker');
  });
});
