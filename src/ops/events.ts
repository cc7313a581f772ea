import { z } from 'zod';
import { audiencesOf } from '../core/audience.js';
import type { Executor } from '../store/db.js';
import { BatonError } from '../core/errors.js';
import { agentNames } from '../store/directory.js';
import { eventsAfter, lastEventId, type EventRow } from '../store/journal.js';
import { eventHorizon } from '../store/retention.js';
import { defineOp, RETRY, type OpDef } from './catalog.js';
import { encodePosition, encodePositions, type Seal } from '../core/cursor.js';
import { openPosition, positionInput, sealOf, sealPosition, START } from './positions.js';
import { lazy, waitMs } from './schemas.js';

/**
 * events_wait: block (bounded) until something relevant to the caller happens, then return the
 * events with a cursor to resume from. Only events the caller may see are ever read (their
 * audience: the project, the caller, its role, or admins for an admin). By default "relevant"
 * means: anything addressed to the caller or its role (messages, approval decisions, handoffs),
 * work it may pick up (task.ready, task.created), and freed locks — never the caller's own
 * actions. `types` replaces that default with an explicit list.
 *
 * An event's `id` and the cursors are its row id (a global sequence) sealed to the project
 * (positions.ts): opaque, stable, refused in another project (S9). An event's id is also the
 * cursor right after it, so a client can resume after any event it has seen (an SSE
 * `Last-Event-ID` would be one).
 */
const DEFAULT_PROJECT_TYPES = ['task.ready', 'task.created', 'lock.released', 'plan.updated'];

const eventOut = lazy(() => z.object({
  id: z.string().describe('opaque; also a cursor: `after` it resumes right after this event'),
  type: z.string(),
  subject: z.string().nullable(),
  actor: z.string().nullable(),
  data: z.record(z.string(), z.unknown()).nullable(),
  at: z.string(),
}));

async function actorNames(ex: Executor, rows: readonly EventRow[]): Promise<Map<string, string>> {
  const ids = [...new Set(rows.flatMap((r) => (r.actor === null ? [] : [r.actor])))];
  if (ids.length === 0) return new Map();
  return agentNames(ex, ids);
}

/** `message.received` rows written before cursors were sealed hold the message seq as a number. */
function legacyData(seal: Seal, data: Record<string, unknown>): Record<string, unknown> {
  return typeof data.cursor === 'number' ? { ...data, cursor: encodePosition('messages', data.cursor, seal) } : data;
}

/** An event as `events_wait` returns it (and the event stream sends it). */
export type EventView = z.infer<ReturnType<typeof eventOut>>;

/**
 * Rows → the events a client sees: sealed ids, actor names, legacy data converted. Shared by
 * `events_wait` and the event stream (src/api/http/stream.ts), so both say the same thing.
 * `extra` positions (a cursor) are sealed in the same cipher call; returned after the events.
 */
export async function viewEvents(
  ex: Executor,
  seal: Seal,
  rows: readonly EventRow[],
  extra: readonly number[] = [],
): Promise<{ events: EventView[]; positions: string[] }> {
  const names = await actorNames(ex, rows);
  const sealed = encodePositions('events', [...rows.map((r) => r.id), ...extra], seal);
  return {
    events: rows.map((r, i) => ({
      id: sealed[i]!,
      type: r.type,
      subject: r.subject,
      actor: r.actor === null ? null : (names.get(r.actor) ?? null),
      data: r.data === null ? null : legacyData(seal, JSON.parse(r.data) as Record<string, unknown>),
      at: new Date(r.created_at).toISOString(),
    })),
    positions: sealed.slice(rows.length),
  };
}

export const eventsWait = defineOp({
  name: 'events_wait',
  summary: 'Wait (bounded) for events for you; resume from the cursor.',
  input: () => z
    .object({
      after: positionInput()
        .optional()
        .describe("cursor from the last call, or an event's id; 'start': the oldest kept (default: now)"),
      types: z.array(z.string().regex(/^[a-z_]+\.[a-z_]+$/)).min(1).max(20).optional(),
      wait_ms: waitMs().optional(),
      limit: z.number().int().min(1).max(200).optional(),
    })
    .strict(),
  output: () => z.object({ events: z.array(eventOut()), cursor: z.string() }),
  permission: 'self',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/events' },
  cli: { group: 'events', command: 'wait' },
  waitMs: (input) => input.wait_ms ?? 0,
  async handler(ctx, input) {
    const p = ctx.principal;
    let after: number | undefined;
    if (input.after !== undefined) {
      const horizon = await eventHorizon(ctx.tx, p.projectId);
      // 'start' is the oldest event kept: asking for the beginning never expires.
      after = input.after === START ? horizon : openPosition(ctx, 'events', input.after);
      if (after < horizon) {
        // Events after this cursor were removed by retention: the caller has missed some and must
        // know it (resync from the current state, then continue from the newest cursor).
        throw new BatonError('cursor_expired', 'events after this cursor were removed by retention; resync and resume from details.cursor', {
          cursor: sealPosition(ctx, 'events', await lastEventId(ctx.tx, p.projectId)),
        });
      }
    }
    // Without a cursor, "from now": the newest event id when the call began (kept across retries
    // through the input object the runner passes to every attempt).
    const start = after ?? (await lastEventId(ctx.tx, p.projectId));
    if (input.after === undefined) input.after = sealPosition(ctx, 'events', start);
    const limit = input.limit ?? 50;
    let cursor = start;
    const picked: EventRow[] = [];
    // Scan in pages so that many irrelevant events cannot hide relevant ones behind the limit.
    for (let scanned = 0; scanned < 5000 && picked.length < limit; ) {
      const rows = await eventsAfter(ctx.tx, p.projectId, audiencesOf(p), cursor, 500);
      if (rows.length === 0) break;
      for (const r of rows) {
        cursor = r.id;
        if (r.actor === p.agentId) continue;
        const relevant =
          input.types !== undefined ? input.types.includes(r.type) : r.audience !== 'project' || DEFAULT_PROJECT_TYPES.includes(r.type);
        if (relevant) picked.push(r);
        if (picked.length >= limit) break;
      }
      scanned += rows.length;
    }
    if (picked.length === 0 && !ctx.final) {
      input.after = sealPosition(ctx, 'events', cursor);
      return RETRY;
    }
    // The ids and the cursor in one cipher call.
    const view = await viewEvents(ctx.tx, sealOf(ctx), picked, [cursor]);
    return { events: view.events, cursor: view.positions[0]! };
  },
});

export const EVENT_OPS: readonly OpDef[] = [eventsWait];
