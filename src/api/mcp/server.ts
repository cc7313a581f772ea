import type { GoneSignal } from '../../core/gone.js';
import { ProtocolError, ProtocolErrorCode, Server, type ServerContext } from '@modelcontextprotocol/server';
import type { Principal, Transport } from '../../auth/principal.js';
import type { Tier } from '../../core/tiers.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import type { Hub } from '../../hub.js';
import { callTool, isKnownTool, listTools, type Progress } from './tools.js';

import { INSTRUCTIONS, SERVER_INFO } from './identity.js';

/** Who is behind one request: the principal (for tools/list) and who a tool call runs as. */
export interface Caller {
  principal(ctx: ServerContext): Promise<Principal>;
  /** Usually a resolver that authenticates inside the call's own transaction. */
  who(ctx: ServerContext): Principal | ResolvePrincipal;
  /** Fires when the caller goes away (HTTP: the client's socket closed); else the SDK's request signal. */
  signal?(ctx: ServerContext): GoneSignal;
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
