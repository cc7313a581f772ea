import { createServer, type IncomingMessage, type Server as NodeServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { createMcpHandler, type AuthInfo } from '@modelcontextprotocol/server';
import { looksLikeKey } from '../../auth/keys.js';
import type { Principal } from '../../auth/principal.js';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { VERSION } from '../../version.js';
import { errorBody, httpStatus, toBatonError } from '../errors.js';
import { buildMcpServer } from '../mcp/server.js';
import { leanAnswer } from './lean.js';
import { parseJson, readBody } from './body.js';
import { RestRouter } from './rest.js';

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

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1);
  const colon = hostHeader.lastIndexOf(':');
  return (colon === -1 ? hostHeader : hostHeader.slice(0, colon)).toLowerCase();
}

/**
 * The HTTP surface: `POST /mcp` (Streamable HTTP, stateless), `/api/v1/...` (REST generated
 * from the catalog) and `GET /healthz`. Host and Origin are checked on every request (DNS
 * rebinding); every request but /healthz is authenticated.
 */
export async function startHttp(hub: Hub, options: HttpOptions): Promise<HttpHandle> {
  const lean = options.lean ?? true;
  const allowedHosts = new Set(LOOPBACK);
  if (options.host !== '0.0.0.0' && options.host !== '::') allowedHosts.add(options.host.toLowerCase());
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

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...headers,
    });
    res.end(text);
  };

  /** The API key a request presents; refused at once when it cannot be a key (no store round). */
  const keyOf = (req: IncomingMessage): string => {
    const auth = req.headers.authorization;
    let key: string | undefined;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      key = m?.[1];
    } else {
      const header = req.headers['x-api-key'];
      key = typeof header === 'string' ? header : undefined;
    }
    if (key === undefined || !looksLikeKey(key)) throw new BatonError('unauthenticated', 'missing or invalid credentials');
    return key;
  };

  async function handleMcp(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST', 'x-request-id': requestId }).end();
      return;
    }
    const key = keyOf(req);
    const text = await readBody(req, hub.config.maxBodyBytes);
    let body: unknown;
    try {
      body = parseJson(text);
    } catch {
      send(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
      return;
    }
    if (lean) {
      const answer = await leanAnswer(hub, key, req.headers, body, requestId);
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

  const server = createServer((req, res) => {
    const requestId = hub.newRequestId();
    void (async () => {
      try {
        const host = req.headers.host;
        if (host === undefined || !allowedHosts.has(hostnameOf(host))) {
          throw new BatonError('forbidden', 'host not allowed');
        }
        const origin = req.headers.origin;
        if (origin !== undefined && !originAllowed(origin, allowedHosts)) {
          throw new BatonError('forbidden', 'origin not allowed');
        }
        const url = req.url ?? '/';
        const q = url.indexOf('?');
        const path = q === -1 ? url : url.slice(0, q);
        if (path === '/mcp') return await handleMcp(req, res, requestId);
        if (path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
          const ok = await hub.db.read(async () => true).catch(() => false);
          return send(res, ok ? 200 : 503, { status: ok ? 'ok' : 'degraded', version: VERSION });
        }
        if (path.startsWith('/api/v1/')) {
          const who = hub.resolver(keyOf(req));
          const out = await rest.handle(req, path.slice('/api/v1'.length), url.slice(path.length), who, requestId);
          return send(res, 200, out, { 'x-request-id': requestId });
        }
        throw new BatonError('not_found', 'no such route');
      } catch (err) {
        const e = toBatonError(err);
        if (e.code === 'internal') hub.log.error({ err, requestId }, 'request failed');
        if (res.headersSent) {
          res.destroy();
          return;
        }
        const headers: Record<string, string> = { 'x-request-id': requestId };
        if (e.code === 'unauthenticated') headers['www-authenticate'] = 'Bearer realm="baton"';
        send(res, httpStatus(e), errorBody(e, requestId), headers);
      }
    })();
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0; // waits (task_claim) are bounded by the op itself

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
    url: `http://${hostForUrl}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function originAllowed(origin: string, hosts: ReadonlySet<string>): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  return hosts.has(url.hostname.toLowerCase());
}
