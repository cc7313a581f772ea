import { z } from 'zod';
import type { CallMeta, Principal } from '../../auth/principal.js';
import { isAuthRefusal } from '../../auth/service.js';
import type { Hub } from '../../hub.js';
import { tierShows, type Tier } from '../../core/tiers.js';
import type { OpDef } from '../../ops/catalog.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import { errorBody, toBatonError } from '../errors.js';

/**
 * MCP tools are the catalog's ops, one tool per op, described by the op's summary and input
 * schema. tools/list shows a principal only the ops its role may call. Output schemas are left
 * out of tools/list on purpose: every byte there is paid in every agent's context, and the
 * results are self-describing JSON (docs/ARCHITECTURE.md lists each op's output).
 */
export interface McpTool {
  name: string;
  description: string;
  inputSchema: { type: 'object'; [k: string]: unknown };
  annotations?: { readOnlyHint: boolean };
}

export interface CallToolResult {
  [key: string]: unknown;
  content: { type: 'text'; text: string }[];
  structuredContent: Record<string, unknown>;
  isError?: boolean;
}

const schemaCache = new WeakMap<OpDef, McpTool>();

/**
 * Every op's input JSON Schema by op name, computed at build time by this same function over the
 * same catalog and inlined into the bundle (scripts/bundle.mjs); undefined when running from tsc's
 * dist/ or the sources. Converting the zod schemas at run time cost ~10 ms of a `baton mcp` cold
 * start (the first tools/list) and more for CLI commands (their flags come from every op's schema).
 */
declare const BATON_PREBUILT_INPUT_SCHEMAS: Record<string, Record<string, unknown>> | undefined;
const PREBUILT: Record<string, Record<string, unknown>> | undefined =
  typeof BATON_PREBUILT_INPUT_SCHEMAS === 'undefined' ? undefined : BATON_PREBUILT_INPUT_SCHEMAS;

/** The full JSON Schema of an op's input (what REST coercion and docs use). Callers only read it. */
export function inputJsonSchema(op: OpDef): Record<string, unknown> {
  const prebuilt = PREBUILT?.[op.name];
  if (prebuilt !== undefined) return prebuilt;
  return computeInputJsonSchema(op);
}

/** The conversion itself (the build uses it to fill BATON_PREBUILT_INPUT_SCHEMAS). */
export function computeInputJsonSchema(op: OpDef): Record<string, unknown> {
  const schema = z.toJSONSchema(op.input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  return { ...schema, type: 'object' };
}

/**
 * tools/list advertises a compact form of each op's input schema: every byte there is paid in
 * every agent's context, so it keeps what tells a client what will be refused and drops the rest.
 * Kept: types, enums, required fields, descriptions, the shape, `additionalProperties: false`
 * (unknown fields are refused: every op's input is strict) and the bounds an agent is likely to
 * hit — `maxItems`/`minItems` of arrays (batches), `maxLength` of free text (titles, bodies: limits
 * of at least MIN_SHOWN_LENGTH characters), `minimum`/`maximum` of numbers (priority, limit,
 * wait_ms), a maximum only when it is a real bound, a minimum only above zero. Dropped: id patterns, formats, defaults, the
 * short length limits of names and refs, `minLength: 1`. Everything dropped is still enforced
 * (the op's zod schema validates every call and names the field and the limit when a value is
 * refused), and the full schemas are served over REST (`GET /api/v1/ops`).
 * Measured (tools array as JSON): worker (35 tools) 12,048 → 15,016 bytes, lead 13,519 → 16,890,
 * admin 16,177 → 19,912; the worker budget is 16 KB (docs/ARCHITECTURE.md).
 */
const MIN_SHOWN_LENGTH = 100;
const DROPPED = new Set(['pattern', 'minLength', 'format', 'propertyNames', 'default']);

function keep(key: string, value: unknown): boolean {
  if (DROPPED.has(key)) return false;
  if (key === 'maxLength') return typeof value === 'number' && value >= MIN_SHOWN_LENGTH;
  if (key === 'maximum') return typeof value === 'number' && value < Number.MAX_SAFE_INTEGER;
  if (key === 'minimum') return value !== 0; // "not negative" is never what an agent gets wrong
  return true;
}

function compact(node: unknown): unknown {
  if (Array.isArray(node)) return node.map((n) => compact(n));
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (!keep(k, v)) continue;
    // `properties` maps names to schemas: compact each schema, keep every name.
    out[k] = k === 'properties' ? Object.fromEntries(Object.entries(v as object).map(([n, s]) => [n, compact(s)])) : compact(v);
  }
  return out;
}

export function toolOf(op: OpDef): McpTool {
  let tool = schemaCache.get(op);
  if (tool === undefined) {
    tool = {
      name: op.name,
      description: op.summary,
      inputSchema: compact(inputJsonSchema(op)) as McpTool['inputSchema'],
      ...(op.kind === 'read' ? { annotations: { readOnlyHint: true } } : {}),
    };
    schemaCache.set(op, tool);
  }
  return tool;
}

const listCache = new Map<string, McpTool[]>();

/**
 * What tools/list shows: the ops the principal's role may call, within the connection's tier
 * (core ⊂ standard ⊂ all; `hub.toolTier`). A tool outside the tier stays callable: tiers save
 * context, the role decides permission.
 */
export function listTools(hub: Hub, principal: Principal, tier: Tier): McpTool[] {
  const key = `${principal.role}\n${tier}`;
  let tools = listCache.get(key);
  if (tools === undefined) {
    tools = hub.runner
      .visibleOps(principal)
      .filter((op) => tierShows(tier, op.tier))
      .map(toolOf);
    listCache.set(key, tools);
  }
  return tools;
}

/** Where a tool call's progress notifications go: the request's progressToken and a sender bound to the request. */
export interface Progress {
  token: string | number;
  notify(params: { progressToken: string | number; progress: number; total?: number; message?: string }): Promise<void>;
}

/**
 * Runs `work` and, while it lasts, sends a progress notification every `everyMs` (0: none):
 * progress is the milliseconds waited (it must grow with every notification), total the wait's
 * cap. A failed send (the client left) stops the ticks; the call itself decides its own end.
 */
export async function withProgress<T>(work: Promise<T>, progress: Progress | undefined, everyMs: number, totalMs: number): Promise<T> {
  if (progress === undefined || everyMs <= 0) return work;
  // Monotonic: a wall-clock step must not make progress go backwards (it must grow every tick).
  const started = performance.now();
  const timer = setInterval(() => {
    const waited = Math.round(performance.now() - started);
    progress
      .notify({ progressToken: progress.token, progress: waited, total: totalMs, message: `waiting (${Math.round(waited / 1000)} s)` })
      .catch(() => clearInterval(timer));
  }, everyMs);
  timer.unref();
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

export function isKnownTool(hub: Hub, name: unknown): name is string {
  return typeof name === 'string' && hub.runner.ops.has(name);
}

/** A tool's outcome: the structured result (or error body) and its JSON text, serialized once. */
export interface ToolOutcome {
  data: Record<string, unknown>;
  text: string;
  isError: boolean;
}

/** Runs one tool call through the runner; every failure becomes a tool error with a stable code. */
export async function runTool(
  hub: Hub,
  who: Principal | ResolvePrincipal,
  name: string,
  args: unknown,
  meta: CallMeta,
  progress?: Progress,
): Promise<ToolOutcome> {
  // MCP clients cut long calls (docs/CONFIGURATION.md): one call waits at most mcpWaitCapMs.
  const capped: CallMeta = { ...meta, maxWaitMs: Math.min(meta.maxWaitMs ?? Infinity, hub.config.mcpWaitCapMs) };
  try {
    const call = hub.call(name, args ?? {}, who, capped);
    const data = (await withProgress(call, progress, hub.config.waitProgressMs, hub.config.mcpWaitCapMs)) as Record<string, unknown>;
    return { data, text: JSON.stringify(data), isError: false };
  } catch (err) {
    const e = toBatonError(err);
    // A bad credential is not a tool result: the transport answers it (HTTP 401 or the failure
    // throttle's 429, JSON-RPC error).
    if (isAuthRefusal(e)) throw e;
    const data = errorBody(e, meta.requestId) as unknown as Record<string, unknown>;
    return { data, text: JSON.stringify(data), isError: true };
  }
}

export async function callTool(
  hub: Hub,
  who: Principal | ResolvePrincipal,
  name: string,
  args: unknown,
  meta: CallMeta,
  progress?: Progress,
): Promise<CallToolResult> {
  const r = await runTool(hub, who, name, args, meta, progress);
  const result: CallToolResult = { content: [{ type: 'text', text: r.text }], structuredContent: r.data };
  if (r.isError) result.isError = true;
  return result;
}
