import { ProtocolError, ProtocolErrorCode, Server, type ServerContext } from '@modelcontextprotocol/server';
import type { Principal, Transport } from '../../auth/principal.js';
import type { Hub } from '../../hub.js';
import { VERSION } from '../../version.js';
import { callTool, isKnownTool, listTools } from './tools.js';

export const SERVER_INFO = { name: 'baton', version: VERSION } as const;
export const INSTRUCTIONS =
  'Baton coordinates a team of agents on one task board. Call whoami first (and after any restart), ' +
  'then task_claim, task_start, task_heartbeat while working, task_complete with a result or task_fail.';

/** Resolves the principal behind one request (per call, so a revoked key stops working at once). */
export type PrincipalOf = (ctx: ServerContext) => Promise<Principal>;

/**
 * One SDK low-level `Server` whose tools are the catalog. The SDK owns the protocol (both eras,
 * initialize, discover, errors); Baton owns tools/list and tools/call.
 */
export function buildMcpServer(hub: Hub, principalOf: PrincipalOf, transport: Transport): Server {
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} }, instructions: INSTRUCTIONS });
  server.setRequestHandler('tools/list', async (_req, ctx) => ({ tools: listTools(hub, await principalOf(ctx)) }));
  server.setRequestHandler('tools/call', async (req, ctx) => {
    const { name } = req.params;
    if (!isKnownTool(hub, name)) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool: ${name}`);
    const principal = await principalOf(ctx);
    return callTool(hub, principal, name, req.params.arguments, {
      requestId: hub.newRequestId(),
      transport,
      signal: ctx.mcpReq.signal,
    });
  });
  return server;
}
