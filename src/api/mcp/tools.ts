import { z } from 'zod';
import type { CallMeta, Principal } from '../../auth/principal.js';
import { isAuthRefusal } from '../../auth/service.js';
import type { Hub } from '../../hub.js';
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

/** The full JSON Schema of an op's input (what REST coercion and docs use). */
export function inputJsonSchema(op: OpDef): Record<string, unknown> {
  const schema = z.toJSONSchema(op.input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  delete schema.$schema;
  return { ...schema, type: 'object' };
}

/**
 * Keywords tools/list leaves out. Every byte of tools/list is paid in every agent's context, and
 * these only restate limits the server enforces anyway (the op's zod schema validates every call
 * and names the field and the limit when a value is refused). Types, enums, required fields,
 * descriptions and the shape stay. (Unknown fields are still refused: every op's input is strict.)
 */
const OMITTED = new Set([
  'pattern',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'format',
  'additionalProperties',
  'propertyNames',
  'default',
]);

function compact(node: unknown): unknown {
  if (Array.isArray(node)) return node.map((n) => compact(n));
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    if (OMITTED.has(k)) continue;
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

export function listTools(hub: Hub, principal: Principal): McpTool[] {
  let tools = listCache.get(principal.role);
  if (tools === undefined) {
    tools = hub.runner.visibleOps(principal).map(toolOf);
    listCache.set(principal.role, tools);
  }
  return tools;
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
): Promise<ToolOutcome> {
  try {
    const data = (await hub.call(name, args ?? {}, who, meta)) as Record<string, unknown>;
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
): Promise<CallToolResult> {
  const r = await runTool(hub, who, name, args, meta);
  const result: CallToolResult = { content: [{ type: 'text', text: r.text }], structuredContent: r.data };
  if (r.isError) result.isError = true;
  return result;
}
