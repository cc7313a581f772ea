import type { GoneSignal } from '../../core/gone.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { STATUS_CODES, createServer, type RequestListener, type Server as NodeServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { Server as NetServer, type AddressInfo, type Socket } from 'node:net';
import type { Config } from '../../config.js';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import { errorBody, httpStatus, toBatonError } from '../errors.js';
import { authErrorHeaders, credentialOf, handleAuthRoute } from './auth-routes.js';
import { ConnectionGuard, RequestGuard, TLS_CIPHERS, checkTransport, type TlsMaterial } from './guard.js';
import { healthAnswer } from './health.js';
import { InFlight, type ClientSignal } from './inflight.js';
import { HubMetrics, handleMetrics } from './metrics.js';
import { McpRoute } from './mcp-route.js';
import { PendingConnections } from './pending.js';
import { ProxyTrust } from './proxy.js';
import { SecureResponse, jsonSender, type Send } from './respond.js';
import { RestRouter } from './rest.js';
import { clearDeadCookie, cookieAuthOf, handleSessionRoute } from './session.js';
import { StaticFiles, isDashboardPath } from './static.js';
import { EventStreams } from './stream.js';

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
  /** Open event streams and their counters (metrics, tests). */
  streams: EventStreams;
  /** Closes at once: every connection is dropped, in-flight requests with it. */
  close(): Promise<void>;
  /**
   * A graceful stop: stops accepting, answers every long poll now with what it has (its empty
   * result), refuses new requests on open connections with `shutting_down` (503, Connection:
   * close), lets in-flight requests finish for up to `timeoutMs`, then closes. Resolves true when
   * every request finished in time. The hub itself stays open (the caller closes it).
   */
  drain(timeoutMs: number): Promise<boolean>;
}

/** How long a drain keeps answering new requests on open connections (503) after the last in flight ended. */
const DRAIN_LINGER_MS = 500;

/**
 * The HTTP surface: `POST /mcp` (Streamable HTTP, stateless), `/api/v1/...` (REST generated
 * from the catalog) and `GET /healthz`. HTTPS when TLS files are configured; plain HTTP beyond
 * loopback only when allowed. Every request gets the security headers and the Host, Origin,
 * CORS and per-address rate checks (guard.ts); every connection the address lists and
 * connection limits, and unauthenticated connections a bound of their own (pending.ts).
 * Every request but /healthz and /readyz (health.ts) is authenticated. Per request: guard → route → respond.
 */
export async function startHttp(hub: Hub, options: HttpOptions): Promise<HttpHandle> {
  const tls = checkTransport({ ...hub.config, host: options.host });
  const surface = new HttpSurface(hub, options, tls);
  const server = createNodeServer(hub.config, tls, surface.onRequest);
  surface.attach(server);
  await listen(server, options);
  const addr = server.address() as AddressInfo;
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    server,
    stats: surface.mcp.stats,
    streams: surface.streams,
    url: `${tls === null ? 'http' : 'https'}://${hostForUrl}:${addr.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        surface.streams.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    drain: (timeoutMs) => surface.drain(server, timeoutMs),
  };
}

class HttpSurface {
  private readonly guard: RequestGuard;
  private readonly rest: RestRouter;
  private readonly send: Send;
  readonly mcp: McpRoute;
  /** Open event streams (`GET /api/v1/events/stream`). */
  readonly streams: EventStreams;
  private readonly metrics: HubMetrics;
  private readonly inflight: InFlight;
  private readonly pending: PendingConnections;
  private readonly web = new StaticFiles();
  private readonly proxy: ProxyTrust;

  constructor(
    private readonly hub: Hub,
    options: HttpOptions,
    private readonly tls: TlsMaterial | null,
  ) {
    const config = hub.config;
    this.guard = new RequestGuard(config, options.host, tls !== null);
    this.proxy = new ProxyTrust(config);
    this.rest = new RestRouter(hub);
    this.send = jsonSender(this.guard);
    this.mcp = new McpRoute(hub, options.lean ?? true, this.send, (socket) => this.pending.authenticated(socket));
    this.inflight = new InFlight();
    this.streams = new EventStreams(hub);
    this.metrics = HubMetrics.of(hub);
    this.metrics.watch(this.streams);
    this.pending = new PendingConnections((address) => hub.log.debug({ address, reason: 'too many unauthenticated connections' }, 'connection dropped'),
    );
  }

  attach(server: NodeServer): void {
    const connections = new ConnectionGuard(this.hub.config, () => this.hub.clock.now(), (reason, address) =>
      this.hub.log.debug({ address, reason }, 'connection dropped'),
    );
    connections.makeRoom = (address) => this.pending.makeRoom(address);
    connections.attach(server);
    this.pending.attach(server, this.tls === null ? 'connection' : 'secureConnection');
    server.on('upgrade', this.refuseUpgrade);
  }

  readonly onRequest: RequestListener<typeof IncomingMessage, typeof SecureResponse> = (req, res) => {
    const requestId = this.hub.newRequestId();
    res.guard = this.guard;
    // Who the client is, once, before anything reads it (guard, throttle, audit, cookies).
    this.proxy.bind(req);
    const signal = this.inflight.track(req, res);
    if (this.inflight.isDraining) {
      res.shouldKeepAlive = false;
      this.fail(req, res, requestId, new BatonError('shutting_down', 'the server is shutting down; retry shortly'));
      return;
    }
    this.handle(req, res, requestId, signal).catch((err: unknown) => this.fail(req, res, requestId, err));
  };

  /** guard → route; a request answered with a success authenticates its connection. */
  private async handle(req: IncomingMessage, res: SecureResponse, requestId: string, signal: ClientSignal): Promise<void> {
    try {
      if (this.guard.check(req, res, this.hub.clock.now())) return;
    } catch (err) {
      if (err instanceof BatonError && err.code === 'rate_limited') this.metrics.rateLimited.inc({ layer: 'address' });
      throw err;
    }
    await this.route(req, res, requestId, signal);
    // The dashboard's files need no credential: fetching them does not vouch for the connection.
    if (res.statusCode < 400 && !isDashboardPath((req.url ?? '/').split('?', 1)[0]!)) this.pending.authenticated(req.socket);
  }

  private async route(req: IncomingMessage, res: ServerResponse, requestId: string, signal: ClientSignal): Promise<void> {
    const { hub, send } = this;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    if (path === '/mcp') return await this.mcp.handle(req, res, requestId, signal);
    if ((path === '/healthz' || path === '/readyz') && (req.method === 'GET' || req.method === 'HEAD')) {
      const h = (await healthAnswer(hub, path))!;
      return send(res, h.status, h.body);
    }
    if (await handleMetrics(hub, this.metrics, req, res, path, requestId)) return;
    if (await handleSessionRoute(hub, req, res, path, requestId)) return;
    if (await handleAuthRoute(hub, req, res, path, requestId)) return;
    if (await this.streams.handle(req, res, path, url.slice(path.length), requestId, () => this.pending.authenticated(req.socket))) return;
    if (path.startsWith('/api/v1/')) return await this.restRoute(req, res, path, url, requestId, signal);
    if (this.web.handle(req, res, path)) return;
    throw new BatonError('not_found', 'no such route');
  }

  private async restRoute(req: IncomingMessage, res: ServerResponse, path: string, url: string, requestId: string, signal: GoneSignal): Promise<void> {
    // A browser session (session.ts) when there is no bearer credential: CSRF-checked on writes.
    const cookie = cookieAuthOf(this.hub, req);
    const write = req.method !== 'GET' && req.method !== 'HEAD';
    const resolve: ResolvePrincipal =
      cookie === null
        ? this.hub.resolver(credentialOf(this.hub, req, requestId))
        : async (tx) => {
            const p = await cookie.resolve(tx);
            if (write) cookie.requireCsrf();
            return p;
          };
    let resolved = false;
    const who: ResolvePrincipal = async (tx) => {
      resolved = true;
      const p = await resolve(tx);
      this.pending.authenticated(req.socket);
      return p;
    };
    try {
      const out = await this.rest.handle(req, path.slice('/api/v1'.length), url.slice(path.length), who, requestId, signal);
      // The session's refresh commits before the answer: a client's next request must find it
      // (on PostgreSQL it otherwise lost the race, and a session in use ran out as idle).
      await cookie?.settle();
      this.send(res, 200, out, { 'x-request-id': requestId });
    } catch (err) {
      // Refused before the credential was looked at (no such route, wrong method, a bad body): a
      // cookie is checked first, so a bogus one counts as a failed authentication (S6's per-address
      // budget) and learns nothing about which routes exist.
      if (cookie !== null && !resolved) await this.hub.db.read((tx) => cookie.resolve(tx));
      throw err;
    } finally {
      await cookie?.settle();
    }
  }

  /** Any refusal or failure → its status and error body; nothing is written to a client that left. */
  private fail(req: IncomingMessage, res: ServerResponse, requestId: string, err: unknown): void {
    const e = toBatonError(err);
    if (e.code === 'internal') this.hub.log.error({ err, requestId }, 'request failed');
    if (res.destroyed) return;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (e.code === 'rate_limited' || e.code === 'storage_full') res.setHeader('retry-after', String(e.details?.retry_after_s ?? 60));
    // The store's open circuit breaker (store/breaker.ts) says when its next probe is; any other
    // `unavailable` (contention, a lost connection, a timeout) is worth a retry in a second, and a
    // server shutting down is likely back (restarted) in a few.
    else if (e.code === 'unavailable') res.setHeader('retry-after', String(typeof e.details?.retry_after_s === 'number' ? e.details.retry_after_s : 1));
    else if (e.code === 'shutting_down') res.setHeader('retry-after', '2');
    const headers: Record<string, string> = { 'x-request-id': requestId };
    Object.assign(headers, authErrorHeaders(this.hub, req, e)); // WWW-Authenticate on 401, Retry-After when throttled
    if (e.code === 'shutting_down') headers.connection = 'close';
    // A refused credential puts its connection back among the unauthenticated ones.
    if (e.code === 'unauthenticated') {
      this.pending.track(req.socket);
      Object.assign(headers, clearDeadCookie(req));
    }
    this.send(res, httpStatus(e), errorBody(e, requestId), headers);
  }

  /** No WebSocket endpoint exists: every upgrade is refused, 403 when Host or Origin is wrong (S21). */
  private readonly refuseUpgrade = (req: IncomingMessage, socket: Socket): void => {
    socket.on('error', () => undefined);
    const requestId = this.hub.newRequestId();
    let e: BatonError;
    try {
      this.guard.admit(req);
      e = new BatonError('invalid_input', 'protocol upgrade (WebSocket) is not supported');
    } catch (err) {
      e = toBatonError(err);
    }
    const status = httpStatus(e);
    const text = JSON.stringify(errorBody(e, requestId));
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(text)}\r\ncache-control: no-store\r\nx-request-id: ${requestId}\r\n` +
        `${this.guard.rawHeaders()}connection: close\r\n\r\n${text}`,
    );
  };

  /** See HttpHandle.drain. */
  async drain(server: NodeServer, timeoutMs: number): Promise<boolean> {
    // Stop listening without http.Server.close(), which also drops idle keep-alive connections
    // at once: a request already sent on one (still in the socket's buffer) would be reset.
    // Instead such a request is answered 503 shutting_down with Connection: close.
    const closed = new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()));
    const finished = this.inflight.drain(timeoutMs);
    // Event streams end now (each with a final `event: error` saying why), so they do not hold the drain.
    this.streams.close();
    // Long polls answer now, with what their final attempt finds.
    this.hub.runner.drain();
    const started = performance.now();
    const ok = await finished;
    // Requests on their way on idle keep-alive connections (a client sending just after the
    // signal) are answered 503 shutting_down + Connection: close for a moment longer, instead of
    // being reset by the close below when nothing was in flight. A request sent later still meets
    // the close: no server can tell an idle connection's next request is coming.
    const linger = Math.min(DRAIN_LINGER_MS, timeoutMs - (performance.now() - started));
    if (ok && linger > 0) {
      await new Promise((r) => setTimeout(r, linger));
      await this.inflight.drain(Math.max(0, timeoutMs - (performance.now() - started)));
    }
    server.close(); // clears node's connection-checking timer; the listener is already closed
    server.closeAllConnections();
    await closed;
    return ok;
  }
}

/**
 * Node's server with Baton's timeouts. Idle connections close: between requests
 * (keepAliveTimeout) and before a first request's headers are complete (headersTimeout). A
 * request's headers and body must arrive within bodyTimeoutMs of its first byte (requestTimeout,
 * which stops counting once the request is complete: a long poll's wait is not bounded by it).
 */
function createNodeServer(
  config: Config,
  tls: TlsMaterial | null,
  onRequest: RequestListener<typeof IncomingMessage, typeof SecureResponse>,
): NodeServer {
  const idle = config.idleTimeoutMs;
  const body = config.bodyTimeoutMs;
  const timeouts = {
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(Math.min(idle, body) / 2))),
    requestTimeout: body,
    headersTimeout: Math.min(idle + 1_000, body),
  };
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
  return server;
}

function listen(server: NodeServer, options: HttpOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
