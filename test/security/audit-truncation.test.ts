/**
 * Issue 8, item 7 (S29): the audit chain also catches truncation, and anchors kept outside the
 * database catch what no in-database check can. Item 10: a project admin verifies its own
 * project's rows, the whole chain is the server admins'; auth-failure rows (no project) are
 * queryable by server admins; observers do not see key lifecycle events.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BatonError } from '../../src/core/errors.js';
import type { HttpHandle } from '../../src/api/http/server.js';
import { Hub } from '../../src/hub.js';
import { sql } from '../../src/store/sql.js';
import { tamperWith } from './tamper.js';
import { BIN, call, createKey, openHub, serve, storeEnvOf, testConfig, type TestHub } from '../helpers.js';
import type { VerifyAnswer } from '../../src/ops/audit.js';

const run = promisify(execFile);

type Verdict = VerifyAnswer;

let open: { t: TestHub; h: HttpHandle }[] = [];
afterEach(async () => {
  for (const { t, h } of open) {
    await h.close();
    await t.close();
  }
  open = [];
});

async function started(): Promise<{ t: TestHub; h: HttpHandle }> {
  const t = await openHub();
  const h = await serve(t.hub);
  open.push({ t, h });
  return { t, h };
}

/** Some audited calls in two projects. */
async function workload(t: TestHub): Promise<void> {
  const w = await t.hub.authenticate(await createKey(t, 'w1', 'worker'));
  const x = await t.hub.authenticate(await createKey(t, 'x1', 'worker', 'other'));
  for (let i = 0; i < 4; i++) {
    await call(t.hub, w, 'task_create', { tasks: [{ title: `a${i}` }] });
    await call(t.hub, x, 'task_create', { tasks: [{ title: `b${i}` }] });
  }
  await t.hub.deferred.flush();
}

/** More audited calls, after an anchor was taken. */
async function workload2(t: TestHub): Promise<void> {
  const w = await t.hub.authenticate(await createKey(t, 'w2', 'worker'));
  for (let i = 0; i < 3; i++) await call(t.hub, w, 'task_create', { tasks: [{ title: `c${i}` }] });
  await t.hub.deferred.flush();
}

/** audit_verify over REST, as the given key. */
async function verifyRest(h: HttpHandle, key: string, anchor?: string): Promise<{ status: number; body: Verdict & { error?: { code: string } } }> {
  const q = anchor === undefined ? '' : `?anchor=${encodeURIComponent(anchor)}`;
  const r = await fetch(`${h.url}/api/v1/audit/verify${q}`, { headers: { authorization: `Bearer ${key}` } });
  return { status: r.status, body: (await r.json()) as Verdict & { error?: { code: string } } };
}

/** Behind Baton's back, through the hub's own store (either backend). */
const tamper = (t: TestHub, ...statements: [string, ...unknown[]][]): Promise<void> => tamperWith(t.hub, ...statements);

/** A project's chain (migration 14: its id) and its length. */
async function chainOf(t: TestHub, project = 'default'): Promise<{ chain: string; n: number }> {
  return t.hub.db.read(async (ex) => {
    const chain = (await ex.get<{ id: string }>(sql`SELECT id FROM projects WHERE name = ${project}`))!.id;
    const n = (await ex.get<{ n: number }>(sql`SELECT max(seq) AS n FROM audit WHERE chain = ${chain}`))!.n;
    return { chain, n };
  });
}

async function lastId(t: TestHub): Promise<number> {
  return (await t.hub.db.read((ex) => ex.get<{ id: number }>(sql`SELECT max(id) AS id FROM audit`)))!.id;
}

describe('audit truncation is caught (issue 8 item 7)', () => {
  it("deleting a chain's newest rows breaks that chain's verification at the first missing position; the other chain still holds", async () => {
    const { t, h } = await started();
    await workload(t);
    const before = await verifyRest(h, t.adminKey);
    expect(before.body).toMatchObject({ ok: true, scope: 'server' });
    await t.hub.deferred.flush();
    const { chain, n } = await chainOf(t);
    expect(n).toBeGreaterThan(4);
    await tamper(t, ['DELETE FROM audit WHERE chain = ? AND seq > ?', chain, n - 3]);
    const v = await verifyRest(h, t.adminKey);
    expect(v.body).toMatchObject({ ok: false, reason: 'head', chain, first_bad_seq: n - 2, first_bad_id: null });
    // The other project's chain is its own: its admin's verify still holds.
    const otherAdmin = await createKey(t, 'oadmin', 'admin', 'other');
    expect((await verifyRest(h, otherAdmin)).body).toMatchObject({ ok: true, scope: 'project' });
    // Later writes do not bless the shortened chain: its head stays tainted.
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'after the cut' }] });
    await t.hub.deferred.flush();
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, reason: 'head', chain });
  });

  it("a chain head whose MAC is removed or forged is caught, and stays caught after more writes", async () => {
    const { t, h } = await started();
    await workload(t);
    const { chain } = await chainOf(t, 'other');
    await tamper(t, ["UPDATE audit_chains SET mac = 'forged' WHERE chain = ?", chain]);
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, reason: 'head', chain });
    const x = await t.hub.authenticate(await createKey(t, 'x9', 'worker', 'other'));
    await call(t.hub, x, 'task_create', { tasks: [{ title: 'after the forgery' }] });
    await t.hub.deferred.flush();
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, reason: 'head', chain });
  });

  it("deleting a chain's newest rows and moving its head to the new end (keeping its MAC) is caught, also after more writes", async () => {
    const { t, h } = await started();
    await workload(t);
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'last write' }] });
    await t.hub.deferred.flush();
    const { chain, n } = await chainOf(t);
    await tamper(
      t,
      ['DELETE FROM audit WHERE chain = ? AND seq > ?', chain, n - 2],
      ['UPDATE audit_chains SET seq = ?, hash = (SELECT hash FROM audit WHERE chain = ? AND seq = ?) WHERE chain = ?', n - 2, chain, n - 2, chain],
    );
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, reason: 'head', chain });
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'after the cut' }] });
    await t.hub.deferred.flush();
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, reason: 'head', chain });
  });

  it("a chain's head removed (its rows left) is caught, naming that chain", async () => {
    const { t, h } = await started();
    await workload(t);
    const { chain } = await chainOf(t, 'other');
    await tamper(t, ['DELETE FROM audit_chains WHERE chain = ?', chain]);
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, reason: 'head', chain });
  });

  it("removing a whole chain (its rows and its head) is caught by an exported anchor", async () => {
    const { t, h } = await started();
    await workload(t);
    const anchor = (await verifyRest(h, t.adminKey)).body.anchor!;
    const { chain } = await chainOf(t, 'other');
    await tamper(t, ['DELETE FROM audit WHERE chain = ?', chain], ['DELETE FROM audit_chains WHERE chain = ?', chain]);
    expect((await verifyRest(h, t.adminKey, anchor)).body).toMatchObject({ ok: false, reason: 'exported_anchor', chain });
  });

  it('deleting every row is caught', async () => {
    const { t, h } = await started();
    await workload(t);
    await tamper(t, ['DELETE FROM audit']);
    const v = await verifyRest(h, t.adminKey);
    expect(v.body).toMatchObject({ ok: false, reason: 'head' });
  });

  it("a chain's retention anchor copied from a row, with the rows before it deleted, is caught", async () => {
    const { t, h } = await started();
    await workload(t);
    const { chain, n } = await chainOf(t);
    const cut = Math.floor(n / 2);
    await tamper(
      t,
      ['UPDATE audit_chains SET anchor_seq = ?, anchor_hash = (SELECT hash FROM audit WHERE chain = ? AND seq = ?), swept_at = 1 WHERE chain = ?', cut, chain, cut, chain],
      ['DELETE FROM audit WHERE chain = ? AND seq <= ?', chain, cut],
    );
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, reason: 'anchor', chain });
  });

  it('an anchor copied from a row, with the rows before it deleted, is caught', async () => {
    const { t, h } = await started();
    await workload(t);
    const cut = Math.floor((await lastId(t)) / 2);
    await tamper(
      t,
      ['UPDATE audit_anchor SET last_id = ?, hash = (SELECT hash FROM audit WHERE id = ?), swept_at = 1 WHERE id = 1', cut, cut],
      ['DELETE FROM audit WHERE id <= ?', cut],
    );
    const v = await verifyRest(h, t.adminKey);
    expect(v.body).toMatchObject({ ok: false, reason: 'anchor' });
  });

  it('an exported anchor catches a wiped-and-reset trail; a forged anchor is refused', async () => {
    const { t, h } = await started();
    await workload(t);
    const good = await verifyRest(h, t.adminKey);
    const anchor = good.body.anchor!;
    expect(anchor).toMatch(/^baton-audit-anchor:v2:[A-Za-z0-9_-]+:[0-9a-f]{64}$/);
    expect((await verifyRest(h, t.adminKey, anchor)).body).toMatchObject({ ok: true });
    // Someone with write access resets the trail to look brand new: no rows, unkeyed head, genesis anchor.
    await tamper(
      t,
      ['DELETE FROM audit'],
      ['DELETE FROM audit_chains'],
      ["UPDATE audit_anchor SET last_id = 0, hash = '" + '0'.repeat(64) + "', mac = NULL WHERE id = 1"],
      ["UPDATE audit_head SET last_id = 0, hash = '" + '0'.repeat(64) + "', mac = NULL WHERE id = 1"],
    );
    const v = await verifyRest(h, t.adminKey, anchor);
    expect(v.body).toMatchObject({ ok: false, reason: 'exported_anchor' });
    // An anchor whose MAC was not made with this server's key.
    const forged = anchor.replace(/[0-9a-f]{64}$/, 'f'.repeat(64));
    const refused = await verifyRest(h, t.adminKey, forged);
    expect(refused.status).toBe(400);
    expect(refused.body.error?.code).toBe('invalid_input');
  });

  it('verifies incrementally from an anchor: only the rows after it, which must still link to it', async () => {
    const { t, h } = await started();
    await workload(t);
    const full = await verifyRest(h, t.adminKey);
    const anchor = full.body.anchor!;
    await workload2(t);
    const since = async (): Promise<Verdict> => {
      const r = await fetch(`${h.url}/api/v1/audit/verify?anchor=${encodeURIComponent(anchor)}&since_anchor=true`, {
        headers: { authorization: `Bearer ${t.adminKey}` },
      });
      return (await r.json()) as Verdict;
    };
    await t.hub.deferred.flush();
    const inc = await since();
    expect(inc).toMatchObject({ ok: true });
    expect(inc.rows).toBeLessThan((await verifyRest(h, t.adminKey)).body.rows);
    expect(inc.rows).toBeGreaterThan(0);
    // An edit after the anchor is caught by the incremental check.
    const after = (await lastId(t));
    await tamper(t, ["UPDATE audit SET outcome = 'denied' WHERE id = ?", after]);
    expect(await since()).toMatchObject({ ok: false, first_bad_id: after });
    // A row before the anchor edited: the rows after it no longer link to the anchored position.
    await tamper(t, ["UPDATE audit SET outcome = 'ok' WHERE id = ?", after]);
    expect(await since()).toMatchObject({ ok: true });
    const { chain } = await chainOf(t);
    await tamper(t, ['DELETE FROM audit WHERE chain = ? AND seq = 2', chain]);
    expect((await since()).ok).toBe(true); // not walked: below the anchor (the full verify finds it)
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, chain, first_bad_seq: 2 });
  });

  it('baton audit anchor prints an anchor; verify --anchor FILE passes, then fails after truncation', async () => {
    const t = await openHub();
    open.push({ t, h: { close: async () => undefined } as unknown as HttpHandle });
    await workload(t);
    const data = join(t.dir, 'data');
    await t.hub.close();
    const baton = async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
      try {
        const env = { ...process.env, ...storeEnvOf(data) };
        const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, env });
        return { code: 0, stdout, stderr };
      } catch (err) {
        const e = err as { code?: unknown; stdout?: string; stderr?: string };
        if (typeof e.code !== 'number') throw err;
        return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
      }
    };
    const a = await baton(['audit', 'anchor', '--data', data]);
    expect(a.code, a.stderr).toBe(0);
    const printed = JSON.parse(a.stdout) as { anchor: string; rows: number };
    expect(printed.rows).toBeGreaterThan(0);
    const file = join(t.dir, 'anchor.json');
    writeFileSync(file, a.stdout);
    const ok = await baton(['audit', 'verify', '--data', data, '--anchor', file]);
    expect(ok.code, ok.stderr).toBe(0);
    // The hub is closed (the CLI opens the store itself): tamper through a store of its own.
    const again = await Hub.open(testConfig(data), { log: pino({ level: 'silent' }) });
    try {
      await tamper({ ...t, hub: again }, ['DELETE FROM audit WHERE id >= ?', (await lastId({ ...t, hub: again })) - 1]);
    } finally {
      await again.close();
    }
    const broken = await baton(['audit', 'verify', '--data', data, '--anchor', file, '--json']);
    expect(broken.code).toBe(1);
    expect(JSON.parse(broken.stdout)).toMatchObject({ ok: false });
  });
});

describe('audit verification and queries by scope (issue 8 item 10)', () => {
  it("a project admin verifies its own project's rows only; the server admin the whole chain", async () => {
    const { t, h } = await started();
    await workload(t);
    const otherAdmin = await createKey(t, 'oadmin', 'admin', 'other');
    const mine = await verifyRest(h, otherAdmin);
    expect(mine.body).toMatchObject({ ok: true, scope: 'project', anchor: null });
    const all = await verifyRest(h, t.adminKey);
    expect(all.body.rows).toBeGreaterThan(mine.body.rows);
    // A project admin may not check anchors (they cover every project).
    expect((await verifyRest(h, otherAdmin, all.body.anchor!)).status).toBe(403);

    // An edit to a row of the other project's admin: found there and by the server admin.
    const project = (await chainOf(t, 'other')).chain;
    const row = (await t.hub.db.read((ex) => ex.get<{ id: number }>(sql`SELECT id FROM audit WHERE project_id = ${project} ORDER BY id LIMIT 1 OFFSET 2`)))!.id;
    await tamper(t, ["UPDATE audit SET outcome = 'denied' WHERE id = ?", row]);
    expect((await verifyRest(h, otherAdmin)).body).toMatchObject({ ok: false, first_bad_id: row, chain: project, first_bad_seq: 3 });
    expect((await verifyRest(h, t.adminKey)).body).toMatchObject({ ok: false, first_bad_id: row, chain: project });
    // The default project's rows were written between the edited one's (the workload interleaves
    // projects), but its chain is its own (migration 14): it still holds.
    const defaultAdmin = await createKey(t, 'dadmin', 'admin');
    expect((await verifyRest(h, defaultAdmin)).body).toMatchObject({ ok: true, scope: 'project', first_bad_id: null });
  });

  it('auth-failure rows (no project) are queryable by server admins only', async () => {
    const { t, h } = await started();
    const bad = await fetch(`${h.url}/api/v1/whoami`, { headers: { authorization: `Bearer bat_${'q'.repeat(43)}` } });
    expect(bad.status).toBe(401);
    await t.hub.deferred.flush();
    const rows = (await call<{ rows: { event: string | null; code: string | null }[] }>(t.hub, t.admin, 'audit_query', { no_project: true })).rows;
    expect(rows.some((r) => r.event === 'AUTH_FAILURE' && r.code === 'unauthenticated')).toBe(true);
    // Not in any project's trail.
    const inProject = (await call<{ rows: { code: string | null }[] }>(t.hub, t.admin, 'audit_query', {})).rows;
    expect(inProject.some((r) => r.code === 'unauthenticated')).toBe(false);
    const padmin = await t.hub.authenticate(await createKey(t, 'padmin', 'admin'));
    await expect(call(t.hub, padmin, 'audit_query', { no_project: true })).rejects.toMatchObject({ code: 'forbidden' });
    expect(BatonError).toBeDefined();
  });

  it('observers do not see token.created / token.revoked; admins do', async () => {
    const { t } = await started();
    const observer = await t.hub.authenticate(await createKey(t, 'watcher', 'observer'));
    const padmin = await t.hub.authenticate(await createKey(t, 'padmin', 'admin'));
    const made = await call<{ token: { id: string } }>(t.hub, t.admin, 'token_create', { name: 'newbie', role: 'worker' });
    await call(t.hub, t.admin, 'token_revoke', { id: made.token.id });
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'visible' }] });
    const seen = async (p: typeof observer): Promise<string[]> =>
      (await call<{ events: { type: string }[] }>(t.hub, p, 'events_wait', { after: 'start' })).events.map((e) => e.type);
    const forObserver = await seen(observer);
    expect(forObserver).toContain('task.created');
    expect(forObserver).not.toContain('token.created');
    expect(forObserver).not.toContain('token.revoked');
    const forAdmin = await seen(padmin);
    expect(forAdmin).toContain('token.created');
    expect(forAdmin).toContain('token.revoked');
  });
});
