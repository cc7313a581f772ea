import { ProtocolError, ProtocolErrorCode, Server, type ServerContext } from '@modelcontextprotocol/server';
import type { Principal, Transport } from '../../auth/principal.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import type { Hub } from '../../hub.js';
import { VERSION } from '../../version.js';
import { callTool, isKnownTool, listTools } from './tools.js';

export const SERVER_INFO = { name: 'baton', version: VERSION } as const;
export const INSTRUCTIONS =
  'Baton coordinates a team of agents on one task board. Call whoami first (and after any restart), ' +
  'then task_claim, task_start, task_heartbeat while working, task_complete with a result or task_fail.';

/** Who is behind one request: the principal (for tools/list) and who a tool call runs as. */
export interface Caller {
  principal(ctx: ServerContext): Promise<Principal>;
  /** Usually a resolver that authenticates inside the call's own transaction. */
  who(ctx: ServerContext): Principal | ResolvePrincipal;
  /** Fires when the caller goes away (HTTP: the client's socket closed); else the SDK's request signal. */
  signal?(ctx: ServerContext): AbortSignal;
}

/**
 * One SDK low-level `Server` whose tools are the catalog. The SDK owns the protocol (both eras,
 * initialize, discover, errors); Baton owns tools/list and tools/call.
 */
export function buildMcpServer(hub: Hub, caller: Caller, transport: Transport): Server {
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} }, instructions: INSTRUCTIONS });
  server.setRequestHandler('tools/list', async (_req, ctx) => ({ tools: listTools(hub, await caller.principal(ctx)) }));
  server.setRequestHandler('tools/call', async (req, ctx) => {
    const { name } = req.params;
    if (!isKnownTool(hub, name)) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool: ${name}`);
    return callTool(hub, caller.who(ctx), name, req.params.arguments, {
      requestId: hub.newRequestId(),
      transport,
      signal: caller.signal?.(ctx) ?? ctx.mcpReq.signal,
    });
  });
  return server;
}
