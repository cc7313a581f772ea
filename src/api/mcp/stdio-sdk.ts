import type { Readable, Writable } from 'node:stream';
import { ProtocolError, ProtocolErrorCode, Server, type JSONRPCMessage } from '@modelcontextprotocol/server';
import { StdioServerTransport, serveStdio } from '@modelcontextprotocol/server/stdio';
import { BatonError, isBatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { errorBody } from '../errors.js';
import { INSTRUCTIONS, SERVER_INFO } from './identity.js';
import { buildMcpServer, progressOf, type Caller } from './server.js';
import { callTool, isKnownTool } from './tools.js';

/**
 * The MCP SDK's side of `baton mcp` (stdio.ts): loaded only when the SDK must answer, which on a
 * usual start is after the handshake (stdio-fast.ts answers initialize and tools/list without it:
 * loading the SDK was a fifth of a `baton mcp` cold start).
 */

export interface SdkStdio {
  close(): Promise<void>;
}

/** What the fast handshake already did, for the SDK to take over from (stdio-fast.ts). */
export interface Takeover {
  /** The bytes read from stdin and not yet answered: the handshake to replay, then the rest. */
  input: Readable;
  /** Ids of the replayed requests the client already has its answer to: their SDK answers are not sent. */
  answered: Map<string | number, string>;
  /** Told when an SDK answer to a replayed request differs from the one the client got (a defect). */
  onMismatch(id: string | number): void;
}

/**
 * A stdio transport whose answers to the replayed handshake requests are dropped: the client
 * has them from the fast path. The replayed requests still run in the SDK, so its server holds
 * the negotiated version and the client's capabilities as if it had answered them itself.
 */
class TakeoverTransport extends StdioServerTransport {
  constructor(
    input: Readable,
    output: Writable,
    private readonly takeover: Takeover,
  ) {
    super(input, output);
  }

  override send(message: JSONRPCMessage): Promise<void> {
    if ('id' in message && ('result' in message || 'error' in message) && message.id !== undefined) {
      const sent = this.takeover.answered.get(message.id);
      if (sent !== undefined) {
        this.takeover.answered.delete(message.id);
        if (`${JSON.stringify(message)}\n` !== sent) this.takeover.onMismatch(message.id);
        return Promise.resolve();
      }
    }
    return super.send(message);
  }
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

const CREATE_KEY_SHORT = 'create one with `baton token create --name NAME --role worker` and set BATON_TOKEN';
const REVOKED = `BATON_TOKEN is no longer a valid Baton key (revoked or expired): ${CREATE_KEY_SHORT}, then restart this server`;

export interface SdkStdioOptions {
  /** Why this process cannot authenticate; every request but the handshake is refused with it. */
  refusal: string | null;
  /** Who the calls run as (null only with a refusal). */
  caller: Caller | null;
  /** BATON_TOKEN was given (a later `unauthenticated` means it was revoked). */
  keyed: boolean;
  /** Tool calls in flight, for the drain. */
  inFlight: Set<Promise<unknown>>;
  /** Fires when the client has left (stdin ended): the waits of calls that wait end without effect. */
  gone: AbortSignal;
  stdout: Writable;
  /** The stdin to read (when the fast handshake is not taking part). */
  stdin: Readable;
  takeover?: Takeover;
}

/**
 * A call's signal: the SDK's request signal, and `gone` (the client left) for an op that waits,
 * whose wait must end without effect. An op that does not wait and was sent before stdin closed
 * still runs as far as the SDK lets it: closing stdin is how a stdio client ends its session. A
 * controller per call, not AbortSignal.any: on Node 20 that keeps a reference per call on the
 * long-lived `gone` signal. `done()` detaches the listeners once the call has ended.
 */
function callSignal(request: AbortSignal, gone: AbortSignal | null): { signal: AbortSignal; done: () => void } {
  if (gone === null) return { signal: request, done: () => undefined };
  const controller = new AbortController();
  const abort = (): void => controller.abort();
  if (request.aborted || gone.aborted) abort();
  request.addEventListener('abort', abort, { once: true });
  gone.addEventListener('abort', abort, { once: true });
  return {
    signal: controller.signal,
    done: () => {
      request.removeEventListener('abort', abort);
      gone.removeEventListener('abort', abort);
    },
  };
}

export function serveSdkStdio(hub: Hub, opts: SdkStdioOptions): SdkStdio {
  const { refusal, caller, inFlight } = opts;
  let toldRevoked = false;
  let factory: () => Server;
  if (refusal !== null || caller === null) {
    const message = refusal ?? 'no caller';
    factory = () => refusingServer(message);
  } else {
    factory = () => {
      const server = buildMcpServer(hub, caller, 'mcp-stdio');
      // The same tools/call as buildMcpServer's, with each call tracked for the drain.
      server.setRequestHandler('tools/call', (req, ctx) => {
        const { name } = req.params;
        if (!isKnownTool(hub, name)) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool: ${name}`);
        const signal = callSignal(ctx.mcpReq.signal, hub.runner.ops.get(name)!.waitMs !== undefined ? opts.gone : null);
        const call = callTool(hub, caller.who(ctx), name, req.params.arguments, { requestId: hub.newRequestId(), transport: 'mcp-stdio', signal: signal.signal }, progressOf(ctx));
        inFlight.add(call);
        void call
          .finally(() => {
            inFlight.delete(call);
            signal.done();
          })
          .catch(() => undefined);
        return call.catch((err: unknown) => {
          // A key revoked or expired while the process runs: say so, and how to fix it.
          if (isBatonError(err) && err.code === 'unauthenticated' && opts.keyed) {
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
  const transport = opts.takeover !== undefined ? new TakeoverTransport(opts.takeover.input, opts.stdout, opts.takeover) : new StdioServerTransport(opts.stdin, opts.stdout);
  return serveStdio(factory, { transport });
}
