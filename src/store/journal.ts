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
  await appendEvents(ex, [{ projectId, type, subject, actor, data, createdAt: now, audience }]);
}

/** An event an op emitted, appended when the op ends (with its audit row: appendAudits). */
export interface NewEvent {
  projectId: string;
  type: string;
  subject: string | null;
  actor: string | null;
  data: string | null;
  createdAt: number;
  audience: string;
}

/** Most events per INSERT: bounds the statement's parameters (7 per event). */
const EVENT_CHUNK = 64;

/** The INSERT of up to EVENT_CHUNK events, in order (their ids follow it). */
function insertEvents(events: readonly NewEvent[]): Sql {
  return sql`INSERT INTO events (project_id, type, subject, actor, data, created_at, audience) VALUES ${rows(
    events.map((e) => [e.projectId, e.type, e.subject, e.actor, e.data, e.createdAt, e.audience]),
  )}`;
}

/**
 * Appends events in order and tells other processes' waiters (announce). In a store's write they
 * are inserted with the transaction's other appended rows just before COMMIT (queueRows).
 */
export async function appendEvents(ex: Executor, events: readonly NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  if (!queueRows(ex, events, [])) await insertRows(ex, { events, audit: [] });
  await ex.announce();
}

/** The rows a write transaction appended and has not inserted yet (its memo's `journal:rows`). */
interface Unwritten {
  readonly events: readonly NewEvent[];
  /** Audit rows, as insertAudit's VALUES. */
  readonly audit: readonly (readonly unknown[])[];
}

const UNWRITTEN = 'journal:rows';

/**
 * Keeps appended rows in the write transaction's memo, inserted together just before COMMIT:
 * a batch of ops then costs a few multi-row INSERTs instead of one per op (on PostgreSQL, a
 * statement each, run one after the other under the project's lock). Nothing reads the events
 * or audit rows a transaction appends before it commits (readers are other transactions; the
 * chain's head is in the memo). An op rolled back to its savepoint takes its rows with it (the
 * memo is restored). False where there is no memo: the caller inserts at once.
 */
function queueRows(ex: Executor, events: readonly NewEvent[], audit: readonly (readonly unknown[])[]): boolean {
  const memo = ex.memo;
  if (memo === null) return false;
  const old = memo.get<Unwritten>(UNWRITTEN);
  memo.set(UNWRITTEN, old === undefined ? { events, audit } : { events: [...old.events, ...events], audit: [...old.audit, ...audit] });
  memo.beforeCommit(UNWRITTEN, (tx) => insertRows(tx, memo.get<Unwritten>(UNWRITTEN)!));
  return true;
}

/** The largest power of two at most `left` and `max`: few distinct statements for the statement caches. */
function chunkOf(left: number, max: number): number {
  let n = 1;
  while (n * 2 <= Math.min(left, max)) n *= 2;
  return n;
}

/**
 * Inserts events and audit rows, in order, several per statement (sent ahead: nothing waits for
 * their answers, db.ts Executor.send); where the dialect runs an INSERT inside a WITH
 * (PostgreSQL), a chunk of events goes in the same statement as a chunk of audit rows. The ids
 * are the store's (rowid, identity): event ids follow the order given; chain order is (chain, seq).
 */
async function insertRows(ex: Executor, u: Unwritten): Promise<void> {
  let e = 0;
  let a = 0;
  while (e < u.events.length || a < u.audit.length) {
    const ne = e < u.events.length ? chunkOf(u.events.length - e, EVENT_CHUNK) : 0;
    const na = a < u.audit.length ? chunkOf(u.audit.length - a, AUDIT_CHUNK) : 0;
    const events = ne > 0 ? insertEvents(u.events.slice(e, e + ne)) : null;
    if (na === 0 || (events !== null && !ex.dialect.insertInWith)) {
      await ex.send(events!);
      e += ne;
      continue;
    }
    const prefix = events !== null ? sql`WITH appended_events AS (${events}) ` : trusted('');
    await ex.send(sql`${prefix}INSERT INTO audit (at, request_id, project_id, principal, role, op, target, outcome, code, params,
        transport, address, severity, event, chain, seq, hash) VALUES ${rows(u.audit.slice(a, a + na))}`);
    e += ne;
    a += na;
  }
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
  // One step down events_project (project_id, id), whatever the statistics say (see newestSeq).
  const row = await ex.get<{ id: number | null }>(sql`SELECT (SELECT id FROM events WHERE project_id = ${projectId} ORDER BY id DESC LIMIT 1) AS id`);
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
  /** Migration 14: the row's chain (project id, '' for the server chain) and position in it; NULL for legacy rows. */
  chain: string | null;
  seq: number | null;
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
  return createHmac('sha256', key).update(JSON.stringify([r.id, ...hashedFields(r), r.prev_hash])).digest('hex');
}

/** The fields of a row both hash encodings cover, in their fixed order (between position and predecessor). */
function hashedFields(r: Omit<AuditRow, 'hash' | 'id' | 'chain' | 'seq'>): unknown[] {
  return [r.at, r.request_id, r.project_id, r.principal, r.role, r.op, r.target, r.outcome, r.code, r.params, r.transport, r.address, r.severity, r.event];
}

/** The chain of the rows of no project (failed authentication, throttling): the server chain. */
export const SERVER_CHAIN = '';

/** The chain a row of this project goes to (migration 14): the project's own, or the server's. */
export const chainOf = (projectId: string | null): string => projectId ?? SERVER_CHAIN;

/** Audit entries by the chain each goes to, each chain's in the order given. */
export function groupByChain(entries: readonly AuditEntry[]): Map<string, AuditEntry[]> {
  const byChain = new Map<string, AuditEntry[]>();
  for (const a of entries) {
    const chain = chainOf(a.projectId);
    let list = byChain.get(chain);
    if (list === undefined) byChain.set(chain, (list = []));
    list.push(a);
  }
  return byChain;
}

/** How verdicts name a chain: its project id, `server`, or `legacy` (the rows from before migration 14). */
export const chainLabel = (chain: string): string => (chain === SERVER_CHAIN ? 'server' : chain);
export const LEGACY = 'legacy';

/** A chain row as hashed: its chain and position instead of its id (ids are storage keys), and its predecessor's hash. */
type ChainHashed = Omit<AuditRow, 'hash' | 'id' | 'chain' | 'seq'> & { chain: string; seq: number; prev_hash: string };

/**
 * The hash of a row of a chain (migration 14): as auditHash, over the chain and the position in
 * it instead of the id, with a version tag, so no row of the legacy segment or of another chain
 * (whose `chain` differs) verifies in its place.
 */
export function chainRowHash(r: ChainHashed, key: Buffer): string {
  return createHmac('sha256', key).update(JSON.stringify(['c1', r.chain, r.seq, ...hashedFields(r), r.prev_hash])).digest('hex');
}

/** The HMAC that makes a position of one chain authentic: its head or its retention anchor. */
function chainMac(key: Buffer, purpose: 'head' | 'anchor', chain: string, at: { seq: number; hash: string }): string {
  return createHmac('sha256', key).update(JSON.stringify([`baton audit chain ${purpose} v1`, chain, at.seq, at.hash])).digest('hex');
}

/** Where a chain goes on in this transaction: its last position and whether its stored head held when first read. */
interface Tip {
  readonly seq: number;
  readonly hash: string;
  readonly sealed: boolean;
}

/** One row of `audit_chains`. */
interface ChainRow {
  chain: string;
  seq: number;
  hash: string;
  mac: string;
  anchor_seq: number;
  anchor_hash: string;
  anchor_mac: string | null;
}

/**
 * A chain's newest position, as one step down its (chain, seq) index whatever the planner
 * believes of the table: `max(seq) … WHERE chain = ?` was planned (PostgreSQL, on a young table's
 * statistics, and kept in the prepared statement's plan) as a walk over every row of the chain,
 * a cost that grew with the trail at every write transaction's first append.
 */
export function newestSeq(chain: string): Sql {
  return sql`(SELECT seq FROM audit WHERE chain = ${chain} ORDER BY seq DESC LIMIT 1)`;
}

/**
 * The chain's tip as stored, checked: the stored head must be where the chain's rows end, with
 * its MAC, for the next head to be keyed; else rows were removed (or the head forged) since the
 * last append, and re-keying would hide it: a tainted head stays tainted, so `verify` keeps
 * reporting it. One statement when the chain is sound.
 */
async function readTip(ex: Executor, chain: string, key: Buffer): Promise<Tip> {
  const r = await ex.get<{
    top: number | null;
    seq: number | null;
    hash: string | null;
    mac: string | null;
    anchor_seq: number | null;
    anchor_hash: string | null;
    row_hash: string | null;
  }>(sql`SELECT ${newestSeq(chain)} AS top, c.seq, c.hash, c.mac, c.anchor_seq, c.anchor_hash,
      (SELECT a.hash FROM audit a WHERE a.chain = ${chain} AND a.seq = c.seq) AS row_hash
    FROM (SELECT 1 AS one) o LEFT JOIN audit_chains c ON c.chain = ${chain}`);
  const top = r?.top ?? null;
  if (r === undefined || r.seq === null || r.hash === null) {
    if (top === null) return { seq: 0, hash: GENESIS_HASH, sealed: true };
    // Rows and no head: the head was removed.
    return { ...(await rowAt(ex, chain, top)), sealed: false };
  }
  const head = { seq: r.seq, hash: r.hash, mac: r.mac };
  const sealed = top === head.seq && r.row_hash === head.hash && (sameAsLast(key, chain, head) || head.mac === chainMac(key, 'head', chain, head));
  if (sealed) return { seq: head.seq, hash: head.hash, sealed };
  if (top !== null) return { ...(await rowAt(ex, chain, top)), sealed: false };
  return { seq: r.anchor_seq ?? 0, hash: r.anchor_hash ?? GENESIS_HASH, sealed: false };
}

async function rowAt(ex: Executor, chain: string, seq: number): Promise<{ seq: number; hash: string }> {
  const row = await ex.get<{ hash: string | null }>(sql`SELECT hash FROM audit WHERE chain = ${chain} AND seq = ${seq}`);
  return { seq, hash: row?.hash ?? GENESIS_HASH };
}

/** The chain's head, written (with its MAC) once per transaction and chain, or per append outside a store's write. */
async function writeTip(ex: Executor, chain: string, tip: Tip, key: Buffer): Promise<void> {
  const mac = tip.sealed ? chainMac(key, 'head', chain, tip) : TAINTED;
  // This writer's last MAC: the next transaction (usually this process's) checks against it for free.
  if (tip.sealed) remember(key, chain, { seq: tip.seq, hash: tip.hash, mac });
  await ex.send(sql`INSERT INTO audit_chains (chain, seq, hash, mac, anchor_seq, anchor_hash) VALUES (${chain}, ${tip.seq}, ${tip.hash}, ${mac}, 0, ${GENESIS_HASH})
    ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac`);
}

/**
 * Appends audit rows, each to its project's chain (or the server chain), in the caller's write
 * transaction. A project's chain is appended under the project's writer lock (`ex.lock({ project
 * })`, which the project's ops hold already), the server chain under its own (`ex.lock('audit')`,
 * taken last): on SQLite every writer is alone anyway (across processes too, by BEGIN IMMEDIATE);
 * on PostgreSQL projects append side by side, and one transaction appends to at most one project's
 * chain (the deferred writer splits its rows per chain: ops/deferred.ts). So the head read here is
 * the chain's true head and no chain forks (the unique (chain, seq) index would refuse a fork).
 *
 * Inside a store's write (ex.memo) the head is read once per transaction and chain and written
 * once, before COMMIT: the ops of one group commit each pay one INSERT. An op rolled back to its
 * savepoint takes its rows' positions with it (the store restores the memo).
 */
export async function appendAudits(ex: Executor, entries: readonly AuditEntry[], key: Buffer, events: readonly NewEvent[] = []): Promise<void> {
  if (entries.length === 0) return appendEvents(ex, events);
  const byChain = groupByChain(entries);
  // Project chains before the server chain: the lock order (db.ts WriteLock).
  const chains = [...byChain.keys()].sort((a, b) => Number(a === SERVER_CHAIN) - Number(b === SERVER_CHAIN));
  const audit: (readonly unknown[])[] = [];
  const heads: [string, Tip][] = [];
  for (const chain of chains) {
    const { rows: chainRows, tip } = await appendChain(ex, chain, byChain.get(chain)!, key);
    audit.push(...chainRows);
    heads.push([chain, tip]);
  }
  if (!queueRows(ex, events, audit)) {
    await insertRows(ex, { events, audit });
    for (const [chain, tip] of heads) await writeTip(ex, chain, tip, key);
  }
  if (events.length > 0) await ex.announce();
}

/**
 * Reads a project chain's head ahead, at the start of a write transaction for that project (the
 * store's `ahead`, db.ts WriteOptions): its lock is sent first (a blocking lock, pipelined), then the
 * head read, and the transaction's first append finds the answer waiting instead of asking in
 * turn. A rolled-back op does not move the head, so the answer holds for the whole transaction.
 */
export function readChainAhead(ex: Executor, chain: string, key: Buffer): void {
  const memo = ex.memo;
  if (memo === null || chain === SERVER_CHAIN || memo.get(`audit:${chain}`) !== undefined || memo.get(`audit-ahead:${chain}`) !== undefined) return;
  // The lock's statement goes out before this returns (lock() waits for nothing before sending
  // it); taken at a transaction's start, it is never refused (nothing else is held yet).
  ex.lock({ project: chain }).catch(() => undefined);
  const tip = readTip(ex, chain, key);
  tip.catch(() => undefined); // observed by the append, or dropped with the transaction
  memo.set(`audit-ahead:${chain}`, tip);
}

/**
 * The audit rows of `entries` on `chain`, each hashed onto the one before (the chain's head, under
 * its lock), and the new head. In a store's write the head is remembered in the memo and written
 * once before COMMIT; elsewhere the caller writes it (writeTip) after inserting the rows.
 */
async function appendChain(ex: Executor, chain: string, entries: readonly AuditEntry[], key: Buffer): Promise<{ rows: unknown[][]; tip: Tip }> {
  await ex.lock(chain === SERVER_CHAIN ? 'audit' : { project: chain });
  const memo = ex.memo;
  const memoKey = `audit:${chain}`;
  let tip = memo?.get<Tip>(memoKey);
  if (tip === undefined) {
    const read = await (memo?.get<Promise<Tip>>(`audit-ahead:${chain}`) ?? readTip(ex, chain, key));
    // Another op of the batch may have appended while this one waited (parallel writes, db.ts
    // WriteOptions): from here to memo.set nothing waits, so no two appends take one position.
    tip = memo?.get<Tip>(memoKey) ?? read;
  }
  const values: unknown[][] = [];
  for (const a of entries) {
    const c = classify(a.outcome, a.code);
    const row: ChainHashed = {
      chain,
      seq: tip.seq + 1,
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
      prev_hash: tip.hash,
    };
    const hash = chainRowHash(row, key);
    values.push([
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
      chain,
      row.seq,
      hash,
    ]);
    tip = { seq: row.seq, hash, sealed: tip.sealed };
  }
  if (memo !== null) {
    memo.set(memoKey, tip);
    memo.beforeCommit(memoKey, (tx) => writeTip(tx, chain, memo.get<Tip>(memoKey)!, key));
  }
  return { rows: values, tip };
}

/** The HMAC that makes a legacy chain position (id, hash) authentic: the head, the retention anchor, an exported anchor. */
function positionMac(key: Buffer, purpose: 'head' | 'anchor' | 'export', at: { id: number; hash: string }): string {
  return createHmac('sha256', key).update(JSON.stringify([`baton audit ${purpose} v1`, at.id, at.hash])).digest('hex');
}

/** Per audit key and chain, the head this process wrote last: a stored head equal to it needs no HMAC to check. */
const lastSealed = new WeakMap<Buffer, Map<string, { seq: number; hash: string; mac: string }>>();

function remember(key: Buffer, chain: string, head: { seq: number; hash: string; mac: string }): void {
  let m = lastSealed.get(key);
  if (m === undefined) lastSealed.set(key, (m = new Map()));
  m.set(chain, head);
}

function sameAsLast(key: Buffer, chain: string, h: { seq: number; hash: string; mac: string | null }): boolean {
  const last = lastSealed.get(key)?.get(chain);
  return last !== undefined && last.seq === h.seq && last.hash === h.hash && last.mac === h.mac;
}

/** The MAC of a head found not to match the trail at an append: never valid, so never hidden. */
const TAINTED = 'tainted';

const headMac = (key: Buffer, at: { id: number; hash: string }): string => positionMac(key, 'head', at);

/**
 * A legacy anchor (v1) for an operator to keep outside the database: the end of the one chain
 * of before migration 14, authenticated with the audit key. Ids are dense from 1, so `count`
 * equals `last_id`. Still accepted: `verify` checks it against the legacy segment.
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

/** A chain's end as an exported anchor keeps it: the position and the first MARK_HEX hex digits of its hash. */
export interface ChainMark {
  chain: string;
  seq: number;
  hash: string;
}

/**
 * An anchor of every chain (v2, `baton audit anchor`): where each chain ended when it was taken,
 * authenticated with the audit key. `verify` with it refuses a trail where a chain no longer
 * reaches its mark (rolled back, truncated, or gone with its head), which catches what no
 * in-database check can: the database rolled back, or a project's whole chain removed. A hash is
 * kept shortened (128 bits): whoever lacks the key cannot make a row with a chosen hash anyway.
 */
export interface ChainsAnchor {
  v: 2;
  marks: ChainMark[];
  mac: string;
}

const MARK_HEX = 32;

function marksMac(key: Buffer, marks: readonly ChainMark[]): string {
  return createHmac('sha256', key)
    .update(JSON.stringify(['baton audit export v2', marks.map((m) => [m.chain, m.seq, m.hash])]))
    .digest('hex');
}

export function exportChainsAnchor(key: Buffer, ends: readonly ChainMark[]): ChainsAnchor {
  const marks = ends.map((e) => ({ chain: e.chain, seq: e.seq, hash: e.hash.slice(0, MARK_HEX) }));
  return { v: 2, marks, mac: marksMac(key, marks) };
}

export function chainsAnchorIsAuthentic(key: Buffer, a: ChainsAnchor): boolean {
  return a.mac === marksMac(key, a.marks);
}

const AUDIT_CHUNK = 32;

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

/**
 * One project's audit rows, newest first. (No index: audit reads are rare, every index costs each
 * write.) By id: within a project the ids grow in chain order (its appends take turns; legacy rows
 * have lower ids than every chain row), so a cursor never skips a committed row of the project.
 */
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
  /** The first row whose hash or link does not hold (after a deleted row: the row that follows the gap); null when it is missing. */
  firstBadId: number | null;
  /** The chain that does not hold: a project id, `server`, or `legacy` (the rows from before migration 14). */
  chain?: string;
  /** Its first position that does not hold (in the legacy segment: the row id). */
  firstBadSeq?: number | null;
  /** Why, when not ok and no single row says it: the end or start of the chain does not hold. */
  reason?: 'head' | 'head_unkeyed' | 'anchor' | 'exported_anchor';
  /** The legacy segment's end (for its v1 anchor). */
  end?: { id: number; hash: string };
  /** Every chain's end reached (for `exportChainsAnchor`), when the whole trail was walked. */
  ends?: ChainMark[];
}

/** Yields to the event loop between pages, so a long walk never blocks other calls for long. */
const breathe = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface AnchorRow {
  last_id: number;
  hash: string;
  mac: string | null;
}

/**
 * Retention's legacy anchor is authentic when keyed (`sweepAudit` with the key), or when it is
 * the one migration 8 wrote (genesis hash after the unchained rows): a copied row hash without
 * the key's MAC, put there to hide the rows before it, is not.
 */
function anchorHolds(key: Buffer, a: AnchorRow): boolean {
  if (a.mac === null) return a.hash === GENESIS_HASH;
  return a.mac === positionMac(key, 'anchor', { id: a.last_id, hash: a.hash });
}

type HeadRow = { last_id: number; hash: string; mac: string | null };

/**
 * A walk of the legacy segment (the one chain of the rows written before migration 14; nothing is
 * appended to it any more, retention still sweeps it), split into steps as every walk here.
 */
export interface LegacyWalk {
  prevId: number;
  prevHash: string;
  rows: number;
  /** The last id to check: the segment's last row or its head, whichever is further. */
  readonly stopId: number;
  readonly head: HeadRow | undefined;
  readonly anchor: AnchorRow | undefined;
  readonly anchors: readonly AuditAnchor[];
  verdict: AuditVerdict | null;
}

async function beginLegacyWalk(ex: Executor, key: Buffer, anchors: readonly AuditAnchor[], from?: AuditAnchor): Promise<LegacyWalk> {
  const anchor = await ex.get<AnchorRow>(sql`SELECT last_id, hash, mac FROM audit_anchor WHERE id = 1`);
  const head = await ex.get<HeadRow>(sql`SELECT last_id, hash, mac FROM audit_head WHERE id = 1`);
  const newest = await ex.get<{ id: number }>(sql`SELECT id FROM audit WHERE chain IS NULL ORDER BY id DESC LIMIT 1`);
  const w: LegacyWalk = {
    prevId: anchor?.last_id ?? 0,
    prevHash: anchor?.hash ?? GENESIS_HASH,
    rows: 0,
    stopId: Math.max(newest?.id ?? 0, head?.last_id ?? 0),
    head,
    anchor,
    anchors,
    verdict: null,
  };
  const bad = (v: Omit<AuditVerdict, 'chain' | 'firstBadSeq'>): AuditVerdict => ({ ...v, chain: LEGACY, firstBadSeq: v.firstBadId });
  if (anchor !== undefined && !anchorHolds(key, anchor)) {
    w.verdict = bad({ ok: false, rows: 0, firstBadId: anchor.last_id + 1, reason: 'anchor' });
  } else if (from !== undefined && from.last_id > w.prevId) {
    const at = await ex.get<{ hash: string | null }>(sql`SELECT hash FROM audit WHERE id = ${from.last_id}`);
    if (at?.hash !== from.hash) w.verdict = bad({ ok: false, rows: 0, firstBadId: from.last_id, reason: 'exported_anchor' });
    w.prevId = from.last_id;
    w.prevHash = from.hash;
  }
  return w;
}

/** Every row up to the segment's end, chain rows included (one there was forged): each must link to the one before. */
async function stepLegacyWalk(ex: Executor, key: Buffer, w: LegacyWalk, pageSize: number): Promise<boolean> {
  if (w.verdict !== null) return true;
  const page = await ex.all<AuditRow>(sql`SELECT * FROM audit WHERE id > ${w.prevId} AND id <= ${w.stopId} ORDER BY id LIMIT ${pageSize}`);
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
    if (r.id !== w.prevId + 1 || r.chain !== null || hash !== auditHash({ ...rest, prev_hash: w.prevHash }, key)) {
      w.verdict = { ok: false, rows: w.rows, firstBadId: r.id, chain: LEGACY, firstBadSeq: r.id };
      return true;
    }
    w.prevId = r.id;
    w.prevHash = hash;
  }
  return page.length < pageSize || w.prevId >= w.stopId;
}

/** Checks the legacy segment's ends: retention's anchor, the head, the v1 exported anchors. */
async function endLegacyWalk(ex: Executor, key: Buffer, w: LegacyWalk): Promise<AuditVerdict> {
  const bad = (v: Omit<AuditVerdict, 'chain' | 'firstBadSeq'>): AuditVerdict => ({ ...v, chain: LEGACY, firstBadSeq: v.firstBadId });
  if (w.verdict !== null) return w.verdict;
  const { rows, anchor, head } = w;
  if (anchor !== undefined) {
    // Rows at or below the anchor are either gone or unchained rows from before the chain existed
    // (migration 8); a hashed one there was put back or forged.
    const stale = await ex.get<{ id: number }>(
      sql`SELECT id FROM audit WHERE id <= ${anchor.last_id} AND hash IS NOT NULL ORDER BY id LIMIT 1`,
    );
    if (stale !== undefined) return bad({ ok: false, rows, firstBadId: stale.id });
  }
  // A row of no chain past the segment's end was put there behind Baton's back.
  const stray = await ex.get<{ id: number }>(sql`SELECT id FROM audit WHERE chain IS NULL AND id > ${w.stopId} ORDER BY id LIMIT 1`);
  if (stray !== undefined) return bad({ ok: false, rows, firstBadId: stray.id });
  const end = { id: w.prevId, hash: w.prevHash };
  // No head, a head that is not the end, or a head without its MAC (only a segment nothing was
  // ever appended to has one): rows were removed from the end (the first missing one is named),
  // or the head was forged.
  const headOk =
    head !== undefined &&
    head.last_id === end.id &&
    head.hash === end.hash &&
    (head.mac === null ? rows === 0 : head.mac === headMac(key, end));
  if (!headOk && head !== undefined && head.mac === null && head.last_id === end.id && head.hash === end.hash) {
    // Migration 10 could not key the head (it has no key) and, since migration 14, no append
    // keys it either: `sealLegacyHead` (at the hub's start) does. Until then this state is
    // indistinguishable from a head whose MAC was removed: not ok, but said so.
    return bad({ ok: false, rows, firstBadId: null, reason: 'head_unkeyed' });
  }
  if (!headOk) {
    const firstBad = head !== undefined && head.last_id > end.id ? end.id + 1 : (head?.last_id ?? end.id) + 1;
    return bad({ ok: false, rows, firstBadId: firstBad, reason: 'head' });
  }
  // Nothing moves the legacy head any more: one that moved during the walk was forged.
  const now = await ex.get<HeadRow>(sql`SELECT last_id, hash, mac FROM audit_head WHERE id = 1`);
  if (now === undefined || now.last_id !== head.last_id || now.hash !== head.hash) return bad({ ok: false, rows, firstBadId: end.id + 1, reason: 'head' });
  // Retention may have moved its anchor during the walk; the exported anchors are checked against the current one.
  const current = await ex.get<AnchorRow>(sql`SELECT last_id, hash, mac FROM audit_anchor WHERE id = 1`);
  if (current !== undefined && !anchorHolds(key, current)) return bad({ ok: false, rows, firstBadId: current.last_id + 1, reason: 'anchor' });
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
    if (!holds) return bad({ ok: false, rows, firstBadId: Math.min(a.last_id, end.id + 1), reason: 'exported_anchor' });
  }
  return { ok: true, rows, firstBadId: null, end };
}

/**
 * The migration-10 head of the legacy segment is unkeyed until the first append after it; since
 * migration 14 nothing appends to that segment, so the hub keys it at its start (with the key),
 * if it is where the segment ends. A head that is not stays as it is, for verify to report.
 */
export async function legacyHeadUnkeyed(ex: Executor): Promise<boolean> {
  const r = await ex.get<{ x: number }>(
    sql`SELECT 1 AS x FROM audit_head WHERE id = 1 AND mac IS NULL AND EXISTS (SELECT 1 FROM audit WHERE chain IS NULL)`,
  );
  return r !== undefined;
}

export async function sealLegacyHead(ex: Executor, key: Buffer): Promise<boolean> {
  const head = await ex.get<HeadRow>(sql`SELECT last_id, hash, mac FROM audit_head WHERE id = 1`);
  if (head === undefined || head.mac !== null) return false;
  const newest = await ex.get<{ id: number; hash: string | null }>(sql`SELECT id, hash FROM audit WHERE chain IS NULL ORDER BY id DESC LIMIT 1`);
  if (newest === undefined || newest.id !== head.last_id || (newest.hash ?? GENESIS_HASH) !== head.hash) return false;
  await ex.run(sql`UPDATE audit_head SET mac = ${headMac(key, { id: head.last_id, hash: head.hash })} WHERE id = 1 AND mac IS NULL`);
  return true;
}

/** A chain's retention anchor holds: none yet (position 0, the genesis), or keyed by `sweepAudit`. */
function chainAnchorHolds(key: Buffer, c: ChainRow): boolean {
  if (c.anchor_seq === 0) return c.anchor_hash === GENESIS_HASH;
  return c.anchor_mac === chainMac(key, 'anchor', c.chain, { seq: c.anchor_seq, hash: c.anchor_hash });
}

/**
 * A walk of one chain (a project's, or the server's), split into steps each in its own short read
 * (so a long chain never holds the store, and on SQLite the process's one connection, for the
 * whole walk): `beginChainWalk`, then `stepChainWalk` until it answers true, then `endChainWalk`.
 * It stops where the chain ended when it began; rows appended meanwhile are the next verify's.
 */
export interface ChainWalk {
  readonly chain: string;
  prevSeq: number;
  prevHash: string;
  rows: number;
  readonly stopSeq: number;
  /** The chain's row (head and retention anchor) when the walk began. */
  readonly head: ChainRow | undefined;
  /** Where an exported anchor says the chain reached: it must still reach it. */
  readonly mark: ChainMark | undefined;
  verdict: AuditVerdict | null;
}

function chainBad(w: { chain: string; rows: number }, firstBadSeq: number | null, firstBadId: number | null, reason?: AuditVerdict['reason']): AuditVerdict {
  return { ok: false, rows: w.rows, firstBadId, chain: chainLabel(w.chain), firstBadSeq, ...(reason === undefined ? {} : { reason }) };
}

export async function beginChainWalk(
  ex: Executor,
  key: Buffer,
  chain: string,
  mark?: ChainMark,
  /** Incremental: walk only the rows after the exported mark, which must still hold. */
  fromMark = false,
): Promise<ChainWalk> {
  const head = await ex.get<ChainRow>(sql`SELECT chain, seq, hash, mac, anchor_seq, anchor_hash, anchor_mac FROM audit_chains WHERE chain = ${chain}`);
  const newest = await ex.get<{ seq: number | null }>(sql`SELECT ${newestSeq(chain)} AS seq`);
  const w: ChainWalk = {
    chain,
    prevSeq: head?.anchor_seq ?? 0,
    prevHash: head?.anchor_hash ?? GENESIS_HASH,
    rows: 0,
    stopSeq: Math.max(newest?.seq ?? 0, head?.seq ?? 0),
    head,
    mark,
    verdict: null,
  };
  if (head !== undefined && !chainAnchorHolds(key, head)) {
    w.verdict = chainBad(w, head.anchor_seq + 1, null, 'anchor');
  } else if (fromMark && mark !== undefined && mark.seq > w.prevSeq) {
    const at = await ex.get<{ hash: string | null }>(sql`SELECT hash FROM audit WHERE chain = ${chain} AND seq = ${mark.seq}`);
    if (at?.hash?.startsWith(mark.hash) !== true) w.verdict = chainBad(w, mark.seq, null, 'exported_anchor');
    else {
      w.prevSeq = mark.seq;
      w.prevHash = at.hash;
    }
  }
  return w;
}

/**
 * Checks the chain's next `pageSize` rows, recomputing every hash from its predecessor's. A row
 * edited in place fails its own hash; a row deleted leaves a gap in the positions; a row moved
 * to another chain (or another project) fails its hash. True when the walk is over.
 */
export async function stepChainWalk(ex: Executor, key: Buffer, w: ChainWalk, pageSize = 1_000): Promise<boolean> {
  if (w.verdict !== null) return true;
  const page = await ex.all<AuditRow>(
    sql`SELECT * FROM audit WHERE chain = ${w.chain} AND seq > ${w.prevSeq} AND seq <= ${w.stopSeq} ORDER BY seq LIMIT ${pageSize}`,
  );
  for (const r of page) {
    const seq = r.seq!;
    if (seq !== w.prevSeq + 1) {
      // Retention may have swept past the walk between two steps: its (authentic) anchor vouches
      // for the rows it removed, and the chain goes on from it.
      const moved = await ex.get<ChainRow>(sql`SELECT chain, seq, hash, mac, anchor_seq, anchor_hash, anchor_mac FROM audit_chains WHERE chain = ${w.chain}`);
      if (moved !== undefined && moved.anchor_seq === seq - 1 && moved.anchor_seq > w.prevSeq && chainAnchorHolds(key, moved)) {
        w.prevSeq = moved.anchor_seq;
        w.prevHash = moved.anchor_hash;
      }
    }
    w.rows++;
    const expected = w.prevSeq + 1;
    const hashed = { ...r, chain: w.chain, seq, prev_hash: w.prevHash };
    if (seq !== expected || chainOf(r.project_id) !== w.chain || r.hash !== chainRowHash(hashed, key)) {
      w.verdict = chainBad(w, Math.min(seq, expected), r.id);
      return true;
    }
    w.prevSeq = seq;
    w.prevHash = r.hash;
  }
  return page.length < pageSize || w.prevSeq >= w.stopSeq;
}

/** Checks the chain's ends: retention's anchor, the authenticated head, and the exported mark. */
export async function endChainWalk(ex: Executor, key: Buffer, w: ChainWalk): Promise<AuditVerdict> {
  if (w.verdict !== null) return w.verdict;
  const { head, chain } = w;
  if (head !== undefined) {
    // Rows at or below the anchor are gone by policy: one there was put back or forged.
    const stale = await ex.get<{ id: number; seq: number }>(
      sql`SELECT id, seq FROM audit WHERE chain = ${chain} AND seq <= ${head.anchor_seq} ORDER BY seq LIMIT 1`,
    );
    if (stale !== undefined) return chainBad(w, stale.seq, stale.id);
  }
  const end = { seq: w.prevSeq, hash: w.prevHash };
  // No head (rows without one: it was removed), a head that is not the end, or not authentic:
  // rows were removed from the end (the first missing position is named), or the head forged.
  const headOk =
    head === undefined
      ? w.rows === 0 && end.seq === 0
      : head.seq === end.seq && head.hash === end.hash && head.mac === chainMac(key, 'head', chain, end);
  if (!headOk) {
    const firstBad = head !== undefined && head.seq > end.seq ? end.seq + 1 : (head?.seq ?? end.seq) + 1;
    return chainBad(w, firstBad, null, 'head');
  }
  // The head now: the walk's end, or further on by rows appended during the walk; either way
  // authentic and where the chain ends (else rows went or came behind Baton's back meanwhile).
  const now = await ex.get<ChainRow>(sql`SELECT chain, seq, hash, mac, anchor_seq, anchor_hash, anchor_mac FROM audit_chains WHERE chain = ${chain}`);
  if (head !== undefined && (now === undefined || now.seq !== head.seq || now.hash !== head.hash)) {
    const newest = await ex.get<{ seq: number; hash: string | null }>(sql`SELECT seq, hash FROM audit WHERE chain = ${chain} ORDER BY seq DESC LIMIT 1`);
    const holds =
      now !== undefined &&
      now.seq > end.seq &&
      now.mac === chainMac(key, 'head', chain, now) &&
      newest !== undefined &&
      newest.seq === now.seq &&
      newest.hash === now.hash;
    if (!holds) return chainBad(w, end.seq + 1, null, 'head');
  }
  if (now !== undefined && !chainAnchorHolds(key, now)) return chainBad(w, now.anchor_seq + 1, null, 'anchor');
  const m = w.mark;
  if (m !== undefined && m.seq > 0) {
    // The chain must still reach the mark: the row there (or retention's anchor, which vouches
    // for the rows it removed) must be the one the anchor saw.
    const floor = now?.anchor_seq ?? 0;
    let holds = m.seq <= end.seq;
    if (holds && m.seq > floor) {
      const row = await ex.get<{ hash: string | null }>(sql`SELECT hash FROM audit WHERE chain = ${chain} AND seq = ${m.seq}`);
      holds = row?.hash?.startsWith(m.hash) === true;
    } else if (holds && m.seq === floor) holds = now!.anchor_hash.startsWith(m.hash);
    if (!holds) return chainBad(w, Math.min(m.seq, end.seq + 1), null, 'exported_anchor');
  }
  return { ok: true, rows: w.rows, firstBadId: null, ends: [{ chain, seq: end.seq, hash: end.hash }] };
}

/** Every chain with a head. */
async function allChains(ex: Executor): Promise<string[]> {
  const rows = await ex.all<{ chain: string }>(sql`SELECT chain FROM audit_chains ORDER BY chain`);
  return rows.map((r) => r.chain);
}

/** Index seeks per step when looking for chains with rows but no head (a skip scan of (chain, seq)). */
const SEEKS_PER_STEP = 200;

/**
 * A walk of the whole trail (a server admin's): the legacy segment, then every chain, each in
 * pages; each step its own short read (see ChainWalk). `beginAuditWalk`, `stepAuditWalk` until
 * true, `endAuditWalk`.
 */
export interface AuditWalk {
  readonly legacy: LegacyWalk;
  legacyDone: boolean;
  /** The chains to walk: those with a head, then any found with rows but no head (its head was removed). */
  readonly chains: string[];
  /** The skip scan for headless chains, after the chains with a head: where it is (undefined: not started), or done. */
  scan: { after: string | undefined } | 'done';
  next: number;
  current: ChainWalk | null;
  readonly marks: ReadonlyMap<string, ChainMark>;
  readonly fromMarks: boolean;
  rows: number;
  ends: ChainMark[];
  legacyEnd: { id: number; hash: string } | undefined;
  verdict: AuditVerdict | null;
}

export async function beginAuditWalk(
  ex: Executor,
  key: Buffer,
  /** An exported anchor the trail must still reach: v1 (the legacy segment's end) or v2 (every chain's). */
  anchor?: AuditAnchor | ChainsAnchor,
  /** Incremental: walk only the rows after the anchor. */
  sinceAnchor = false,
): Promise<AuditWalk> {
  const v1 = anchor?.v === 1 ? [anchor] : [];
  const legacy = await beginLegacyWalk(ex, key, v1, sinceAnchor && anchor?.v === 1 ? anchor : undefined);
  const chains = await allChains(ex);
  const marks = new Map<string, ChainMark>(anchor?.v === 2 ? anchor.marks.map((m) => [m.chain, m]) : []);
  const w: AuditWalk = {
    legacy,
    legacyDone: false,
    chains,
    scan: { after: undefined },
    next: 0,
    current: null,
    marks,
    fromMarks: sinceAnchor && anchor?.v === 2,
    rows: 0,
    ends: [],
    legacyEnd: undefined,
    verdict: null,
  };
  // A chain the anchor saw and that is gone now, head and rows: removed behind Baton's back.
  const known = new Set(chains);
  for (const m of marks.values()) {
    if (m.seq > 0 && !known.has(m.chain)) {
      w.verdict = { ok: false, rows: 0, firstBadId: null, chain: chainLabel(m.chain), firstBadSeq: 1, reason: 'exported_anchor' };
      break;
    }
  }
  return w;
}

/** One page of the walk; true when it is over (`endAuditWalk` then answers). */
export async function stepAuditWalk(ex: Executor, key: Buffer, w: AuditWalk, pageSize = 1_000): Promise<boolean> {
  if (w.verdict !== null) return true;
  if (!w.legacyDone) {
    if (!(await stepLegacyWalk(ex, key, w.legacy, pageSize))) return false;
    const v = await endLegacyWalk(ex, key, w.legacy);
    w.rows += w.legacy.rows;
    w.legacyDone = true;
    if (!v.ok) {
      w.verdict = { ...v, rows: w.rows };
      return true;
    }
    w.legacyEnd = v.end;
    return false;
  }
  if (w.current === null) {
    if (w.next >= w.chains.length) return scanHeadless(ex, w);
    const chain = w.chains[w.next++]!;
    w.current = await beginChainWalk(ex, key, chain, w.marks.get(chain), w.fromMarks);
  }
  if (!(await stepChainWalk(ex, key, w.current, pageSize))) return false;
  const v = await endChainWalk(ex, key, w.current);
  w.rows += w.current.rows;
  w.current = null;
  if (!v.ok) {
    w.verdict = { ...v, rows: w.rows };
    return true;
  }
  w.ends.push(...(v.ends ?? []));
  return false;
}

/**
 * Rows of a chain whose head is gone (removed behind Baton's back, rows left): found by a skip
 * scan of the (chain, seq) index, one seek per chain (a DISTINCT would read every row in one
 * step), and walked like any chain, which reports the missing head. True when the scan is over.
 */
async function scanHeadless(ex: Executor, w: AuditWalk): Promise<boolean> {
  if (w.scan === 'done') return true;
  const known = new Set(w.chains);
  let after: string | undefined = w.scan.after;
  for (let i = 0; i < SEEKS_PER_STEP; i++) {
    const next: { chain: string } | undefined = await ex.get<{ chain: string }>(
      after === undefined
        ? sql`SELECT chain FROM audit WHERE chain IS NOT NULL ORDER BY chain LIMIT 1`
        : sql`SELECT chain FROM audit WHERE chain > ${after} ORDER BY chain LIMIT 1`,
    );
    if (next === undefined) {
      w.scan = 'done';
      return true;
    }
    after = next.chain;
    w.scan = { after };
    if (!known.has(next.chain)) {
      w.chains.push(next.chain);
      return false;
    }
  }
  return false;
}

export async function endAuditWalk(_ex: Executor, _key: Buffer, w: AuditWalk): Promise<AuditVerdict> {
  if (w.verdict !== null) return w.verdict;
  return { ok: true, rows: w.rows, firstBadId: null, ...(w.legacyEnd === undefined ? {} : { end: w.legacyEnd }), ends: w.ends };
}

/**
 * Walks the whole trail: the legacy segment (from its anchor or the genesis, ids dense, to its
 * authenticated head) and every chain (from its anchor or the genesis, positions dense, to its
 * authenticated head), in pages, recomputing every hash. A row edited in place fails its own hash;
 * a row deleted breaks the next row's link (and leaves a gap); a row inserted out of band has no
 * valid link either. A chain's newest rows deleted leave its authenticated head beyond the end;
 * an anchor copied from a row, with the rows before it deleted, has no valid MAC. An exported
 * anchor must still be reached. All in the caller's one read (yielding between pages);
 * `audit_verify` runs the same steps each in its own read instead.
 */
export async function verifyAudit(
  ex: Executor,
  key: Buffer,
  pageSize = 2_000,
  anchor?: AuditAnchor | ChainsAnchor,
  sinceAnchor = false,
): Promise<AuditVerdict> {
  const w = await beginAuditWalk(ex, key, anchor, sinceAnchor);
  while (!(await stepAuditWalk(ex, key, w, pageSize))) await breathe();
  return endAuditWalk(ex, key, w);
}

/** One chain, whole, in the caller's read (a project admin's verify walks its chain in steps instead). */
export async function verifyChain(ex: Executor, key: Buffer, chain: string, pageSize = 2_000): Promise<AuditVerdict> {
  const w = await beginChainWalk(ex, key, chain);
  while (!(await stepChainWalk(ex, key, w, pageSize))) await breathe();
  return endChainWalk(ex, key, w);
}

/**
 * Audit retention (S30): deletes rows older than `retentionMs` (0 keeps everything) without
 * breaking verification, chain by chain (the legacy segment too): the newest deleted row's hash
 * becomes the chain's anchor, keyed. Walks each chain from its oldest row and stops at the first
 * row inside retention, at most `batch` rows per call in all. A chain's newest row is never
 * deleted (its head; and the table's newest row, from which new ids continue, is always some
 * chain's newest). Returns how many rows were deleted.
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
  let deleted = await sweepLegacy(ex, now, cutoff, key, batch);
  // The chains with something to sweep (their oldest row past retention, and not their newest):
  // one statement per call whatever the number of projects (the sweeper runs every second).
  const chains = await ex.all<ChainRow>(sql`SELECT c.chain, c.seq, c.hash, c.mac, c.anchor_seq, c.anchor_hash, c.anchor_mac
    FROM audit_chains c JOIN audit a ON a.chain = c.chain AND a.seq = c.anchor_seq + 1
    WHERE a.at < ${cutoff} AND c.seq > c.anchor_seq + 1 ORDER BY c.chain`);
  for (const c of chains) {
    if (deleted >= batch) break;
    deleted += await sweepChain(ex, c, now, cutoff, key, batch - deleted);
  }
  return deleted;
}

async function sweepChain(ex: Executor, c: ChainRow, now: number, cutoff: number, key: Buffer, batch: number): Promise<number> {
  const rows = await ex.all<{ seq: number; at: number; hash: string }>(
    sql`SELECT seq, at, hash FROM audit WHERE chain = ${c.chain} AND seq > ${c.anchor_seq} ORDER BY seq LIMIT ${batch + 1}`,
  );
  let cut: { seq: number; hash: string } | null = null;
  // The last row of the page stays unless a younger row follows it: never delete the newest row.
  for (let i = 0; i < rows.length - 1; i++) {
    const r = rows[i]!;
    if (r.at >= cutoff) break;
    cut = { seq: r.seq, hash: r.hash };
  }
  if (cut === null) return 0;
  // Keyed, so an anchor copied from a row by someone without the key is refused (issue 8).
  await ex.run(sql`UPDATE audit_chains SET anchor_seq = ${cut.seq}, anchor_hash = ${cut.hash},
      anchor_mac = ${chainMac(key, 'anchor', c.chain, cut)}, swept_at = ${now} WHERE chain = ${c.chain}`);
  const { changes } = await ex.run(sql`DELETE FROM audit WHERE chain = ${c.chain} AND seq <= ${cut.seq}`);
  return changes;
}

/** Retention of the legacy segment (as before migration 14, its rows only). */
async function sweepLegacy(ex: Executor, now: number, cutoff: number, key: Buffer, batch: number): Promise<number> {
  const oldest = await ex.get<{ at: number }>(sql`SELECT at FROM audit WHERE chain IS NULL ORDER BY id LIMIT 1`);
  if (oldest === undefined || oldest.at >= cutoff) return 0;
  const rows = await ex.all<{ id: number; at: number; hash: string | null }>(
    sql`SELECT id, at, hash FROM audit WHERE chain IS NULL ORDER BY id LIMIT ${batch + 1}`,
  );
  let cutId = 0;
  // Unchained rows from before migration 8 leave the chain's start at the genesis.
  let cutHash = GENESIS_HASH;
  // The segment's last row stays (its head vouches for its end).
  for (let i = 0; i < rows.length - 1; i++) {
    const r = rows[i]!;
    if (r.at >= cutoff) break;
    cutId = r.id;
    if (r.hash !== null) cutHash = r.hash;
  }
  if (cutId === 0) return 0;
  const cut = { id: cutId, hash: cutHash };
  const mac = positionMac(key, 'anchor', cut);
  await ex.run(sql`INSERT INTO audit_anchor (id, last_id, hash, swept_at, mac) VALUES (1, ${cut.id}, ${cut.hash}, ${now}, ${mac})
    ON CONFLICT (id) DO UPDATE SET last_id = excluded.last_id, hash = excluded.hash, swept_at = excluded.swept_at,
      mac = excluded.mac`);
  const { changes } = await ex.run(sql`DELETE FROM audit WHERE chain IS NULL AND id <= ${cut.id}`);
  return changes;
}

/** The newest event's id across all projects (0 when none): the cross-process doorbell compares it. */
export async function eventsHead(ex: Executor): Promise<number> {
  const row = await ex.get<{ head: number | null }>(sql`SELECT max(id) AS head FROM events`);
  return row?.head ?? 0;
}
