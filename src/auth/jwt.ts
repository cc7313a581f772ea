import { randomBytes } from 'node:crypto';
import type * as Jose from 'jose';
import type { JWTPayload } from 'jose';

/** jose is loaded on first use: a `baton mcp` that never sees a JWT starts without it (cold start). */
const jose = (): Promise<typeof Jose> => import('jose');
import { BatonError } from '../core/errors.js';
import { ID_PATTERN } from '../core/ids.js';

/**
 * Access tokens (S3): HS256 JWTs signed with the server's JWT secret. The algorithm allowlist is
 * the server's (`HS256` only for its own tokens), never the token's; `iss`, `aud`, `exp`, `nbf`,
 * `iat`, `typ` and the header's exact shape are checked. A verified token still only names a key
 * (`tid`): the key row is checked on every use, so an access token dies with its key. A token
 * issued with a refresh family names it (`fam`), and dies with that family too (see
 * `accessFamilyLive` in refresh.ts: one indexed lookup per use).
 */
export const ACCESS_TYP = 'at+jwt';
export const LOCAL_ALGORITHMS = ['HS256'] as const;
/** Clock skew tolerated on `exp`/`nbf` (seconds). */
export const CLOCK_TOLERANCE_S = 5;
/** Longest credential accepted at all (a JWT from an external issuer can be a few KB). */
export const MAX_CREDENTIAL_LENGTH = 8192;

const JWT_SHAPE = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$/;
const TOKEN_ID = ID_PATTERN('tok');
const AGENT_ID = ID_PATTERN('agt');
const PROJECT_ID = ID_PATTERN('prj');
const FAMILY_ID = ID_PATTERN('fam');

export function looksLikeJwt(value: string): boolean {
  return value.length <= MAX_CREDENTIAL_LENGTH && JWT_SHAPE.test(value);
}

export interface AccessClaims {
  /** The agent id. */
  sub: string;
  /** The id of the API key the token was exchanged for. */
  tid: string;
  role: string;
  /** The project id. */
  prj: string;
  /** The refresh family the token was issued with (absent: none, e.g. an older token). */
  fam?: string;
}

export interface JwtOptions {
  issuer: string;
  audience: string;
  ttlMs: number;
}

const invalid = (): BatonError => new BatonError('unauthenticated', 'missing or invalid credentials');

export class AccessTokens {
  constructor(
    private readonly secret: Uint8Array,
    private readonly options: JwtOptions,
  ) {}

  get ttlMs(): number {
    return this.options.ttlMs;
  }

  async sign(claims: AccessClaims, now: number): Promise<{ token: string; expiresAt: number }> {
    const iat = Math.floor(now / 1000);
    const exp = iat + Math.floor(this.options.ttlMs / 1000);
    const { SignJWT } = await jose();
    const body = { tid: claims.tid, role: claims.role, prj: claims.prj, ...(claims.fam === undefined ? {} : { fam: claims.fam }) };
    const token = await new SignJWT(body)
      .setProtectedHeader({ alg: 'HS256', typ: ACCESS_TYP })
      .setSubject(claims.sub)
      .setIssuer(this.options.issuer)
      .setAudience(this.options.audience)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .setJti(randomBytes(16).toString('base64url'))
      .sign(this.secret);
    return { token, expiresAt: exp * 1000 };
  }

  /** Verifies signature and every claim; any failure is the one generic `unauthenticated`. */
  async verify(token: string, now: number): Promise<AccessClaims> {
    let payload: JWTPayload;
    try {
      // Only the header this server writes: no `kid`, `jku`, `jwk`, `x5u`, `crit`… to steer verification.
      const { decodeProtectedHeader, jwtVerify } = await jose();
      const header = decodeProtectedHeader(token);
      const keys = Object.keys(header).sort();
      if (keys.length !== 2 || keys[0] !== 'alg' || keys[1] !== 'typ') throw invalid();
      ({ payload } = await jwtVerify(token, this.secret, {
        algorithms: [...LOCAL_ALGORITHMS],
        issuer: this.options.issuer,
        audience: this.options.audience,
        typ: ACCESS_TYP,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(now),
        requiredClaims: ['exp', 'nbf', 'iat', 'sub', 'jti'],
      }));
    } catch {
      throw invalid();
    }
    const { sub, tid, role, prj, fam } = payload as Record<string, unknown>;
    if (typeof sub !== 'string' || !AGENT_ID.test(sub)) throw invalid();
    if (typeof tid !== 'string' || !TOKEN_ID.test(tid)) throw invalid();
    if (typeof prj !== 'string' || !PROJECT_ID.test(prj)) throw invalid();
    if (typeof role !== 'string' || role.length > 64) throw invalid();
    if (fam !== undefined && (typeof fam !== 'string' || !FAMILY_ID.test(fam))) throw invalid();
    return fam === undefined ? { sub, tid, role, prj } : { sub, tid, role, prj, fam };
  }
}

/**
 * A credential as a surface presents it to `Hub.resolver`: the token (API key or JWT) and, over
 * the network, the client's address, which address binding and throttling need.
 */
export interface Credential {
  readonly token: string | undefined;
  readonly address?: string;
}
