import { z } from 'zod';
import type { CallMeta, Principal } from '../../auth/principal.js';
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
  annotations: { readOnlyHint: boolean };
}

export interface CallToolResult {
  [key: string]: unknown;
  content: { type: 'text'; text: string }[];
  structuredContent: Record<string, unknown>;
  isError?: boolean;
}

const schemaCache = new WeakMap<OpDef, McpTool>();

export function toolOf(op: OpDef): McpTool {
  let tool = schemaCache.get(op);
  if (tool === undefined) {
    const schema = z.toJSONSchema(op.input, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
    delete schema.$schema;
    tool = {
      name: op.name,
      description: op.summary,
      inputSchema: { ...schema, type: 'object' },
      annotations: { readOnlyHint: op.kind === 'read' },
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
    // A bad credential is not a tool result: the transport answers it (HTTP 401, JSON-RPC error).
    if (e.code === 'unauthenticated') throw e;
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
