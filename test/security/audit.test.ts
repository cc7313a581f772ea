import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tamperWith } from './tamper.js';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { BatonError } from '../../src/core/errors.js';
import { ManualClock } from '../../src/core/clock.js';
import { Hub } from '../../src/hub.js';
import { auditKeyFrom, chainRowHash, GENESIS_HASH, sweepAudit, type AuditRow } from '../../src/store/journal.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, tempDir, testConfig, type TestHub, runBaton, storeEnvOf, type CliResult } from '../helpers.js';

/**
 * S29: every call is audited with its outcome, security events carry a severity and an event
 * class, the trail is a hash chain that `audit_verify` / `baton audit verify` checks, and edits
 * or deletions made behind Baton's back are found and named. S30: audit retention keeps the
 * chain verifiable.
 */
const T0 = Date.parse('2030-01-01T00:00:00Z');

let open: TestHub[] = [];
afterEach(async () => {
  for (const t of open) await t.close();
  open = [];
});

async function hub(clock = new ManualClock(T0)): Promise<TestHub> {
  const t = await openHub({ clock });
  open.push(t);
  return t;
}

interface Row {
  id: number;
  op: string;
  outcome: string;
  code: string | null;
  severity: string | null;
  event: string | null;
  principal: string | null;
  target: string | null;
  params: unknown;
}

async function rows(t: TestHub, input: Record<string, unknown> = {}): Promise<Row[]> {
  await t.hub.deferred.flush();
  return (await call<{ rows: Row[] }>(t.hub, t.admin, 'audit_query', { limit: 500, ...input })).rows;
}

async function verify(t: TestHub): Promise<{ ok: boolean; rows: number; first_bad_id: number | null }> {
  await t.hub.deferred.flush();
  return call(t.hub, t.admin, 'audit_verify', {});
}

/** The hub's audit key, as the hub derives it (from the key pepper in the data dir's secrets file). */
function auditKeyOf(t: TestHub): Buffer {
  const file = JSON.parse(readFileSync(join(t.dir, 'data', 'secrets.json'), 'utf8')) as { key_pepper: string };
  return auditKeyFrom(Buffer.from(file.key_pepper, 'base64url'));
}

/**
 * The row after `id` in its chain (migration 14: a chain per project), as a deletion of `id` is
 * reported: the row that follows the gap. Read on the data dir's file.
 */
async function nextInChain(t: TestHub, id: number): Promise<number> {
  const r = await t.hub.db.read((ex) =>
    ex.get<{ id: number }>(sql`SELECT b.id FROM audit a JOIN audit b ON b.chain = a.chain AND b.seq = a.seq + 1 WHERE a.id = ${id}`),
  );
  if (r === undefined) throw new Error(`row ${id} is the end of its chain`);
  return r.id;
}

/** Behind Baton's back, through the hub's own store (either backend). */
const tamper = (t: TestHub, statement: string, ...params: unknown[]): Promise<void> => tamperWith(t.hub, [statement, ...params]);

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof BatonError) return err.code;
    throw err;
  }
  throw new Error('expected a refusal');
}

/** Some of everything: writes, reads, refusals of each kind, token lifecycle, approvals. */
async function workload(t: TestHub): Promise<{ workerKey: string; tokenId: string }> {
  const workerKey = await createKey(t, 'w1', 'worker');
  const worker = await t.hub.authenticate(workerKey);
  await call(t.hub, worker, 'task_create', { tasks: [{ title: 'one' }, { title: 'two' }] });
  await call(t.hub, worker, 'task_list', {});
  await call(t.hub, worker, 'memory_set', { key: 'k', value: 'v' });
  expect(await refusal(call(t.hub, worker, 'token_list', {}))).toBe('forbidden');
  expect(await refusal(call(t.hub, worker, 'task_create', { tasks: [{ title: 'x'.repeat(1000) }] }))).toBe('too_large');
  expect(await refusal(call(t.hub, worker, 'task_get', { id: 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa' }))).toBe('not_found');
  expect(await refusal(t.hub.call('whoami', {}, t.hub.resolver('bat_' + 'x'.repeat(43)), { requestId: 'r1', transport: 'rest' }))).toBe(
    'unauthenticated',
  );
  const created = await call<{ token: { id: string } }>(t.hub, t.admin, 'token_create', { name: 'tmp', role: 'observer' });
  await call(t.hub, t.admin, 'token_revoke', { id: created.token.id });
  const apr = await call<{ id: string }>(t.hub, worker, 'approval_request', { action: 'deploy', risk: 'high' });
  await call(t.hub, t.admin, 'approval_decide', { id: apr.id, decision: 'grant' });
  return { workerKey, tokenId: created.token.id };
}

describe('audit trail: what it records (S29)', () => {
  it('records calls with outcome, severity and security event; token lifecycle and approvals', async () => {
    const t = await hub();
    const { tokenId } = await workload(t);
    const all = await rows(t);
    const find = (pred: (r: Row) => boolean): Row => {
      const r = all.find(pred);
      expect(r, 'an audit row').toBeDefined();
      return r!;
    };
    expect(find((r) => r.op === 'task_create' && r.outcome === 'ok')).toMatchObject({ severity: 'info', event: null });
    expect(find((r) => r.op === 'task_list')).toMatchObject({ outcome: 'ok', severity: 'info' });
    expect(find((r) => r.op === 'token_list')).toMatchObject({ outcome: 'denied', code: 'forbidden', severity: 'medium', event: 'PERMISSION_DENIED' });
    expect(find((r) => r.op === 'task_create' && r.outcome !== 'ok')).toMatchObject({ code: 'too_large', severity: 'low', event: 'INVALID_INPUT' });
    expect(find((r) => r.op === 'task_get')).toMatchObject({ code: 'not_found', severity: 'info', event: null });
    expect(find((r) => r.op === 'token_create' && r.target === tokenId)).toMatchObject({ outcome: 'ok' });
    expect(find((r) => r.op === 'token_revoke')).toMatchObject({ outcome: 'ok', target: tokenId });
    find((r) => r.op === 'approval_request');
    find((r) => r.op === 'approval_decide' && r.outcome === 'ok');
    // Content never reaches the audit: the memory value is a length and a hash.
    expect(find((r) => r.op === 'memory_set').params).toMatchObject({ value: { len: 1 } });

    // An unauthenticated call has no project: it is not in a project's trail, but it is in the chain.
    const authFailures = await t.hub.db.read((ex) =>
      ex.all<{ event: string; severity: string }>(sql`SELECT event, severity FROM audit WHERE code = 'unauthenticated'`),
    );
    expect(authFailures).toEqual([{ event: 'AUTH_FAILURE', severity: 'medium' }]);
  });

  it('raises one high-severity SUSPICIOUS_ACTIVITY event for repeated authentication failures', async () => {
    const t = await hub();
    const bad = t.hub.resolver('bat_' + 'y'.repeat(43));
    for (let i = 0; i < 12; i++) {
      await refusal(t.hub.call('whoami', {}, bad, { requestId: `r${i}`, transport: 'rest', address: '203.0.113.7' }));
    }
    await t.hub.deferred.flush();
    const flagged = await t.hub.db.read((ex) =>
      ex.all<{ event: string; severity: string; address: string }>(
        sql`SELECT event, severity, address FROM audit WHERE event = 'SUSPICIOUS_ACTIVITY'`,
      ),
    );
    expect(flagged).toEqual([{ event: 'SUSPICIOUS_ACTIVITY', severity: 'high', address: '203.0.113.7' }]);
    expect((await verify(t)).ok).toBe(true);
  });
});

describe('audit_query and audit_verify (admin)', () => {
  it('an admin of a project sees only its rows; other roles are refused; a server admin may name a project', async () => {
    const t = await hub();
    await workload(t);
    const otherAdminKey = await createKey(t, 'boss', 'admin', 'other');
    const otherAdmin = await t.hub.authenticate(otherAdminKey);
    await call(t.hub, otherAdmin, 'task_create', { tasks: [{ title: 'theirs' }] });
    const lead = await t.hub.authenticate(await createKey(t, 'lead1', 'lead'));

    await t.hub.deferred.flush();
    const theirs = await call<{ rows: Row[] }>(t.hub, otherAdmin, 'audit_query', {});
    expect(theirs.rows.length).toBeGreaterThan(0);
    expect(theirs.rows.every((r) => r.principal === otherAdmin.agentId)).toBe(true);
    const mine = await rows(t);
    expect(mine.some((r) => r.principal === otherAdmin.agentId)).toBe(false);

    expect(await refusal(call(t.hub, otherAdmin, 'audit_query', { project: 'default' }))).toBe('forbidden');
    expect(await refusal(call(t.hub, lead, 'audit_query', {}))).toBe('forbidden');
    // A project admin may verify the chain; it holds, so there is no bad row to name.
    expect(await call(t.hub, otherAdmin, 'audit_verify', {})).toMatchObject({ ok: true, first_bad_id: null });
    expect(await refusal(call(t.hub, lead, 'audit_verify', {}))).toBe('forbidden');
    const viaServerAdmin = await call<{ rows: Row[] }>(t.hub, t.admin, 'audit_query', { project: 'other', op: 'task_create' });
    expect(viaServerAdmin.rows.map((r) => r.principal)).toEqual([otherAdmin.agentId]);
    expect(await refusal(call(t.hub, t.admin, 'audit_query', { project: 'nope' }))).toBe('not_found');
  });

  it('filters, pages with a cursor and enforces its limits', async () => {
    const t = await hub();
    await workload(t);
    const denied = await rows(t, { outcome: 'denied', severity: 'medium' });
    expect(denied.length).toBeGreaterThan(0);
    expect(denied.every((r) => r.outcome === 'denied' && r.severity === 'medium')).toBe(true);
    expect((await rows(t, { event: 'PERMISSION_DENIED' })).every((r) => r.op === 'token_list')).toBe(true);
    expect((await rows(t, { principal: 'w1' })).length).toBeGreaterThan(3);
    expect(await rows(t, { since: '2031-01-01T00:00:00Z' })).toEqual([]);

    const all = await rows(t);
    const first = await call<{ rows: Row[]; next_cursor: string | null }>(t.hub, t.admin, 'audit_query', { limit: 3 });
    expect(first.rows.map((r) => r.id)).toEqual(all.slice(0, 3).map((r) => r.id));
    const second = await call<{ rows: Row[] }>(t.hub, t.admin, 'audit_query', { limit: 3, cursor: first.next_cursor });
    expect(second.rows.map((r) => r.id)).toEqual(all.slice(3, 6).map((r) => r.id));

    expect(await refusal(call(t.hub, t.admin, 'audit_query', { limit: 501 }))).toBe('invalid_input');
    expect(await refusal(call(t.hub, t.admin, 'audit_query', { cursor: 'x'.repeat(23) }))).toBe('too_large');
    expect(await refusal(call(t.hub, t.admin, 'audit_query', { cursor: 'garbage' }))).toBe('invalid_input');
    expect(await refusal(call(t.hub, t.admin, 'audit_query', { severity: 'huge' }))).toBe('invalid_input');
  });

  it('works over MCP HTTP for an admin key', async () => {
    const t = await hub();
    await workload(t);
    const http = await serve(t.hub);
    try {
      const agent = await httpAgent('v2', http.url, t.adminKey);
      const v = await agent.ok<{ ok: boolean; rows: number }>('audit_verify');
      expect(v.ok).toBe(true);
      expect(v.rows).toBeGreaterThan(10);
      const q = await agent.ok<{ rows: Row[] }>('audit_query', { op: 'token_revoke' });
      expect(q.rows).toHaveLength(1);
      await agent.close();
    } finally {
      await http.close();
    }
  });
});

describe('hash chain (S29)', () => {
  /** A row in the middle of the busiest chain (not its end: a deletion there is the head's to find). */
  async function middleId(t: TestHub): Promise<number> {
    const v = await verify(t);
    expect(v).toMatchObject({ ok: true, rows: v.rows, first_bad_id: null });
    expect(v.rows).toBeGreaterThan(10);
    return t.hub.db.read(async (ex) => {
      const c = (await ex.get<{ chain: string; n: number }>(sql`SELECT chain, max(seq) AS n FROM audit GROUP BY chain ORDER BY n DESC LIMIT 1`))!;
      expect(c.n).toBeGreaterThan(4);
      return (await ex.get<{ id: number }>(sql`SELECT id FROM audit WHERE chain = ${c.chain} AND seq = ${Math.floor(c.n / 2)}`))!.id;
    });
  }

  it('finds an edited outcome and names the row', async () => {
    const t = await hub();
    await workload(t);
    const id = await middleId(t);
    await tamper(t, "UPDATE audit SET outcome = CASE outcome WHEN 'ok' THEN 'denied' ELSE 'ok' END WHERE id = ?", id);
    expect(await verify(t)).toMatchObject({ ok: false, first_bad_id: id });
  });

  it('finds edited params, and an edit whose hash was recomputed without the chain', async () => {
    const t = await hub();
    await workload(t);
    const id = await middleId(t);
    await tamper(t, `UPDATE audit SET params = '{"forged":true}' WHERE id = ?`, id);
    expect((await verify(t)).first_bad_id).toBe(id);
  });

  it('finds an edit whose chain was recomputed from the edited row on, without the server key', async () => {
    const t = await hub();
    await workload(t);
    const id = await middleId(t);
    // A forger with write access to the database: edits a row, then rewrites every hash from it
    // onward, exactly as Baton computes them but under a key of its own.
    const forgerKey = auditKeyFrom(Buffer.from('not the server secret'));
    const chain = await t.hub.db.write(async (ex) => {
      await ex.run(sql`UPDATE audit SET outcome = 'denied' WHERE id = ${id}`);
      const at = (await ex.get<{ chain: string; seq: number }>(sql`SELECT chain, seq FROM audit WHERE id = ${id}`))!;
      let prev =
        at.seq === 1 ? GENESIS_HASH : (await ex.get<{ hash: string }>(sql`SELECT hash FROM audit WHERE chain = ${at.chain} AND seq = ${at.seq - 1}`))!.hash;
      for (const row of await ex.all<AuditRow>(sql`SELECT * FROM audit WHERE chain = ${at.chain} AND seq >= ${at.seq} ORDER BY seq`)) {
        const hash = chainRowHash({ ...row, chain: at.chain, seq: row.seq!, prev_hash: prev }, forgerKey);
        await ex.run(sql`UPDATE audit SET hash = ${hash} WHERE id = ${row.id}`);
        prev = hash;
      }
      return at.chain;
    });
    expect(await verify(t)).toMatchObject({ ok: false, first_bad_id: id, chain: chain === '' ? 'server' : chain });
  });

  it('finds a deleted row (the row after the gap) and a deleted first row', async () => {
    const t = await hub();
    await workload(t);
    const id = await middleId(t);
    const after = await nextInChain(t, id);
    await tamper(t, 'DELETE FROM audit WHERE id = ?', id);
    expect(await verify(t)).toMatchObject({ ok: false, first_bad_id: after });

    const u = await hub();
    await workload(u);
    await middleId(u);
    const second = await nextInChain(u, 1);
    await tamper(u, 'DELETE FROM audit WHERE id = 1');
    expect(await verify(u)).toMatchObject({ ok: false, first_bad_id: second, first_bad_seq: 1 });
  });

  it('stays one chain when two connections (processes) write to the same store', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const config = testConfig(join(dir, 'data'));
      const a = await Hub.open(config, { log: pino({ level: 'silent' }) });
      const b = await Hub.open(config, { log: pino({ level: 'silent' }) });
      const adminA = await a.authenticate(a.firstStartKey!);
      const adminB = await b.authenticate(a.firstStartKey!);
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          call(i % 2 === 0 ? a : b, i % 2 === 0 ? adminA : adminB, 'task_create', { tasks: [{ title: `t${i}` }] }),
        ),
      );
      await Promise.all([a.deferred.flush(), b.deferred.flush()]);
      const v = await a.verifyAudit();
      expect(v).toMatchObject({ ok: true, rows: v.rows, firstBadId: null });
      expect(v.rows).toBeGreaterThanOrEqual(40);
      await a.close();
      await b.close();
    } finally {
      cleanup();
    }
  });
});

describe('baton audit verify (CLI)', () => {
  const baton = (args: string[], data?: string): Promise<CliResult> => runBaton(args, { env: { ...process.env, ...storeEnvOf(data) } });

  it('exits 0 on an intact chain and 1 naming the row after an edit or a deletion', async () => {
    const t = await hub();
    await workload(t);
    await t.hub.deferred.flush();
    const data = join(t.dir, 'data');

    const ok = await baton(['audit', 'verify', '--data', data], data);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^audit chain ok \(\d+ rows\)/);

    await tamper(t, "UPDATE audit SET outcome = 'error' WHERE id = 5");
    const edited = await baton(['audit', 'verify', '--data', data], data);
    expect(edited.code).toBe(1);
    expect(edited.stdout).toMatch(/BROKEN: chain \S+ at position \d+ \(row 5\)/);
    const json = await baton(['audit', 'verify', '--data', data, '--json'], data);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: false, first_bad_id: 5 });

    await tamper(t, "UPDATE audit SET outcome = 'ok' WHERE id = 5"); // put back: intact again
    // A row with a successor in its chain (which rows end a chain depends on how the deferred
    // sink's flushes interleaved with the ops: on PostgreSQL ids come from one sequence).
    const victim = (await t.hub.db.read((ex) =>
      ex.get<{ id: number }>(sql`SELECT a.id FROM audit a JOIN audit b ON b.chain = a.chain AND b.seq = a.seq + 1 WHERE a.id > 5 ORDER BY a.id LIMIT 1`),
    ))!.id;
    const after = await nextInChain(t, victim);
    await tamper(t, 'DELETE FROM audit WHERE id = ?', victim);
    const deleted = await baton(['audit', 'verify', '--data', data, '--json'], data);
    expect(deleted.code).toBe(1);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ ok: false, first_bad_id: after });

    const q = await baton(['audit', 'query', '--data', data, '--op', 'token_revoke', '--json'], data);
    expect(q.code, q.stderr).toBe(0);
    expect((JSON.parse(q.stdout) as { rows: Row[] }).rows).toHaveLength(1);
  });

  it('refuses a data dir that does not exist (and does not create one)', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const r = await baton(['audit', 'verify', '--data', join(dir, 'none')]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`no Baton database in ${join(dir, 'none')}`);
      expect(existsSync(join(dir, 'none'))).toBe(false);
    } finally {
      cleanup();
    }
  });
});

describe('audit retention (S30)', () => {
  it('deletes rows past retention and the chain still verifies, then keeps detecting edits', async () => {
    const clock = new ManualClock(T0);
    const t = await hub(clock);
    await workload(t);
    await t.hub.deferred.flush();
    const before = (await verify(t)).rows;
    const key = auditKeyOf(t);
    clock.advance(10 * 86_400_000);
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'recent' }] });

    // Retention 0 keeps everything.
    expect(await t.hub.db.write((ex) => sweepAudit(ex, clock.now(), 0, key))).toBe(0);
    // Every old row goes, but each chain's newest (its head) stays.
    const cutoff = clock.now() - 5 * 86_400_000;
    const old = await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM audit WHERE at < ${cutoff}`));
    const heads = await t.hub.db.read((ex) =>
      ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM audit_chains c JOIN audit a ON a.chain = c.chain AND a.seq = c.seq WHERE a.at < ${cutoff}`),
    );
    expect(old!.n).toBeGreaterThanOrEqual(before);
    const removed = await t.hub.db.write((ex) => sweepAudit(ex, clock.now(), 5 * 86_400_000, key));
    expect(removed).toBe(old!.n - heads!.n);
    const after = await verify(t);
    expect(after.ok).toBe(true);
    expect(after.rows).toBeLessThan(5);
    expect((await rows(t)).some((r) => r.op === 'task_create')).toBe(true);

    // Nothing more to remove; new rows chain on.
    expect(await t.hub.db.write((ex) => sweepAudit(ex, clock.now(), 5 * 86_400_000, key))).toBe(0);
    await call(t.hub, t.admin, 'task_list', {});
    expect((await verify(t)).ok).toBe(true);

    // A removed row put back (forged) is not part of the chain.
    await tamper(t, "INSERT INTO audit (id, at, request_id, op, outcome, transport, hash) VALUES (1, 0, 'r', 'task_list', 'ok', 'http', 'x')");
    expect((await verify(t)).first_bad_id).toBe(1);
  });

  it('never removes the newest row, so ids keep growing', async () => {
    const clock = new ManualClock(T0);
    const t = await hub(clock);
    await workload(t);
    await t.hub.deferred.flush();
    const last = (await t.hub.db.read((ex) => ex.get<{ id: number }>(sql`SELECT max(id) AS id FROM audit`)))!.id;
    const key = auditKeyOf(t);
    clock.advance(100 * 86_400_000);
    await t.hub.db.write((ex) => sweepAudit(ex, clock.now(), 86_400_000, key));
    // Each chain's newest row stays (its head), the table's newest among them.
    const left = await t.hub.db.read((ex) => ex.all<{ id: number }>(sql`SELECT id FROM audit ORDER BY id`));
    const chains = await t.hub.db.read((ex) => ex.all<{ chain: string }>(sql`SELECT chain FROM audit_chains`));
    expect(left).toHaveLength(chains.length);
    expect(left[left.length - 1]).toEqual({ id: last });
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'later' }] });
    await t.hub.deferred.flush(); // audit row ids are opaque in audit_query (S9): read them here
    const newest = (await t.hub.db.read((ex) => ex.get<{ id: number }>(sql`SELECT max(id) AS id FROM audit`)))!.id;
    expect(newest).toBeGreaterThan(last);
    expect((await verify(t)).ok).toBe(true);
  });
});
