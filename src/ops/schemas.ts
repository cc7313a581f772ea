import { z } from 'zod';
import { ID_PATTERN } from '../core/ids.js';
import { normalizeProjectPath } from '../core/paths.js';
import { ROLE_NAME } from '../core/roles.js';
import { TASK_STATES } from '../core/tasks.js';

/**
 * A schema built on its first call, then kept: every caller gets the same object. An op's schemas
 * are built when it is first used, not at import (`OpSpec` in src/ops/catalog.ts), and so are the
 * pieces they share: built at import, these were ~5 ms of a `baton mcp` cold start on Node 24.
 */
export function lazy<T>(build: () => T): () => T {
  let built: T | undefined;
  return () => (built ??= build());
}

/** Shared input and output pieces. Limits follow S15; every object is strict (unknown fields refused). */
export const LIMITS = {
  title: 200,
  description: 10_000,
  labels: 20,
  label: 50,
  deps: 100,
  batch: 500,
  /** Dependencies in one task_create batch, all tasks together (500 × 100 held the hub ~350 ms). */
  batchEdges: 5_000,
  files: 100,
  hints: 2_000,
  summary: 10_000,
  error: 2_000,
  page: 200,
  plan: 100_000,
} as const;

export const taskId = lazy(() => z.string().regex(ID_PATTERN('tsk'), 'expected a task id (tsk_…)'));
export const tokenId = lazy(() => z.string().regex(ID_PATTERN('tok'), 'expected a token id (tok_…)'));
export const agentName = lazy(() => z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, 'expected an agent name'));
export const roleName = lazy(() => z.string().regex(ROLE_NAME, 'expected a role name'));
export const projectName = lazy(() => z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'expected a project name'));
export const capability = lazy(() => z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,63}$/, 'expected a capability name'));
export const label = lazy(() => z.string().min(1).max(LIMITS.label));
export const leaseToken = lazy(() => z.number().int().min(1).max(Number.MAX_SAFE_INTEGER));
export const waitMs = lazy(() => z.number().int().min(0).max(300_000));
export const limit = lazy(() => z.number().int().min(1).max(LIMITS.page));
export const cursor = lazy(() => z.string().max(200));

/** Dependencies named in a raw (unparsed) batch: counted before any element is validated. */
function rawEdges(raw: unknown): number {
  if (!Array.isArray(raw)) return 0;
  let edges = 0;
  for (const t of raw as unknown[]) {
    const deps = typeof t === 'object' && t !== null ? (t as { depends_on?: unknown }).depends_on : undefined;
    if (Array.isArray(deps)) edges += deps.length;
  }
  return edges;
}

/**
 * A task_create batch: at most LIMITS.batch tasks and LIMITS.batchEdges dependencies in all, so
 * the edges one call inserts (and orders) stay bounded (`too_large` names the limit). The edges
 * are counted on the raw input, before the elements are parsed: an oversized batch is refused
 * without validating its 50,000 strings first.
 */
export function taskBatch<S extends z.ZodType<{ depends_on?: string[] | undefined }>>(spec: S) {
  const batch = z.array(spec).min(1).max(LIMITS.batch);
  return z.preprocess((raw, ctx) => {
    const edges = rawEdges(raw);
    if (edges > LIMITS.batchEdges) {
      ctx.addIssue({
        code: 'too_big',
        origin: 'array',
        maximum: LIMITS.batchEdges,
        inclusive: true,
        input: raw,
        message: `at most ${LIMITS.batchEdges} dependencies in one batch, all tasks together (got ${edges})`,
      });
      return z.NEVER;
    }
    return raw;
  }, batch);
}

export const projectPath = lazy(() => z
  .string()
  .max(1024)
  .transform((p, ctx) => {
    const norm = normalizeProjectPath(p);
    if (norm === null) {
      ctx.addIssue({ code: 'custom', message: 'expected a project-relative path (no .., absolute path or NUL)' });
      return z.NEVER;
    }
    return norm;
  }));

export const taskState = lazy(() => z.enum(TASK_STATES));

export const taskResult = lazy(() => z
  .object({
    summary: z.string().max(LIMITS.summary),
    files_modified: z.array(projectPath()).max(LIMITS.files).optional(),
    files_created: z.array(projectPath()).max(LIMITS.files).optional(),
  })
  .strict());

export const taskContext = lazy(() => z
  .object({
    files: z.array(projectPath()).max(LIMITS.files).optional(),
    hints: z.string().max(LIMITS.hints).optional(),
  })
  .strict());

const iso = lazy(() => z.string());

export const leaseOut = lazy(() => z.object({ owner: z.string(), token: z.number(), expires_at: iso() }));

export const taskOut = lazy(() => z.object({
  id: z.string(),
  title: z.string(),
  description: z.string(),
  status: taskState(),
  priority: z.number(),
  labels: z.array(z.string()),
  capabilities: z.array(z.string()),
  depends_on: z.array(z.string()),
  parent_id: z.string().nullable(),
  context: taskContext().nullable(),
  assignee: z.string().nullable(),
  assignee_role: z.string().nullable(),
  attempts: z.number(),
  max_attempts: z.number(),
  available_at: iso(),
  lease: leaseOut().nullable(),
  result: taskResult().nullable(),
  last_error: z.string().nullable(),
  needs_approval: z.boolean(),
  idempotency_key: z.string().nullable(),
  created_by: z.string(),
  created_at: iso(),
  updated_at: iso(),
  version: z.number(),
}));
export type TaskOut = z.infer<ReturnType<typeof taskOut>>;

export const taskSummaryOut = lazy(() => taskOut().pick({
  id: true,
  title: true,
  status: true,
  priority: true,
  labels: true,
  assignee: true,
  attempts: true,
  lease: true,
  updated_at: true,
}));
