import { z } from 'zod';
import { decodeCursor, encodeCursor } from '../core/cursor.js';
import { BatonError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import type { Executor } from '../store/db.js';
import * as store from '../store/discoveries.js';
import type { Before, DiscoveryRow } from '../store/discoveries.js';
import { statusesOf } from '../store/tasks.js';
import { defineOp, type OpDef } from './catalog.js';
import { AAD, openWith, sealWith, type Cipher } from '../security/crypto.js';
import { lazy, agentName, cursor, label, LIMITS, projectPath, taskId } from './schemas.js';

import { iso } from '../core/time.js';

const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,9})?)?(Z|[+-]\d\d:\d\d)$/;

/**
 * An ISO 8601 time with a zone (`Z` or an offset), as milliseconds. Checked in a transform rather
 * than with `z.iso.datetime()`, whose 600-byte pattern would be listed in tools/list for every agent.
 */
export const isoTime = lazy(() => z
  .string()
  .max(40)
  .transform((s, ctx) => {
    const ms = ISO_TIME.test(s) ? Date.parse(s) : Number.NaN;
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: 'expected an ISO 8601 time with a zone (2025-01-31T09:00:00Z)' });
      return z.NEVER;
    }
    return ms;
  }));

/** Cursors of newest-first listings: the (created_at, id) of the last row served. */
export function encodeBefore(row: { created_at: number; id: string }): string {
  return encodeCursor('before', [row.created_at, row.id]);
}

export function decodeBefore(c: string): Before {
  const [createdAt, id] = decodeCursor('before', c, ['int', 'str']);
  return { createdAt, id };
}

/** One page of newest-first rows (the store was asked for `size + 1`) and the cursor after it. */
export function page<R extends { created_at: number; id: string }>(rows: R[], size: number): { rows: R[]; next: string | null } {
  const out = rows.slice(0, size);
  const last = out[out.length - 1];
  return { rows: out, next: rows.length > size && last !== undefined ? encodeBefore(last) : null };
}

/** Every linked task must exist in the caller's project; another project's id is simply not found. */
export async function mustHaveTasks(ex: Executor, projectId: string, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  const found = await statusesOf(ex, projectId, ids);
  for (const id of ids) if (!found.has(id)) throw new BatonError('not_found', `task ${id} not found`);
}

const discoveryOut = lazy(() => z.object({
  id: z.string(),
  content: z.string(),
  tags: z.array(z.string()),
  task_ids: z.array(z.string()),
  files: z.array(z.string()),
  author: z.string(),
  created_at: z.string(),
}));

/**
 * Encryption at rest (S32): content and files are sealed, bound to project, id and column. Tags,
 * task ids, author and time stay clear: they are exact-match filters (docs/SECURITY.md).
 */
const openContent = (c: Cipher | undefined, r: DiscoveryRow): string => openWith(c, r.content, AAD.discovery(r.project_id, r.id, 'content'));

function toDiscoveryOut(c: Cipher | undefined, r: DiscoveryRow): z.infer<ReturnType<typeof discoveryOut>> {
  return {
    id: r.id,
    content: openContent(c, r),
    tags: JSON.parse(r.tags) as string[],
    task_ids: JSON.parse(r.task_ids) as string[],
    files: JSON.parse(openWith(c, r.files, AAD.discovery(r.project_id, r.id, 'files'))) as string[],
    author: r.author,
    created_at: iso(r.created_at),
  };
}

export const discoveryAdd = defineOp({
  name: 'discovery_add',
  summary: 'Share a finding with tags, tasks and files.',
  input: () => z
    .object({
      content: z.string().min(1).max(10_000),
      tags: z.array(label()).max(LIMITS.labels).optional(),
      task_ids: z.array(taskId()).max(20).optional(),
      files: z.array(projectPath()).max(LIMITS.files).optional(),
    })
    .strict(),
  output: () => z.object({ id: z.string(), created_at: z.string() }),
  permission: 'discovery.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/discoveries' },
  cli: { group: 'discovery', command: 'add' },
  async handler(ctx, input) {
    const { projectId } = ctx.principal;
    const tags = [...new Set(input.tags ?? [])];
    const taskIds = [...new Set(input.task_ids ?? [])];
    const files = [...new Set(input.files ?? [])];
    await mustHaveTasks(ctx.tx, projectId, taskIds);
    const id = newId('dsc');
    ctx.target(id);
    const c = ctx.services.cipher;
    await store.insertDiscovery(ctx.tx, {
      id,
      projectId,
      content: sealWith(c, input.content, AAD.discovery(projectId, id, 'content')),
      tags,
      taskIds,
      files: sealWith(c, JSON.stringify(files), AAD.discovery(projectId, id, 'files')),
      author: ctx.principal.agentName,
      now: ctx.now,
    });
    await ctx.emit('discovery.added', id, { tags });
    return { id, created_at: iso(ctx.now) };
  },
});

export const discoverySearch = defineOp({
  name: 'discovery_search',
  summary: 'Search discoveries by text, tag, author, time.',
  input: () => z
    .object({
      text: z.string().min(1).max(200).optional(),
      tag: label().optional(),
      author: agentName().optional(),
      since: isoTime().optional().describe('ISO time'),
      until: isoTime().optional().describe('ISO time'),
      limit: z.number().int().min(1).max(100).optional(),
      cursor: cursor().optional(),
    })
    .strict(),
  output: () => z.object({ discoveries: z.array(discoveryOut()), next_cursor: z.string().nullable() }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/discoveries' },
  cli: { group: 'discovery', command: 'search' },
  async handler(ctx, input) {
    const size = input.limit ?? 20;
    // Encrypted content: the text filter runs on decrypted candidates, at most encryptedSearchScan
    // of them per call (newest first); a page cut short by that bound still gets a cursor.
    const c = ctx.services.cipher;
    const q = input.text?.toLowerCase();
    const scan =
      c === undefined || q === undefined
        ? {}
        : { match: (r: DiscoveryRow) => openContent(c, r).toLowerCase().includes(q), scanMax: ctx.services.config.encryptedSearchScan };
    const found = await store.searchDiscoveries(ctx.tx, {
      projectId: ctx.principal.projectId,
      text: input.text,
      tag: input.tag,
      author: input.author,
      since: input.since,
      until: input.until,
      before: input.cursor === undefined ? undefined : decodeBefore(input.cursor),
      limit: size + 1,
      ...scan,
    });
    const p = page(found.rows, size);
    const next = p.next ?? (found.scannedTo === undefined ? null : encodeBefore({ created_at: found.scannedTo.createdAt, id: found.scannedTo.id }));
    return { discoveries: p.rows.map((r) => toDiscoveryOut(c, r)), next_cursor: next };
  },
});

export const DISCOVERY_OPS: readonly OpDef[] = [discoveryAdd, discoverySearch];
