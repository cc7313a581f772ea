import { z } from 'zod';
import { decodePosition } from '../core/cursor.js';
import { BatonError } from '../core/errors.js';
import { ID_PATTERN, newId } from '../core/ids.js';
import { AAD, openWith, sealWith, type Cipher } from '../security/crypto.js';
import { listAgents, type AgentRow } from '../store/directory.js';
import * as store from '../store/messages.js';
import { defineOp, RETRY, type OpContext, type OpDef } from './catalog.js';
import { openPosition, positionInput, sealOf, sealPosition, sealPositions } from './positions.js';
import { lazy, agentName, cursor, roleName, waitMs } from './schemas.js';

/**
 * Messages. Visibility tiers (S12) hold on every read path:
 * - `public`: anyone in the project may read it (search, threads); recipients get it in their inbox.
 * - `private`: only the sender and the recipients.
 * - `role`: only members of the addressed role (or, for messages not sent to a role, of the
 *   sender's role) among the recipients.
 * - `admin`: only admins among the recipients.
 * The tier only narrows: recipients are resolved from the address (agents, a role, everyone),
 * then every recipient the tier excludes is dropped, and read paths check the resolved recipients.
 * Events announcing a message go to each recipient alone and carry no content.
 */
const IMPORTANCE = ['low', 'normal', 'high', 'urgent'] as const;
const VISIBILITY = ['public', 'private', 'role', 'admin'] as const;
const messageId = lazy(() => z.string().regex(ID_PATTERN('msg'), 'expected a message id (msg_…)'));
import { iso } from '../core/time.js';

const messageOut = lazy(() => z.object({
  id: z.string(),
  thread_id: z.string(),
  reply_to: z.string().nullable(),
  from: z.string(),
  to: z.object({ agents: z.array(z.string()).optional(), role: z.string().optional(), all: z.boolean().optional() }),
  visibility: z.enum(VISIBILITY),
  subject: z.string(),
  body: z.string(),
  importance: z.enum(IMPORTANCE),
  ack_required: z.boolean(),
  created_at: z.string(),
  cursor: z.string().describe('opaque position: message_inbox `after` it, message_search `cursor` before it'),
}));

const inboxOut = lazy(() => messageOut().extend({ read_at: z.string().nullable(), acked_at: z.string().nullable() }));

/**
 * Encryption at rest (S32): subject and body are sealed when written and opened here, bound to
 * their project, message id and column. Text search then cannot run in SQL: the store scans a
 * bounded number of candidates and this predicate tests them after decryption.
 */
function opened(c: Cipher | undefined, m: store.MessageRow): { subject: string; body: string } {
  return {
    subject: m.subject === '' ? '' : openWith(c, m.subject, AAD.message(m.project_id, m.id, 'subject')),
    body: openWith(c, m.body, AAD.message(m.project_id, m.id, 'body')),
  };
}

function textSearch(ctx: OpContext, query: string | undefined): { match?: (m: store.MessageRow) => boolean; scanMax?: number } {
  const c = ctx.services.cipher;
  if (c === undefined || query === undefined) return {};
  const q = query.toLowerCase();
  return {
    match: (m) => {
      const o = opened(c, m);
      return o.body.toLowerCase().includes(q) || o.subject.toLowerCase().includes(q);
    },
    scanMax: ctx.services.config.encryptedSearchScan,
  };
}

function toOut(c: Cipher | undefined, m: store.MessageRow, cursor: string): z.infer<ReturnType<typeof messageOut>> {
  const { subject, body } = opened(c, m);
  const to =
    m.to_kind === 'agents'
      ? { agents: JSON.parse(m.to_names ?? '[]') as string[] }
      : m.to_kind === 'role'
        ? { role: m.to_role ?? '' }
        : { all: true };
  return {
    id: m.id,
    thread_id: m.thread_id,
    reply_to: m.reply_to,
    from: m.sender_name,
    to,
    visibility: m.visibility,
    subject,
    body,
    importance: m.importance as (typeof IMPORTANCE)[number],
    ack_required: m.ack_required === 1,
    created_at: iso(m.created_at)!,
    cursor,
  };
}

export const messageSend = defineOp({
  name: 'message_send',
  summary: 'Message agents, a role or everyone; visibility public|private|role|admin.',
  input: () => z
    .object({
      to_agents: z.array(agentName()).min(1).max(50).optional(),
      to_role: roleName().optional(),
      to_all: z.literal(true).optional(),
      subject: z.string().max(200).optional(),
      body: z.string().min(1).max(20_000),
      importance: z.enum(IMPORTANCE).optional(),
      ack_required: z.boolean().optional(),
      visibility: z.enum(VISIBILITY).optional().describe('default private'),
      reply_to: messageId().optional(),
    })
    .strict()
    .refine((v) => [v.to_agents, v.to_role, v.to_all].filter((x) => x !== undefined).length === 1, {
      message: 'give exactly one of to_agents, to_role, to_all',
    }),
  output: () => z.object({ id: z.string(), thread_id: z.string(), recipients: z.number() }),
  permission: 'message.send',
  kind: 'write',
  tier: 'core',
  rest: { method: 'POST', path: '/messages' },
  cli: { group: 'message', command: 'send' },
  async handler(ctx, input) {
    const p = ctx.principal;
    const visibility = input.visibility ?? 'private';
    let thread: string | null = null;
    if (input.reply_to !== undefined) {
      const parent = await store.visibleMessage(ctx.tx, p.projectId, p.agentId, input.reply_to);
      if (parent === undefined) throw new BatonError('not_found', 'message not found');
      thread = parent.thread_id;
    }
    const agents = await listAgents(ctx.tx, p.projectId);
    let addressed: AgentRow[];
    if (input.to_agents !== undefined) {
      const byName = new Map(agents.map((a) => [a.name, a]));
      const missing = input.to_agents.filter((n) => !byName.has(n));
      if (missing.length > 0) throw new BatonError('not_found', `unknown agent(s): ${missing.join(', ')}`);
      addressed = input.to_agents.map((n) => byName.get(n)!);
    } else if (input.to_role !== undefined) {
      addressed = agents.filter((a) => a.role === input.to_role);
    } else {
      addressed = agents;
    }
    const tierRole = input.to_role ?? p.role;
    const recipients = addressed.filter(
      (a) =>
        a.id !== p.agentId &&
        (visibility === 'public' ||
          visibility === 'private' ||
          (visibility === 'role' && a.role === tierRole) ||
          (visibility === 'admin' && a.role === 'admin')),
    );
    const id = newId('msg');
    const seq = await store.insertMessage(
      ctx.tx,
      {
        id,
        project_id: p.projectId,
        thread_id: thread ?? id,
        reply_to: input.reply_to ?? null,
        sender_id: p.agentId,
        sender_name: p.agentName,
        to_kind: input.to_agents !== undefined ? 'agents' : input.to_role !== undefined ? 'role' : 'all',
        to_names: input.to_agents !== undefined ? JSON.stringify(input.to_agents) : null,
        to_role: input.to_role ?? null,
        visibility,
        // An empty subject stays empty (it says nothing); anything else is sealed to this row.
        subject: input.subject === undefined || input.subject === '' ? '' : sealWith(ctx.services.cipher, input.subject, AAD.message(p.projectId, id, 'subject')),
        body: sealWith(ctx.services.cipher, input.body, AAD.message(p.projectId, id, 'body')),
        importance: input.importance ?? 'normal',
        ack_required: input.ack_required === true ? 1 : 0,
        created_at: ctx.now,
      },
      recipients.map((a) => a.id),
    );
    ctx.target(id);
    for (const a of recipients) {
      await ctx.emit(
        'message.received',
        id,
        { from: p.agentName, importance: input.importance ?? 'normal', cursor: sealPosition(ctx, 'messages', seq) },
        { kind: 'agent', agentId: a.id },
      );
    }
    return { id, thread_id: thread ?? id, recipients: recipients.length };
  },
});

export const messageInbox = defineOp({
  name: 'message_inbox',
  summary: 'Your messages: unread first, or after a cursor; filters, query, optional wait.',
  input: () => z
    .object({
      after: positionInput().optional().describe("cursor: newer only ('start': from the first)"),
      unread_only: z.boolean().optional(),
      from: agentName().optional(),
      importance: z.array(z.enum(IMPORTANCE)).max(4).optional(),
      thread_id: messageId().optional(),
      query: z.string().min(1).max(200).optional(),
      limit: z.number().int().min(1).max(100).optional(),
      mark_read: z.boolean().optional(),
      wait_ms: waitMs().optional().describe('ms to wait for mail'),
    })
    .strict(),
  output: () => z.object({ messages: z.array(inboxOut()), cursor: z.string(), unread: z.number() }),
  permission: 'self',
  kind: 'write',
  tier: 'core',
  rest: { method: 'POST', path: '/messages/inbox' },
  cli: { group: 'message', command: 'inbox' },
  waitMs: (input) => input.wait_ms ?? 0,
  async handler(ctx, input) {
    const p = ctx.principal;
    // Message seqs are global: cursors are sealed to the project (positions.ts, S9).
    const after = input.after === undefined ? undefined : openPosition(ctx, 'messages', input.after);
    const rows = await store.inbox(ctx.tx, {
      projectId: p.projectId,
      agentId: p.agentId,
      after,
      unreadOnly: input.unread_only,
      from: input.from,
      importance: input.importance,
      threadId: input.thread_id,
      query: input.query,
      limit: input.limit ?? 20,
      ...textSearch(ctx, input.query),
    });
    if (rows.length === 0 && !ctx.final) return RETRY;
    if (input.mark_read !== false) {
      await store.markRead(
        ctx.tx,
        p.agentId,
        rows.filter((r) => r.read_at === null).map((r) => r.seq),
        ctx.now,
      );
    }
    const unread = await store.unreadCount(ctx.tx, p.projectId, p.agentId);
    // Each message's position and the cursor, in one cipher call.
    const sealed = sealPositions(ctx, 'messages', [...rows.map((r) => r.seq), Math.max(after ?? 0, ...rows.map((r) => r.seq))]);
    return {
      messages: rows.map((r, i) => ({ ...toOut(ctx.services.cipher, r, sealed[i]!), read_at: iso(r.read_at), acked_at: iso(r.acked_at) })),
      cursor: sealed[rows.length]!,
      unread,
    };
  },
});

export const messageAck = defineOp({
  name: 'message_ack',
  summary: 'Acknowledge received messages (marks them read).',
  input: () => z.object({ ids: z.array(messageId()).min(1).max(100) }).strict(),
  output: () => z.object({ acked: z.array(z.string()) }),
  permission: 'self',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/messages/ack' },
  cli: { group: 'message', command: 'ack' },
  async handler(ctx, { ids }) {
    const p = ctx.principal;
    const acked = await store.ack(ctx.tx, p.projectId, p.agentId, ids, ctx.now);
    const senders = new Map<string, string>();
    for (const id of acked) {
      const m = await store.visibleMessage(ctx.tx, p.projectId, p.agentId, id);
      if (m !== undefined) senders.set(id, m.sender_id);
    }
    for (const [id, sender] of senders) {
      await ctx.emit('message.acked', id, { by: p.agentName }, { kind: 'agent', agentId: sender });
    }
    return { acked };
  },
});

export const messageSearch = defineOp({
  name: 'message_search',
  summary: 'Messages you may see, by thread, text, sender, time.',
  input: () => z
    .object({
      thread_id: messageId().optional(),
      query: z.string().min(1).max(200).optional(),
      from: agentName().optional(),
      since: z.iso.datetime().optional(),
      limit: z.number().int().min(1).max(100).optional(),
      cursor: cursor().optional(),
    })
    .strict(),
  output: () => z.object({
    messages: z.array(messageOut().extend({ receipts: z.array(z.object({ agent: z.string(), read_at: z.string().nullable(), acked_at: z.string().nullable() })).optional() })),
    next_cursor: z.string().nullable(),
  }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/messages' },
  cli: { group: 'message', command: 'search' },
  async handler(ctx, input) {
    const p = ctx.principal;
    const limit = input.limit ?? 20;
    let before: number | undefined;
    // The position is a global sequence number: sealed, so it tells nothing about other projects (S9).
    if (input.cursor !== undefined) before = decodePosition('messages', input.cursor, sealOf(ctx));
    const { rows, scannedTo } = await store.search(ctx.tx, {
      projectId: p.projectId,
      agentId: p.agentId,
      threadId: input.thread_id,
      query: input.query,
      from: input.from,
      since: input.since === undefined ? undefined : Date.parse(input.since),
      before,
      limit: limit + 1,
      ...textSearch(ctx, input.query),
    });
    const page = rows.slice(0, limit);
    const cursors = sealPositions(ctx, 'messages', page.map((m) => m.seq));
    const messages = [];
    for (const [i, m] of page.entries()) {
      const out: z.infer<ReturnType<typeof messageOut>> & { receipts?: { agent: string; read_at: string | null; acked_at: string | null }[] } = toOut(ctx.services.cipher, m, cursors[i]!);
      if (m.sender_id === p.agentId) {
        out.receipts = (await store.receipts(ctx.tx, m.seq)).map((r) => ({ agent: r.name, read_at: iso(r.read_at), acked_at: iso(r.acked_at) }));
      }
      messages.push(out);
    }
    const last = page[page.length - 1];
    const at = rows.length > limit && last !== undefined ? last.seq : scannedTo;
    const next = at === undefined ? null : sealPosition(ctx, 'messages', at);
    return { messages, next_cursor: next };
  },
});

export const MESSAGE_OPS: readonly OpDef[] = [messageSend, messageInbox, messageAck, messageSearch];
