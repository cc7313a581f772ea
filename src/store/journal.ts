import { createHmac } from 'node:crypto';
import type { Executor } from './db.js';
import { list, rows, sql } from './sql.js';

/** The events spine and the audit trail: both append-only rows. */
export interface EventRow {
  id: number;
  project_id: string;
  type: string;
  subject: string | null;
  actor: string | null;
  data: string | null;
  created_at: number;
  audience: string;
}

export async function appendEvent(
  ex: Executor,
  projectId: string,
  type: string,
  subject: string | null,
  actor: string | null,
  data: string | null,
  now: number,
  audience = 'project',
): Promise<void> {
  await ex.run(sql`INSERT INTO events (project_id, type, subject, actor, data, created_at, audience)
    VALUES (${projectId}, ${type}, ${subject}, ${actor}, ${data}, ${now}, ${audience})`);
}

/** Events after a cursor that one of `audiences` may see (see core/audience.ts), oldest first. */
export function eventsAfter(
  ex: Executor,
  projectId: string,
  audiences: readonly string[],
  after: number,
  limit: number,
): Promise<EventRow[]> {
  return ex.all<EventRow>(sql`SELECT * FROM events WHERE project_id = ${projectId} AND id > ${after}
    AND audience IN ${list(audiences)} ORDER BY id LIMIT ${limit}`);
}

export async function lastEventId(ex: Executor, projectId: string): Promise<number> {
  const row = await ex.get<{ id: number | null }>(sql`SELECT max(id) AS id FROM events WHERE project_id = ${projectId}`);
  return row?.id ?? 0;
}

export type AuditOutcome = 'ok' | 'denied' | 'invalid' | 'limited' | 'error';
export type Severity = 'info' | 'low' | 'medium' | 'high' | 'critical';
/** Security event classes (S29). */
export type SecurityEvent = 'AUTH_FAILURE' | 'PERMISSION_DENIED' | 'RATE_LIMIT_EXCEEDED' | 'INVALID_INPUT' | 'SUSPICIOUS_ACTIVITY';

export interface AuditEntry {
  at: number;
  requestId: string;
  projectId: string | null;
  principal: string | null;
  role: string | null;
  op: string;
  target: string | null;
  outcome: AuditOutcome;
  code: string | null;
  params: string | null;
  transport: string;
  address: string | null;
  /** Overrides of the classification by outcome and code (e.g. refresh-token reuse: high, SUSPICIOUS_ACTIVITY). */
  severity?: Severity;
  event?: SecurityEvent | null;
}

export interface AuditRow {
  id: number;
  at: number;
  request_id: string;
  project_id: string | null;
  principal: string | null;
  role: string | null;
  op: string;
  target: string | null;
  outcome: string;
  code: string | null;
  params: string | null;
  transport: string;
  address: string | null;
  severity: string | null;
  event: string | null;
  hash: string | null;
}

/** A row as hashed: its fields and the previous row's hash (which is not stored again). */
type HashedRow = Omit<AuditRow, 'hash'> & { prev_hash: string };

/** The chain's start: the "previous hash" of the very first row. */
export const GENESIS_HASH = '0'.repeat(64);

/** Severity and security event of an audit row, from its outcome and code. */
export function classify(outcome: AuditOutcome, code: string | null): { severity: Severity; event: SecurityEvent | null } {
  switch (outcome) {
    case 'ok':
      return { severity: 'info', event: null };
    case 'invalid':
      return { severity: 'low', event: 'INVALID_INPUT' };
    case 'limited':
      return { severity: 'medium', event: 'RATE_LIMIT_EXCEEDED' };
    case 'error':
      return { severity: code === 'unavailable' ? 'low' : 'high', event: null };
    case 'denied':
      if (code === 'unauthenticated') return { severity: 'medium', event: 'AUTH_FAILURE' };
      if (code === 'forbidden') return { severity: 'medium', event: 'PERMISSION_DENIED' };
      if (code === 'rate_limited') return { severity: 'medium', event: 'RATE_LIMIT_EXCEEDED' };
      if (code === 'invalid_input' || code === 'too_large' || code === 'body_too_large') {
        return { severity: 'low', event: 'INVALID_INPUT' };
      }
      // Ordinary refusals of the domain (not_found, conflict, lease_lost, …).
      return { severity: 'info', event: null };
  }
}

/**
 * The hash of one row: HMAC-SHA256, under a key derived from the server's secret, over a
 * canonical encoding (a JSON array in a fixed field order) of every field, the row id included,
 * and the previous row's hash. Keyed, so someone who can write the database but does not hold the
 * server's secret cannot recompute the chain after editing it.
 */
export function auditKeyFrom(secret: Buffer): Buffer {
  return createHmac('sha256', secret).update('baton audit chain v1').digest();
}

export function auditHash(r: HashedRow, key: Buffer): string {
  const canonical = JSON.stringify([
    r.id,
    r.at,
    r.request_id,
    r.project_id,
    r.principal,
    r.role,
    r.op,
    r.target,
    r.outcome,
    r.code,
    r.params,
    r.transport,
    r.address,
    r.severity,
    r.event,
    r.prev_hash,
  ]);
  return createHmac('sha256', key).update(canonical).digest('hex');
}

/** Where the chain continues: the newest row, or the anchor left by retention, or the genesis. */
async function chainHead(ex: Executor): Promise<{ id: number; hash: string }> {
  const last = await ex.get<{ id: number; hash: string | null }>(sql`SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1`);
  if (last !== undefined) return { id: last.id, hash: last.hash ?? GENESIS_HASH };
  const anchor = await ex.get<{ last_id: number; hash: string }>(sql`SELECT last_id, hash FROM audit_anchor WHERE id = 1`);
  return anchor === undefined ? { id: 0, hash: GENESIS_HASH } : { id: anchor.last_id, hash: anchor.hash };
}

/**
 * Appends audit rows to the hash chain. Must run inside a write transaction: writers are
 * serialized (on SQLite across processes too, by BEGIN IMMEDIATE), so the head read here is the
 * true head and the chain never forks. Costs one rowid-ordered lookup of the newest row per call.
 */
export async function appendAudits(ex: Executor, entries: readonly AuditEntry[], key: Buffer): Promise<void> {
  if (entries.length === 0) return;
  let head = await chainHead(ex);
  const values: unknown[][] = [];
  for (const a of entries) {
    const c = classify(a.outcome, a.code);
    const row: HashedRow = {
      id: head.id + 1,
      at: a.at,
      request_id: a.requestId,
      project_id: a.projectId,
      principal: a.principal,
      role: a.role,
      op: a.op,
      target: a.target,
      outcome: a.outcome,
      code: a.code,
      params: a.params,
      transport: a.transport,
      address: a.address,
      severity: a.severity ?? c.severity,
      event: a.event === undefined ? c.event : a.event,
      prev_hash: head.hash,
    };
    const hash = auditHash(row, key);
    values.push([
      row.id,
      row.at,
      row.request_id,
      row.project_id,
      row.principal,
      row.role,
      row.op,
      row.target,
      row.outcome,
      row.code,
      row.params,
      row.transport,
      row.address,
      row.severity,
      row.event,
      hash,
    ]);
    head = { id: row.id, hash };
  }
  // Several rows per statement: the deferred writer appends hundreds per flush, and a statement
  // per row cost a quarter of a cheap read's throughput. Fixed chunk sizes keep the statement
  // cache small.
  for (let i = 0; i < values.length; ) {
    const n = values.length - i >= AUDIT_CHUNK ? AUDIT_CHUNK : 1;
    await ex.run(sql`INSERT INTO audit (id, at, request_id, project_id, principal, role, op, target, outcome, code, params,
        transport, address, severity, event, hash) VALUES ${rows(values.slice(i, i + n))}`);
    i += n;
  }
}

const AUDIT_CHUNK = 32;

export function appendAudit(ex: Executor, a: AuditEntry, key: Buffer): Promise<void> {
  return appendAudits(ex, [a], key);
}

export interface AuditFilter {
  projectId: string;
  since: number | null;
  until: number | null;
  op: string | null;
  outcome: string | null;
  principal: string | null;
  severity: string | null;
  event: string | null;
  /** Rows with an id below this (the cursor), newest first. */
  before: number | null;
  limit: number;
}

/** One project's audit rows, newest first. (No index: audit reads are rare, every index costs each write.) */
export function queryAudit(ex: Executor, f: AuditFilter): Promise<AuditRow[]> {
  return ex.all<AuditRow>(sql`SELECT * FROM audit WHERE project_id = ${f.projectId}
    AND (${f.before} IS NULL OR id < ${f.before})
    AND (${f.since} IS NULL OR at >= ${f.since}) AND (${f.until} IS NULL OR at < ${f.until})
    AND (${f.op} IS NULL OR op = ${f.op}) AND (${f.outcome} IS NULL OR outcome = ${f.outcome})
    AND (${f.principal} IS NULL OR principal = ${f.principal}) AND (${f.severity} IS NULL OR severity = ${f.severity})
    AND (${f.event} IS NULL OR event = ${f.event})
    ORDER BY id DESC LIMIT ${f.limit}`);
}

export interface AuditVerdict {
  ok: boolean;
  /** Rows checked. */
  rows: number;
  /** The first row whose hash or link does not hold (after a deleted row: the row that follows the gap). */
  firstBadId: number | null;
}

/**
 * Walks the whole chain from the anchor (or genesis), in pages, recomputing every hash. A row
 * edited in place fails its own hash; a row deleted breaks the next row's link (and leaves a gap
 * in the ids); a row inserted out of band has no valid link either.
 */
export async function verifyAudit(ex: Executor, key: Buffer, pageSize = 2_000): Promise<AuditVerdict> {
  const anchor = await ex.get<{ last_id: number; hash: string }>(sql`SELECT last_id, hash FROM audit_anchor WHERE id = 1`);
  let prevId = anchor?.last_id ?? 0;
  let prevHash = anchor?.hash ?? GENESIS_HASH;
  let rows = 0;
  for (;;) {
    const page = await ex.all<AuditRow>(sql`SELECT * FROM audit WHERE id > ${prevId} ORDER BY id LIMIT ${pageSize}`);
    for (const r of page) {
      rows++;
      const { hash, ...rest } = r;
      if (r.id !== prevId + 1 || hash !== auditHash({ ...rest, prev_hash: prevHash }, key)) {
        return { ok: false, rows, firstBadId: r.id };
      }
      prevId = r.id;
      prevHash = hash;
    }
    if (page.length < pageSize) break;
  }
  if (anchor !== undefined) {
    // Rows at or below the anchor are either gone or unchained rows from before the chain existed
    // (migration 8); a hashed one there was put back or forged.
    const stale = await ex.get<{ id: number }>(
      sql`SELECT id FROM audit WHERE id <= ${anchor.last_id} AND hash IS NOT NULL ORDER BY id LIMIT 1`,
    );
    if (stale !== undefined) return { ok: false, rows, firstBadId: stale.id };
  }
  return { ok: true, rows, firstBadId: null };
}

/**
 * Audit retention (S30): deletes rows older than `retentionMs` (0 keeps everything) without
 * breaking verification — the hash of the newest deleted row becomes the chain's anchor. Walks
 * from the oldest row in id (chain) order and stops at the first row inside retention, at most
 * `batch` rows per call (the sweeper runs often; a call with nothing to do is one lookup). The
 * newest row is never deleted (new ids continue from it). Returns how many rows were deleted.
 */
export async function sweepAudit(ex: Executor, now: number, retentionMs: number, batch = 5_000): Promise<number> {
  if (retentionMs <= 0) return 0;
  const cutoff = now - retentionMs;
  const oldest = await ex.get<{ at: number }>(sql`SELECT at FROM audit ORDER BY id LIMIT 1`);
  if (oldest === undefined || oldest.at >= cutoff) return 0;
  const rows = await ex.all<{ id: number; at: number; hash: string | null }>(
    sql`SELECT id, at, hash FROM audit ORDER BY id LIMIT ${batch + 1}`,
  );
  let cutId = 0;
  // Unchained rows from before migration 8 leave the chain's start at the genesis.
  let cutHash = GENESIS_HASH;
  // The last row of the page stays unless a younger row follows it: never delete the newest row.
  for (let i = 0; i < rows.length - 1; i++) {
    const r = rows[i]!;
    if (r.at >= cutoff) break;
    cutId = r.id;
    if (r.hash !== null) cutHash = r.hash;
  }
  if (cutId === 0) return 0;
  const cut = { id: cutId, hash: cutHash };
  await ex.run(sql`INSERT INTO audit_anchor (id, last_id, hash, swept_at) VALUES (1, ${cut.id}, ${cut.hash}, ${now})
    ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, hash = excluded.hash, swept_at = excluded.swept_at`);
  const { changes } = await ex.run(sql`DELETE FROM audit WHERE id <= ${cut.id}`);
  return changes;
}

/** The newest event's id across all projects (0 when none): the cross-process doorbell compares it. */
export async function eventsHead(ex: Executor): Promise<number> {
  const row = await ex.get<{ head: number | null }>(sql`SELECT max(id) AS head FROM events`);
  return row?.head ?? 0;
}
