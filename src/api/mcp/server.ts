import { ProtocolError, ProtocolErrorCode, Server, type ServerContext } from '@modelcontextprotocol/server';
import type { Principal, Transport } from '../../auth/principal.js';
import type { Tier } from '../../core/tiers.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import type { Hub } from '../../hub.js';
import { VERSION } from '../../version.js';
import { callTool, isKnownTool, listTools, type Progress } from './tools.js';

export const SERVER_INFO = { name: 'baton', version: VERSION } as const;
/**
 * The server's instructions (initialize result): what an agent pays for in every session, so
 * short (≤ 1 KB, a test holds it) and about the loop only. Names only core tools.
 */
export const INSTRUCTIONS = [
  'Baton coordinates a team of agents on one task board. The loop:',
  '1. prime: who you are, what you hold, what is next. Again after a restart or a compaction.',
  '2. task_claim (wait_ms waits for work): you get a task and its lease token.',
  '3. lock_acquire the files you will edit (with task_id: released when the task ends); never edit files another agent holds.',
  '4. Work; task_heartbeat before the lease expires.',
  '5. task_complete with a result, or task_fail with the error. Then back to 2.',
  'message_inbox reads your mail (wait_ms waits for it); message_send writes to agents, a role or everyone.',
  'Fewer tools listed than you need? Connect with tools=standard or all (BATON_TOOLS, ?tools=, X-Baton-Tools); every op is also on the baton CLI and REST.',
].join('\n');

/** Who is behind one request: the principal (for tools/list) and who a tool call runs as. */
export interface Caller {
  principal(ctx: ServerContext): Promise<Principal>;
  /** Usually a resolver that authenticates inside the call's own transaction. */
  who(ctx: ServerContext): Principal | ResolvePrincipal;
  /** Fires when the caller goes away (HTTP: the client's socket closed); else the SDK's request signal. */
  signal?(ctx: ServerContext): AbortSignal;
  /** The connection's own tool tier (stdio BATON_TOOLS, HTTP ?tools= / X-Baton-Tools); undefined: the key's. */
  tools?: Tier;
  /** HTTP: the client's address, recorded in the audit of each call (stdio has none). */
  address?: string | undefined;
}

/** The progress sink of a tool call whose request carries a progressToken (else undefined). */
export function progressOf(ctx: ServerContext): Progress | undefined {
  const token = ctx.mcpReq._meta?.progressToken;
  if (typeof token !== 'string' && typeof token !== 'number') return undefined;
  return { token, notify: (params) => ctx.mcpReq.notify({ method: 'notifications/progress', params }) };
}

/**
 * One SDK low-level `Server` whose tools are the catalog. The SDK owns the protocol (both eras,
 * initialize, discover, errors); Baton owns tools/list and tools/call.
 */
export function buildMcpServer(hub: Hub, caller: Caller, transport: Transport): Server {
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} }, instructions: INSTRUCTIONS });
  server.setRequestHandler('tools/list', async (_req, ctx) => {
    const principal = await caller.principal(ctx);
    return { tools: listTools(hub, principal, await hub.toolTier(principal, caller.tools)) };
  });
  server.setRequestHandler('tools/call', async (req, ctx) => {
    const { name } = req.params;
    if (!isKnownTool(hub, name)) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool: ${name}`);
    return callTool(
      hub,
      caller.who(ctx),
      name,
      req.params.arguments,
      { requestId: hub.newRequestId(), transport, signal: caller.signal?.(ctx) ?? ctx.mcpReq.signal, address: caller.address },
      progressOf(ctx),
    );
  });
  return server;
}
