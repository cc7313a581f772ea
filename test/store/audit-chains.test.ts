/**
 * Issue 9 item 3: one audit chain per project (and one for rows of no project), so no lock is
 * common to every audited write (migration 14, store/journal.ts). On both backends: chains of two
 * projects verify apart, tampering in one is reported for that one; a database at version 13 with
 * audit rows upgrades and its old rows (the legacy segment) still verify. On PostgreSQL: a
 * project's audited writes (its ops', and the deferred writer's) commit while another holds the
 * server chain's lock or another project's lock.
 */
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Hub } from '../../src/hub.js';
import { appendAudits, auditHash, auditKeyFrom, GENESIS_HASH, newestSeq, type AuditRow } from '../../src/store/journal.js';
import { projectLockKey, serverChainLockKeys } from '../../src/store/postgres.js';
import { sql } from '../../src/store/sql.js';
import { readFileSync } from 'node:fs';
import { call, createKey, openHub, testConfig, TEST_DATABASE_URL, type Backend, type TestHub } from '../helpers.js';
import type { VerifyAnswer } from '../../src/ops/audit.js';

let open: TestHub[] = [];
afterEach(async () => {
  for (const t of open) await t.close();
  open = [];
});

async function hub(backend: Backend, config: Parameters<typeof openHub>[0] = {}): Promise<TestHub> {
  const t = await openHub({ ...config, backend });
  open.push(t);
  return t;
}

function auditKeyOf(t: TestHub): Buffer {
  const file = JSON.parse(readFileSync(join(t.dir, 'data', 'secrets.json'), 'utf8')) as { key_pepper: string };
  return auditKeyFrom(Buffer.from(file.key_pepper, 'base64url'));
}

async function projectId(h: Hub, name: string): Promise<string> {
  return (await h.db.read((ex) => ex.get<{ id: string }>(sql`SELECT id FROM projects WHERE name = ${name}`)))!.id;
}

type Verdict = VerifyAnswer;

describe.each(['sqlite', 'postgres'] as const)('audit chain per project (%s)', (backend) => {
  it('two projects: each chain verifies on its own; an edit in one is reported for that chain, the other still holds', async () => {
    const t = await hub(backend);
    const a = await t.hub.authenticate(await createKey(t, 'wa', 'worker', 'alpha'));
    const b = await t.hub.authenticate(await createKey(t, 'wb', 'worker', 'beta'));
    for (let i = 0; i < 5; i++) {
      await call(t.hub, a, 'task_create', { tasks: [{ title: `a${i}` }] });
      await call(t.hub, b, 'task_create', { tasks: [{ title: `b${i}` }] });
      await call(t.hub, b, 'task_list', {}); // deferred: written by the deferred writer, per chain
    }
    await t.hub.deferred.flush();
    const alpha = await projectId(t.hub, 'alpha');
    const beta = await projectId(t.hub, 'beta');
    const chains = await t.hub.db.read((ex) => ex.all<{ chain: string; seq: number }>(sql`SELECT chain, seq FROM audit_chains ORDER BY chain`));
    expect(chains).toEqual(expect.arrayContaining([{ chain: alpha, seq: 5 }, { chain: beta, seq: 10 }]));
    // Positions are dense per chain, whatever the interleaving of ids.
    const betaSeqs = await t.hub.db.read((ex) => ex.all<{ seq: number }>(sql`SELECT seq FROM audit WHERE chain = ${beta} ORDER BY id`));
    expect(betaSeqs.map((r) => r.seq)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });

    const adminA = await t.hub.authenticate(await createKey(t, 'aa', 'admin', 'alpha'));
    const adminB = await t.hub.authenticate(await createKey(t, 'ab', 'admin', 'beta'));
    expect(await call<Verdict>(t.hub, adminA, 'audit_verify', {})).toMatchObject({ ok: true, rows: 5, scope: 'project' });

    // Behind Baton's back: one of beta's rows edited.
    const row = (await t.hub.db.read((ex) => ex.get<{ id: number }>(sql`SELECT id FROM audit WHERE chain = ${beta} AND seq = 4`)))!.id;
    await t.hub.db.write((ex) => ex.run(sql`UPDATE audit SET outcome = 'denied' WHERE id = ${row}`));
    expect(await t.hub.verifyAudit()).toMatchObject({ ok: false, chain: beta, firstBadSeq: 4, firstBadId: row });
    expect(await call<Verdict>(t.hub, adminB, 'audit_verify', {})).toMatchObject({ ok: false, chain: beta, first_bad_seq: 4, first_bad_id: row });
    // Alpha's chain is not touched by it (its rows were written between beta's).
    await t.hub.deferred.flush(); // the verify above is audited too (a read: by the deferred writer)
    expect(await call<Verdict>(t.hub, adminA, 'audit_verify', {})).toMatchObject({ ok: true, rows: 6 });
  });

  it("in one group commit, an op rolled back to its savepoint takes its chain positions with it (the head cached per transaction is rolled back too)", async () => {
    const t = await hub(backend);
    const key = auditKeyOf(t);
    const entry = (i: number) => ({
      at: 1_700_000_000_000 + i,
      requestId: `req_grp${i}`,
      projectId: null,
      principal: null,
      role: null,
      op: 'whoami',
      target: null,
      outcome: 'ok' as const,
      code: null,
      params: '{}',
      transport: 'internal',
      address: null,
    });
    const before = (await t.hub.db.read((ex) => ex.get<{ seq: number }>(sql`SELECT seq FROM audit_chains WHERE chain = ''`)))?.seq ?? 0;
    // Queued in one turn: one transaction, each write in its savepoint; the middle one fails after appending.
    const results = await Promise.allSettled([
      t.hub.db.write((ex) => appendAudits(ex, [entry(1)], key)),
      t.hub.db.write(async (ex) => {
        await appendAudits(ex, [entry(2), entry(3)], key);
        throw new Error('rolled back');
      }),
      t.hub.db.write((ex) => appendAudits(ex, [entry(4)], key)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const rows = await t.hub.db.read((ex) => ex.all<{ seq: number; request_id: string }>(sql`SELECT seq, request_id FROM audit WHERE chain = '' AND seq > ${before} ORDER BY seq`));
    expect(rows).toEqual([
      { seq: before + 1, request_id: 'req_grp1' },
      { seq: before + 2, request_id: 'req_grp4' },
    ]);
    expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });
  });

  it('a database at version 13 with audit rows migrates to 14: its rows verify as the legacy segment, new rows go to the chains', async () => {
    const t = await hub(backend);
    const key = auditKeyOf(t);
    const dataDir = join(t.dir, 'data');
    // Back to version 13 (what migrations 14 and later add, removed), with rows of one global chain as
    // Baton wrote them then: ids dense from 1, each hash over its id and its predecessor's hash,
    // the head unkeyed (as migration 10 leaves it when nothing was appended after it).
    await t.hub.db.write(async (ex) => {
      await ex.run(sql`DELETE FROM audit`);
      await ex.run(sql`DROP TABLE audit_chains`);
      await ex.run(sql`DROP INDEX audit_chain_seq`);
      await ex.run(sql`ALTER TABLE audit DROP COLUMN seq`);
      await ex.run(sql`ALTER TABLE audit DROP COLUMN chain`);
      await ex.run(sql`DROP TABLE deferred_marks`);
      await ex.run(sql`DROP TABLE task_finishes`);
      await ex.run(sql`DROP TABLE clock_offsets`);
      await ex.run(sql`DELETE FROM schema_migrations WHERE version >= 14`);
      if (backend === 'postgres') await ex.get(sql`SELECT setval(pg_get_serial_sequence('audit', 'id'), 1, false)`);
      let prev = GENESIS_HASH;
      for (let id = 1; id <= 30; id++) {
        const r: Omit<AuditRow, 'hash'> = {
          id,
          at: 1_700_000_000_000 + id,
          request_id: `req_old${id}`,
          project_id: id % 3 === 0 ? null : 'prj_legacy',
          principal: null,
          role: null,
          op: 'whoami',
          target: null,
          outcome: 'ok',
          code: null,
          params: '{}',
          transport: 'internal',
          address: null,
          severity: 'info',
          event: null,
          chain: null,
          seq: null,
        };
        const hash = auditHash({ ...r, prev_hash: prev }, key);
        await ex.run(sql`INSERT INTO audit (id, at, request_id, project_id, principal, role, op, target, outcome, code, params, transport, address, severity, event, hash)
          VALUES (${id}, ${r.at}, ${r.request_id}, ${r.project_id}, NULL, NULL, 'whoami', NULL, 'ok', NULL, '{}', 'internal', NULL, 'info', NULL, ${hash})`);
        prev = hash;
      }
      await ex.run(sql`UPDATE audit_head SET last_id = 30, hash = ${prev}, mac = NULL WHERE id = 1`);
    });
    await t.hub.close();
    // The upgrade: migration 14 at start, and the legacy head keyed by the hub.
    const again = await Hub.open(testConfig(dataDir), { log: pino({ level: 'silent' }) });
    try {
      const v = await again.verifyAudit();
      expect(v).toMatchObject({ ok: true });
      expect(v.rows).toBeGreaterThanOrEqual(30);
      const head = await again.db.read((ex) => ex.get<{ mac: string | null }>(sql`SELECT mac FROM audit_head WHERE id = 1`));
      expect(head!.mac).toBe(createHmac('sha256', key).update(JSON.stringify(['baton audit head v1', 30, (await lastLegacyHash(again))!])).digest('hex'));
      // New rows: in the chains, with ids after the legacy ones (PostgreSQL: the identity moved past them).
      const admin = await again.authenticate(t.adminKey);
      for (let i = 0; i < 3; i++) await call(again, admin, 'task_create', { tasks: [{ title: `new${i}` }] });
      await again.deferred.flush();
      const fresh = await again.db.read((ex) => ex.all<{ id: number; chain: string | null }>(sql`SELECT id, chain FROM audit WHERE id > 30 ORDER BY id`));
      expect(fresh.length).toBeGreaterThanOrEqual(3);
      expect(fresh.every((r) => r.chain !== null)).toBe(true);
      const all = await again.verifyAudit();
      expect(all).toMatchObject({ ok: true });
      expect(all.rows).toBe(30 + fresh.length);
      // A legacy row edited is still found, and named as the legacy segment's.
      await again.db.write((ex) => ex.run(sql`UPDATE audit SET outcome = 'denied' WHERE id = 17`));
      expect(await again.verifyAudit()).toMatchObject({ ok: false, chain: 'legacy', firstBadId: 17 });
    } finally {
      await again.close();
    }
  });
});

async function lastLegacyHash(h: Hub): Promise<string | undefined> {
  return (await h.db.read((ex) => ex.get<{ hash: string }>(sql`SELECT hash FROM audit WHERE id = 30`)))?.hash;
}

describe('PostgreSQL: no lock common to every audited write', () => {
  const config = { waitRecheckMs: 0, rateLimit: false, busyTimeoutMs: 10_000 } as const;

  it("a project's audited write commits while another transaction holds the server chain's head (the lock every audited write took before)", async () => {
    const t = await hub('postgres', { config });
    const a = await t.hub.authenticate(await createKey(t, 'wa', 'worker', 'alpha'));
    const [cls, key] = serverChainLockKeys(t.hub.config.databaseSchema!);
    const holder = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query({ text: 'SELECT pg_advisory_xact_lock($1, $2)', values: [cls, key] });
      // Audited (in its own transaction), committed while the server chain's head is held.
      await call(t.hub, a, 'task_create', { tasks: [{ title: 'alpha' }] });
      const rows = await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM audit WHERE op = 'task_create' AND project_id IS NOT NULL AND outcome = 'ok' AND target IS NOT NULL`));
      expect(rows!.n).toBeGreaterThanOrEqual(1);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });
  });

  it("the deferred writer's rows of one project commit while another project's lock is held; the rest follow once it is released", async () => {
    const t = await hub('postgres', { config });
    const a = await t.hub.authenticate(await createKey(t, 'wa', 'worker', 'alpha'));
    const b = await t.hub.authenticate(await createKey(t, 'wb', 'worker', 'beta'));
    await t.hub.deferred.flush();
    const alpha = await projectId(t.hub, 'alpha');
    const beta = await projectId(t.hub, 'beta');
    const count = async (project: string): Promise<number> =>
      (await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM audit WHERE project_id = ${project} AND op = 'task_list'`)))!.n;
    const holder = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query({ text: 'SELECT pg_advisory_xact_lock($1)', values: [projectLockKey(t.hub.config.databaseSchema!, alpha)] });
      // Reads: audited by the deferred writer, one batch with rows of both projects.
      await call(t.hub, a, 'task_list', {});
      await call(t.hub, b, 'task_list', {});
      const flushed = t.hub.deferred.flush();
      const deadline = Date.now() + 30_000;
      while ((await count(beta)) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(await count(beta)).toBe(1);
      expect(await count(alpha)).toBe(0);
      await holder.query('COMMIT');
      await flushed;
    } finally {
      await holder.end();
    }
    expect(await count(alpha)).toBe(1);
    expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });
  });
});

describe('PostgreSQL: the newest position of a chain is one index step', () => {
  it("on a young table (no statistics yet) the chain's newest position reads one index entry, not the whole chain", async () => {
    const t = await hub('postgres', { config: { rateLimit: false } });
    const lead = await t.hub.authenticate(await createKey(t, 'lead', 'lead'));
    // 400 audited writes: one chain of 400 rows and more; autovacuum has not analyzed the table.
    for (let i = 0; i < 400; i++) await call(t.hub, lead, 'task_create', { tasks: [{ title: `t${i}` }] });
    const chain = lead.projectId;
    const plan = await t.hub.db.read((ex) =>
      ex.all<{ 'QUERY PLAN': unknown }>(sql`EXPLAIN (ANALYZE, FORMAT JSON) SELECT ${newestSeq(chain)} AS top`),
    );
    // Every scan of `audit` in the plan returned one row.
    const scans: { rows: number; type: string }[] = [];
    const walk = (n: Record<string, unknown>): void => {
      if (n['Relation Name'] === 'audit') scans.push({ rows: n['Actual Rows'] as number, type: n['Node Type'] as string });
      for (const c of (n.Plans as Record<string, unknown>[] | undefined) ?? []) walk(c);
    };
    walk(((plan[0]!['QUERY PLAN'] as { Plan: Record<string, unknown> }[])[0]!).Plan);
    expect(scans.length).toBeGreaterThan(0);
    expect(scans.every((s) => s.rows === 1)).toBe(true);
    expect(await t.hub.verifyAudit()).toMatchObject({ ok: true });
  });
});
