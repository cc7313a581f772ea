import { createHmac } from 'node:crypto';
import type { Executor } from './db.js';
import { join, list, rows, sql, trusted, type Sql } from './sql.js';

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
  await ex.announce();
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
 * Appends audit rows to the hash chain. Must run inside a write transaction that holds the
 * chain's head (`ex.lock('audit')`, taken here): on SQLite every writer is alone anyway (across
 * processes too, by BEGIN IMMEDIATE); on PostgreSQL writers of different projects run in
 * parallel and take turns only here, from the append to their COMMIT. So the head read here is
 * the true head and the chain never forks. Costs one rowid-ordered lookup of the newest row per call.
 */
export async function appendAudits(ex: Executor, entries: readonly AuditEntry[], key: Buffer): Promise<void> {
  if (entries.length === 0) return;
  await ex.lock('audit');
  let head = await chainHead(ex);
  // The stored head must be where the table ends, with its MAC, for the new one to be keyed: else
  // rows were removed (or the head forged) since the last append, and re-keying would hide it. A
  // tainted head stays tainted, so `verify` keeps reporting it. The one unkeyed head accepted is
  // migration 10's, which matches the table's end.
  const stored = await ex.get<{ last_id: number; hash: string; mac: string | null }>(
    sql`SELECT last_id, hash, mac FROM audit_head WHERE id = 1`,
  );
  const sealed =
    stored !== undefined &&
    stored.last_id === head.id &&
    stored.hash === head.hash &&
    (stored.mac === null || sameAsLast(key, stored) || stored.mac === headMac(key, head));
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
  // The authenticated head (migration 10): one lookup and one update per append call, whatever the
  // number of rows, in the caller's transaction, so every writer (the op's, the deferred worker's) keeps it.
  const mac = sealed ? headMac(key, head) : TAINTED;
  // This writer's last MAC: the next append (usually this connection's) checks against it for free.
  if (sealed) lastSealed.set(key, { last_id: head.id, hash: head.hash, mac });
  await ex.run(sql`UPDATE audit_head SET last_id = ${head.id}, hash = ${head.hash}, mac = ${mac} WHERE id = 1`);
}

/** The HMAC that makes a chain position (id, hash) authentic: the head, the retention anchor, an exported anchor. */
function positionMac(key: Buffer, purpose: 'head' | 'anchor' | 'export', at: { id: number; hash: string }): string {
  return createHmac('sha256', key).update(JSON.stringify([`baton audit ${purpose} v1`, at.id, at.hash])).digest('hex');
}

/** Per audit key, the head this process wrote last: a stored head equal to it needs no HMAC to check. */
const lastSealed = new WeakMap<Buffer, { last_id: number; hash: string; mac: string }>();

function sameAsLast(key: Buffer, h: { last_id: number; hash: string; mac: string | null }): boolean {
  const last = lastSealed.get(key);
  return last !== undefined && last.last_id === h.last_id && last.hash === h.hash && last.mac === h.mac;
}

/** The MAC of a head found not to match the trail at an append: never valid, so never hidden. */
const TAINTED = 'tainted';

const headMac = (key: Buffer, at: { id: number; hash: string }): string => positionMac(key, 'head', at);

/**
 * An anchor for an operator to keep outside the database (`baton audit anchor`): the chain's
 * end when it was taken, authenticated with the audit key. Ids are dense from 1, so `count` (rows
 * ever written) equals `last_id`. `verifyAudit` with it refuses a trail that no longer reaches it,
 * which catches what no in-database check can: the whole database rolled back or wiped and
 * re-created by someone who can write it.
 */
export interface AuditAnchor {
  v: 1;
  count: number;
  last_id: number;
  hash: string;
  mac: string;
}

export function exportAnchor(key: Buffer, at: { id: number; hash: string }): AuditAnchor {
  return { v: 1, count: at.id, last_id: at.id, hash: at.hash, mac: positionMac(key, 'export', at) };
}

export function anchorIsAuthentic(key: Buffer, a: AuditAnchor): boolean {
  return a.count === a.last_id && a.mac === positionMac(key, 'export', { id: a.last_id, hash: a.hash });
}

const AUDIT_CHUNK = 32;

export function appendAudit(ex: Executor, a: AuditEntry, key: Buffer): Promise<void> {
  return appendAudits(ex, [a], key);
}

export interface AuditFilter {
  /** null: rows of no project (failed authentication, throttling), for server admins. */
  projectId: string | null;
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
  // Only the filters given become conditions: a bound NULL tested with `IS NULL` has no type
  // PostgreSQL can infer, and a fixed condition per filter is plain for either planner.
  const where: Sql[] = [f.projectId === null ? sql`project_id IS NULL` : sql`project_id = ${f.projectId}`];
  if (f.before !== null) where.push(sql`id < ${f.before}`);
  if (f.since !== null) where.push(sql`at >= ${f.since}`);
  if (f.until !== null) where.push(sql`at < ${f.until}`);
  if (f.op !== null) where.push(sql`op = ${f.op}`);
  if (f.outcome !== null) where.push(sql`outcome = ${f.outcome}`);
  if (f.principal !== null) where.push(sql`principal = ${f.principal}`);
  if (f.severity !== null) where.push(sql`severity = ${f.severity}`);
  if (f.event !== null) where.push(sql`event = ${f.event}`);
  return ex.all<AuditRow>(sql`SELECT * FROM audit WHERE ${join(where, trusted(' AND '))} ORDER BY id DESC LIMIT ${f.limit}`);
}

export interface AuditVerdict {
  ok: boolean;
  /** Rows checked. */
  rows: number;
  /** The first row whose hash or link does not hold (after a deleted row: the row that follows the gap). */
  firstBadId: number | null;
  /** Why, when not ok and no single row says it: the end or start of the trail does not hold. */
  reason?: 'head' | 'head_unkeyed' | 'anchor' | 'exported_anchor';
  /** The end reached (for `exportAnchor`). */
  end?: { id: number; hash: string };
}

/** Yields to the event loop between pages, so a long walk never blocks other calls for long. */
const breathe = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface AnchorRow {
  last_id: number;
  hash: string;
  mac: string | null;
}

/**
 * Retention's anchor is authentic when keyed (`sweepAudit` with the key), or when it is the one
 * migration 8 wrote (genesis hash after the unchained rows): a copied row hash without the key's
 * MAC, put there to hide the rows before it, is not.
 */
function anchorHolds(key: Buffer, a: AnchorRow): boolean {
  if (a.mac === null) return a.hash === GENESIS_HASH;
  return a.mac === positionMac(key, 'anchor', { id: a.last_id, hash: a.hash });
}

type HeadRow = { last_id: number; hash: string; mac: string | null };

/**
 * A walk of the whole chain that can be split into steps, each in its own short read (so a long
 * chain never holds the store, and on SQLite the process's one connection, for the whole walk):
 * `beginAuditWalk`, then `stepAuditWalk` until it answers true, then `endAuditWalk`. The walk
 * stops where the chain ended when it began; rows appended meanwhile are left to the next verify.
 * Continuity across steps is carried in `prevId`/`prevHash`.
 */
export interface AuditWalk {
  prevId: number;
  prevHash: string;
  rows: number;
  /** The last id to check: the end of the table or the head when the walk began, whichever is further. */
  readonly stopId: number;
  /** The authenticated head when the walk began (the walk's end must be it). */
  readonly head: HeadRow | undefined;
  /** Retention's anchor when the walk began. */
  readonly anchor: AnchorRow | undefined;
  readonly anchors: readonly AuditAnchor[];
  /** Set once the walk found a bad row (or a bad start): the answer. */
  verdict: AuditVerdict | null;
}

/** Starts a walk: checks its start (retention's anchor, `from`) and reads where it will stop. */
export async function beginAuditWalk(
  ex: Executor,
  key: Buffer,
  anchors: readonly AuditAnchor[] = [],
  /** Incremental: walk only the rows after this (authentic) exported anchor, which must still hold. */
  from?: AuditAnchor,
): Promise<AuditWalk> {
  const anchor = await ex.get<AnchorRow>(sql`SELECT last_id, hash, mac FROM audit_anchor WHERE id = 1`);
  const head = await ex.get<HeadRow>(sql`SELECT last_id, hash, mac FROM audit_head WHERE id = 1`);
  const newest = await ex.get<{ id: number }>(sql`SELECT id FROM audit ORDER BY id DESC LIMIT 1`);
  const w: AuditWalk = {
    prevId: anchor?.last_id ?? 0,
    prevHash: anchor?.hash ?? GENESIS_HASH,
    rows: 0,
    stopId: Math.max(newest?.id ?? 0, head?.last_id ?? 0),
    head,
    anchor,
    anchors,
    verdict: null,
  };
  if (anchor !== undefined && !anchorHolds(key, anchor)) {
    w.verdict = { ok: false, rows: 0, firstBadId: anchor.last_id + 1, reason: 'anchor' };
  } else if (from !== undefined && from.last_id > w.prevId) {
    const at = await ex.get<{ hash: string | null }>(sql`SELECT hash FROM audit WHERE id = ${from.last_id}`);
    if (at?.hash !== from.hash) w.verdict = { ok: false, rows: 0, firstBadId: from.last_id, reason: 'exported_anchor' };
    w.prevId = from.last_id;
    w.prevHash = from.hash;
  }
  return w;
}

/**
 * Checks the next `pageSize` rows of the walk, recomputing every hash from its predecessor's.
 * True when the walk is over (its stop reached, or a bad row found: `w.verdict`).
 */
export async function stepAuditWalk(ex: Executor, key: Buffer, w: AuditWalk, pageSize = 1_000): Promise<boolean> {
  if (w.verdict !== null) return true;
  const page = await ex.all<AuditRow>(
    sql`SELECT * FROM audit WHERE id > ${w.prevId} AND id <= ${w.stopId} ORDER BY id LIMIT ${pageSize}`,
  );
  for (const r of page) {
    if (r.id !== w.prevId + 1) {
      // Between two steps retention may have swept past the walk: its (authentic) anchor vouches
      // for the rows it removed, and the chain goes on from it.
      const moved = await ex.get<AnchorRow>(sql`SELECT last_id, hash, mac FROM audit_anchor WHERE id = 1`);
      if (moved !== undefined && moved.last_id === r.id - 1 && moved.last_id > w.prevId && anchorHolds(key, moved)) {
        w.prevId = moved.last_id;
        w.prevHash = moved.hash;
      }
    }
    w.rows++;
    const { hash, ...rest } = r;
    if (r.id !== w.prevId + 1 || hash !== auditHash({ ...rest, prev_hash: w.prevHash }, key)) {
      w.verdict = { ok: false, rows: w.rows, firstBadId: r.id };
      return true;
    }
    w.prevId = r.id;
    w.prevHash = hash;
  }
  return page.length < pageSize || w.prevId >= w.stopId;
}

/** Checks the walk's ends: retention's anchor, the head, and the exported anchors. */
export async function endAuditWalk(ex: Executor, key: Buffer, w: AuditWalk): Promise<AuditVerdict> {
  if (w.verdict !== null) return w.verdict;
  const { rows, anchor, head } = w;
  if (anchor !== undefined) {
    // Rows at or below the anchor are either gone or unchained rows from before the chain existed
    // (migration 8); a hashed one there was put back or forged.
    const stale = await ex.get<{ id: number }>(
      sql`SELECT id FROM audit WHERE id <= ${anchor.last_id} AND hash IS NOT NULL ORDER BY id LIMIT 1`,
    );
    if (stale !== undefined) return { ok: false, rows, firstBadId: stale.id };
  }
  const end = { id: w.prevId, hash: w.prevHash };
  // No head, a head that is not the end, or a head without its MAC (only a chain nothing was ever
  // appended to has one): rows were removed from the end (the first missing one is named), or
  // appended behind Baton's back, or the head was forged.
  const headOk =
    head !== undefined &&
    head.last_id === end.id &&
    head.hash === end.hash &&
    (head.mac === null ? rows === 0 : head.mac === headMac(key, end));
  if (!headOk && head !== undefined && head.mac === null && head.last_id === end.id && head.hash === end.hash) {
    // Migration 10 cannot key the head (it has no key); the first append after it does. Until
    // then this state is indistinguishable from a head whose MAC was removed: not ok, but said so.
    return { ok: false, rows, firstBadId: null, reason: 'head_unkeyed' };
  }
  if (!headOk) {
    const bad = head !== undefined && head.last_id > end.id ? end.id + 1 : (head?.last_id ?? end.id) + 1;
    return { ok: false, rows, firstBadId: bad, reason: 'head' };
  }
  // The head now: the walk's end, or further on by rows appended during the walk; either way
  // authentic and where the table ends (else rows went or came behind Baton's back meanwhile).
  const now = await ex.get<HeadRow>(sql`SELECT last_id, hash, mac FROM audit_head WHERE id = 1`);
  if (now === undefined || now.last_id !== head.last_id || now.hash !== head.hash) {
    const newest = await ex.get<{ id: number; hash: string | null }>(sql`SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1`);
    const holds =
      now !== undefined &&
      now.last_id > end.id &&
      now.mac === headMac(key, { id: now.last_id, hash: now.hash }) &&
      newest !== undefined &&
      newest.id === now.last_id &&
      newest.hash === now.hash;
    if (!holds) return { ok: false, rows, firstBadId: end.id + 1, reason: 'head' };
  }
  // Retention may have moved its anchor during the walk; the exported anchors are checked against the current one.
  const current = await ex.get<AnchorRow>(sql`SELECT last_id, hash, mac FROM audit_anchor WHERE id = 1`);
  if (current !== undefined && !anchorHolds(key, current)) return { ok: false, rows, firstBadId: current.last_id + 1, reason: 'anchor' };
  const floor = current?.last_id ?? 0;
  for (const a of w.anchors) {
    let holds = anchorIsAuthentic(key, a) && a.last_id <= end.id;
    if (holds && a.last_id > floor) {
      const row = await ex.get<{ hash: string | null }>(sql`SELECT hash FROM audit WHERE id = ${a.last_id}`);
      holds = row?.hash === a.hash;
    } else if (holds && a.last_id === floor && current !== undefined && a.last_id > 0) {
      holds = current.hash === a.hash;
    }
    // Below retention's anchor the row is gone by policy: the authenticated anchor vouches for it.
    if (!holds) return { ok: false, rows, firstBadId: Math.min(a.last_id, end.id + 1), reason: 'exported_anchor' };
  }
  return { ok: true, rows, firstBadId: null, end };
}

/**
 * Walks the whole chain from the anchor (or genesis), in pages, recomputing every hash, then
 * checks its ends. A row edited in place fails its own hash; a row deleted breaks the next row's
 * link (and leaves a gap in the ids); a row inserted out of band has no valid link either. The
 * newest rows deleted, or all of them, leave the authenticated head (migration 10) beyond the
 * end; an anchor copied from a row, with the rows before it deleted, has no valid MAC. Exported
 * anchors (`exportAnchor`) must still be reached. All in the caller's one read (yielding between
 * pages); `audit_verify` runs the same steps each in its own read instead.
 */
export async function verifyAudit(
  ex: Executor,
  key: Buffer,
  pageSize = 2_000,
  anchors: readonly AuditAnchor[] = [],
  /** Incremental: walk only the rows after this (authentic) exported anchor, which must still hold. */
  from?: AuditAnchor,
): Promise<AuditVerdict> {
  const w = await beginAuditWalk(ex, key, anchors, from);
  while (!(await stepAuditWalk(ex, key, w, pageSize))) await breathe();
  return endAuditWalk(ex, key, w);
}

/**
 * One project's view of the chain, for its admins (the whole chain is the server admins'): each
 * of the project's rows is recomputed from its predecessor's hash (whatever project that row
 * belongs to; only its hash is read), its predecessor must be there (the row before, the anchor,
 * or the genesis), and the row after it must link to it, so an edited, forged or removed row of
 * the project next to any of its rows is named. The end must be the authenticated head. Cost: the
 * project's rows plus two lookups by id each, in pages, yielding between them. Deletions among
 * other projects' rows are the global verification's to find. Walked in steps, each its own
 * short read (as `AuditWalk` for the whole chain): `beginProjectWalk`, `stepProjectWalk`.
 */
export interface ProjectWalk {
  readonly projectId: string;
  /** The project's last row checked (or the anchor's id). */
  after: number;
  rows: number;
  /** The authenticated end when the walk began: the walk stops there. */
  readonly end: { id: number; hash: string } | undefined;
  /** The answer, once known (a bad start or row, or the end reached: ok). */
  verdict: AuditVerdict | null;
}

export async function beginProjectWalk(ex: Executor, key: Buffer, projectId: string): Promise<ProjectWalk> {
  const anchor = await ex.get<AnchorRow>(sql`SELECT last_id, hash, mac FROM audit_anchor WHERE id = 1`);
  const floor = anchor?.last_id ?? 0;
  if (anchor !== undefined && !anchorHolds(key, anchor)) {
    return { projectId, after: floor, rows: 0, end: undefined, verdict: { ok: false, rows: 0, firstBadId: null, reason: 'anchor' } };
  }
  const head = await ex.get<HeadRow>(sql`SELECT last_id, hash, mac FROM audit_head WHERE id = 1`);
  const end = head === undefined ? undefined : { id: head.last_id, hash: head.hash };
  const newest = await ex.get<{ id: number; hash: string | null }>(sql`SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1`);
  const endOk =
    end !== undefined &&
    (head!.mac === null ? newest === undefined || newest.hash === null : head!.mac === headMac(key, end)) &&
    (newest === undefined ? end.id === floor : newest.id === end.id && (newest.hash ?? GENESIS_HASH) === end.hash);
  const verdict: AuditVerdict | null = endOk ? null : { ok: false, rows: 0, firstBadId: null, reason: 'head' };
  return { projectId, after: floor, rows: 0, end, verdict };
}

function withoutHash(r: AuditRow): Omit<AuditRow, 'hash'> {
  const { hash: _hash, ...rest } = r;
  return rest;
}

/** Checks the project's next `pageSize` rows; true when the walk is over (`w.verdict` says how). */
export async function stepProjectWalk(ex: Executor, key: Buffer, w: ProjectWalk, pageSize = 1_000): Promise<boolean> {
  if (w.verdict !== null) return true;
  const end = w.end!;
  // Retention's anchor now (it may move between steps): it vouches for the row it replaced.
  const anchor = await ex.get<AnchorRow>(sql`SELECT last_id, hash, mac FROM audit_anchor WHERE id = 1`);
  const floor = anchor !== undefined && anchorHolds(key, anchor) ? anchor.last_id : 0;
  const hashOf = async (id: number): Promise<string | null | undefined> => {
    if (id === 0) return GENESIS_HASH;
    if (id === floor) return anchor!.hash;
    const r = await ex.get<{ hash: string | null }>(sql`SELECT hash FROM audit WHERE id = ${id}`);
    return r === undefined ? undefined : r.hash;
  };
  const page = await ex.all<AuditRow>(
    sql`SELECT * FROM audit WHERE project_id = ${w.projectId} AND id > ${w.after} AND id <= ${end.id} ORDER BY id LIMIT ${pageSize}`,
  );
  for (const r of page) {
    w.rows++;
    w.after = r.id;
    if (r.hash === null) continue; // unchained, from before migration 8
    const prev = await hashOf(r.id - 1);
    const { hash, ...rest } = r;
    if (prev === undefined || hash !== auditHash({ ...rest, prev_hash: prev ?? GENESIS_HASH }, key)) {
      w.verdict = { ok: false, rows: w.rows, firstBadId: r.id };
      return true;
    }
    if (r.id === end.id) continue;
    const next = await ex.get<AuditRow>(sql`SELECT * FROM audit WHERE id = ${r.id + 1}`);
    const linked = next !== undefined && next.hash === auditHash({ ...withoutHash(next), prev_hash: hash }, key);
    if (!linked) {
      w.verdict = { ok: false, rows: w.rows, firstBadId: r.id + 1 };
      return true;
    }
  }
  if (page.length < pageSize) {
    w.verdict = { ok: true, rows: w.rows, firstBadId: null };
    return true;
  }
  return false;
}

/**
 * Audit retention (S30): deletes rows older than `retentionMs` (0 keeps everything) without
 * breaking verification — the hash of the newest deleted row becomes the chain's anchor. Walks
 * from the oldest row in id (chain) order and stops at the first row inside retention, at most
 * `batch` rows per call (the sweeper runs often; a call with nothing to do is one lookup). The
 * newest row is never deleted (new ids continue from it). Returns how many rows were deleted.
 */
export async function sweepAudit(
  ex: Executor,
  now: number,
  retentionMs: number,
  key: Buffer,
  batch = 5_000,
): Promise<number> {
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
  // Keyed, so an anchor copied from a row by someone without the key is refused (issue 8). Without
  // the key (a caller that has none) only a genesis anchor verifies.
  const mac = key === null ? null : positionMac(key, 'anchor', cut);
  await ex.run(sql`INSERT INTO audit_anchor (id, last_id, hash, swept_at, mac) VALUES (1, ${cut.id}, ${cut.hash}, ${now}, ${mac})
    ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, hash = excluded.hash, swept_at = excluded.swept_at,
      mac = excluded.mac`);
  const { changes } = await ex.run(sql`DELETE FROM audit WHERE id <= ${cut.id}`);
  return changes;
}

/** The newest event's id across all projects (0 when none): the cross-process doorbell compares it. */
export async function eventsHead(ex: Executor): Promise<number> {
  const row = await ex.get<{ head: number | null }>(sql`SELECT max(id) AS head FROM events`);
  return row?.head ?? 0;
}

/** The project an audit row belongs to (null: a server-wide row, or no such row). */
export async function auditRowProject(ex: Executor, id: number): Promise<string | null> {
  const row = await ex.get<{ project_id: string | null }>(sql`SELECT project_id FROM audit WHERE id = ${id}`);
  return row?.project_id ?? null;
}
