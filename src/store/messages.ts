import type { Executor } from './db.js';
import type { Dialect } from './dialect.js';
import { join, list, sql, trusted, type Sql } from './sql.js';
import { scanMatching } from './scan.js';

export interface MessageRow {
  seq: number;
  id: string;
  project_id: string;
  thread_id: string;
  reply_to: string | null;
  sender_id: string;
  sender_name: string;
  to_kind: 'agents' | 'role' | 'all';
  to_names: string | null;
  to_role: string | null;
  visibility: 'public' | 'private' | 'role' | 'admin';
  subject: string;
  body: string;
  importance: string;
  ack_required: number;
  created_at: number;
}

export interface InboxRow extends MessageRow {
  read_at: number | null;
  acked_at: number | null;
}

export async function insertMessage(ex: Executor, m: Omit<MessageRow, 'seq'>, recipients: readonly string[]): Promise<number> {
  const row = await ex.get<{ seq: number }>(sql`INSERT INTO messages (id, project_id, thread_id, reply_to, sender_id,
      sender_name, to_kind, to_names, to_role, visibility, subject, body, importance, ack_required, created_at)
    VALUES (${m.id}, ${m.project_id}, ${m.thread_id}, ${m.reply_to}, ${m.sender_id}, ${m.sender_name}, ${m.to_kind},
      ${m.to_names}, ${m.to_role}, ${m.visibility}, ${m.subject}, ${m.body}, ${m.importance}, ${m.ack_required},
      ${m.created_at})
    RETURNING seq`);
  const seq = row!.seq;
  for (const agentId of new Set(recipients)) {
    await ex.run(sql`INSERT INTO message_recipients (agent_id, seq) VALUES (${agentId}, ${seq})`);
  }
  return seq;
}

/**
 * The one visibility rule of every read path but the inbox: a message is visible to a principal
 * when it is public, when the principal sent it, or when the principal is one of its resolved
 * recipients (recipients were already narrowed by the tier when it was sent).
 */
function visibleTo(agentId: string): Sql {
  return sql`(m.visibility = 'public' OR m.sender_id = ${agentId}
    OR EXISTS (SELECT 1 FROM message_recipients r WHERE r.seq = m.seq AND r.agent_id = ${agentId}))`;
}

export function visibleMessage(ex: Executor, projectId: string, agentId: string, id: string): Promise<MessageRow | undefined> {
  return ex.get<MessageRow>(sql`SELECT m.* FROM messages m WHERE m.project_id = ${projectId} AND m.id = ${id}
    AND ${visibleTo(agentId)}`);
}

export interface InboxFilter {
  projectId: string;
  agentId: string;
  after?: number;
  unreadOnly?: boolean;
  from?: string;
  importance?: readonly string[];
  threadId?: string;
  query?: string;
  limit: number;
  /**
   * Encrypted content (S32): instead of `query` in SQL, rows are tested by this predicate after
   * the caller decrypts them, scanning at most `scanMax` candidate rows (see store/scan.ts `scanMatching`).
   */
  match?: (m: MessageRow) => boolean;
  scanMax?: number;
}

const textMatch = (d: Dialect, q: string): Sql =>
  sql`(${d.containsText(trusted('m.body'), q)} OR ${d.containsText(trusted('m.subject'), q)})`;

/**
 * The caller's inbox. Without a cursor: unread first (oldest first), then read ones (newest
 * first). With `after` (a seq cursor): only newer messages, oldest first, for polling.
 */
export async function inbox(ex: Executor, f: InboxFilter): Promise<InboxRow[]> {
  const where: Sql[] = [sql`r.agent_id = ${f.agentId}`, sql`m.project_id = ${f.projectId}`];
  if (f.after !== undefined) where.push(sql`m.seq > ${f.after}`);
  if (f.unreadOnly === true) where.push(trusted('r.read_at IS NULL'));
  if (f.from !== undefined) where.push(sql`m.sender_name = ${f.from}`);
  if (f.importance !== undefined && f.importance.length > 0) where.push(sql`m.importance IN ${list(f.importance)}`);
  if (f.threadId !== undefined) where.push(sql`m.thread_id = ${f.threadId}`);
  const match = f.query === undefined ? undefined : f.match;
  if (f.query !== undefined && match === undefined) where.push(textMatch(ex.dialect, f.query));
  const order =
    f.after !== undefined
      ? trusted('m.seq')
      : trusted('(r.read_at IS NULL) DESC, CASE WHEN r.read_at IS NULL THEN m.seq ELSE -m.seq END');
  const select = (limit: number): Promise<InboxRow[]> =>
    ex.all<InboxRow>(sql`SELECT m.*, r.read_at, r.acked_at FROM message_recipients r
    JOIN messages m ON m.seq = r.seq WHERE ${join(where, trusted(' AND '))} ORDER BY ${order} LIMIT ${limit}`);
  if (match === undefined) return select(f.limit);
  // Encrypted text search: the newest `scanMax` candidates in inbox order, filtered after decryption.
  return (await select(f.scanMax ?? DEFAULT_SCAN_MAX)).filter(match).slice(0, f.limit);
}

/** How many candidate rows an encrypted text search decrypts per call, unless told otherwise. */
export const DEFAULT_SCAN_MAX = 1000;

export async function unreadCount(ex: Executor, projectId: string, agentId: string): Promise<number> {
  const row = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM message_recipients r JOIN messages m ON m.seq = r.seq
    WHERE r.agent_id = ${agentId} AND r.read_at IS NULL AND m.project_id = ${projectId}`);
  return row?.n ?? 0;
}

export async function markRead(ex: Executor, agentId: string, seqs: readonly number[], now: number): Promise<void> {
  if (seqs.length === 0) return;
  await ex.run(sql`UPDATE message_recipients SET read_at = ${now}
    WHERE agent_id = ${agentId} AND seq IN ${list(seqs)} AND read_at IS NULL`);
}

/** Acks the caller's own copies of these messages (also marking them read); returns the ids acked. */
export async function ack(ex: Executor, projectId: string, agentId: string, ids: readonly string[], now: number): Promise<string[]> {
  const rows = await ex.all<{ id: string; seq: number }>(sql`SELECT m.id, m.seq FROM messages m
    JOIN message_recipients r ON r.seq = m.seq AND r.agent_id = ${agentId}
    WHERE m.project_id = ${projectId} AND m.id IN ${list(ids)}`);
  if (rows.length === 0) return [];
  await ex.run(sql`UPDATE message_recipients SET acked_at = coalesce(acked_at, ${now}), read_at = coalesce(read_at, ${now})
    WHERE agent_id = ${agentId} AND seq IN ${list(rows.map((r) => r.seq))}`);
  return rows.map((r) => r.id);
}

export interface SearchFilter {
  projectId: string;
  agentId: string;
  threadId?: string;
  query?: string;
  from?: string;
  since?: number;
  before?: number;
  limit: number;
  /** As in InboxFilter: decrypted-content predicate replacing `query`, with a scan bound. */
  match?: (m: MessageRow) => boolean;
  scanMax?: number;
}

export interface SearchResult {
  rows: MessageRow[];
  /**
   * Set when an encrypted text search stopped at its scan bound with older candidates left: the
   * seq of the last row scanned, to continue from (`before`).
   */
  scannedTo?: number;
}

/** Messages the caller may see (threads and search), newest first; `before` is a seq cursor. */
export async function search(ex: Executor, f: SearchFilter): Promise<SearchResult> {
  const where: Sql[] = [sql`m.project_id = ${f.projectId}`, visibleTo(f.agentId)];
  if (f.threadId !== undefined) where.push(sql`m.thread_id = ${f.threadId}`);
  const match = f.query === undefined ? undefined : f.match;
  if (f.query !== undefined && match === undefined) where.push(textMatch(ex.dialect, f.query));
  if (f.from !== undefined) where.push(sql`m.sender_name = ${f.from}`);
  if (f.since !== undefined) where.push(sql`m.created_at >= ${f.since}`);
  const select = (before: number | undefined, limit: number): Promise<MessageRow[]> => {
    const all = before === undefined ? where : [...where, sql`m.seq < ${before}`];
    return ex.all<MessageRow>(sql`SELECT m.* FROM messages m WHERE ${join(all, trusted(' AND '))}
    ORDER BY m.seq DESC LIMIT ${limit}`);
  };
  if (match === undefined) return { rows: await select(f.before, f.limit) };
  return scanMatching(select, (m) => m.seq, match, { limit: f.limit, scanMax: f.scanMax ?? DEFAULT_SCAN_MAX, start: f.before });
}

/** Per-recipient state of one message, for its sender. */
export function receipts(ex: Executor, seq: number): Promise<{ name: string; read_at: number | null; acked_at: number | null }[]> {
  return ex.all(sql`SELECT a.name, r.read_at, r.acked_at FROM message_recipients r JOIN agents a ON a.id = r.agent_id
    WHERE r.seq = ${seq} ORDER BY a.name`);
}

/**
 * Key rotation (S32): messages whose subject or body is not sealed under the key with this sealed
 * prefix (`enc:v1:<key id>:`), oldest first. An empty subject is left as it is.
 */
export function staleMessages(
  ex: Executor,
  prefix: string,
  limit: number,
): Promise<Pick<MessageRow, 'seq' | 'id' | 'project_id' | 'subject' | 'body'>[]> {
  const n = prefix.length;
  return ex.all(sql`SELECT seq, id, project_id, subject, body FROM messages
    WHERE substr(body, 1, ${n}) <> ${prefix} OR (subject <> '' AND substr(subject, 1, ${n}) <> ${prefix})
    ORDER BY seq LIMIT ${limit}`);
}

export async function setMessageContent(ex: Executor, seq: number, subject: string, body: string): Promise<void> {
  await ex.run(sql`UPDATE messages SET subject = ${subject}, body = ${body} WHERE seq = ${seq}`);
}
