import { createHash } from 'node:crypto';
import type * as Jose from 'jose';
import type { JWTPayload, createRemoteJWKSet } from 'jose';
import { BatonError } from '../core/errors.js';
import { CLOCK_TOLERANCE_S } from './jwt.js';

/**
 * An external identity provider (S5): Baton as an OAuth 2.1 resource server. Tokens whose `iss`
 * is the configured issuer are verified against its JWKS (fetched from the configured URL, cached
 * by jose), with the server's allowlist of asymmetric algorithms only (so an HMAC token "signed"
 * with the public key is refused), the configured audience, `exp`/`nbf`/`iat`. The principal:
 * the agent linked to (issuer, `sub`) in the configured project (store: external_identities),
 * created on first use, named `sub` when that name is free and `namespacedName` otherwise, so an
 * external subject never becomes an API-key agent of the same name (issue 8); role from the
 * configured claim (mapped, and it must be a known role), for this token only: authentication
 * never rewrites the agent's stored role.
 */
export const EXTERNAL_ALGORITHMS = ['RS256', 'ES256'] as const;
const AGENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export interface ExternalOptions {
  issuer: string;
  jwksUrl: string;
  audience: string;
  roleClaim: string;
  /** claim value → role; empty: the claim value is the role. */
  roleMap: ReadonlyMap<string, string>;
  isRole: (role: string) => boolean;
  /** How long one JWKS fetch may take (ms). */
  timeoutMs?: number;
}

export interface ExternalIdentity {
  issuer: string;
  /** `sub`, a valid agent name. */
  name: string;
  role: string;
}

/**
 * The agent name for an external subject whose plain name is taken: `sub` (cut to fit) +
 * `@ext-` + 8 hex of a hash of issuer and subject. Stable, so a restart finds the same agent
 * through its link, and distinct per issuer.
 */
export function namespacedName(issuer: string, sub: string): string {
  const tag = createHash('sha256').update(`${issuer}\u0000${sub}`).digest('hex').slice(0, 8);
  return `${sub.slice(0, 64 - 13)}@ext-${tag}`;
}

const invalid = (): BatonError => new BatonError('unauthenticated', 'missing or invalid credentials');

/** jose is loaded on first use: a `baton mcp` that never sees a JWT starts without it (cold start). */
const jose = (): Promise<typeof Jose> => import('jose');

export class ExternalIssuer {
  private jwksSet: Promise<ReturnType<typeof createRemoteJWKSet>> | null = null;

  constructor(private readonly options: ExternalOptions) {}

  private jwks(): Promise<ReturnType<typeof createRemoteJWKSet>> {
    this.jwksSet ??= jose().then((j) =>
      j.createRemoteJWKSet(new URL(this.options.jwksUrl), { timeoutDuration: this.options.timeoutMs ?? 3_000 }),
    );
    return this.jwksSet;
  }

  get issuer(): string {
    return this.options.issuer;
  }

  /** True when the (unverified) token claims to come from this issuer: only routes it, proves nothing. */
  claims(token: string): boolean {
    try {
      const payload = token.split('.')[1];
      if (payload === undefined) return false;
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iss?: unknown };
      return claims.iss === this.options.issuer;
    } catch {
      return false;
    }
  }

  /** Fetches the JWKS ahead of the first token (errors are left to the first verification). */
  warm(): void {
    this.jwks()
      .then((set) => set.reload())
      .catch(() => undefined);
  }

  async verify(token: string, now: number): Promise<ExternalIdentity> {
    let payload: JWTPayload;
    try {
      const j = await jose();
      ({ payload } = await j.jwtVerify(token, await this.jwks(), {
        algorithms: [...EXTERNAL_ALGORITHMS],
        issuer: this.options.issuer,
        audience: this.options.audience,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(now),
        requiredClaims: ['exp', 'sub'],
      }));
    } catch {
      throw invalid();
    }
    const sub = payload.sub;
    if (typeof sub !== 'string' || !AGENT_NAME.test(sub)) throw invalid();
    const raw = (payload as Record<string, unknown>)[this.options.roleClaim];
    const values = Array.isArray(raw) ? raw : [raw];
    for (const v of values) {
      if (typeof v !== 'string') continue;
      const role = this.options.roleMap.size > 0 ? this.options.roleMap.get(v) : v;
      if (role !== undefined && this.options.isRole(role)) return { issuer: this.options.issuer, name: sub, role };
    }
    throw invalid();
  }
}

export function parseRoleMap(pairs: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const p of pairs) {
    const i = p.indexOf('=');
    map.set(p.slice(0, i), p.slice(i + 1));
  }
  return map;
}
