/**
 * Issue 8, item 10: a server admin's `audit_verify` walked the whole chain in one read, holding
 * the store (on SQLite, the process's one connection) for the whole walk, so every other call of
 * the process waited. It now walks in steps, each its own short read, carrying the previous
 * hash across them, and stops at the end the chain had when it began.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tamperWith } from './tamper.js';
import { describe, expect, it } from 'vitest';
import { appendAudits, auditKeyFrom, beginAuditWalk, endAuditWalk, stepAuditWalk, sweepAudit, type AuditEntry } from '../../src/store/journal.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, openHub, serve, type TestHub } from '../helpers.js';

/** The hub's audit key, as the hub derives it (from the key pepper in the data dir's secrets file). */
function auditKeyOf(t: TestHub): Buffer {
  const file = JSON.parse(readFileSync(join(t.dir, 'data', 'secrets.json'), 'utf8')) as { key_pepper: string };
  return auditKeyFrom(Buffer.from(file.key_pepper, 'base64url'));
}

const entry = (i: number, projectId: string | null = null): AuditEntry => ({
  at: 1_700_000_000_000 + i,
  requestId: `req_bulk${i}`,
  projectId,
  principal: null,
  role: null,
  op: 'whoami',
  target: null,
  outcome: i % 7 === 0 ? 'denied' : 'ok',
  code: i % 7 === 0 ? 'forbidden' : null,
  params: '{}',
  transport: 'internal',
  address: null,
});

interface Verdict {
  ok: boolean;
  rows: number;
  first_bad_id: number | null;
  scope: string;
  reason: string | null;
}

describe('security: audit_verify walks the chain in steps, never holding the store for the walk (issue 8 item 10)', () => {
  it('a 50,000-row chain verifies over REST, an edited row in the middle is named, and other calls answer while a verify runs', async () => {
    const t = await openHub();
    const http = await serve(t.hub);
    try {
      const key = auditKeyOf(t);
      await t.hub.deferred.flush();
      // Appended through the store's own function, as the hub appends them (1,000 per transaction).
      for (let i = 0; i < 50; i++) {
        await t.hub.db.write((ex) => appendAudits(ex, Array.from({ length: 1_000 }, (_, j) => entry(i * 1_000 + j)), key));
      }
      const total = (await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM audit`)))!.n;
      expect(total).toBeGreaterThanOrEqual(50_000);
      const verifyRest = async (): Promise<Verdict> => {
        const r = await fetch(`${http.url}/api/v1/audit/verify`, { headers: { authorization: `Bearer ${t.adminKey}` } });
        expect(r.status).toBe(200);
        return (await r.json()) as Verdict;
      };
      // Every row is walked (the verify's own audit row and others may be appended meanwhile: not walked).
      const whole = await verifyRest();
      expect(whole).toMatchObject({ ok: true, first_bad_id: null, scope: 'server' });
      expect(whole.rows).toBeGreaterThanOrEqual(total);

      // A call of another project started while a verify is walking answers before the verify does.
      const other = await t.hub.authenticate(await createKey(t, 'bystander', 'worker', 'elsewhere'));
      const order: string[] = [];
      const verifying = call<Verdict>(t.hub, t.admin, 'audit_verify', {}).then((v) => {
        order.push('verify');
        return v;
      });
      // Let the verify reach the store first (its read starts on the next turn of the event loop).
      for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
      await call(t.hub, other, 'whoami', {}).then(() => order.push('whoami'));
      expect((await verifying).ok).toBe(true);
      expect(order).toEqual(['whoami', 'verify']);

      // An edited row in the middle of the chain is still named.
      await t.hub.deferred.flush();
      await tamperWith(t.hub, ["UPDATE audit SET outcome = 'error' WHERE id = ?", 25_000]);
      expect(await verifyRest()).toMatchObject({ ok: false, first_bad_id: 25_000, scope: 'server' });
    } finally {
      await http.close();
      await t.close();
    }
  }, 120_000);

  it("a project admin's verify walks its project's rows in steps too: ok, an edited row named, other calls answer meanwhile", async () => {
    const t = await openHub();
    try {
      const key = auditKeyOf(t);
      const admin = await t.hub.authenticate(await createKey(t, 'project-admin', 'admin'));
      await t.hub.deferred.flush();
      // Every other row the project's, the rest no project's.
      for (let i = 0; i < 5; i++) {
        await t.hub.db.write((ex) =>
          appendAudits(ex, Array.from({ length: 2_000 }, (_, j) => entry(i * 2_000 + j, j % 2 === 0 ? admin.projectId : null)), key),
        );
      }
      const v = await call<Verdict>(t.hub, admin, 'audit_verify', {});
      expect(v).toMatchObject({ ok: true, scope: 'project' });
      expect(v.rows).toBeGreaterThanOrEqual(5_000);

      const other = await t.hub.authenticate(await createKey(t, 'bystander', 'worker', 'elsewhere'));
      const order: string[] = [];
      const verifying = call<Verdict>(t.hub, admin, 'audit_verify', {}).then((r) => {
        order.push('verify');
        return r;
      });
      for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
      await call(t.hub, other, 'whoami', {}).then(() => order.push('whoami'));
      expect((await verifying).ok).toBe(true);
      expect(order).toEqual(['whoami', 'verify']);

      await t.hub.deferred.flush();
      const middle = (await t.hub.db.read((ex) =>
        ex.get<{ id: number }>(sql`SELECT id FROM audit WHERE project_id = ${admin.projectId} AND op = 'whoami' ORDER BY id LIMIT 1 OFFSET 2500`),
      ))!.id;
      await tamperWith(t.hub, ["UPDATE audit SET outcome = 'error' WHERE id = ?", middle]);
      expect(await call(t.hub, admin, 'audit_verify', {})).toMatchObject({ ok: false, first_bad_id: middle, scope: 'project' });
    } finally {
      await t.close();
    }
  }, 120_000);

  it('between steps: rows appended are left for the next verify, a retention sweep is followed through its anchor, rows removed from the end are caught', async () => {
    const t = await openHub();
    try {
      const key = auditKeyOf(t);
      await t.hub.deferred.flush();
      const append = (from: number, n: number, at = 1_700_000_000_000): Promise<void> =>
        t.hub.db.write((ex) => appendAudits(ex, Array.from({ length: n }, (_, j) => ({ ...entry(from + j), at: at + from + j })), key));
      await append(0, 1_000);
      const walk = async (between: () => Promise<void>): Promise<{ ok: boolean; firstBadId: number | null; reason?: string }> => {
        const w = await t.hub.db.read((ex) => beginAuditWalk(ex, key));
        let steps = 0;
        let ran = false;
        while (!(await t.hub.db.read((ex) => stepAuditWalk(ex, key, w, 100)))) {
          if (++steps === 3) {
            await between();
            ran = true;
          }
        }
        expect(ran, 'the change happened during the walk').toBe(true);
        return t.hub.db.read((ex) => endAuditWalk(ex, key, w));
      };
      // Appended while the walk is under way: not walked, and the head they moved is authentic.
      expect(await walk(() => append(1_000, 50))).toMatchObject({ ok: true });
      // Retention removes rows the walk has not reached yet: its keyed anchor vouches for them.
      const end = (await t.hub.db.read((ex) => ex.get<{ at: number }>(sql`SELECT max(at) AS at FROM audit`)))!.at;
      expect(
        await walk(async () => {
          const gone = await t.hub.db.write((ex) => sweepAudit(ex, end + 1, end + 1 - (1_700_000_000_000 + 600), key));
          expect(gone).toBeGreaterThan(300);
        }),
      ).toMatchObject({ ok: true });
      // The newest rows deleted behind Baton's back during a walk are caught.
      const last = (await t.hub.db.read((ex) => ex.get<{ id: number; seq: number }>(sql`SELECT id, seq FROM audit ORDER BY id DESC LIMIT 1`)))!;
      const v = await walk(async () => {
        await tamperWith(t.hub, ['DELETE FROM audit WHERE id > ?', last.id - 5]);
      });
      // The rows of no project are the server chain's: its first missing position is named.
      expect(v).toMatchObject({ ok: false, chain: 'server', firstBadSeq: last.seq - 4, firstBadId: null, reason: 'head' });
    } finally {
      await t.close();
    }
  });
});
