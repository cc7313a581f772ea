import { execFile as execFileCb, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { join, resolve } from 'node:path';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSP, checkTransport } from '../../src/api/http/guard.js';
import type { HttpHandle } from '../../src/api/http/server.js';
import { ConfigError, ConfigSchema } from '../../src/config.js';
import { BIN, createKey, openHub, serve, stdioAgent, tempDir, type TestHub } from '../helpers.js';

/**
 * TLS (S19) and the plain-HTTP refusal (S20), in process and through the CLI (`baton serve`);
 * and the runner's rate limit on stdio (S25). The CLI tests run dist/: the build runs first.
 */
const execFile = promisify(execFileCb);
const ROOT = resolve(import.meta.dirname, '../..');
const tmp = tempDir('baton-tls-');
let cert = '';
let key = '';
let otherKey = '';

beforeAll(async () => {
  await execFile('which', ['openssl']);
  cert = join(tmp.dir, 'cert.pem');
  key = join(tmp.dir, 'key.pem');
  otherKey = join(tmp.dir, 'other-key.pem');
  await execFile('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  await execFile('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', otherKey]);
}, 60_000);
afterAll(() => tmp.cleanup());

function get(url: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((res, rej) => {
    const r = request({ host: u.hostname, port: u.port, path, headers, rejectUnauthorized: false, agent: false }, (out) => {
      let text = '';
      out.setEncoding('utf8');
      out.on('data', (c: string) => (text += c));
      out.on('end', () => res({ status: out.statusCode ?? 0, headers: out.headers, text }));
    });
    r.on('error', rej);
    r.end();
  });
}

/** A TLS handshake with these client options: the protocol and cipher, or the error. */
function handshake(url: string, options: ConnectionOptions): Promise<{ protocol: string | null; cipher: string } | Error> {
  const u = new URL(url);
  return new Promise((res) => {
    const s = tlsConnect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false, servername: 'localhost', ...options }, () => {
      const out = { protocol: s.getProtocol(), cipher: s.getCipher().name };
      s.end();
      res(out);
    });
    s.on('error', (err) => res(err));
  });
}

describe('TLS in process', () => {
  let t: TestHub;
  let http: HttpHandle;

  beforeAll(async () => {
    t = await openHub({ config: { tlsCert: cert, tlsKey: key } });
    http = await serve(t.hub);
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });

  it('serves HTTPS with HSTS and the security headers', async () => {
    expect(http.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const r = await get(http.url, '/healthz');
    expect(r.status).toBe(200);
    expect(r.headers['strict-transport-security']).toBe('max-age=31536000');
    expect(r.headers['x-frame-options']).toBe('DENY');
    expect(r.headers['content-security-policy']).toBe(CSP);
    const worker = await createKey(t, 'w1', 'worker');
    const who = await get(http.url, '/api/v1/whoami', { authorization: `Bearer ${worker}` });
    expect(who.status).toBe(200);
    expect(who.headers['strict-transport-security']).toBe('max-age=31536000');
  });

  it('refuses TLS 1.1 and older, accepts TLS 1.2 (ECDHE + AEAD only) and TLS 1.3', async () => {
    const old = await handshake(http.url, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
    expect(old).toBeInstanceOf(Error);
    const v12 = await handshake(http.url, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    expect(v12).not.toBeInstanceOf(Error);
    expect((v12 as { protocol: string }).protocol).toBe('TLSv1.2');
    expect((v12 as { cipher: string }).cipher).toMatch(/^ECDHE-.*(GCM|CHACHA20)/);
    const v13 = await handshake(http.url, { minVersion: 'TLSv1.3' });
    expect((v13 as { protocol: string }).protocol).toBe('TLSv1.3');
    // A client offering only weak TLS 1.2 suites (no forward secrecy, CBC) is refused.
    const weak = await handshake(http.url, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA:AES256-SHA:ECDHE-ECDSA-AES128-SHA' });
    expect(weak).toBeInstanceOf(Error);
  });

  it('does not answer plain HTTP on the TLS port', async () => {
    const plain = get(http.url.replace('https:', 'http:'), '/healthz');
    await expect(plain).rejects.toThrow();
  });

  it('refuses bad TLS settings at start', () => {
    const cfg = (o: Record<string, unknown>) => ConfigSchema.parse({ logLevel: 'silent', ...o });
    expect(() => checkTransport(cfg({ tlsCert: cert, tlsKey: otherKey }))).toThrow(ConfigError);
    expect(() => checkTransport(cfg({ tlsCert: cert, tlsKey: otherKey }))).toThrow(/matching private key/);
    expect(() => checkTransport(cfg({ tlsCert: cert }))).toThrow(/together/);
    expect(checkTransport(cfg({ tlsCert: cert, tlsKey: key, host: '0.0.0.0' }))).not.toBeNull();
  });

  it('sends no HSTS with hstsMaxAgeS=0', async () => {
    const t2 = await openHub({ config: { tlsCert: cert, tlsKey: key, hstsMaxAgeS: 0 } });
    const h2 = await serve(t2.hub);
    try {
      const r = await get(h2.url, '/healthz');
      expect(r.status).toBe(200);
      expect(r.headers['strict-transport-security']).toBeUndefined();
    } finally {
      await h2.close();
      await t2.close();
    }
  });
});

function minimalEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmp.dir, BATON_LOG_LEVEL: 'warn', ...extra };
}

async function runServe(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await execFile(process.execPath, [BIN, 'serve', '--port', '0', ...args], { env: minimalEnv(), timeout: 20_000 });
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stderr: e.stderr ?? '' };
  }
}

describe('baton serve (CLI)', () => {
  // `npm test` builds first. Never rebuild here: a rebuild rewrites dist/ under the other test
  // files running beside this one (and with this worker's 077 umask, the unprivileged-user tests
  // could no longer read the bundle).
  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist/bundle/baton.cjs'))) throw new Error('dist/ is missing: run `npm run build` first');
  });

  it('refuses plain HTTP on 0.0.0.0 before opening the data dir or listening', async () => {
    const data = join(tmp.dir, 'refused');
    const r = await runServe(['--host', '0.0.0.0', '--data', data]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('refusing to serve plain HTTP on 0.0.0.0');
    expect(r.stderr).toContain('--allow-insecure-http');
    expect(r.stderr).not.toContain('listening');
    expect(existsSync(data)).toBe(false);
    // The same through the environment.
    const env = await execFile(process.execPath, [BIN, 'serve', '--port', '0', '--data', data], {
      env: minimalEnv({ BATON_HOST: '::' }),
    }).catch((e: { code: number; stderr: string }) => e);
    expect((env as { code: number }).code).toBe(2);
    expect(existsSync(data)).toBe(false);
  });

  it('--allow-insecure-http passes the check (then binding a foreign test address fails, nothing listens)', async () => {
    const data = join(tmp.dir, 'insecure');
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine: listen fails after the check.
    const r = await runServe(['--host', '192.0.2.1', '--allow-insecure-http', '--data', data]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toContain('refusing to serve plain HTTP');
    expect(r.stderr).toMatch(/EADDRNOTAVAIL|address not available/i);
  });

  it('--tls-cert without --tls-key is refused', async () => {
    const r = await runServe(['--tls-cert', cert, '--data', join(tmp.dir, 'half')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('tlsCert and tlsKey must be given together');
  });

  it('--tls-cert and --tls-key serve HTTPS on loopback', async () => {
    const data = join(tmp.dir, 'tls');
    const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--data', data, '--tls-cert', cert, '--tls-key', key], {
      env: minimalEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let stderr = '';
      const url = await new Promise<string>((res, rej) => {
        const timer = setTimeout(() => rej(new Error(`no "listening on" line; stderr: ${stderr}`)), 15_000);
        child.stderr!.setEncoding('utf8');
        child.stderr!.on('data', (c: string) => {
          stderr += c;
          const m = /listening on (https:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
          if (m !== null) {
            clearTimeout(timer);
            res(m[1]!);
          }
        });
        child.once('exit', (code) => rej(new Error(`serve exited with ${String(code)}: ${stderr}`)));
      });
      const r = await get(url, '/healthz');
      expect(r.status).toBe(200);
      expect(r.headers['strict-transport-security']).toBe('max-age=31536000');
      expect(await handshake(url, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })).toBeInstanceOf(Error);
    } finally {
      const exited = new Promise((res) => child.once('exit', res));
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('stdio: a rate-limited tools/call is a tool error with code rate_limited', async () => {
    const t = await openHub({ dir: tmp.dir });
    try {
      const worker = await createKey(t, 'w-stdio', 'worker');
      const agent = await stdioAgent('v2', join(tmp.dir, 'data'), { BATON_TOKEN: worker, BATON_RATE_LIMIT_READ_PER_MIN: '2' });
      try {
        await agent.ok('whoami');
        await agent.ok('task_list');
        const r = await agent.call('task_list');
        expect(r.isError).toBe(true);
        expect((r.data.error as { code: string; details: { retry_after_s: number } }).code).toBe('rate_limited');
        expect((r.data.error as { details: { retry_after_s: number } }).details.retry_after_s).toBeGreaterThanOrEqual(1);
        // Writes are another class.
        await agent.ok('task_create', { tasks: [{ title: 'x' }] });
      } finally {
        await agent.close();
      }
    } finally {
      await t.hub.close();
    }
  });
});
