import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP, type BlockList, type Server as NetServer, type Socket } from 'node:net';
import { inList, isLoopbackHost, normalizeAddress, toBlockList } from '../../core/net.js';
import { createSecureContext } from 'node:tls';
import { ConfigError, type Config } from '../../config.js';
import { BatonError } from '../../core/errors.js';
import { TokenBuckets } from '../../ops/ratelimit.js';
import { clientOf } from './proxy.js';

/**
 * The HTTP transport's guards (S19–S26), compiled once at start so a request pays set lookups
 * only: TLS material and the plain-HTTP refusal, security headers, Host and Origin checks (DNS
 * rebinding, cross-site WebSocket hijacking), the CORS allowlist, client address allow/deny
 * lists, per-address request limits, and connection limits.
 */

/** Modern suites only: TLS 1.3, then ECDHE with AEAD ciphers for TLS 1.2 (forward secrecy). */
export const TLS_CIPHERS = [
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_GCM_SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
].join(':');

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}


/**
 * Checks the transport settings before anything opens or listens (S19, S20): TLS files are read
 * and must form a valid pair; plain HTTP beyond loopback is refused unless allowInsecureHttp.
 * Returns the TLS material, or null for plain HTTP. Throws ConfigError with a clear message.
 */
export function checkTransport(config: Config): TlsMaterial | null {
  const hasCert = config.tlsCert !== '';
  if (hasCert !== (config.tlsKey !== '')) {
    throw new ConfigError('tlsCert and tlsKey must be given together (--tls-cert and --tls-key)');
  }
  let tls: TlsMaterial | null = null;
  if (hasCert) {
    const read = (what: string, path: string): Buffer => {
      try {
        return readFileSync(path);
      } catch {
        throw new ConfigError(`${what} file ${path} cannot be read`);
      }
    };
    tls = { cert: read('tlsCert', config.tlsCert), key: read('tlsKey', config.tlsKey) };
    try {
      createSecureContext({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' });
    } catch {
      throw new ConfigError('tlsCert and tlsKey do not hold a valid PEM certificate and matching private key');
    }
  }
  if (tls === null && !isLoopbackHost(config.host) && !config.allowInsecureHttp) {
    throw new ConfigError(
      `refusing to serve plain HTTP on ${config.host}, beyond loopback: give --tls-cert and --tls-key ` +
        '(BATON_TLS_CERT, BATON_TLS_KEY), or --allow-insecure-http (BATON_ALLOW_INSECURE_HTTP=true) ' +
        'only behind a TLS-terminating proxy',
    );
  }
  return tls;
}

/**
 * A `Host` value is host[:port] and nothing else: a name, an IPv4 address or a bracketed IPv6
 * address. `localhost:80@evil.com` (userinfo), paths, spaces and the like are refused: what the
 * Host check reads must be what a proxy, a URL parser or the SDK would read.
 */
const HOST_SYNTAX = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?$/;

/** How many Host headers the request carries: node keeps the first of several, a proxy may keep the last. */
function hostCount(raw: string[]): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.length === 4 && raw[i]!.toLowerCase() === 'host') n++;
  return n;
}

/** `Host` header → lower-case host name (IPv6 stays bracketed), without the port. */
export function hostnameOf(hostHeader: string): string {
  if (hostHeader.startsWith('[')) return hostHeader.slice(0, hostHeader.indexOf(']') + 1).toLowerCase();
  const colon = hostHeader.lastIndexOf(':');
  return (colon === -1 ? hostHeader : hostHeader.slice(0, colon)).toLowerCase();
}

/** The socket's client address, `::ffff:1.2.3.4` as `1.2.3.4` so IPv4 rules match on dual-stack listeners. */
export function clientAddress(raw: string | undefined): string {
  return raw === undefined ? '' : normalizeAddress(raw);
}

/** The content security policy of every response (the dashboard's, src/api/http/session.ts). */
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const CORS_ALLOW_HEADERS =
  'authorization, content-type, accept, x-api-key, x-csrf-token, mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, last-event-id, x-baton-tools';
const CORS_EXPOSE_HEADERS = 'x-request-id, retry-after, www-authenticate, mcp-session-id, mcp-protocol-version';

/**
 * Does the request present a credential (valid or not) on a route that checks it (`/mcp`,
 * `/api/…`)? Elsewhere — health probes, metadata, unknown paths — nothing is authenticated, so a
 * header there does not exempt a request from the per-address budget.
 */
function presentsCredential(req: IncomingMessage): boolean {
  // A session cookie counts (session.ts): a bad one is counted by the failure throttle instead.
  if (req.headers.authorization === undefined && req.headers['x-api-key'] === undefined && !(req.headers.cookie ?? '').includes('baton_session=')) {
    return false;
  }
  const url = req.url ?? '/';
  return url === '/mcp' || url.startsWith('/mcp?') || url.startsWith('/api/') || url === '/metrics';
}

/** The address allow and deny lists (compiled once: a check does not scale with them); deny wins. */
class AddressLists {
  private readonly allow: BlockList | null;
  private readonly deny: BlockList | null;

  constructor(config: Config) {
    this.allow = config.ipAllow.length === 0 ? null : toBlockList(config.ipAllow);
    this.deny = config.ipDeny.length === 0 ? null : toBlockList(config.ipDeny);
  }

  allowed(address: string): boolean {
    if (this.deny !== null && inList(this.deny, address)) return false;
    return this.allow === null || inList(this.allow, address);
  }
}

/** Per-request checks: security headers, Host, Origin, CORS, WebSocket refusal, per-address rate. */
export class RequestGuard {
  readonly hosts: ReadonlySet<string>;
  private readonly cors: ReadonlySet<string>;
  private readonly headers: readonly (readonly [string, string])[];
  private readonly rate: TokenBuckets | null;
  /** The address lists again, for a client a trusted proxy forwarded (its TCP peer is the proxy, checked per connection). */
  private readonly lists: AddressLists;

  constructor(config: Config, bindHost: string, tls: boolean) {
    this.lists = new AddressLists(config);
    const hosts = new Set(['localhost', '127.0.0.1', '[::1]']);
    const bind = bindHost.toLowerCase();
    if (bind !== '0.0.0.0' && bind !== '::' && bind !== '[::]') hosts.add(isIP(bind) === 6 ? `[${bind}]` : bind);
    for (const h of config.allowedHosts) hosts.add(h.toLowerCase());
    this.hosts = hosts;
    this.cors = new Set(config.corsOrigins.map((o) => new URL(o).origin));
    const headers: [string, string][] = [
      // The dashboard's policy (issue 10, S23), on every response: scripts, styles and
      // connections from this origin only, no inline script, never framed.
      ['content-security-policy', CSP],
      ['x-content-type-options', 'nosniff'],
      ['x-frame-options', 'DENY'],
      ['referrer-policy', 'no-referrer'],
      ['cross-origin-resource-policy', 'same-origin'],
    ];
    if (tls && config.hstsMaxAgeS > 0) headers.push(['strict-transport-security', `max-age=${config.hstsMaxAgeS}`]);
    if (this.cors.size > 0) headers.push(['vary', 'Origin']);
    this.headers = headers;
    this.rate = config.rateLimit ? new TokenBuckets(config.rateLimitAddressPerMin) : null;
  }

  /** Sets the security headers on a response; later writeHead() calls keep them. */
  secure(res: ServerResponse): void {
    for (const [k, v] of this.headers) res.setHeader(k, v);
  }

  /** The security headers as a flat [name, value, …] list, for one writeHead() on the hot path. */
  flatHeaders(): string[] {
    return this.headers.flatMap(([k, v]) => [k, v]);
  }

  /** The security headers as raw lines, for answers written straight to a socket. */
  rawHeaders(): string {
    return this.headers.map(([k, v]) => `${k}: ${v}\r\n`).join('');
  }

  /**
   * Host and Origin must name an allowed host (S21): refuses `forbidden` otherwise. Returns the
   * origin when it is on the CORS allowlist (the caller then sets ACAO), else null.
   */
  admit(req: IncomingMessage): string | null {
    const host = req.headers.host;
    if (host === undefined || !HOST_SYNTAX.test(host) || !this.hosts.has(hostnameOf(host)) || hostCount(req.rawHeaders) !== 1) {
      throw new BatonError('forbidden', 'host not allowed');
    }
    const origin = req.headers.origin;
    if (origin === undefined) return null;
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new BatonError('forbidden', 'origin not allowed');
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || !this.hosts.has(url.hostname.toLowerCase())) {
      throw new BatonError('forbidden', 'origin not allowed');
    }
    return this.cors.size > 0 && this.cors.has(url.origin) ? url.origin : null;
  }

  /** Everything before routing. Returns true when it answered the request itself (a CORS preflight). */
  check(req: IncomingMessage, res: ServerResponse, now: number): boolean {
    const corsOrigin = this.admit(req);
    if (corsOrigin !== null) {
      res.setHeader('access-control-allow-origin', corsOrigin);
      res.setHeader('access-control-expose-headers', CORS_EXPOSE_HEADERS);
    }
    if (req.method === 'OPTIONS') {
      // CORS off, or an origin not on the list: no preflight passes (S22).
      if (corsOrigin === null || req.headers['access-control-request-method'] === undefined) {
        throw new BatonError('forbidden', 'CORS preflight refused');
      }
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST, PUT, PATCH, DELETE',
        'access-control-allow-headers': CORS_ALLOW_HEADERS,
        'access-control-max-age': '600',
      });
      res.end();
      return true;
    }
    if (req.headers.upgrade !== undefined) throw new BatonError('invalid_input', 'protocol upgrade (WebSocket) is not supported');
    // Behind a trusted proxy (proxy.ts) the client is the forwarded address: the lists and the
    // budget below apply to it, not to the proxy every client shares.
    const client = clientOf(req);
    if (client.forwarded && !this.lists.allowed(client.address)) {
      throw new BatonError('forbidden', 'address not allowed');
    }
    // The per-address budget is for unauthenticated traffic only (S25): all local agents share
    // 127.0.0.1, so counting their authenticated calls here let a burst of unauthenticated
    // requests (100 health checks) rate-limit the admin. A request that presents a credential is
    // limited per principal by the runner when it is valid, and by the failure throttle (S6) when
    // it is not.
    if (this.rate !== null && !presentsCredential(req)) {
      const wait = this.rate.take(client.address, now);
      if (wait > 0) throw new BatonError('rate_limited', 'too many requests; retry later', { retry_after_s: wait });
    }
    return false;
  }
}

/**
 * Per-connection checks (S24, S26), on the raw TCP socket before any TLS or HTTP work: the
 * address allow/deny lists, open connections per address, and new connections per address per
 * minute. The total is enforced by node itself (`server.maxConnections`).
 */
export class ConnectionGuard {
  private readonly lists: AddressLists;
  private readonly open = new Map<string, number>();
  private readonly rate: TokenBuckets | null;
  /** Frees a slot of a full address by dropping one of its unauthenticated connections (pending.ts); true if it did. */
  makeRoom: ((address: string) => boolean) | null = null;

  constructor(
    private readonly config: Config,
    private readonly now: () => number,
    private readonly onDrop: (reason: string, address: string) => void,
  ) {
    this.lists = new AddressLists(config);
    this.rate = config.rateLimit ? new TokenBuckets(config.connectionRatePerMin) : null;
  }

  /** Is this client address allowed by the lists? */
  addressAllowed(address: string): boolean {
    return this.lists.allowed(address);
  }

  attach(server: NetServer): void {
    server.maxConnections = this.config.maxConnections;
    server.on('connection', (socket: Socket) => this.accept(socket));
  }

  private accept(socket: Socket): void {
    const address = clientAddress(socket.remoteAddress);
    let reason: string | null = null;
    const count = this.open.get(address) ?? 0;
    if (!this.addressAllowed(address)) reason = 'address not allowed';
    else if (count >= this.config.maxConnectionsPerAddress && this.makeRoom?.(address) !== true) reason = 'too many connections from address';
    else if (this.rate !== null && this.rate.take(address, this.now()) > 0) reason = 'connection rate exceeded';
    if (reason !== null) {
      this.onDrop(reason, address);
      socket.destroy();
      return;
    }
    this.open.set(address, count + 1);
    socket.once('close', () => {
      const n = (this.open.get(address) ?? 1) - 1;
      if (n <= 0) this.open.delete(address);
      else this.open.set(address, n);
    });
  }

  /** Open connections from one address (tests, diagnostics). */
  openFrom(address: string): number {
    return this.open.get(address) ?? 0;
  }
}
