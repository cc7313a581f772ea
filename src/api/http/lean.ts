import type { GoneSignal } from '../../core/gone.js';
import type { IncomingHttpHeaders } from 'node:http';
import { SUPPORTED_PROTOCOL_VERSIONS, classifyInboundRequest, isJSONRPCRequest, isJsonContentType, isSpecType } from '@modelcontextprotocol/server';
import type { Credential } from '../../auth/jwt.js';
import type { Tier } from '../../core/tiers.js';
import type { Hub } from '../../hub.js';
import { SERVER_INFO } from '../mcp/identity.js';
import { hasShape, isId, isObject, type Json } from '../mcp/json-shape.js';
import { isKnownTool, listTools, runTool } from '../mcp/tools.js';

/**
 * The lean path for the hot MCP methods. The SDK's per-request Streamable HTTP handler costs
 * ~1 ms of CPU per call (it builds a server, converts node req/res to web Request/Response and
 * re-validates); a tool call itself costs tens of µs. So `tools/call`, `tools/list` and `ping`
 * arriving in a well-formed, unambiguous shape are answered here, with exactly the result the
 * SDK path gives (a test compares both). Anything else — initialize, server/discover,
 * notifications, batches, missing or mismatched headers, unknown versions, unknown tools, a
 * tools/call with a progressToken (its notifications need the SDK's SSE stream) — returns null
 * and goes to the SDK, which owns every error and edge of the protocol.
 *
 * "Well-formed" is decided by the SDK's own validators, not by hand: the JSON-RPC request guard
 * (integer or string id, object `_meta`, a valid progress token), the method's request schema,
 * the SDK's JSON content-type test (`application/json-seq` is not JSON), and for the modern era
 * the SDK's inbound classifier (envelope, log level, header checks). A hand-written subset let
 * through fractional ids, malformed `_meta`, invalid log levels and `application/json-seq`,
 * which the SDK refuses.
 */
const MODERN = '2026-07-28';
const LEGACY = new Set<string>(SUPPORTED_PROTOCOL_VERSIONS);
const META_VERSION = 'io.modelcontextprotocol/protocolVersion';
const META_CAPS = 'io.modelcontextprotocol/clientCapabilities';
const META_SERVER = 'io.modelcontextprotocol/serverInfo';
/** Cache hint on the modern tools/list: the list depends on the caller's role, so private. */
export const TOOLS_TTL_MS = 0;

/** The SDK's request schema of each lean method. */
const SCHEMA_OF = {
  'tools/call': isSpecType.CallToolRequest,
  'tools/list': isSpecType.ListToolsRequest,
  ping: isSpecType.PingRequest,
} as const;

const TOOL_CALL_KEYS = ['jsonrpc', 'id', 'method', 'params'] as const;

/**
 * The usual tools/call, checked by hand: exactly `jsonrpc`, `id` (a string or a safe integer),
 * `method` and `params`, which holds exactly `name` (a string) and, if anything else, `arguments`
 * (an object). The SDK's JSON-RPC guard (strict: no other keys; an id a string or an integer) and
 * its CallToolRequest schema admit every body this does; both are zod parses: 2-3 µs a call in a
 * loop, 2.2 % of `baton serve`'s main thread in a claim+complete profile (docs/BENCHMARKS.md),
 * against ~0.1 µs here. Any other shape (`_meta`, a task, extra keys, another id) is theirs to judge.
 */
function plainToolCall(body: Json): boolean {
  if (!hasShape(body, TOOL_CALL_KEYS) || !isId(body.id)) return false;
  const params = body.params;
  if (!isObject(params) || typeof params.name !== 'string' || !hasShape(params, ['name'], ['arguments'])) return false;
  return params.arguments === undefined || isObject(params.arguments);
}

/**
 * The SDK's inbound classifier admits this 2026-era request (envelope, log level, headers,
 * capabilities). It costs ~37 µs — as much as the tool call it guards — while its verdict on the
 * envelope depends only on `_meta` and the headers, which a client repeats on every request. So
 * an admitted (method, headers, `_meta`) is remembered (bounded); the rest of the body is checked
 * per request by the JSON-RPC guard and the method's schema above.
 */
const admitted = new Set<string>();
const ADMITTED_MAX = 1_024;
const ADMITTED_KEY_MAX = 4_096;

function modernAdmitted(body: Json, meta: Json, version: string, mcpMethod: string | string[] | undefined, mcpName: string | undefined): boolean {
  const key = `${String(body.method)}\n${version}\n${String(mcpMethod)}\n${mcpName ?? ''}\n${JSON.stringify(meta)}`;
  if (admitted.has(key)) return true;
  const route = classifyInboundRequest({
    httpMethod: 'POST',
    protocolVersionHeader: version,
    mcpMethodHeader: typeof mcpMethod === 'string' ? mcpMethod : undefined,
    mcpNameHeader: mcpName,
    body,
  });
  if (route.kind !== 'modern' || route.messageKind !== 'request') return false;
  if (key.length > ADMITTED_KEY_MAX) return true; // admitted, not remembered: memory stays bounded
  if (admitted.size >= ADMITTED_MAX) admitted.clear();
  admitted.add(key);
  return true;
}

/** The JSON-RPC response body, or null when the SDK must answer. */
export async function leanAnswer(
  hub: Hub,
  key: Credential,
  headers: IncomingHttpHeaders,
  body: unknown,
  requestId: string,
  address?: string,
  signal?: GoneSignal,
  tools?: Tier,
): Promise<string | null> {
  if (!isObject(body) || body.jsonrpc !== '2.0' || typeof body.method !== 'string') return null;
  const method = body.method;
  if (method !== 'tools/call' && method !== 'tools/list' && method !== 'ping') return null;
  if (!(method === 'tools/call' && plainToolCall(body)) && (!isJSONRPCRequest(body) || !SCHEMA_OF[method](body))) return null;
  const id = body.id;
  const params = body.params === undefined ? {} : body.params;
  if (!isObject(params)) return null;
  const meta = params._meta;
  const version = headers['mcp-protocol-version'];

  let modern: boolean;
  if (isObject(meta) && META_VERSION in meta) {
    if (method === 'ping') return null;
    if (version !== MODERN || meta[META_VERSION] !== MODERN || !isObject(meta[META_CAPS])) return null;
    if (headers['mcp-method'] !== method) return null;
    if (method === 'tools/call' && headers['mcp-name'] !== params.name) return null;
    if (!modernAdmitted(body, meta, version, headers['mcp-method'], headers['mcp-name'] as string | undefined)) return null;
    modern = true;
  } else {
    if (version !== undefined && !LEGACY.has(version as string)) return null;
    const accept = headers.accept ?? '';
    if (!accept.includes('application/json') || !accept.includes('text/event-stream')) return null;
    modern = false;
  }
  if (!isJsonContentType(headers['content-type'])) return null;

  const modernTail = modern ? MODERN_TAIL : '';
  const head = `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":`;
  if (method === 'ping') {
    await hub.authenticate(key);
    return `${head}{}}`;
  }
  if (method === 'tools/list') {
    if (params.cursor !== undefined) return null;
    const principal = await hub.authenticate(key);
    const list = JSON.stringify(listTools(hub, principal, await hub.toolTier(principal, tools)));
    return `${head}{"tools":${list}${modern ? `,"ttlMs":${TOOLS_TTL_MS},"cacheScope":"private"` : ''}${modernTail}}}`;
  }
  const args = params.arguments;
  if (!isKnownTool(hub, params.name) || (args !== undefined && !isObject(args))) return null;
  // Progress notifications need a stream: the SDK answers such a call over SSE.
  if (isObject(meta) && meta.progressToken !== undefined) return null;
  const r = await runTool(hub, hub.resolver(key), params.name, args, { requestId, transport: 'mcp-http', address, signal });
  // The result is serialized once and spliced in twice (text block and structuredContent).
  return (
    `${head}{"content":[{"type":"text","text":${JSON.stringify(r.text)}}],"structuredContent":${r.text}` +
    `${r.isError ? ',"isError":true' : ''}${modernTail}}}`
  );
}

const MODERN_TAIL = `,"resultType":"complete","_meta":${JSON.stringify({ [META_SERVER]: SERVER_INFO })}`;
