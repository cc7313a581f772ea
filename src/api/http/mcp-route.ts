import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { createMcpHandler, type AuthInfo } from '@modelcontextprotocol/server';
import type { Credential } from '../../auth/jwt.js';
import type { Principal } from '../../auth/principal.js';
import { isTier, tierError, type Tier } from '../../core/tiers.js';
import type { Hub } from '../../hub.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import { buildMcpServer } from '../mcp/server.js';
import { clientAddress, credentialOf } from './auth-routes.js';
import { WaitCancels } from './cancels.js';
import type { ClientSignal } from './inflight.js';
import { parseJson, readBody } from './body.js';
import { leanAnswer } from './lean.js';
import type { Send } from './respond.js';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade']);

/** What the SDK path hands its per-request server: who calls, and the request's client-gone signal. */
interface SdkCaller {
  principal: Principal;
  /** A fresh resolver per tool call: every attempt of a wait authenticates again (revocation stops it). */
  who: () => ResolvePrincipal;
  signal: ClientSignal;
  /** The connection's tool tier (`?tools=` or X-Baton-Tools); undefined: the key's. */
  tools: Tier | undefined;
  /** The client's address (proxy.ts), for the audit of each tool call. */
  address: string | undefined;
}

/** A parsed `POST /mcp`: what the lean path and the SDK path answer from. */
interface Posted {
  req: IncomingMessage;
  res: ServerResponse;
  requestId: string;
  key: Credential;
  /** The body as received (the SDK re-reads it) and parsed. */
  text: string;
  body: unknown;
  signal: ClientSignal;
  /** The connection's tool tier; undefined: the key's. */
  tools: Tier | undefined;
}

/**
 * The tool tier a request asks for: `?tools=` on the URL, else the X-Baton-Tools header (a client
 * config that cannot add headers can still edit its URL). Undefined when neither is given; a
 * value that is not a tier is refused (a typo must not silently show another list).
 */
export function requestedTier(req: IncomingMessage): { tools: Tier | undefined } | { error: string } {
  const url = req.url ?? '/mcp';
  // Most requests have no query string: no URL to parse (a measurable share of a request's CPU).
  const query = url.includes('?') ? new URL(url, 'http://localhost').searchParams.getAll('tools') : [];
  const header = req.headers['x-baton-tools'];
  if (query.length > 1) return { error: 'tools: give the query parameter once' };
  const [value, where] = query.length === 1 ? [query[0]!, 'tools'] : [Array.isArray(header) ? header.join(',') : header, 'X-Baton-Tools'];
  if (value === undefined || value === '') return { tools: undefined };
  return isTier(value) ? { tools: value } : { error: tierError(where, value) };
}

/**
 * `POST /mcp` (Streamable HTTP, stateless): the lean path for the hot methods (lean.ts), the
 * SDK handler for everything else (initialize, batches, notifications, every protocol edge).
 * Both paths pass the request's signal, so a wait ends — uncommitted — when its client leaves.
 */
export class McpRoute {
  readonly stats = { lean: 0, sdk: 0 };
  /** Waiting calls in flight, for `notifications/cancelled` sent in a POST of its own (cancels.ts). */
  readonly cancels = new WaitCancels();
  private readonly sdk: ReturnType<typeof createMcpHandler>;

  constructor(
    private readonly hub: Hub,
    private readonly lean: boolean,
    private readonly send: Send,
    /** The connection presented a credential and a complete body (lean) or authenticated (SDK). */
    private readonly proven: (socket: Socket) => void,
  ) {
    this.sdk = createMcpHandler(
      ({ authInfo }) => {
        const caller = authInfo?.extra as unknown as SdkCaller;
        return buildMcpServer(
          hub,
          { principal: async () => caller.principal, who: () => caller.who(), signal: () => caller.signal, tools: caller.tools, address: caller.address },
          'mcp-http',
        );
      },
      { legacy: 'stateless', onerror: (err) => hub.log.debug({ err }, 'mcp request refused') },
    );
  }

  async handle(req: IncomingMessage, res: ServerResponse, requestId: string, signal: ClientSignal): Promise<void> {
    if (req.method !== 'POST') {
      // Stateless: no SSE stream to GET, no session to DELETE. JSON, like every other answer.
      this.send(res, 405, { jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Method not allowed: POST /mcp only (stateless server)' } }, { allow: 'POST', 'x-request-id': requestId });
      return;
    }
    const key = credentialOf(this.hub, req, requestId);
    const text = await readBody(req, this.hub.config.maxBodyBytes);
    let body: unknown;
    try {
      body = parseJson(text, this.hub.config.maxJsonDepth);
    } catch {
      this.send(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
      return;
    }
    const tier = requestedTier(req);
    if ('error' in tier) {
      this.send(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32600, message: tier.error } });
      return;
    }
    // A cancel ends the waits it names before the SDK answers it (202); a waiting call is listed
    // until its answer is done.
    this.cancels.cancel(key, body);
    const listed = this.cancels.register(key, body, signal);
    try {
      await this.answer({ req, res, requestId, key, text, body, signal, tools: tier.tools });
    } finally {
      listed?.();
    }
  }

  private async answer(post: Posted): Promise<void> {
    const { req, res, requestId, key, body, signal, tools } = post;
    if (this.lean) {
      this.proven(req.socket);
      const answer = await leanAnswer(this.hub, key, req.headers, body, requestId, clientAddress(req), signal, tools);
      if (answer !== null) {
        this.stats.lean++;
        this.send(res, 200, answer);
        return;
      }
    }
    this.stats.sdk++;
    await this.viaSdk(post);
  }

  private async viaSdk({ req, res, requestId, key, text, body, signal, tools }: Posted): Promise<void> {
    // Authenticated here so a bad key is an HTTP 401 before any protocol work; tool calls
    // authenticate again inside each of their attempts.
    const principal = await this.hub.authenticate(key);
    this.proven(req.socket);
    const caller: SdkCaller = { principal, who: () => this.hub.resolver(key), signal, tools, address: clientAddress(req) };
    const authInfo: AuthInfo = { token: 'verified', clientId: principal.agentName, scopes: [principal.role], extra: caller as unknown as Record<string, unknown> };
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string') headers.set(k, v);
      else if (Array.isArray(v)) for (const item of v) headers.append(k, item);
    }
    const request = new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/mcp'}`, { method: 'POST', headers, body: text });
    const response = await this.sdk.fetch(request, { authInfo, parsedBody: body });
    if (res.destroyed) {
      // The client left; the calls it made were audited and committed nothing while it was gone.
      await response.body?.cancel().catch(() => undefined);
      return;
    }
    const outHeaders: Record<string, string> = { 'x-request-id': requestId };
    response.headers.forEach((v, k) => {
      // Hop-by-hop headers belong to node's connection handling (a client's `Connection: close`,
      // a draining server), not to the SDK's web Response.
      if (!HOP_BY_HOP.has(k)) outHeaders[k] = v;
    });
    res.writeHead(response.status, outHeaders);
    if (response.body === null) {
      res.end();
      return;
    }
    // pipeline: an error on either side (the client leaving mid-stream) ends both streams.
    await pipeline(Readable.fromWeb(response.body as NodeReadableStream), res).catch((err: unknown) =>
      this.hub.log.debug({ err, requestId }, 'mcp response not delivered'),
    );
  }
}
