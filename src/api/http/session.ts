import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { clientOf } from './proxy.js';
import { looksLikeKey } from '../../auth/keys.js';
import type { Principal } from '../../auth/principal.js';
import { authServices } from '../../auth/service.js';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import type { OpClass } from '../../ops/ratelimit.js';
import type { ResolvePrincipal } from '../../ops/runner.js';
import type { Executor } from '../../store/db.js';
import { deleteWebSession, insertWebSession, sweepWebSessions, touchWebSession, trimWebSessions, webSessionByHash, type SessionWithKey } from '../../store/web-sessions.js';
import { clientAddress, credentialOf } from './auth-routes.js';
import { parseJson, readBody } from './body.js';

/**
 * Browser sessions (issue 10; S23's CSRF half). The dashboard exchanges an API key for a session:
 *
 * - `POST /api/v1/session` `{"key":"bat_…"}` → the session view (below) with its `csrf` token
 *   (the only response that carries it) and `Set-Cookie: baton_session=<opaque>; HttpOnly;
 *   SameSite=Strict; Path=/` (under TLS `__Host-baton_session`, `Secure`). A bad key is 401,
 *   counted and throttled like every failed authentication (S6).
 * - `GET /api/v1/session` (cookie and token) → the view without the token, or 401 / 403 `csrf`.
 *   `DELETE /api/v1/session` → 204: the session ends server-side and the cookie is cleared.
 *
 * The view: `{agent, role, project, server_admin, ops, idle_expires_at, expires_at}` (+ `csrf` at
 * login); `ops` are the op names the principal may call, so a page offers only what its role may do.
 * Login, the view and `GET /api/v1/ops` take per-principal rate-limit tokens like any op (S25).
 *
 * The cookie holds 256 random bits; the store keeps only their SHA-256 (a high-entropy value
 * needs no slow hash), so a copy of the database opens no session. Each use re-reads the session
 * with its key in one statement, inside the op's own transaction: a revoked or expired key, a
 * key whose address binding refuses this client, a session past its idle (`sessionIdleMs`) or
 * absolute (`sessionMaxMs`) limit, or one logged out, is refused at once.
 *
 * CSRF: a cookie is sent by the browser on its own, and to every port of its host (cookies are not
 * port-scoped: any other server on 127.0.0.1 receives the dashboard's). So the cookie alone
 * authorizes nothing: every cookie-authenticated request, reads included, must carry
 * `X-CSRF-Token` equal to the session's token (constant-time compare; the event stream takes it
 * as `?csrf=`), which the page keeps in origin-scoped storage; a request that is not GET/HEAD must
 * also come from this origin (`Origin`, or `Sec-Fetch-Site: same-origin`); otherwise 403 `csrf`.
 * SameSite=Strict already keeps the cookie off cross-site requests in current browsers; the token
 * and the origin check hold where it does not (older browsers, a sibling subdomain). A request
 * with `Authorization` or `X-API-Key` is bearer-authenticated: its cookie is ignored and no CSRF
 * check applies (no browser sends those on its own). `/mcp` never reads the cookie.
 */
export const SESSION_COOKIE = 'baton_session';
/**
 * The cookie's name under TLS: the `__Host-` prefix makes the browser refuse it unless it is
 * Secure, Path=/ and has no Domain, so a sibling subdomain cannot plant or shadow it.
 */
export const SESSION_COOKIE_TLS = '__Host-baton_session';
const SESSION_PATH = '/api/v1/session';
const OPS_PATH = '/api/v1/ops';
/** Sessions one key may hold; a new login beyond this ends its oldest session. */
const MAX_SESSIONS_PER_KEY = 20;
/** base64url of 32 bytes. */
const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

export interface SessionView {
  /** Only in the login response. */
  csrf?: string;
  agent: string;
  role: string;
  project: string;
  server_admin: boolean;
  ops: string[];
  idle_expires_at: string;
  expires_at: string;
}

function hashId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/** TLS to this hub, or https at a trusted proxy in front of it (proxy.ts): the cookie is then `__Host-` and Secure. */
function isTls(req: IncomingMessage): boolean {
  return clientOf(req).https;
}

/** Does the request present a bearer credential (which wins over any cookie)? */
export function hasBearer(req: IncomingMessage): boolean {
  return req.headers.authorization !== undefined || req.headers['x-api-key'] !== undefined;
}

/** The session cookie's value, if the request carries one (well-formed or not). */
export function sessionCookie(req: IncomingMessage): string | undefined {
  const header = req.headers.cookie;
  if (header === undefined) return undefined;
  const name = cookieName(req);
  let found: string | undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    // Two cookies of the same name (one planted by a sibling subdomain): refuse both.
    if (found !== undefined) return '';
    found = part.slice(eq + 1).trim();
  }
  return found;
}

function cookieName(req: IncomingMessage): string {
  return isTls(req) ? SESSION_COOKIE_TLS : SESSION_COOKIE;
}

/** Requests whose session cookie was itself refused (CookieAuth.resolve found no live session). */
const deadSessions = new WeakSet<IncomingMessage>();

/**
 * On a 401: the header that clears the session cookie, only when the session itself was refused
 * (CookieAuth.resolve), so a browser stops sending a dead session (each use would count as a
 * failed authentication). Never for a 401 from a route that does not read the cookie (/mcp,
 * /metrics) nor for a cross-site request: any same-site page can make the browser send those,
 * and clearing there would let it log the dashboard out.
 */
export function clearDeadCookie(req: IncomingMessage): Record<string, string> {
  return deadSessions.has(req) ? { 'set-cookie': cookieHeader(req, '', 0) } : {};
}

function cookieHeader(req: IncomingMessage, value: string, maxAgeS: number): string {
  return `${cookieName(req)}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${isTls(req) ? '; Secure' : ''}`;
}

/**
 * Is this request from the hub's own origin? `Origin` must name the host (and port) the request
 * was sent to; without `Origin`, `Sec-Fetch-Site: same-origin`. Neither: no. The scheme must be
 * https under TLS; on plain HTTP either is taken (behind a TLS-terminating proxy the page is https
 * while the hub sees http).
 */
export function sameOrigin(req: IncomingMessage): boolean {
  const origin = req.headers.origin;
  const host = req.headers.host;
  if (origin !== undefined) {
    if (host === undefined) return false;
    let o: URL;
    try {
      o = new URL(origin);
    } catch {
      return false;
    }
    if (o.protocol !== 'https:' && (o.protocol !== 'http:' || isTls(req))) return false;
    try {
      return new URL(`${o.protocol}//${host}`).host === o.host;
    } catch {
      return false;
    }
  }
  return req.headers['sec-fetch-site'] === 'same-origin';
}

/**
 * Does the request say it comes from another site? An `Origin` that is not this one, or a
 * `Sec-Fetch-Site` other than same-origin or none (typed by the user). A cookie is never taken
 * from such a request, whatever its method (a cross-site EventSource with credentials, say).
 */
export function crossSite(req: IncomingMessage): boolean {
  if (req.headers.origin !== undefined) return !sameOrigin(req);
  const site = req.headers['sec-fetch-site'];
  return site !== undefined && site !== 'same-origin' && site !== 'none';
}

/** Constant-time: is `given` the session's token? */
function tokenMatches(given: string | undefined, s: SessionWithKey): boolean {
  const a = Buffer.from(given ?? '');
  const b = Buffer.from(s.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

const csrfRefused = (): BatonError =>
  new BatonError('csrf', 'request refused: the session token (X-CSRF-Token header) is required with a session cookie');

function headerToken(req: IncomingMessage): string | undefined {
  const t = req.headers['x-csrf-token'];
  return typeof t === 'string' ? t : undefined;
}

/** How often a session's `last_seen_at` is refreshed at most: once a minute (or a 30th of the idle limit). */
export function touchIntervalMs(idleMs: number): number {
  return Math.min(60_000, idleMs / 30);
}

const refused = (): BatonError => new BatonError('unauthenticated', 'missing or invalid credentials');

/**
 * One browser session, resolved once per request. `resolver` authenticates inside the op's own
 * transaction (the same statement re-read on every round of a wait); `settle` afterwards refreshes
 * `last_seen_at` when it is due.
 */
export class CookieAuth {
  private readonly idHash: string;
  private touchDue = false;
  /** Set by the last successful resolve. */
  session: SessionWithKey | null = null;

  /**
   * @param token the session token the request presents: by default its `X-CSRF-Token` header;
   *   the event stream passes its `csrf` query parameter (EventSource cannot set headers).
   */
  constructor(
    private readonly hub: Hub,
    private readonly req: IncomingMessage,
    private readonly raw: string,
    private readonly token: string | undefined = headerToken(req),
  ) {
    this.idHash = hashId(raw);
  }

  /**
   * The session and its principal inside `ex`; 401 (counted as a failed authentication) when
   * there is no live session; 403 `csrf` when the request does not present the session's token.
   * The cookie alone authorizes nothing, reads included: a browser sends it to every port of the
   * host (cookies are not port-scoped), so another server on 127.0.0.1 receives it; the token
   * lives in the page's origin-scoped storage, out of that server's reach.
   */
  async resolve(ex: Executor): Promise<Principal> {
    const { hub } = this;
    if (crossSite(this.req)) throw new BatonError('csrf', 'cross-site request refused: a session cookie is only taken from this origin');
    const now = hub.clock.now();
    const s = SESSION_ID.test(this.raw) ? await webSessionByHash(ex, this.idHash) : undefined;
    const live =
      s !== undefined &&
      s.session_expires_at > now &&
      s.last_seen_at > now - hub.config.sessionIdleMs &&
      authServices(hub).keyIsLive(s, clientAddress(this.req), now);
    if (!live) {
      deadSessions.add(this.req);
      authServices(hub).failed(clientAddress(this.req), this.raw, now, hub.newRequestId(), 'http');
      throw refused();
    }
    if (!tokenMatches(this.token, s)) throw csrfRefused();
    this.session = s;
    // Refreshed at most once a minute (or a 30th of the idle limit): a write per request would
    // turn every dashboard read into a write.
    this.touchDue = now - s.last_seen_at >= touchIntervalMs(hub.config.sessionIdleMs);
    return principalOf(s);
  }

  readonly resolver: ResolvePrincipal = (ex) => this.resolve(ex);

  /** Refuses a write that is not from this origin (the token was checked by `resolve`); call after `resolve`. */
  requireCsrf(): void {
    if (this.session === null) throw refused();
    if (!sameOrigin(this.req)) {
      throw new BatonError('csrf', 'cross-site request refused: a same-origin X-CSRF-Token header is required with a session cookie');
    }
  }

  /** After the request: refresh `last_seen_at` when due (best effort: a failure only shortens the session). */
  async settle(): Promise<void> {
    if (!this.touchDue) return;
    this.touchDue = false;
    const now = this.hub.clock.now();
    try {
      await this.hub.db.write((ex) => touchWebSession(ex, this.idHash, now));
      if (this.session !== null) this.session = { ...this.session, last_seen_at: now };
    } catch (err) {
      this.hub.log.warn({ err }, 'session refresh failed');
    }
  }

  get hash(): string {
    return this.idHash;
  }
}

export function principalOf(s: SessionWithKey): Principal {
  return {
    tokenId: s.id,
    projectId: s.project_id,
    projectName: s.project_name,
    role: s.role,
    agentId: s.agent_id!,
    agentName: s.name,
    serverAdmin: s.server_admin === 1,
  };
}

/**
 * How a REST request is authenticated: bearer (Authorization / X-API-Key) when present, else the
 * session cookie when present, else null (the caller then refuses with the usual 401).
 */
export function cookieAuthOf(hub: Hub, req: IncomingMessage, token?: string): CookieAuth | null {
  if (hasBearer(req)) return null;
  const raw = sessionCookie(req);
  return raw === undefined ? null : new CookieAuth(hub, req, raw, token ?? headerToken(req));
}

/**
 * Throws `err` (a refusal that needs no credential: wrong method, say) only after a session
 * cookie, if the request carries one, was checked: a bogus cookie is a counted failed
 * authentication (S6) and learns nothing about the route.
 */
export async function refuseAfterCookie(hub: Hub, req: IncomingMessage, err: BatonError): Promise<never> {
  const cookie = cookieAuthOf(hub, req);
  if (cookie !== null) await hub.db.read((ex) => cookie.resolve(ex));
  throw err;
}

/**
 * A per-principal rate-limit token (S25) for a request answered outside an op (login, the ops
 * list, the session view): the same buckets the runner takes from, so these routes cannot be
 * called without bound either.
 */
function rateLimit(hub: Hub, p: Principal, cls: OpClass): void {
  const wait = hub.runner.rateLimit(p, cls, hub.clock.now());
  if (wait > 0) throw new BatonError('rate_limited', 'too many requests; retry later', { retry_after_s: wait });
}

/** The session view; the token only in the login response (`withToken`): GET must already hold it. */
function view(hub: Hub, s: SessionWithKey, withToken: boolean): SessionView {
  const p = principalOf(s);
  return {
    ...(withToken ? { csrf: s.csrf } : {}),
    agent: p.agentName,
    role: p.role,
    project: p.projectName,
    server_admin: p.serverAdmin,
    ops: hub.runner.visibleOps(p).map((op) => op.name),
    idle_expires_at: new Date(Math.min(s.session_expires_at, s.last_seen_at + hub.config.sessionIdleMs)).toISOString(),
    expires_at: new Date(s.session_expires_at).toISOString(),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string, headers: Record<string, string> = {}): void {
  const text = body === null ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...(body === null ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }),
    'cache-control': 'no-store',
    'x-request-id': requestId,
    ...headers,
  });
  res.end(text);
}

/** POST: an API key → a new session. */
async function login(hub: Hub, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const auth = authServices(hub);
  const address = clientAddress(req);
  const now = hub.clock.now();
  // A login from another site would sign the victim's browser in as the attacker (login CSRF).
  if (crossSite(req)) {
    throw new BatonError('csrf', 'cross-site login refused');
  }
  const text = await readBody(req, Math.min(hub.config.maxBodyBytes, 4 * 1024));
  let body: unknown;
  try {
    body = parseJson(text, 4);
  } catch {
    throw new BatonError('invalid_input', 'body: expected {"key":"bat_…"}');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body) || Object.keys(body).some((k) => k !== 'key')) {
    throw new BatonError('invalid_input', 'body: expected {"key":"bat_…"}');
  }
  const key = (body as { key?: unknown }).key;
  const audit = (outcome: 'ok' | 'denied', p?: Principal): void =>
    auth.auditAuth({
      op: 'auth_session',
      at: now,
      requestId,
      projectId: p?.projectId ?? null,
      principal: p?.agentId ?? null,
      role: p?.role ?? null,
      target: p?.tokenId ?? null,
      outcome,
      code: outcome === 'ok' ? null : 'unauthenticated',
      transport: 'rest',
      address: address ?? null,
    });
  if (typeof key !== 'string' || key.length > 200 || !looksLikeKey(key)) {
    audit('denied');
    auth.refuseUncredentialed(address, now, requestId, 'http');
    auth.failed(address, typeof key === 'string' ? key.slice(0, 200) : undefined, now, requestId, 'http');
    throw refused();
  }
  const id = randomBytes(32).toString('base64url');
  const csrf = randomBytes(32).toString('base64url');
  const idHash = hashId(id);
  const expiresAt = now + hub.config.sessionMaxMs;
  let principal: Principal;
  try {
    principal = await hub.db.write(async (ex) => {
      const p = await hub.resolver({ token: key, address })(ex); // counts a failure against the address and key
      // Only API keys open sessions: tokenId is the key's id.
      if (p.tokenId === null) throw refused();
      // After the key is checked (a bad key counts against the address as above), before a session is made.
      rateLimit(hub, p, 'write');
      await sweepWebSessions(ex, now, hub.config.sessionIdleMs);
      await insertWebSession(ex, { id_hash: idHash, token_id: p.tokenId, csrf, created_at: now, last_seen_at: now, expires_at: expiresAt });
      await trimWebSessions(ex, p.tokenId, MAX_SESSIONS_PER_KEY);
      return p;
    });
  } catch (err) {
    if (err instanceof BatonError && err.code === 'unauthenticated') audit('denied');
    throw err;
  }
  audit('ok', principal);
  const s = await hub.db.read((ex) => webSessionByHash(ex, idHash));
  if (s === undefined) throw refused();
  sendJson(res, 200, view(hub, s, true), requestId, {
    'set-cookie': cookieHeader(req, id, Math.ceil(hub.config.sessionMaxMs / 1000)),
  });
}

/**
 * `GET /api/v1/ops`: the ops the caller (bearer or session) may call, with their REST method and
 * path, so a client offers only what its role may do.
 */
async function listOps(hub: Hub, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const cookie = cookieAuthOf(hub, req);
  const p = cookie === null ? await hub.authenticate(credentialOf(hub, req, requestId)) : await hub.db.read((ex) => cookie.resolve(ex));
  await cookie?.settle();
  rateLimit(hub, p, 'read');
  const ops = hub.runner.visibleOps(p).map((op) => ({ name: op.name, summary: op.summary, kind: op.kind, method: op.rest.method, path: `/api/v1${op.rest.path}` }));
  sendJson(res, 200, { ops }, requestId);
}

/** Answers `/api/v1/session` and `/api/v1/ops`; false for any other path. */
export async function handleSessionRoute(hub: Hub, req: IncomingMessage, res: ServerResponse, path: string, requestId: string): Promise<boolean> {
  if (path === OPS_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
    await listOps(hub, req, res, requestId);
    return true;
  }
  if (path !== SESSION_PATH) return false;
  if (req.method === 'POST') {
    await login(hub, req, res, requestId);
    return true;
  }
  if (req.method !== 'GET' && req.method !== 'DELETE') return await refuseAfterCookie(hub, req, new BatonError('invalid_input', 'method not allowed here'));
  const raw = sessionCookie(req);
  if (raw === undefined) throw new BatonError('unauthenticated', 'no session: log in with POST /api/v1/session');
  const cookie = new CookieAuth(hub, req, raw);
  if (req.method === 'GET') {
    const p = await hub.db.read((ex) => cookie.resolve(ex));
    await cookie.settle();
    rateLimit(hub, p, 'read');
    sendJson(res, 200, view(hub, cookie.session!, false), requestId);
    return true;
  }
  // DELETE: logout.
  const now = hub.clock.now();
  const p = await hub.db.write(async (ex) => {
    const principal = await cookie.resolve(ex);
    cookie.requireCsrf();
    await deleteWebSession(ex, cookie.hash);
    return principal;
  });
  authServices(hub).auditAuth({
    op: 'auth_session_end',
    at: now,
    requestId,
    projectId: p.projectId,
    principal: p.agentId,
    role: p.role,
    target: p.tokenId,
    outcome: 'ok',
    code: null,
    transport: 'rest',
    address: clientAddress(req) ?? null,
  });
  sendJson(res, 204, null, requestId, { 'set-cookie': cookieHeader(req, '', 0) });
  return true;
}
