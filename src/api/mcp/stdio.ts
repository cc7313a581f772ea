import { ProtocolError, ProtocolErrorCode, Server } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import type { Principal } from '../../auth/principal.js';
import { looksLikeKey } from '../../auth/keys.js';
import { BatonError, isBatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { errorBody } from '../errors.js';
import { isTier, tierError, type Tier } from '../../core/tiers.js';
import { INSTRUCTIONS, SERVER_INFO, buildMcpServer, progressOf, type Caller } from './server.js';
import { callTool, isKnownTool } from './tools.js';

/**
 * MCP over stdio, one agent per process. With `BATON_TOKEN` the key is checked on every call
 * (revocation applies at once); without one, the process runs as a named local agent (S7), in
 * development mode only.
 *
 * A process that cannot authenticate still answers the handshake, then refuses every request
 * with a message that names the problem and the fix (and says it once on stderr). Exiting before
 * `initialize` left Claude Code, Codex and the AI SDK showing only "connection closed".
 *
 * When stdin ends, or on SIGTERM/SIGINT, the process drains: waits end early (the SDK aborts
 * requests when stdin ends; the runner's drain answers long polls with their empty result), the
 * calls still running finish (bounded by DRAIN_MS), and only then does the caller close the hub
 * (deferred audit flushed, store closed). Exit status 0, or 1 when it could not authenticate or
 * read its store (which it says, after answering the handshake, instead of dying before it).
 */
const DRAIN_MS = 10_000;
const CREATE_KEY_SHORT = 'create one with `baton token create --name NAME --role worker` and set BATON_TOKEN';
const CREATE_KEY = 'create one with `baton token create --name NAME --role worker` and set BATON_TOKEN to the key it prints';

const REVOKED = `BATON_TOKEN is no longer a valid Baton key (revoked or expired): ${CREATE_KEY_SHORT}, then restart this server`;

/** Why this process cannot authenticate, with the fix; null when it can. */
async function refusalOf(hub: Hub, opts: { token?: string; agent?: string }): Promise<string | null> {
  if (opts.token !== undefined && opts.token !== '') {
    if (!looksLikeKey(opts.token.trim())) {
      return `BATON_TOKEN is not a Baton key (a key is "bat_" and 43 more characters): ${CREATE_KEY}`;
    }
    try {
      await hub.authenticate(opts.token);
      return null;
    } catch (err) {
      if (isBatonError(err) && (err.code === 'unauthenticated' || err.code === 'rate_limited')) {
        return `BATON_TOKEN is not a valid Baton key (revoked, expired, bound to other addresses, or mistyped): ${CREATE_KEY}`;
      }
      return storeRefusal(err);
    }
  }
  // Production mode never runs without authentication (S36): the keyless local agent is a
  // development convenience.
  if (hub.config.env === 'production') return `production mode requires BATON_TOKEN (no keyless local agent): ${CREATE_KEY}`;
  if (opts.agent === undefined || opts.agent === '') {
    return `no credentials: set BATON_TOKEN to a Baton key (${CREATE_KEY.replace(' and set BATON_TOKEN to the key it prints', '')}), or BATON_AGENT=NAME to run as a named local agent (development only)`;
  }
  return null;
}

/** The store could not be read at start (damaged, full, read-only, busy): said, not a crash before the handshake. */
function storeRefusal(err: unknown): string {
  const code = isBatonError(err) ? err.code : 'internal';
  return `the hub's store could not be read (${code}): run \`baton doctor\` on this data dir, then restart this server`;
}

/** A server that answers the handshake and refuses everything else with `message`. */
function refusingServer(message: string): Server {
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} }, instructions: INSTRUCTIONS });
  server.setRequestHandler('tools/list', () => {
    throw new ProtocolError(ProtocolErrorCode.InvalidRequest, message);
  });
  server.setRequestHandler('tools/call', () => {
    const data = errorBody(new BatonError('unauthenticated', message), 'stdio') as unknown as Record<string, unknown>;
    return { content: [{ type: 'text' as const, text: message }], structuredContent: data, isError: true };
  });
  return server;
}

export async function runStdio(hub: Hub, opts: { token?: string; agent?: string; role?: string; tools?: string }): Promise<void> {
  // BATON_TOOLS: this connection's tool tier (core, standard, all); unset: the key's, else the server default.
  let tools: Tier | undefined;
  let refusal: string | null = null;
  if (opts.tools !== undefined && opts.tools !== '') {
    if (isTier(opts.tools)) tools = opts.tools;
    else refusal = tierError('BATON_TOOLS', opts.tools);
  }
  refusal ??= await refusalOf(hub, opts);
  let local: Principal | null = null;
  if (refusal === null && (opts.token === undefined || opts.token === '')) {
    try {
      local = await hub.localPrincipal(opts.agent!, opts.role ?? 'worker');
    } catch (err) {
      refusal = isBatonError(err) && err.code === 'invalid_input' ? `BATON_ROLE: ${err.message}` : storeRefusal(err);
    }
  }
  const inFlight = new Set<Promise<unknown>>();
  let toldRevoked = false;
  let factory: () => Server;
  if (refusal !== null) {
    process.stderr.write(`baton mcp: ${refusal}\n`);
    factory = () => refusingServer(refusal);
  } else {
    let caller: Caller;
    if (opts.token !== undefined && opts.token !== '') {
      const token = opts.token;
      const resolve = hub.resolver(token);
      caller = { principal: () => hub.authenticate(token), who: () => resolve, tools };
    } else {
      const p = local!;
      caller = { principal: async () => p, who: () => p, tools };
    }
    factory = () => {
      const server = buildMcpServer(hub, caller, 'mcp-stdio');
      // The same tools/call as buildMcpServer's, with each call tracked for the drain.
      server.setRequestHandler('tools/call', (req, ctx) => {
        const { name } = req.params;
        if (!isKnownTool(hub, name)) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool: ${name}`);
        const call = callTool(
          hub,
          caller.who(ctx),
          name,
          req.params.arguments,
          { requestId: hub.newRequestId(), transport: 'mcp-stdio', signal: ctx.mcpReq.signal },
          progressOf(ctx),
        );
        inFlight.add(call);
        void call.finally(() => inFlight.delete(call)).catch(() => undefined);
        return call.catch((err: unknown) => {
          // A key revoked or expired while the process runs: say so, and how to fix it.
          if (isBatonError(err) && err.code === 'unauthenticated' && opts.token !== undefined) {
            if (!toldRevoked) process.stderr.write(`baton mcp: ${REVOKED}\n`);
            toldRevoked = true;
            throw new BatonError('unauthenticated', `missing or invalid credentials: ${REVOKED}`);
          }
          throw err;
        });
      });
      return server;
    };
  }
  const handle = serveStdio(factory);
  // stdin ending is the client leaving; SIGTERM/SIGINT is a launcher stopping us: both drain.
  await new Promise<void>((resolve) => {
    const done = (): void => {
      // Signals are ours only until the drain begins: a second one then stops the process as usual.
      process.off('SIGTERM', done);
      process.off('SIGINT', done);
      resolve();
    };
    process.stdin.once('end', done);
    process.stdin.once('close', done);
    process.once('SIGTERM', done);
    process.once('SIGINT', done);
  });
  hub.runner.drain(); // long polls answer their empty result now
  await drain(inFlight);
  await handle.close();
  // It never served: a launcher that looks at the exit status sees the failure too.
  if (refusal !== null) process.exitCode = 1;
}

/** Waits for the calls still running (their waits were aborted with the transport), at most DRAIN_MS. */
async function drain(inFlight: Set<Promise<unknown>>): Promise<void> {
  if (inFlight.size === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, DRAIN_MS);
    timer.unref();
  });
  await Promise.race([Promise.allSettled([...inFlight]), bound]);
  clearTimeout(timer);
}
