import type { BlockList } from 'node:net';
import { inList, toBlockList } from '../core/net.js';
import type { Config } from '../config.js';
import type { AuditEntry } from '../store/journal.js';
import { AccessTokens } from './jwt.js';
import { ExternalIssuer, parseRoleMap } from './external.js';
import type { Secrets } from './secrets.js';
import { hashRefreshToken } from './refresh.js';
import { AuthThrottle, credentialId, type ThrottleVerdict } from './throttle.js';
import { BatonError } from '../core/errors.js';

/** Refusals by the failure throttle: answered by the transport (429), never as a tool result. */
const throttleRefusals = new WeakSet<BatonError>();

function throttled(retryAfterS: number): BatonError {
  const e = new BatonError('rate_limited', 'too many failed authentications; retry later', { retry_after_s: retryAfterS });
  throttleRefusals.add(e);
  return e;
}

/** Is this error a refusal of authentication itself (401, or 429 from the failure throttle)? */
export function isAuthRefusal(err: BatonError): boolean {
  return err.code === 'unauthenticated' || throttleRefusals.has(err);
}

/**
 * The authentication services of one hub: access tokens, the optional external issuer, the
 * failure throttle and address binding. Created in `Hub.open`; the HTTP surface finds them with
 * `authServices(hub)`.
 */
export class AuthServices {
  readonly access: AccessTokens;
  readonly external: ExternalIssuer | null;
  readonly throttle: AuthThrottle;
  private readonly bindings = new Map<string, BlockList>();
  private readonly pepper: Buffer;
  /** Told of each failed authentication, and (true) of each refused by the throttle: metrics. */
  onFailure: ((throttled: boolean) => void) | null = null;

  constructor(
    readonly config: Config,
    secrets: Secrets,
    isRole: (role: string) => boolean,
    private readonly audit: (entry: AuditEntry) => void,
  ) {
    this.access = new AccessTokens(secrets.jwtSecret, {
      issuer: config.jwtIssuer,
      audience: config.jwtAudience,
      ttlMs: config.accessTokenTtlMs,
    });
    this.external =
      config.oauthIssuer !== '' && config.oauthJwksUrl !== ''
        ? new ExternalIssuer({
            issuer: config.oauthIssuer,
            jwksUrl: config.oauthJwksUrl,
            audience: config.oauthAudience !== '' ? config.oauthAudience : config.jwtAudience,
            roleClaim: config.oauthRoleClaim,
            roleMap: parseRoleMap(config.oauthRoleMap),
            isRole,
          })
        : null;
    this.throttle = new AuthThrottle(config.authFailuresPerMinute, config.authBlockMs);
    this.pepper = secrets.keyPepper;
  }

  /** The stored form of a refresh token (keyed hash). */
  refreshHash(token: string): string {
    return hashRefreshToken(this.pepper, token);
  }

  /**
   * Records a failed authentication (S6); audits the block when this failure starts one. When the
   * caller's address or credential is already blocked, throws `rate_limited` (429 + Retry-After)
   * in place of the caller's own refusal: only failures are refused, never a valid credential.
   */
  failed(address: string | undefined, credential: string | undefined, now: number, requestId: string, transport: string): void {
    this.onFailure?.(false);
    const out = this.throttle.fail(address, credential === undefined ? undefined : credentialId(credential), now);
    if (out.tripped !== null) this.auditLimited(out.tripped, address, now, requestId, transport, 'blocked');
    if (out.refused !== null) {
      this.onFailure?.(true);
      if (out.refused.first) this.auditLimited(out.refused, address, now, requestId, transport, 'refused');
      throw throttled(out.refused.retryAfterS);
    }
  }

  /**
   * Refuses at once a request from a blocked address that presents no usable credential (no
   * store round); a request with a well-formed credential is always checked instead.
   */
  refuseUncredentialed(address: string | undefined, now: number, requestId: string, transport: string): void {
    const v = this.throttle.check(address, now);
    if (v === null) return;
    this.onFailure?.(true);
    if (v.first) this.auditLimited(v, address, now, requestId, transport, 'refused');
    throw throttled(v.retryAfterS);
  }

  /** An audit row of authentication itself (op `auth`, or `auth_token` / `auth_refresh`): ids and counts only. */
  auditAuth(
    entry: Omit<AuditEntry, 'op' | 'target' | 'params'> & { op?: string; target?: string | null; params?: Record<string, unknown> },
  ): void {
    const { params, ...rest } = entry;
    this.audit({ op: 'auth', target: null, ...rest, params: params === undefined ? null : JSON.stringify(params) });
  }

  /** A key may authenticate: not revoked, not expired, has its agent, and the address is one it is bound to. */
  keyIsLive(
    token: { revoked_at: number | null; expires_at: number | null; agent_id: string | null; allowed_addresses: string | null },
    address: string | undefined,
    now: number,
  ): boolean {
    return (
      token.revoked_at === null &&
      (token.expires_at === null || token.expires_at > now) &&
      token.agent_id !== null &&
      this.addressAllowed(token.allowed_addresses, address)
    );
  }

  private auditLimited(v: ThrottleVerdict, address: string | undefined, at: number, requestId: string, transport: string, what: string): void {
    this.auditAuth({
      at,
      requestId,
      projectId: null,
      principal: null,
      role: null,
      outcome: 'limited',
      code: 'rate_limited',
      transport,
      address: address ?? null,
      params: { throttle: what, scope: v.scope, retry_after_s: v.retryAfterS },
    });
  }

  /**
   * Address binding (S2): null or empty binding allows any address; otherwise the client's
   * address must be in one of the listed addresses or CIDR ranges. A call without a network
   * address (stdio, CLI) counts as loopback.
   */
  addressAllowed(bindingJson: string | null, address: string | undefined): boolean {
    if (bindingJson === null) return true;
    let list = this.bindings.get(bindingJson);
    if (list === undefined) {
      list = bindingList(bindingJson);
      if (this.bindings.size >= 1_000) this.bindings.clear();
      this.bindings.set(bindingJson, list);
    }
    return inList(list, address ?? '127.0.0.1');
  }
}

/** A key's stored binding (a JSON list of addresses and ranges); unreadable: allows nothing. */
function bindingList(json: string): BlockList {
  let entries: unknown;
  try {
    entries = JSON.parse(json);
  } catch {
    return toBlockList([]);
  }
  return toBlockList(Array.isArray(entries) ? entries.filter((e): e is string => typeof e === 'string') : []);
}

const registry = new WeakMap<object, AuthServices>();

export function registerAuthServices(hub: object, services: AuthServices): void {
  registry.set(hub, services);
}

export function authServices(hub: object): AuthServices {
  const s = registry.get(hub);
  if (s === undefined) throw new Error('authentication services not initialised');
  return s;
}
