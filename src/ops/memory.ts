import { z } from 'zod';
import type { Audience } from '../core/audience.js';
import { decodeCursor, encodeCursor } from '../core/cursor.js';
import { BatonError, notFound } from '../core/errors.js';
import { AAD, openWith, sealWith } from '../security/crypto.js';
import * as store from '../store/memory.js';
import { defineOp, type OpContext, type OpDef } from './catalog.js';
import { lazy, cursor, LIMITS } from './schemas.js';

/**
 * Memory: key → value, in the caller's private agent scope or the shared project scope.
 * The owner of an agent-scope entry is always the caller itself (no op takes an owner), so
 * another agent's private keys are simply not found — whatever the caller's role.
 */
export const MEMORY_LIMITS = {
  key: 200,
  value: 65_536,
  ttlS: 31_536_000,
  /** Live keys per scope owner (one agent's private keys, or a project's shared keys). */
  quota: 10_000,
} as const;

const KEY = /^[A-Za-z0-9][A-Za-z0-9._:/@-]*$/;

const scope = lazy(() => z.enum(['agent', 'project']));
const key = lazy(() => z.string().min(1).max(MEMORY_LIMITS.key).regex(KEY, 'expected a key: letters, digits and ._:/@- (first a letter or digit)'));
const ifVersion = lazy(() => z.number().int().min(0).max(Number.MAX_SAFE_INTEGER));
import { iso } from '../core/time.js';

type Scope = z.infer<ReturnType<typeof scope>>;

function address(ctx: OpContext, s: Scope, k: string): store.MemoryAddress {
  const { projectId, agentId } = ctx.principal;
  return { projectId, owner: s === 'agent' ? agentId : store.PROJECT_OWNER, key: k };
}

function audienceOf(ctx: OpContext, s: Scope): Audience {
  return s === 'agent' ? { kind: 'agent', agentId: ctx.principal.agentId } : { kind: 'project' };
}

/** Private key names stay out of the audit target; the audit's params keep only a hash of them. */
function target(ctx: OpContext, s: Scope, k: string): void {
  if (s === 'project') ctx.target(k);
}

/**
 * The caller's entry for (scope, key): its address (always derived from the caller's identity)
 * and its row if live. An expired row counts as absent everywhere.
 */
async function lookup(ctx: OpContext, s: Scope, k: string): Promise<{ at: store.MemoryAddress; row: store.MemoryRow | undefined }> {
  const at = address(ctx, s, k);
  target(ctx, s, k);
  const row = await store.getMemory(ctx.tx, at);
  return { at, row: row !== undefined && store.isLive(row, ctx.now) ? row : undefined };
}

function conflictIf(expected: number | undefined, current: number): void {
  if (expected !== undefined && expected !== current) {
    throw new BatonError('version_conflict', `entry is at version ${current}`, { version: current });
  }
}

export const memorySet = defineOp({
  name: 'memory_set',
  summary: 'Set a memory key (scope agent: yours only, default; project: shared); ttl_s; if_version CAS.',
  input: () => z
    .object({
      scope: scope().optional(),
      key: key(),
      value: z.string().max(MEMORY_LIMITS.value).describe('text (JSON as a string)'),
      ttl_s: z.number().int().min(1).max(MEMORY_LIMITS.ttlS).optional(),
      if_version: ifVersion().optional().describe('0: must not exist'),
    })
    .strict(),
  output: () => z.object({
    key: z.string(),
    scope: scope(),
    version: z.number(),
    expires_at: z.string().nullable(),
  }),
  permission: 'memory.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'POST', path: '/memory' },
  cli: { group: 'memory', command: 'set', positional: 'key' },
  async handler(ctx, input) {
    const s = input.scope ?? 'agent';
    const { at, row } = await lookup(ctx, s, input.key);
    const current = row?.version ?? 0;
    conflictIf(input.if_version, current);
    if (row === undefined && (await store.countLive(ctx.tx, at.projectId, at.owner, ctx.now)) >= MEMORY_LIMITS.quota) {
      throw new BatonError('too_large', 'memory quota reached', { quota: MEMORY_LIMITS.quota });
    }
    const version = current + 1;
    const expiresAt = input.ttl_s === undefined ? null : ctx.now + input.ttl_s * 1000;
    await store.putMemory(ctx.tx, at, {
      // Sealed to its project, owner and key (S32); keys stay clear so prefix listing works in SQL.
      value: sealWith(ctx.services.cipher, input.value, AAD.memory(at.projectId, at.owner, at.key)),
      size: input.value.length,
      version,
      updatedBy: ctx.principal.agentName,
      now: ctx.now,
      expiresAt,
    });
    await ctx.emit('memory.set', input.key, { scope: s, version, size: input.value.length }, audienceOf(ctx, s));
    return { key: input.key, scope: s, version, expires_at: iso(expiresAt) };
  },
});

export const memoryGet = defineOp({
  name: 'memory_get',
  summary: 'Read a memory key and its version.',
  input: () => z.object({ scope: scope().optional(), key: key() }).strict(),
  output: () => z.object({
    key: z.string(),
    scope: scope(),
    value: z.string(),
    version: z.number(),
    updated_at: z.string(),
    expires_at: z.string().nullable(),
    updated_by: z.string(),
  }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/memory' },
  cli: { group: 'memory', command: 'get', positional: 'key' },
  async handler(ctx, input) {
    const s = input.scope ?? 'agent';
    const { row } = await lookup(ctx, s, input.key);
    if (row === undefined) throw notFound('memory key');
    return {
      key: row.key,
      scope: s,
      value: openWith(ctx.services.cipher, row.value, AAD.memory(row.project_id, row.owner, row.key)),
      version: row.version,
      updated_at: iso(row.updated_at),
      expires_at: iso(row.expires_at),
      updated_by: row.updated_by,
    };
  },
});

const entryOut = lazy(() => z.object({
  key: z.string(),
  version: z.number(),
  size: z.number(),
  updated_at: z.string(),
  expires_at: z.string().nullable(),
  updated_by: z.string(),
}));

export const memoryList = defineOp({
  name: 'memory_list',
  summary: 'List memory keys (no values) by prefix.',
  input: () => z
    .object({
      scope: scope().optional(),
      prefix: z
        .string()
        .max(MEMORY_LIMITS.key)
        .regex(/^[A-Za-z0-9._:/@-]*$/, 'expected a key prefix')
        .optional(),
      limit: z.number().int().min(1).max(LIMITS.page).optional(),
      cursor: cursor().optional(),
    })
    .strict(),
  output: () => z.object({ scope: scope(), keys: z.array(entryOut()), next_cursor: z.string().nullable() }),
  permission: 'read',
  kind: 'read',
  tier: 'standard',
  rest: { method: 'GET', path: '/memory/list' },
  cli: { group: 'memory', command: 'list' },
  async handler(ctx, input) {
    const s = input.scope ?? 'agent';
    const pageSize = input.limit ?? 50;
    const at = address(ctx, s, '');
    const rows = await store.listMemory(ctx.tx, {
      projectId: at.projectId,
      owner: at.owner,
      prefix: input.prefix ?? '',
      after: input.cursor === undefined ? null : decodeMemoryCursor(input.cursor),
      now: ctx.now,
      limit: pageSize + 1,
    });
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    return {
      scope: s,
      keys: page.map((r) => ({
        key: r.key,
        version: r.version,
        size: r.size,
        updated_at: iso(r.updated_at),
        expires_at: iso(r.expires_at),
        updated_by: r.updated_by,
      })),
      next_cursor: rows.length > pageSize && last !== undefined ? encodeCursor('memory', [last.key]) : null,
    };
  },
});

function decodeMemoryCursor(c: string): string {
  const [k] = decodeCursor('memory', c, ['str']);
  if (k.length === 0 || k.length > MEMORY_LIMITS.key || !KEY.test(k)) {
    throw new BatonError('invalid_input', 'cursor: not a cursor this server issued for this listing');
  }
  return k;
}

export const memoryDelete = defineOp({
  name: 'memory_delete',
  summary: 'Delete a memory key; if_version CAS.',
  input: () => z.object({ scope: scope().optional(), key: key(), if_version: ifVersion().optional() }).strict(),
  output: () => z.object({ deleted: z.boolean() }),
  permission: 'memory.write',
  kind: 'write',
  tier: 'standard',
  rest: { method: 'DELETE', path: '/memory' },
  cli: { group: 'memory', command: 'delete', positional: 'key' },
  async handler(ctx, input) {
    const s = input.scope ?? 'agent';
    const { at, row } = await lookup(ctx, s, input.key);
    conflictIf(input.if_version, row?.version ?? 0);
    if (row === undefined) return { deleted: false };
    await store.deleteMemory(ctx.tx, at, ctx.now);
    await ctx.emit('memory.deleted', input.key, { scope: s, version: row.version }, audienceOf(ctx, s));
    return { deleted: true };
  },
});

export const MEMORY_OPS: readonly OpDef[] = [memorySet, memoryGet, memoryList, memoryDelete];
