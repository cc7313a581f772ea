import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RawDb as Database } from '../raw-db.js';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { main } from '../../src/cli/entry.js';
import { Hub } from '../../src/hub.js';
import { addKeyToFile, KEYRING_FILE } from '../../src/security/crypto.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, tempDir, testConfig, type Agent, type TestHub, envScope } from '../helpers.js';

const MARK = 'ZEBRA-MARKER-7Q';
const silent = pino({ level: 'silent' });
const key32 = (): string => randomBytes(32).toString('base64');

/** A data dir that already holds a keyring (as `baton keys rotate` makes it): encryption on. */
function encryptedDir(): { dir: string; data: string; keyId: string; cleanup: () => void } {
  const tmp = tempDir('baton-data-');
  const data = join(tmp.dir, 'data');
  mkdirSync(data, { mode: 0o700 });
  const { id } = addKeyToFile(data, new Date());
  return { dir: tmp.dir, data, keyId: id, cleanup: tmp.cleanup };
}

/** Env vars set for one test, restored after it. */
const env = envScope();
const setEnv = env.set;
afterEach(() => {
  env.restore();
  process.exitCode = undefined;
});

const rawFiles = (data: string): Buffer[] =>
  ['baton.db', 'baton.db-wal', 'baton.db-shm'].filter((f) => existsSync(join(data, f))).map((f) => readFileSync(join(data, f)));

/** Runs the CLI in this process; returns what it printed. */
async function cli(args: string[]): Promise<{ out: string; err: string; code: number }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => ((err += String(s)), true));
  try {
    process.exitCode = undefined;
    await main(['node', 'baton', ...args]);
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  const code = typeof process.exitCode === 'number' ? process.exitCode : 0;
  process.exitCode = undefined;
  return { out, err, code };
}

describe('S32: content fields are encrypted at rest', () => {
  let env: ReturnType<typeof encryptedDir>;
  let t: TestHub;
  let http: HttpHandle;
  let a: Agent;
  let b: Agent;
  let hid: string;

  beforeAll(async () => {
    env = encryptedDir();
    t = await openHub({ dir: env.dir });
    http = await serve(t.hub);
    a = await httpAgent('v2', http.url, await createKey(t, 'worker-a', 'worker'));
    b = await httpAgent('v1', http.url, await createKey(t, 'worker-b', 'worker'));
    await a.ok('message_send', { to_agents: ['worker-b'], subject: `subj ${MARK}`, body: `body ${MARK} text`, visibility: 'private' });
    await a.ok('memory_set', { key: 'notes/plan', value: `value ${MARK}` });
    await a.ok('memory_set', { scope: 'project', key: 'shared/conv', value: `shared ${MARK}` });
    await a.ok('session_start', { goal: 'g' });
    const ended = await a.ok<{ handoff: { id: string } }>('session_end', {
      handoff: { summary: `summary ${MARK}`, next_goals: [`goal ${MARK}`], memory_keys: ['notes/plan'], files: ['src/x.ts'], to: { agent: 'worker-b' } },
    });
    hid = ended.handoff.id;
  });
  afterAll(async () => {
    await a.close();
    await b.close();
    await http.close();
    await t.close();
    env.cleanup();
  });

  it('the marker is absent from the db, -wal and -shm bytes, open and after close', async () => {
    const files = rawFiles(env.data);
    expect(files.length).toBeGreaterThanOrEqual(2); // db and wal at least (WAL mode)
    for (const bytes of files) expect(bytes.includes(Buffer.from(MARK))).toBe(false);
    // The same check proves itself: the marker's neighbour, a memory key, is stored in clear.
    expect(files.some((f) => f.includes(Buffer.from('notes/plan')))).toBe(true);
  });

  it('the columns hold enc:v1:<key id>: ciphertext, and the ops read plaintext', async () => {
    const db = new Database(join(env.data, 'baton.db'), { readonly: true });
    try {
      const sealed = new RegExp(`^enc:v1:${env.keyId}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$`);
      const msgs = db.prepare('SELECT subject, body FROM messages').all() as { subject: string; body: string }[];
      expect(msgs).toHaveLength(1);
      for (const m of msgs) {
        expect(m.subject).toMatch(sealed);
        expect(m.body).toMatch(sealed);
      }
      const mem = db.prepare('SELECT key, value, size FROM memory ORDER BY key').all() as { key: string; value: string; size: number }[];
      expect(mem.map((r) => r.key)).toEqual(['notes/plan', 'shared/conv']);
      for (const r of mem) expect(r.value).toMatch(sealed);
      expect(mem[0]!.size).toBe(`value ${MARK}`.length); // the plaintext size, as callers see it
      const h = db.prepare('SELECT summary, next_goals, memory_keys, files FROM handoffs').get() as Record<string, string>;
      for (const col of ['summary', 'next_goals', 'memory_keys', 'files']) expect(h[col]).toMatch(sealed);
    } finally {
      db.close();
    }
    const inbox = await b.ok<{ messages: { subject: string; body: string }[] }>('message_inbox', {});
    expect(inbox.messages[0]).toMatchObject({ subject: `subj ${MARK}`, body: `body ${MARK} text` });
    expect(await a.ok('memory_get', { key: 'notes/plan' })).toMatchObject({ value: `value ${MARK}` });
    const list = await b.ok<{ handoffs: { id: string; summary: string; next_goals: string[]; files: string[] }[] }>('handoff_list', {});
    expect(list.handoffs).toEqual([expect.objectContaining({ id: hid, summary: `summary ${MARK}`, next_goals: [`goal ${MARK}`], files: ['src/x.ts'] })]);
  });

  it('search keeps working: message text query (decrypted in the hub) and memory prefix listing', async () => {
    const found = await b.ok<{ messages: { body: string }[] }>('message_search', { query: 'zebra-marker' });
    expect(found.messages.map((m) => m.body)).toEqual([`body ${MARK} text`]);
    expect((await b.ok<{ messages: unknown[] }>('message_search', { query: 'no such words' })).messages).toEqual([]);
    const inbox = await b.ok<{ messages: unknown[] }>('message_inbox', { query: 'SUBJ zebra', wait_ms: 0 });
    expect(inbox.messages).toHaveLength(1);
    const keys = await a.ok<{ keys: { key: string }[] }>('memory_list', { prefix: 'notes/' });
    expect(keys.keys.map((k) => k.key)).toEqual(['notes/plan']);
  });

  it('the scan is bounded: a search returns a cursor to continue past encryptedSearchScan rows', async () => {
    const x = encryptedDir();
    const h = await openHub({ dir: x.dir, config: { encryptedSearchScan: 100 } });
    try {
      const w = await h.hub.authenticate(await createKey(h, 'w', 'worker'));
      await call(h.hub, w, 'message_send', { to_all: true, body: `needle ${MARK}`, visibility: 'public' });
      for (let i = 0; i < 150; i++) await call(h.hub, w, 'message_send', { to_all: true, body: `hay ${i}`, visibility: 'public' });
      const first = await call<{ messages: unknown[]; next_cursor: string | null }>(h.hub, w, 'message_search', { query: 'needle' });
      expect(first.messages).toEqual([]);
      expect(first.next_cursor).not.toBeNull();
      const second = await call<{ messages: { body: string }[] }>(h.hub, w, 'message_search', { query: 'needle', cursor: first.next_cursor! });
      expect(second.messages.map((m) => m.body)).toEqual([`needle ${MARK}`]);
    } finally {
      await h.close();
      x.cleanup();
    }
  });

  it('a sealed value is bound to its row: swapped between rows it does not open', async () => {
    const x = encryptedDir();
    const h = await openHub({ dir: x.dir });
    try {
      await call(h.hub, h.admin, 'memory_set', { key: 'a', value: 'alpha' });
      await call(h.hub, h.admin, 'memory_set', { key: 'b', value: 'beta' });
      const db = new Database(join(x.data, 'baton.db'));
      db.prepare("UPDATE memory SET value = (SELECT value FROM memory WHERE key = 'a') WHERE key = 'b'").run();
      db.close();
      expect(await call(h.hub, h.admin, 'memory_get', { key: 'a' })).toMatchObject({ value: 'alpha' });
      await expect(call(h.hub, h.admin, 'memory_get', { key: 'b' })).rejects.toMatchObject({ code: 'internal' });
    } finally {
      await h.close();
      x.cleanup();
    }
  });
});

describe('S32: baton keys rotate', () => {
  it('adds a new current key, re-encrypts every row under it, and everything stays readable', async () => {
    const x = encryptedDir();
    const h = await openHub({ dir: x.dir });
    try {
      const w = await h.hub.authenticate(await createKey(h, 'w', 'worker'));
      await call(h.hub, w, 'message_send', { to_all: true, subject: 'old s', body: 'old message', visibility: 'public' });
      await call(h.hub, w, 'memory_set', { key: 'k', value: 'old value' });
      await call(h.hub, w, 'session_start', {});
      await call(h.hub, w, 'session_end', { handoff: { summary: 'old handoff' } });

      const r = await cli(['keys', 'rotate', '--data', x.data, '--json']);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.out) as { added: string; current: string; keys: string[]; reencrypted: Record<string, number> };
      expect(out.current).toBe(out.added);
      expect(out.added).not.toBe(x.keyId);
      expect(out.keys).toEqual([out.added, x.keyId]);
      expect(out.reencrypted).toEqual({
        messages: 1,
        memory: 1,
        handoffs: 1,
        tasks: 0,
        plans: 0,
        discoveries: 0,
        decisions: 0,
        approvals: 0,
        locks: 0,
        sessions: 0,
        session_checkpoints: 0,
      });
      expect(statSync(join(x.data, KEYRING_FILE)).mode & 0o777).toBe(0o600);

      // Chosen design: old rows are re-encrypted (every column now names the new key)...
      const db = new Database(join(x.data, 'baton.db'), { readonly: true });
      const cols = [
        ...(db.prepare('SELECT subject AS v FROM messages UNION ALL SELECT body FROM messages').all() as { v: string }[]),
        ...(db.prepare('SELECT value AS v FROM memory').all() as { v: string }[]),
        ...(db.prepare('SELECT summary AS v FROM handoffs UNION ALL SELECT files FROM handoffs').all() as { v: string }[]),
      ];
      db.close();
      expect(cols).toHaveLength(5);
      for (const c of cols) expect(c.v.startsWith(`enc:v1:${out.added}:`)).toBe(true);

      // ...and the hub that was running on the old key reads them (it loads the new key by id).
      expect(await call(h.hub, w, 'memory_get', { key: 'k' })).toMatchObject({ value: 'old value' });
      // It still seals new writes under its old key until restarted: those stay readable by key id.
      await call(h.hub, w, 'memory_set', { key: 'during', value: 'written during rotation' });
      const found = await call<{ messages: { body: string; subject: string }[] }>(h.hub, w, 'message_search', { query: 'old mess' });
      expect(found.messages).toEqual([expect.objectContaining({ subject: 'old s', body: 'old message' })]);
      await h.hub.close();

      const h2 = await Hub.open(testConfig(x.data), { log: silent, checkOutputs: true });
      try {
        const w2 = await h2.authenticate(await createKey({ ...h, hub: h2 }, 'w2', 'worker'));
        await call(h2, w, 'memory_set', { key: 'new', value: 'new value' });
        const raw = new Database(join(x.data, 'baton.db'), { readonly: true });
        const byKey = new Map((raw.prepare('SELECT key, value FROM memory').all() as { key: string; value: string }[]).map((m) => [m.key, m.value]));
        raw.close();
        expect(byKey.get('during')!.startsWith(`enc:v1:${x.keyId}:`)).toBe(true);
        expect(byKey.get('new')!.startsWith(`enc:v1:${out.added}:`)).toBe(true);
        for (const [k, v] of [['k', 'old value'], ['during', 'written during rotation'], ['new', 'new value']] as const) {
          expect(await call(h2, w, 'memory_get', { key: k })).toMatchObject({ value: v });
        }
        const hl = await call<{ handoffs: { summary: string }[] }>(h2, w2, 'handoff_list', {});
        expect(hl.handoffs.map((x2) => x2.summary)).toEqual(['old handoff']);
      } finally {
        await h2.close();
      }
    } finally {
      x.cleanup();
    }
  });

  it('turns encryption on for a plaintext data dir and encrypts what was stored in clear', async () => {
    const h = await openHub();
    const data = join(h.dir, 'data');
    try {
      await call(h.hub, h.admin, 'memory_set', { key: 'k', value: `clear ${MARK}` });
      expect(rawFiles(data).some((f) => f.includes(Buffer.from(MARK)))).toBe(true); // plaintext before
      const r = await cli(['keys', 'rotate', '--data', data, '--json']);
      expect((JSON.parse(r.out) as { reencrypted: { memory: number } }).reencrypted.memory).toBe(1);
      await h.hub.close();
      const db = new Database(join(data, 'baton.db'));
      db.pragma('wal_checkpoint(TRUNCATE)');
      db.exec('VACUUM');
      db.close();
      expect(rawFiles(data).some((f) => f.includes(Buffer.from(MARK)))).toBe(false);
      const h2 = await Hub.open(testConfig(data), { log: silent });
      try {
        expect(await call(h2, h.admin, 'memory_get', { key: 'k' })).toMatchObject({ value: `clear ${MARK}` });
      } finally {
        await h2.close();
      }
    } finally {
      h.close().catch(() => undefined);
    }
  });
});

/** A production env with every secret given properly. */
function goodProductionEnv(): Record<string, string> {
  return {
    BATON_KEY_PEPPER: `base64:${key32()}`,
    BATON_JWT_SECRET: randomBytes(48).toString('base64url'),
    BATON_ENCRYPTION_KEYS: `p1:${key32()}`,
  };
}

async function openError(data: string, config: Parameters<typeof testConfig>[1]): Promise<string> {
  try {
    const h = await Hub.open(testConfig(data, config), { log: silent });
    await h.close();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('Hub.open did not refuse');
}

describe('S36: production mode refuses unsafe secrets and settings', () => {
  const prod = { env: 'production' as const };

  it('refuses missing secrets, naming each, and creates nothing', async () => {
    const tmp = tempDir();
    const data = join(tmp.dir, 'data');
    setEnv({ BATON_KEY_PEPPER: undefined, BATON_JWT_SECRET: undefined, BATON_ENCRYPTION_KEYS: undefined, BATON_ENCRYPTION_KEYS_FILE: undefined, BATON_KEY_PEPPER_FILE: undefined, BATON_JWT_SECRET_FILE: undefined });
    try {
      const msg = await openError(data, prod);
      expect(msg).toMatch(/^production mode refuses to start/);
      expect(msg).toMatch(/BATON_KEY_PEPPER is missing/);
      expect(msg).toMatch(/BATON_JWT_SECRET is missing/);
      expect(msg).toMatch(/BATON_ENCRYPTION_KEYS is missing/);
      expect(existsSync(join(data, 'secrets.json'))).toBe(false);
      expect(existsSync(join(data, 'baton.db'))).toBe(false);
    } finally {
      tmp.cleanup();
    }
  });

  it('refuses weak secrets (< 32 bytes, placeholders) and a weak encryption key', async () => {
    const tmp = tempDir();
    const data = join(tmp.dir, 'data');
    const file = join(tmp.dir, 'jwt');
    writeFileSync(file, 'changeme-changeme-changeme-changeme-0000\n');
    setEnv({ ...goodProductionEnv(), BATON_KEY_PEPPER: 'short-pepper', BATON_JWT_SECRET: undefined, BATON_JWT_SECRET_FILE: file, BATON_ENCRYPTION_KEYS: `p1:${Buffer.alloc(32).toString('base64')}` });
    try {
      const msg = await openError(data, prod);
      expect(msg).toMatch(/BATON_KEY_PEPPER is weak: shorter than 32 bytes/);
      expect(msg).toMatch(/BATON_JWT_SECRET is weak: looks like a default or placeholder/);
      expect(msg).toMatch(/BATON_ENCRYPTION_KEYS is weak/);
      // A 16-byte encryption key is refused in any mode.
      setEnv({ BATON_ENCRYPTION_KEYS: `p1:${randomBytes(16).toString('base64')}` });
      expect(await openError(data, prod)).toMatch(/must be 32 bytes/);
    } finally {
      tmp.cleanup();
    }
  });

  it('refuses a non-loopback host without TLS; TLS files make it pass; good secrets open, encrypted', async () => {
    const tmp = tempDir();
    const data = join(tmp.dir, 'data');
    setEnv(goodProductionEnv());
    try {
      const msg = await openError(data, { ...prod, host: '0.0.0.0', allowInsecureHttp: true });
      expect(msg).toMatch(/host 0\.0\.0\.0 is beyond loopback without TLS/);
      expect(msg).not.toMatch(/BATON_KEY_PEPPER|BATON_JWT_SECRET|BATON_ENCRYPTION_KEYS/);
      const h = await Hub.open(testConfig(data, { ...prod, host: '0.0.0.0', tlsCert: '/etc/c.pem', tlsKey: '/etc/k.pem' }), { log: silent });
      try {
        const admin = await h.authenticate(h.firstStartKey!);
        await call(h, admin, 'memory_set', { key: 'k', value: 'v' });
        const raw = await h.db.read((ex) => ex.get<{ value: string }>(sql`SELECT value FROM memory`));
        expect(raw?.value).toMatch(/^enc:v1:p1:/);
        expect(existsSync(join(data, 'secrets.json'))).toBe(false); // production generates nothing
      } finally {
        await h.close();
      }
    } finally {
      tmp.cleanup();
    }
  });
});

describe('S31: file modes are checked at start', () => {
  function loose(data: string): void {
    chmodSync(data, 0o755);
    chmodSync(join(data, 'baton.db'), 0o644);
    chmodSync(join(data, 'secrets.json'), 0o640);
  }
  const mode = (p: string): number => statSync(p).mode & 0o777;

  it('development: fixes dir 0700 and files 0600, with a warning saying so', async () => {
    const h = await openHub();
    const data = join(h.dir, 'data');
    await h.hub.close();
    loose(data);
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (s: string) => lines.push(s) });
    const h2 = await Hub.open(testConfig(data), { log });
    await h2.close();
    expect(mode(data)).toBe(0o700);
    expect(mode(join(data, 'baton.db'))).toBe(0o600);
    expect(mode(join(data, 'secrets.json'))).toBe(0o600);
    const text = lines.join('');
    expect(text).toMatch(/fixed \(development mode\): .*secrets\.json is mode 640/);
    expect(text).toMatch(/fixed \(development mode\): .*baton\.db is mode 644/);
    h.close().catch(() => undefined);
  });

  it('production: refuses, names each path and mode, and changes nothing', async () => {
    const h = await openHub();
    const data = join(h.dir, 'data');
    await h.hub.close();
    loose(data);
    setEnv(goodProductionEnv());
    const msg = await openError(data, { env: 'production' });
    expect(msg).toMatch(/refused \(production mode\): .*data is mode 755/);
    expect(msg).toMatch(/refused \(production mode\): .*baton\.db is mode 644/);
    expect(msg).toMatch(/refused \(production mode\): .*secrets\.json is mode 640/);
    expect(mode(data)).toBe(0o755);
    expect(mode(join(data, 'baton.db'))).toBe(0o644);
    h.close().catch(() => undefined);
  });
});

describe('baton doctor', () => {
  it('reports modes, secret sources, encryption and key ids, TLS and bind address (development: ok)', async () => {
    const x = encryptedDir();
    const h = await Hub.open(testConfig(x.data), { log: silent });
    await h.close();
    setEnv({ BATON_KEY_PEPPER: undefined, BATON_JWT_SECRET: undefined, BATON_ENCRYPTION_KEYS: undefined });
    try {
      const r = await cli(['doctor', '--data', x.data]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/mode: development/);
      expect(r.out).toMatch(/ok {3}700 .*data\n/);
      expect(r.out).toMatch(/ok {3}600 .*baton\.db/);
      expect(r.out).toMatch(/key_pepper: generated file .*secrets\.json, 32 bytes/);
      expect(r.out).toContain(`encryption at rest: on (keyring file ${join(x.data, KEYRING_FILE)}); current key ${x.keyId}; key ids ${x.keyId}`);
      expect(r.out).toMatch(/bind address: 127\.0\.0\.1 \(loopback\)/);
      expect(r.out).toMatch(/TLS: off/);
      expect(r.out).toMatch(/production checks \(advisory: development mode\):\n {2}FAIL BATON_KEY_PEPPER comes from the data dir/);
      expect(r.out).toMatch(/doctor: ok/);
    } finally {
      x.cleanup();
    }
  });

  it('exits non-zero when a production check fails, and 0 when all pass', async () => {
    const tmp = tempDir();
    const data = join(tmp.dir, 'data');
    try {
      setEnv({ ...goodProductionEnv(), BATON_ENV: 'production', BATON_JWT_SECRET: 'tooshort', BATON_METRICS_TOKEN: 'changeme'.repeat(4) });
      const bad = await cli(['doctor', '--data', data, '--host', '0.0.0.0', '--json']);
      expect(bad.code).toBe(1);
      const rep = JSON.parse(bad.out) as { ok: boolean; production: { problems: string[] }; secrets: { name: string; source: string }[]; encryption: { on: boolean; ids: string[] }; tls: { loopback: boolean } };
      expect(rep.ok).toBe(false);
      expect(rep.production.problems.join('\n')).toMatch(/BATON_JWT_SECRET is weak/);
      expect(rep.production.problems.join('\n')).toMatch(/metricsToken \(BATON_METRICS_TOKEN\) is weak/);
      expect(rep.production.problems.join('\n')).toMatch(/host 0\.0\.0\.0 is beyond loopback without TLS/);
      expect(rep.secrets.map((s) => [s.name, s.source])).toEqual([['key_pepper', 'env'], ['jwt_secret', 'env']]);
      expect(rep.encryption).toMatchObject({ on: true, ids: ['p1'] });
      expect(rep.tls.loopback).toBe(false);

      setEnv({ BATON_JWT_SECRET: randomBytes(32).toString('base64url'), BATON_METRICS_TOKEN: randomBytes(32).toString('base64url') });
      const good = await cli(['doctor', '--data', data]);
      expect(good.out).toMatch(/production checks \(enforced: production mode\):\n {2}all pass/);
      expect(good.code).toBe(0);
      expect(existsSync(data)).toBe(false); // doctor creates nothing
    } finally {
      tmp.cleanup();
    }
  });
});
