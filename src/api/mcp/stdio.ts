import { serveStdio } from '@modelcontextprotocol/server/stdio';
import type { Principal } from '../../auth/principal.js';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { buildMcpServer, type Caller } from './server.js';

/**
 * MCP over stdio, one agent per process. With `BATON_TOKEN` the key is checked on every call
 * (revocation applies at once); without one, the process runs as a named local agent (S7), in
 * development mode only.
 */
export async function runStdio(hub: Hub, opts: { token?: string; agent?: string; role?: string }): Promise<void> {
  let caller: Caller;
  if (opts.token !== undefined && opts.token !== '') {
    const token = opts.token;
    await hub.authenticate(token); // fail fast at start with a clear message
    const resolve = hub.resolver(token);
    caller = { principal: () => hub.authenticate(token), who: () => resolve };
  } else {
    // Production mode never runs without authentication (S36): the keyless local agent is a
    // development convenience.
    if (hub.config.env === 'production') {
      throw new BatonError('unauthenticated', 'production mode requires BATON_TOKEN (no keyless local agent)');
    }
    if (opts.agent === undefined || opts.agent === '') {
      throw new BatonError('unauthenticated', 'set BATON_TOKEN, or BATON_AGENT to run as a named local agent');
    }
    const local: Principal = await hub.localPrincipal(opts.agent, opts.role ?? 'worker');
    caller = { principal: async () => local, who: () => local };
  }
  const handle = serveStdio(() => buildMcpServer(hub, caller, 'mcp-stdio'));
  await new Promise<void>((resolve) => {
    const done = (): void => resolve();
    process.stdin.once('end', done);
    process.stdin.once('close', done);
  });
  await handle.close();
}
