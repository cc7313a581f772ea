import type { IncomingMessage, ServerResponse } from 'node:http';
import { looksLikeJwt, MAX_CREDENTIAL_LENGTH, type Credential } from '../../auth/jwt.js';
import { looksLikeKey } from '../../auth/keys.js';
import { generateRefreshToken, looksLikeRefreshToken, newFamilyId } from '../../auth/refresh.js';
import { authServices, type AuthServices } from '../../auth/service.js';
import { clientOf } from './proxy.js';
import { BatonError } from '../../core/errors.js';
import type { Hub } from '../../hub.js';
import { insertRefresh, keyById, refreshByHash, revokeFamily, spendRefresh, type KeyForAuth } from '../../store/auth.js';
import { parseJson, readBody } from './body.js';

/**
 * The HTTP side of authentication (S2–S6):
 * - `credentialOf`: the credential a request presents (`Authorization: Bearer` or `X-API-Key`),
 *   refused at once when it cannot be a credential (401, or 429 when the address is throttled);
 *   with the client's address, for `Hub.resolver`.
 * - `POST /api/v1/auth/token`: an API key → a short-lived access token (JWT) + a refresh token.
 * - `POST /api/v1/auth/refresh`: a refresh token → a new pair; the old one is spent; a spent one
 *   presented again revokes its family.
 * - `GET /.well-known/oauth-protected-resource[/mcp]`: protected-resource metadata (RFC 9728),
 *   only when an external issuer is configured.
 * - `authErrorHeaders`: `WWW-Authenticate` on 401, `Retry-After` on a throttled 429.
 */
const METADATA_PATH = '/.well-known/oauth-protected-resource';
const unauthenticated = (): BatonError => new BatonError('unauthenticated', 'missing or invalid credentials');
/** No usable credential at all: say what is expected (the body a client shows when it has no key configured). */
const keyRequired = (): BatonError =>
  new BatonError('unauthenticated', 'missing or invalid credentials: a Baton API key is required (Authorization: Bearer bat_…, or X-API-Key)');

/** The request's client address: the TCP peer, or what a trusted proxy forwarded (proxy.ts). */
export function clientAddress(req: IncomingMessage): string | undefined {
  const a = clientOf(req).address;
  return a === '' ? undefined : a;
}

/** The raw credential presented, if any (not validated). */
function presented(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth !== undefined) return /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth)?.[1];
  const header = req.headers['x-api-key'];
  return typeof header === 'string' ? header.trim() : undefined;
}

/**
 * What `keyOf` in server.ts returns: the credential with the client's address. A request without
 * a usable credential is refused here, before any store round: 429 when its address is blocked,
 * else 401 (counted as a failure). A well-formed credential is always checked by the resolver,
 * even from a blocked address: a valid one succeeds, a failing one gets 429 there (S6).
 */
export function credentialOf(hub: Hub, req: IncomingMessage, requestId = 'auth'): Credential {
  const auth = authServices(hub);
  const address = clientAddress(req);
  const raw = presented(req);
  const credential = raw !== undefined && raw.length <= MAX_CREDENTIAL_LENGTH ? raw : undefined;
  if (credential === undefined || (!looksLikeKey(credential) && !looksLikeJwt(credential))) {
    const now = hub.clock.now();
    auth.refuseUncredentialed(address, now, requestId, 'http');
    auth.failed(address, undefined, now, requestId, 'http');
    auth.auditAuth({
      at: now,
      requestId,
      projectId: null,
      principal: null,
      role: null,
      outcome: 'denied',
      code: 'unauthenticated',
      transport: 'http',
      address: address ?? null,
      params: { presented: raw !== undefined },
    });
    throw keyRequired();
  }
  return { token: credential, address };
}

function resourceUrl(hub: Hub, req: IncomingMessage): string {
  const configured = hub.config.oauthResourceUrl;
  if (configured !== '') return configured.replace(/\/+$/, '');
  const tls = clientOf(req).https;
  const host = (req.headers.host ?? 'localhost').replace(/[^A-Za-z0-9.:[\]-]/g, '');
  return `${tls ? 'https' : 'http'}://${host}`;
}

/** What a 401 says when no external issuer is configured: a Baton key, not OAuth (ASCII only: a header). */
const KEY_REQUIRED = 'a Baton API key is required (Authorization: Bearer bat_...)';

/**
 * Headers a refusal carries: the Bearer challenge on 401, Retry-After on a throttled 429 (S6).
 * The challenge points at OAuth protected-resource metadata only when an external issuer is
 * configured (S5). Without one there is no OAuth to do: Claude Code, Codex, the MCP Inspector and
 * mcp-remote, shown metadata, attempted dynamic client registration and reported its 404 instead
 * of "wrong key"; so the challenge says plainly that a Baton key is required.
 */
export function authErrorHeaders(hub: Hub, req: IncomingMessage, err: BatonError): Record<string, string> {
  if (err.code === 'unauthenticated') {
    if (authServices(hub).external === null) {
      return { 'www-authenticate': `Bearer realm="baton", error="invalid_token", error_description="${KEY_REQUIRED}"` };
    }
    const metadata = `${resourceUrl(hub, req)}${METADATA_PATH}/mcp`;
    const error = presented(req) !== undefined ? ', error="invalid_token"' : '';
    return { 'www-authenticate': `Bearer realm="baton", resource_metadata="${metadata}"${error}` };
  }
  const retry = err.details?.retry_after_s;
  if (err.code === 'rate_limited' && typeof retry === 'number') return { 'retry-after': String(retry) };
  return {};
}

function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    pragma: 'no-cache',
    'x-content-type-options': 'nosniff',
    'x-request-id': requestId,
  });
  res.end(text);
}

interface Pair {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  refresh_expires_in: number;
}

async function pairFor(auth: AuthServices, key: KeyForAuth, refresh: string, refreshExpiresAt: number, now: number, fam: string): Promise<Pair> {
  const access = await auth.access.sign({ sub: key.agent_id!, tid: key.id, role: key.role, prj: key.project_id, fam }, now);
  return {
    access_token: access.token,
    token_type: 'Bearer',
    expires_in: Math.round((access.expiresAt - now) / 1000),
    refresh_token: refresh,
    refresh_expires_in: Math.max(0, Math.floor((refreshExpiresAt - now) / 1000)),
  };
}

async function readObject(hub: Hub, req: IncomingMessage): Promise<Record<string, unknown>> {
  const text = await readBody(req, Math.min(hub.config.maxBodyBytes, 16 * 1024));
  if (text.trim() === '') return {};
  let body: unknown;
  try {
    body = parseJson(text, 4);
  } catch {
    throw new BatonError('invalid_input', 'body: expected a JSON object');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new BatonError('invalid_input', 'body: expected a JSON object');
  return body as Record<string, unknown>;
}

/** An API key → an access token and a new refresh token family. */
async function exchange(hub: Hub, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const auth = authServices(hub);
  const presented = credentialOf(hub, req, requestId);
  const body = await readObject(hub, req);
  if (Object.keys(body).some((k) => k !== 'grant_type') || (body.grant_type !== undefined && body.grant_type !== 'api_key')) {
    throw new BatonError('invalid_input', 'body: only {"grant_type":"api_key"} is accepted');
  }
  // Only an API key is exchanged: an access token cannot mint itself a refresh family.
  const key = presented.token ?? '';
  const address = presented.address;
  const now = hub.clock.now();
  if (!looksLikeKey(key)) {
    auth.failed(address, key, now, requestId, 'http');
    throw unauthenticated();
  }
  const refresh = generateRefreshToken();
  const expiresAt = now + hub.config.refreshTokenTtlMs;
  const family = newFamilyId();
  const row = await hub.db.write(async (ex) => {
    const p = await hub.resolver(presented)(ex); // counts a failure against the address and prefix
    const k = await keyById(ex, p.tokenId!);
    if (k === undefined) throw unauthenticated();
    await insertRefresh(ex, {
      token_hash: auth.refreshHash(refresh),
      family_id: family,
      token_id: k.id,
      created_at: now,
      expires_at: expiresAt,
    });
    return k;
  });
  auth.auditAuth({
    op: 'auth_token',
    at: now,
    requestId,
    projectId: row.project_id,
    principal: row.agent_id,
    role: row.role,
    target: row.id,
    outcome: 'ok',
    code: null,
    transport: 'rest',
    address: address ?? null,
  });
  sendJson(res, 200, await pairFor(auth, row, refresh, expiresAt, now, family), requestId);
}

type RefreshOutcome =
  | { kind: 'invalid' }
  | { kind: 'reuse'; family: string; key: string; revoked: number }
  | { kind: 'ok'; key: KeyForAuth; expiresAt: number; family: string };

/** A refresh token → a new pair; the presented token is spent. */
async function refresh(hub: Hub, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  const auth = authServices(hub);
  const address = clientAddress(req);
  const now = hub.clock.now();
  const body = await readObject(hub, req);
  const presentedToken = body.refresh_token;
  // A throttled address may still refresh with a valid token; a failure there gets 429 (S6).
  const refused = (code: string, params?: Record<string, unknown>): BatonError => {
    auth.auditAuth({
      op: 'auth_refresh',
      at: now,
      requestId,
      projectId: null,
      principal: null,
      role: null,
      outcome: 'denied',
      code,
      transport: 'rest',
      address: address ?? null,
      ...(params === undefined ? {} : { params }),
    });
    auth.failed(address, typeof presentedToken === 'string' ? presentedToken : undefined, now, requestId, 'http'); // 429 when throttled
    return unauthenticated();
  };
  if (Object.keys(body).some((k) => k !== 'refresh_token' && k !== 'grant_type')) throw refused('invalid_input');
  if (typeof presentedToken !== 'string' || !looksLikeRefreshToken(presentedToken)) throw refused('unauthenticated');
  const hash = auth.refreshHash(presentedToken);
  const next = generateRefreshToken();
  const outcome = await hub.db.write(async (ex): Promise<RefreshOutcome> => {
    const row = await refreshByHash(ex, hash);
    if (row === undefined) return { kind: 'invalid' };
    const reuse = async (): Promise<RefreshOutcome> => ({
      kind: 'reuse',
      family: row.family_id,
      key: row.token_id,
      revoked: await revokeFamily(ex, row.family_id, now),
    });
    if (row.used_at !== null) return reuse();
    if (row.revoked_at !== null || row.expires_at <= now) return { kind: 'invalid' };
    const key = await keyById(ex, row.token_id);
    if (key === undefined || !auth.keyIsLive(key, address, now)) return { kind: 'invalid' };
    if (!(await spendRefresh(ex, hash, now))) return reuse();
    await insertRefresh(ex, {
      token_hash: auth.refreshHash(next),
      family_id: row.family_id,
      token_id: row.token_id,
      created_at: now,
      expires_at: row.expires_at,
    });
    return { kind: 'ok', key, expiresAt: row.expires_at, family: row.family_id };
  });
  // The family's revocation is committed above; only now is the caller refused.
  if (outcome.kind === 'reuse') throw refused('refresh_reuse', { family_revoked: outcome.revoked, key: outcome.key });
  if (outcome.kind === 'invalid') throw refused('unauthenticated');
  auth.auditAuth({
    op: 'auth_refresh',
    at: now,
    requestId,
    projectId: outcome.key.project_id,
    principal: outcome.key.agent_id,
    role: outcome.key.role,
    target: outcome.key.id,
    outcome: 'ok',
    code: null,
    transport: 'rest',
    address: address ?? null,
  });
  sendJson(res, 200, await pairFor(auth, outcome.key, next, outcome.expiresAt, now, outcome.family), requestId);
}

/** Answers the authentication routes; false for any other request. */
export async function handleAuthRoute(
  hub: Hub,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  requestId: string,
): Promise<boolean> {
  // Protected-resource metadata (RFC 9728) exists only with an external issuer: without one, the
  // path is unknown (404), so no client is led into OAuth. The /mcp form names the MCP endpoint
  // as the resource; the root form the server (RFC 9728 §3.3: the resource matches the URL the
  // metadata was asked for).
  const external = authServices(hub).external;
  if (external !== null && (path === METADATA_PATH || path === `${METADATA_PATH}/mcp`)) {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new BatonError('not_found', 'no such route');
    const resource = resourceUrl(hub, req);
    sendJson(
      res,
      200,
      {
        resource: path.endsWith('/mcp') ? `${resource}/mcp` : resource,
        authorization_servers: [external.issuer],
        bearer_methods_supported: ['header'],
        resource_name: 'Baton',
      },
      requestId,
    );
    return true;
  }
  if (path === '/api/v1/auth/token' && req.method === 'POST') {
    await exchange(hub, req, res, requestId);
    return true;
  }
  if (path === '/api/v1/auth/refresh' && req.method === 'POST') {
    await refresh(hub, req, res, requestId);
    return true;
  }
  return false;
}
