import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { RawDb as Database } from '../raw-db.js';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { main } from '../../src/cli/entry.js';
import { Hub } from '../../src/hub.js';
import { ManualClock } from '../../src/core/clock.js';
import { KEYRING_FILE, addKeyToFile } from '../../src/security/crypto.js';
import { call, createKey, httpAgent, openHub, runBaton, serve, tempDir, testConfig, type Agent, type TestHub } from '../helpers.js';

/**
 * S32 for every content field (issue 8 item 8): with a keyring configured, each field an agent
 * writes is stored sealed, never in clear, and every op still returns it in clear. Each field
 * carries its own marker, so a failure names the field that leaked.
 */
const M = {
  title: 'QX-TITLE-71',
  description: 'QX-DESC-72',
  hints: 'QX-HINTS-73',
  updated: 'QX-UPDATED-74',
  result: 'QX-RESULT-75',
  error: 'QX-ERROR-76',
  planGoal: 'QX-PLANGOAL-77',
  planBody: 'QX-PLANBODY-78',
  discovery: 'QX-DISCOVERY-79',
  discoveryFile: 'QX-DFILE-80',
  what: 'QX-WHAT-81',
  why: 'QX-WHY-82',
  alternative: 'QX-ALT-83',
  action: 'QX-ACTION-84',
  details: 'QX-DETAILS-85',
  decision: 'QX-DECIDEREASON-86',
  lock: 'QX-LOCKREASON-87',
  goal: 'QX-SESSGOAL-88',
  checkpoint: 'QX-CHECKPOINT-89',
  completed: 'QX-COMPLETED-90',
  sessionSummary: 'QX-SESSSUM-91',
} as const;

/** Every sealed column, as [table, column]. */
const COLUMNS: readonly (readonly [string, string])[] = [
  ['tasks', 'title'],
  ['tasks', 'description'],
  ['tasks', 'context'],
  ['tasks', 'result'],
  ['tasks', 'last_error'],
  ['plans', 'goal'],
  ['plans', 'body'],
  ['discoveries', 'content'],
  ['discoveries', 'files'],
  ['decisions', 'what'],
  ['decisions', 'why'],
  ['decisions', 'alternatives'],
  ['approvals', 'action'],
  ['approvals', 'details'],
  ['approvals', 'reason'],
  ['locks', 'reason'],
  ['sessions', 'goal'],
  ['sessions', 'summary'],
  ['session_checkpoints', 'summary'],
  ['session_checkpoints', 'completed'],
];

function encryptedDir(): { dir: string; data: string; keyId: string; cleanup: () => void } {
  const tmp = tempDir('baton-enc-');
  const data = join(tmp.dir, 'data');
  mkdirSync(data, { mode: 0o700 });
  const { id } = addKeyToFile(data, new Date());
  return { dir: tmp.dir, data, keyId: id, cleanup: tmp.cleanup };
}

const rawBytes = (data: string): Buffer =>
  Buffer.concat(['baton.db', 'baton.db-wal'].filter((f) => existsSync(join(data, f))).map((f) => readFileSync(join(data, f))));

/** Markers found in clear in the database files (named by field). */
const leaked = (data: string, markers: Record<string, string> = M): string[] => {
  const bytes = rawBytes(data);
  return Object.entries(markers)
    .filter(([, v]) => bytes.includes(Buffer.from(v)))
    .map(([k]) => k);
};

/** The non-null values of every sealed column. */
function columnValues(data: string): { where: string; value: string }[] {
  const db = new Database(join(data, 'baton.db'), { readonly: true });
  try {
    const out: { where: string; value: string }[] = [];
    for (const [table, column] of COLUMNS) {
      const rows = db.prepare(`SELECT ${column} AS v FROM ${table} WHERE ${column} IS NOT NULL`).all() as { v: string }[];
      for (const r of rows) out.push({ where: `${table}.${column}`, value: r.v });
    }
    return out;
  } finally {
    db.close();
  }
}

async function rest<T = Record<string, unknown>>(url: string, key: string, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await res.json()) as T;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function cli(args: string[]): Promise<{ out: string; code: number }> {
  let out = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    process.exitCode = undefined;
    await main(['node', 'baton', ...args]);
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
  const code = typeof process.exitCode === 'number' ? process.exitCode : 0;
  process.exitCode = undefined;
  return { out, code };
}
afterEach(() => {
  process.exitCode = undefined;
});

interface Written {
  done: string;
  failed: string;
  approval: string;
  lock: string;
}

/** Writes every content field once, through MCP (lead, worker) and REST (lead, admin). */
async function writeEverything(url: string, keys: { lead: string; admin: string }, lead: Agent, worker: Agent): Promise<Written> {
  const created = await rest<{ tasks: { id: string }[] }>(url, keys.lead, 'POST', '/tasks', {
    tasks: [
      { title: `build ${M.title}`, description: `first ${M.description}`, context: { hints: `try ${M.hints}`, files: ['src/a.ts'] }, priority: 1 },
      { title: 'second task', priority: 2 },
    ],
  });
  const [done, failed] = created.tasks.map((t) => t.id) as [string, string];
  await lead.ok('task_update', { id: done, description: `edited ${M.updated}` });
  const c1 = await worker.ok<{ task: { id: string; lease: { token: number } } }>('task_claim', {});
  expect(c1.task.id).toBe(done);
  await worker.ok('task_complete', { id: done, lease_token: c1.task.lease.token, result: { summary: `did ${M.result}` } });
  const c2 = await worker.ok<{ task: { id: string; lease: { token: number } } }>('task_claim', {});
  await worker.ok('task_fail', { id: c2.task.id, lease_token: c2.task.lease.token, error: `broke ${M.error}`, retry: false });

  await rest(url, keys.lead, 'PUT', '/plan', { goal: `goal ${M.planGoal}`, body: `# plan\n${M.planBody}` });
  await worker.ok('discovery_add', { content: `found ${M.discovery}`, tags: ['perf'], files: [`src/${M.discoveryFile}.ts`] });
  await worker.ok('decision_record', { what: `use ${M.what}`, why: `because ${M.why}`, alternatives: [`not ${M.alternative}`] });
  const apr = await worker.ok<{ id: string }>('approval_request', { action: `deploy ${M.action}`, details: `to ${M.details}`, risk: 'high' });
  await rest(url, keys.admin, 'POST', `/approvals/${apr.id}/decide`, { decision: 'grant', reason: `ok ${M.decision}` });
  const lock = await worker.ok<{ lock: { id: string } }>('lock_acquire', { paths: ['src/locked/**'], reason: `editing ${M.lock}` });
  await worker.ok('session_start', { goal: `aim ${M.goal}` });
  await worker.ok('session_checkpoint', { summary: `so far ${M.checkpoint}`, completed: [`step ${M.completed}`] });
  return { done, failed, approval: apr.id, lock: lock.lock.id };
}

describe('S32: every content field is encrypted at rest, and read back in clear', () => {
  let env: ReturnType<typeof encryptedDir>;
  let t: TestHub;
  let http: HttpHandle;
  let leadKey: string;
  let lead: Agent;
  let worker: Agent;
  let w: Written;

  beforeAll(async () => {
    env = encryptedDir();
    t = await openHub({ dir: env.dir });
    http = await serve(t.hub);
    leadKey = await createKey(t, 'lead-1', 'lead');
    lead = await httpAgent('v2', http.url, leadKey);
    worker = await httpAgent('v1', http.url, await createKey(t, 'worker-1', 'worker'));
    w = await writeEverything(http.url, { lead: leadKey, admin: t.adminKey }, lead, worker);
  });
  afterAll(async () => {
    await lead.close();
    await worker.close();
    await http.close();
    await t.close();
    env.cleanup();
  });

  it('no marker appears in the db or wal bytes (the open session is still live: whoami reads it)', () => {
    expect(leaked(env.data)).toEqual([]);
    // The check can see clear text: a tag and a lock path (metadata, kept clear) are in the bytes.
    const bytes = rawBytes(env.data);
    expect(bytes.includes(Buffer.from('src/locked/**'))).toBe(true);
  });

  it('every content column holds enc:v1:<key id>: values', () => {
    const values = columnValues(env.data);
    const sealed = new RegExp(`^enc:v1:${env.keyId}:[A-Za-z0-9_-]{16}:[A-Za-z0-9_-]+$`);
    const seen = new Set(values.map((v) => v.where));
    // Each column was written at least once (sessions.summary comes with session_end, below).
    for (const [table, column] of COLUMNS) if (`${table}.${column}` !== 'sessions.summary') expect(seen).toContain(`${table}.${column}`);
    for (const v of values) expect({ where: v.where, value: v.value }).toEqual({ where: v.where, value: expect.stringMatching(sealed) });
  });

  it('every op returns the plaintext to its callers (MCP and REST)', async () => {
    const got = await rest<{ task: Record<string, unknown> }>(http.url, leadKey, 'GET', `/tasks/${w.done}`);
    expect(got.task).toMatchObject({
      title: `build ${M.title}`,
      description: `edited ${M.updated}`,
      context: { hints: `try ${M.hints}`, files: ['src/a.ts'] },
      result: { summary: `did ${M.result}` },
    });
    expect((await lead.ok<{ task: { last_error: string } }>('task_get', { id: w.failed })).task.last_error).toBe(`broke ${M.error}`);
    const list = await lead.ok<{ tasks: { id: string; title: string }[] }>('task_list', {});
    expect(list.tasks.find((x) => x.id === w.done)?.title).toBe(`build ${M.title}`);

    expect((await worker.ok<{ plan: unknown }>('plan_get', {})).plan).toMatchObject({ goal: `goal ${M.planGoal}`, body: `# plan\n${M.planBody}` });
    const byTag = await worker.ok<{ discoveries: unknown[] }>('discovery_search', { tag: 'perf' });
    expect(byTag.discoveries).toEqual([expect.objectContaining({ content: `found ${M.discovery}`, files: [`src/${M.discoveryFile}.ts`] })]);
    const byText = await worker.ok<{ discoveries: { content: string }[] }>('discovery_search', { text: M.discovery.toLowerCase() });
    expect(byText.discoveries.map((d) => d.content)).toEqual([`found ${M.discovery}`]);
    expect((await worker.ok<{ discoveries: unknown[] }>('discovery_search', { text: 'nothing like it' })).discoveries).toEqual([]);
    expect((await worker.ok<{ decisions: unknown[] }>('decision_list', {})).decisions).toEqual([
      expect.objectContaining({ what: `use ${M.what}`, why: `because ${M.why}`, alternatives: [`not ${M.alternative}`] }),
    ]);
    expect((await worker.ok<{ approval: unknown }>('approval_get', { id: w.approval })).approval).toMatchObject({
      action: `deploy ${M.action}`,
      details: `to ${M.details}`,
      reason: `ok ${M.decision}`,
      status: 'granted',
    });
    const approvals = await rest<{ approvals: { action: string }[] }>(http.url, t.adminKey, 'GET', '/approvals');
    expect(approvals.approvals.map((a) => a.action)).toEqual([`deploy ${M.action}`]);
    const locks = await worker.ok<{ locks: { id: string; reason: string }[] }>('lock_list', {});
    expect(locks.locks).toEqual([expect.objectContaining({ id: w.lock, reason: `editing ${M.lock}` })]);

    const me = await worker.ok<{ session: { goal: string; last_checkpoint: { summary: string; completed: string[] } }; locks: { reason: string }[] }>('whoami', {});
    expect(me.session).toMatchObject({ goal: `aim ${M.goal}`, last_checkpoint: { summary: `so far ${M.checkpoint}`, completed: [`step ${M.completed}`] } });
    expect(me.locks.map((l) => l.reason)).toEqual([`editing ${M.lock}`]);
  });

  it('session_end seals the summary and returns it in clear', async () => {
    const end = await worker.ok<{ session: { summary: string; goal: string } }>('session_end', { summary: `ended ${M.sessionSummary}` });
    expect(end.session).toMatchObject({ summary: `ended ${M.sessionSummary}`, goal: `aim ${M.goal}` });
    expect(leaked(env.data)).toEqual([]);
    const values = columnValues(env.data).filter((v) => v.where === 'sessions.summary');
    expect(values).toHaveLength(1);
    expect(values[0]!.value.startsWith(`enc:v1:${env.keyId}:`)).toBe(true);
  });
});

describe('S32: a sealed value is bound to its row and column', () => {
  it('a task title moved to another task, or to another column, fails to open; the original still opens', async () => {
    const x = encryptedDir();
    const h = await openHub({ dir: x.dir });
    try {
      const out = await call<{ tasks: { id: string }[] }>(h.hub, h.admin, 'task_create', {
        tasks: [{ title: 'alpha title' }, { title: 'beta title' }],
      });
      const [a, b] = out.tasks.map((r) => r.id) as [string, string];
      const db = new Database(join(x.data, 'baton.db'));
      db.prepare('UPDATE tasks SET title = (SELECT title FROM tasks WHERE id = ?) WHERE id = ?').run(a, b);
      db.close();
      expect((await call<{ task: { title: string } }>(h.hub, h.admin, 'task_get', { id: a })).task.title).toBe('alpha title');
      await expect(call(h.hub, h.admin, 'task_get', { id: b })).rejects.toMatchObject({ code: 'internal' });

      const db2 = new Database(join(x.data, 'baton.db'));
      db2.prepare('UPDATE tasks SET description = title WHERE id = ?').run(a);
      db2.close();
      await expect(call(h.hub, h.admin, 'task_get', { id: a })).rejects.toMatchObject({ code: 'internal' });

      // The same for a decision's why copied from another decision.
      const d1 = await call<{ id: string }>(h.hub, h.admin, 'decision_record', { what: 'one', why: 'first' });
      const d2 = await call<{ id: string }>(h.hub, h.admin, 'decision_record', { what: 'two', why: 'second' });
      const db3 = new Database(join(x.data, 'baton.db'));
      db3.prepare('UPDATE decisions SET why = (SELECT why FROM decisions WHERE id = ?) WHERE id = ?').run(d1.id, d2.id);
      db3.close();
      await expect(call(h.hub, h.admin, 'decision_list', {})).rejects.toMatchObject({ code: 'internal' });
    } finally {
      await h.close();
      x.cleanup();
    }
  });
});

describe('S32: bounded text search over encrypted discoveries', () => {
  it('scans at most encryptedSearchScan rows per call and returns a cursor to continue', async () => {
    const x = encryptedDir();
    const clock = new ManualClock();
    const h = await openHub({ dir: x.dir, clock, config: { encryptedSearchScan: 100 } });
    try {
      await call(h.hub, h.admin, 'discovery_add', { content: 'the needle is here' });
      for (let i = 0; i < 150; i++) {
        clock.advance(1); // newest first is then exactly the insertion order reversed
        await call(h.hub, h.admin, 'discovery_add', { content: `hay ${i}` });
      }
      const first = await call<{ discoveries: unknown[]; next_cursor: string | null }>(h.hub, h.admin, 'discovery_search', { text: 'NEEDLE' });
      expect(first.discoveries).toEqual([]);
      expect(first.next_cursor).not.toBeNull();
      const second = await call<{ discoveries: { content: string }[]; next_cursor: string | null }>(h.hub, h.admin, 'discovery_search', {
        text: 'NEEDLE',
        cursor: first.next_cursor!,
      });
      expect(second.discoveries.map((d) => d.content)).toEqual(['the needle is here']);
      expect(second.next_cursor).toBeNull();
      // A page of matches stops early: the newest five, with a cursor.
      const page = await call<{ discoveries: { content: string }[] }>(h.hub, h.admin, 'discovery_search', { text: 'hay 14', limit: 5 });
      expect(page.discoveries.map((d) => d.content)).toEqual(['hay 149', 'hay 148', 'hay 147', 'hay 146', 'hay 145']);
    } finally {
      await h.close();
      x.cleanup();
    }
  });
});

describe('S32: baton keys rotate re-encrypts every content field, and clear rows of an older database', () => {
  it('rotation re-seals every column under the new key, in batches; the running hub still reads all', async () => {
    const x = encryptedDir();
    const t = await openHub({ dir: x.dir });
    const http = await serve(t.hub);
    const leadKey = await createKey(t, 'lead-1', 'lead');
    const lead = await httpAgent('v2', http.url, leadKey);
    const worker = await httpAgent('v2', http.url, await createKey(t, 'worker-1', 'worker'));
    try {
      const w = await writeEverything(http.url, { lead: leadKey, admin: t.adminKey }, lead, worker);
      await worker.ok('session_end', { summary: `ended ${M.sessionSummary}` }); // releases the worker's lock
      const kept = await lead.ok<{ lock: { id: string } }>('lock_acquire', { paths: ['docs/**'], reason: `lead ${M.lock}` });
      const r = await cli(['keys', 'rotate', '--data', x.data, '--json']);
      expect(r.code).toBe(0);
      const out = JSON.parse(r.out) as { added: string; reencrypted: Record<string, number> };
      expect(out.reencrypted).toMatchObject({
        tasks: 2,
        plans: 1,
        discoveries: 1,
        decisions: 1,
        approvals: 1,
        locks: 1,
        sessions: 1,
        session_checkpoints: 1,
      });
      const values = columnValues(x.data);
      expect(values.length).toBeGreaterThanOrEqual(18);
      for (const v of values) expect({ where: v.where, key: v.value.split(':')[2] }).toEqual({ where: v.where, key: out.added });
      expect(leaked(x.data)).toEqual([]);
      // The running hub (old key current) opens the new key's values by key id.
      expect((await lead.ok<{ task: { title: string; result: unknown } }>('task_get', { id: w.done })).task).toMatchObject({
        title: `build ${M.title}`,
        result: { summary: `did ${M.result}` },
      });
      expect((await worker.ok<{ plan: { body: string } }>('plan_get', {})).plan.body).toBe(`# plan\n${M.planBody}`);
      const locks = await lead.ok<{ locks: { id: string; reason: string }[] }>('lock_list', {});
      expect(locks.locks).toEqual([expect.objectContaining({ id: kept.lock.id, reason: `lead ${M.lock}` })]);
      // A second rotation in small batches re-seals everything again (more rows than one batch).
      const { reencryptAll } = await import('../../src/cli/keys.js');
      const { Cipher, readKeyringFile } = await import('../../src/security/crypto.js');
      const keys = readKeyringFile(join(x.data, 'keyring.json'));
      const again = await reencryptAll(t.hub.db, new Cipher([keys[1]!, ...keys.filter((_, i) => i !== 1)]), 1);
      expect(again).toMatchObject({ tasks: 2, plans: 1, locks: 1, sessions: 1, session_checkpoints: 1 });
      for (const v of columnValues(x.data)) expect(v.value.split(':')[2]).toBe(x.keyId);
    } finally {
      await lead.close();
      await worker.close();
      await http.close();
      await t.close();
      x.cleanup();
    }
  });

  it('a database written in clear reads as before once encryption is on, and rotation seals its rows', async () => {
    const h = await openHub();
    const data = join(h.dir, 'data');
    const http = await serve(h.hub);
    const leadKey = await createKey(h, 'lead-1', 'lead');
    const lead = await httpAgent('v2', http.url, leadKey);
    const worker = await httpAgent('v1', http.url, await createKey(h, 'worker-1', 'worker'));
    let w: Written;
    try {
      w = await writeEverything(http.url, { lead: leadKey, admin: h.adminKey }, lead, worker);
    } finally {
      await lead.close();
      await worker.close();
      await http.close();
      await h.hub.close();
    }
    expect(leaked(data).length).toBeGreaterThan(15); // in clear before
    addKeyToFile(data, new Date()); // encryption on from the next start
    const log = pino({ level: 'silent' });
    const h2 = await Hub.open(testConfig(data), { log, checkOutputs: true });
    try {
      // Clear rows read as they are (the cipher passes unsealed values through).
      expect((await call<{ task: { title: string } }>(h2, h.admin, 'task_get', { id: w.done })).task.title).toBe(`build ${M.title}`);
      const found = await call<{ discoveries: { content: string }[] }>(h2, h.admin, 'discovery_search', { text: M.discovery });
      expect(found.discoveries.map((d) => d.content)).toEqual([`found ${M.discovery}`]);
    } finally {
      await h2.close();
    }
    const r = await cli(['keys', 'rotate', '--data', data, '--json']);
    expect(r.code).toBe(0);
    const db = new Database(join(data, 'baton.db'));
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.exec('VACUUM');
    db.close();
    expect(leaked(data)).toEqual([]);
    const h3 = await Hub.open(testConfig(data), { log, checkOutputs: true });
    try {
      const task = (await call<{ task: Record<string, unknown> }>(h3, h.admin, 'task_get', { id: w.done })).task;
      expect(task).toMatchObject({ title: `build ${M.title}`, description: `edited ${M.updated}`, result: { summary: `did ${M.result}` } });
      expect(await call(h3, h.admin, 'plan_get', {})).toMatchObject({ plan: { goal: `goal ${M.planGoal}`, body: `# plan\n${M.planBody}` } });
      expect((await call<{ approval: unknown }>(h3, h.admin, 'approval_get', { id: w.approval })).approval).toMatchObject({
        action: `deploy ${M.action}`,
        reason: `ok ${M.decision}`,
      });
    } finally {
      await h3.close();
      await h.close().catch(() => undefined);
    }
  });
});

describe('encrypted content read where no key is configured', () => {
  it('answers a clear, stable error naming the setting (not internal), and reads again once the key is back', async () => {
    const env = encryptedDir();
    try {
      const t = await openHub({ dir: env.dir });
      await call(t.hub, t.admin, 'lock_acquire', { paths: ['src/secret/**'], reason: 'editing the payroll module' });
      await t.hub.close();
      // A git hook or a shell without the key: the same data dir, no keyring file, no key in the environment.
      renameSync(join(env.data, KEYRING_FILE), join(env.dir, 'keyring.aside'));
      const without = await runBaton(['lock', 'list', '--json', '--data', env.data]);
      expect(without.code).not.toBe(0);
      expect(without.stderr).toContain('unavailable');
      expect(without.stderr).toContain('BATON_ENCRYPTION_KEYS');
      expect(without.stderr).not.toContain('payroll');
      renameSync(join(env.dir, 'keyring.aside'), join(env.data, KEYRING_FILE));
      const back = await runBaton(['lock', 'list', '--json', '--data', env.data]);
      expect(back.code, back.stderr).toBe(0);
      expect(back.stdout).toContain('editing the payroll module');
    } finally {
      env.cleanup();
    }
  });
});
