import { serveStdio } from '@modelcontextprotocol/server/stdio';
import type { Principal } from '../../auth/principal.js';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { buildMcpServer } from './server.js';

/**
 * MCP over stdio, one agent per process. With `BATON_TOKEN` the key is checked on every call
 * (revocation applies at once); without one, the process runs as a named local agent (S7).
 */
export async function runStdio(hub: Hub, opts: { token?: string; agent?: string; role?: string }): Promise<void> {
  let principalOf: () => Promise<Principal>;
  if (opts.token !== undefined && opts.token !== '') {
    const token = opts.token;
    await hub.authenticate(token); // fail fast at start with a clear message
    principalOf = () => hub.authenticate(token);
  } else {
    if (opts.agent === undefined || opts.agent === '') {
      throw new BatonError('unauthenticated', 'set BATON_TOKEN, or BATON_AGENT to run as a named local agent');
    }
    const local = await hub.localPrincipal(opts.agent, opts.role ?? 'worker');
    principalOf = async () => local;
  }
  const handle = serveStdio(() => buildMcpServer(hub, principalOf, 'mcp-stdio'));
  await new Promise<void>((resolve) => {
    const done = (): void => resolve();
    process.stdin.once('end', done);
    process.stdin.once('close', done);
  });
  await handle.close();
}
