import type {
  IncomingMessage} from 'node:http';
import {
  STATUS_CODES,
  ServerResponse,
  createServer,
  type OutgoingHttpHeaders,
  type RequestListener,
  type Server as NodeServer,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { createMcpHandler, type AuthInfo } from '@modelcontextprotocol/server';
import type { Credential } from '../../auth/jwt.js';
import type { Principal } from '../../auth/principal.js';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { errorBody, httpStatus, toBatonError } from '../errors.js';
import { buildMcpServer } from '../mcp/server.js';
import { leanAnswer } from './lean.js';
import { healthAnswer } from './health.js';
import { parseJson, readBody } from './body.js';
import { RestRouter } from './rest.js';
import { authErrorHeaders, credentialOf, handleAuthRoute } from './auth-routes.js';
import { ConnectionGuard, RequestGuard, TLS_CIPHERS, checkTransport } from './guard.js';

export interface HttpOptions {
  host: string;
  port: number;
  /** Serve hot MCP methods on the lean path (default). Off: everything goes through the SDK. */
  lean?: boolean;
}

export interface HttpHandle {
  server: NodeServer;
  /** MCP requests answered on the lean path and by the SDK handler. */
  stats: { lean: number; sdk: number };
  url: string;
  close(): Promise<void>;
}

/**
 * The HTTP surface: `POST /mcp` (Streamable HTTP, stateless), `/api/v1/...` (REST generated
 * from the catalog), `GET /healthz` and `GET /readyz`. HTTPS when TLS files are configured; plain HTTP beyond
 * loopback only when allowed. Every request gets the security headers and the Host, Origin,
 * CORS and per-address rate checks (guard.ts); every connection the address lists and
 * connection limits. Every request but /healthz and /readyz (health.ts) is authenticated.
 */
/** A response that puts the security headers on before its headers go out, whoever writes it. */
class SecureResponse extends ServerResponse {
  guard: RequestGuard | null = null;
  secured = false;

  override writeHead(statusCode: number, ...rest: unknown[]): this {
    if (!this.secured && this.guard !== null && !this.headersSent) {
      this.secured = true;
      this.guard.secure(this);
    }
    return (super.writeHead as (code: number, ...more: unknown[]) => this)(statusCode, ...rest);
  }
}

export async function startHttp(hub: Hub, options: HttpOptions): Promise<HttpHandle> {
  const lean = options.lean ?? true;
  const config = hub.config;
  const tls = checkTransport({ ...config, host: options.host });
  const guard = new RequestGuard(config, options.host, tls !== null);
  const rest = new RestRouter(hub);
  const stats = { lean: 0, sdk: 0 };
  const sdk = createMcpHandler(
    ({ authInfo }) =>
      buildMcpServer(
        hub,
        {
          principal: async () => (authInfo?.extra as { principal: Principal }).principal,
          who: () => (authInfo?.extra as { principal: Principal }).principal,
        },
        'mcp-http',
      ),
    { legacy: 'stateless', onerror: (err) => hub.log.debug({ err }, 'mcp request refused') },
  );

  // Security headers (S23) go on every response. Most answers are JSON written by `send`, which
  // puts them in its one writeHead() call; every other writer gets them from SecureResponse just
  // before its headers go out. (Setting them up front with setHeader() cost several per cent of
  // a cheap read: each call validates, and writeHead() then merges.)
  const securityHeaders = guard.flatHeaders();
  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    const flat: (string | number)[] = [...securityHeaders, 'content-type', 'application/json', 'content-length', Buffer.byteLength(text), 'cache-control', 'no-store'];
    for (const [k, v] of Object.entries(headers)) flat.push(k, v);
    // Headers set earlier with setHeader() (CORS, Retry-After) are merged by writeHead itself.
    if (res instanceof SecureResponse) res.secured = true;
    res.writeHead(status, flat as unknown as OutgoingHttpHeaders);
    res.end(text);
  };

  /** The API key a request presents; refused at once when it cannot be a key (no store round). */
  /**
   * The credential a request presents (API key or JWT, `Authorization: Bearer` or `X-API-Key`),
   * packed with the client address for `hub.resolver`; throttled callers get 429 at once (S2–S6).
   */
  /** The request's credential and address; refusals are audited under the request's id. */
  const keyOf = (req: IncomingMessage, requestId: string): Credential => credentialOf(hub, req, requestId);

  async function handleMcp(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST', 'x-request-id': requestId }).end();
      return;
    }
    const key = keyOf(req, requestId);
    const text = await readBody(req, hub.config.maxBodyBytes);
    let body: unknown;
    try {
      body = parseJson(text, hub.config.maxJsonDepth);
    } catch {
      send(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
      return;
    }
    if (lean) {
      const answer = await leanAnswer(hub, key, req.headers, body, requestId, req.socket.remoteAddress);
      if (answer !== null) {
        stats.lean++;
        send(res, 200, answer);
        return;
      }
    }
    stats.sdk++;
    const principal = await hub.authenticate(key);
    const authInfo: AuthInfo = { token: 'verified', clientId: principal.agentName, scopes: [principal.role], extra: { principal } };
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string') headers.set(k, v);
      else if (Array.isArray(v)) for (const item of v) headers.append(k, item);
    }
    const request = new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/mcp'}`, {
      method: 'POST',
      headers,
      body: text,
    });
    const response = await sdk.fetch(request, { authInfo, parsedBody: body });
    const outHeaders: Record<string, string> = { 'x-request-id': requestId };
    response.headers.forEach((v, k) => {
      outHeaders[k] = v;
    });
    res.writeHead(response.status, outHeaders);
    if (response.body === null) {
      res.end();
      return;
    }
    Readable.fromWeb(response.body as NodeReadableStream).pipe(res);
  }

  const onRequest: RequestListener<typeof IncomingMessage, typeof SecureResponse> = (req, res) => {
    const requestId = hub.newRequestId();
    res.guard = guard;
    void (async () => {
      try {
        if (guard.check(req, res, hub.clock.now())) return;
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        const path = q === -1 ? url : url.slice(0, q);
        if (path === '/mcp') return await handleMcp(req, res, requestId);
        if ((path === '/healthz' || path === '/readyz') && (req.method === 'GET' || req.method === 'HEAD')) {
          const h = (await healthAnswer(hub, path))!;
          return send(res, h.status, h.body);
        }
        if (await handleAuthRoute(hub, req, res, path, requestId)) return;
        if (path.startsWith('/api/v1/')) {
          const who = hub.resolver(keyOf(req, requestId));
          const out = await rest.handle(req, path.slice('/api/v1'.length), url.slice(path.length), who, requestId);
          return send(res, 200, out, { 'x-request-id': requestId });
        }
        throw new BatonError('not_found', 'no such route');
      } catch (err) {
        const e = toBatonError(err);
        if (e.code === 'rate_limited' && !res.headersSent) res.setHeader('retry-after', String(e.details?.retry_after_s ?? 60));
        if (e.code === 'internal') hub.log.error({ err, requestId }, 'request failed');
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const headers: Record<string, string> = { 'x-request-id': requestId };
        Object.assign(headers, authErrorHeaders(hub, req, e)); // WWW-Authenticate on 401, Retry-After when throttled
        send(res, httpStatus(e), errorBody(e, requestId), headers);
      }
    })();
  };
  const idle = config.idleTimeoutMs;
  // Idle connections close: between requests (keepAliveTimeout) and before a first request's
  // headers are complete (headersTimeout, checked every connectionsCheckingInterval).
  const timeouts = { connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(idle / 2))), requestTimeout: 0 };
  const server: NodeServer = (
    tls === null
      ? createServer({ ...timeouts, ServerResponse: SecureResponse }, onRequest)
      : createHttpsServer(
          {
            ...timeouts,
            ServerResponse: SecureResponse,
            cert: tls.cert,
            key: tls.key,
            minVersion: 'TLSv1.2',
            ciphers: TLS_CIPHERS,
            honorCipherOrder: true,
            handshakeTimeout: Math.min(idle, 120_000),
          },
          onRequest,
        )) as unknown as NodeServer;
  server.keepAliveTimeout = idle;
  server.headersTimeout = idle + 1_000;
  server.requestTimeout = 0; // waits (task_claim) are bounded by the op itself
  new ConnectionGuard(config, () => hub.clock.now(), (reason, address) =>
    hub.log.debug({ address, reason }, 'connection dropped'),
  ).attach(server);
  // No WebSocket endpoint exists: every upgrade is refused, 403 when Host or Origin is wrong (S21).
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => undefined);
    const requestId = hub.newRequestId();
    let e: BatonError;
    try {
      guard.admit(req);
      e = new BatonError('invalid_input', 'protocol upgrade (WebSocket) is not supported');
    } catch (err) {
      e = toBatonError(err);
    }
    const status = httpStatus(e);
    const text = JSON.stringify(errorBody(e, requestId));
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(text)}\r\ncache-control: no-store\r\nx-request-id: ${requestId}\r\n` +
        `${guard.rawHeaders()}connection: close\r\n\r\n${text}`,
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    stats,
    url: `${tls === null ? 'http' : 'https'}://${hostForUrl}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
