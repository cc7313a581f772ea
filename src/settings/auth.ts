import { z } from 'zod';
import { int, list, ms } from './kit.js';

/** An absolute http(s) URL, or empty for "not set". */
const urlOrEmpty = z
  .string()
  .max(2048)
  .refine((v) => v === '' || /^https?:\/\/[^\s]+$/.test(v), 'expected an http(s) URL or empty');

/**
 * Authentication settings (S2–S6). Access tokens are HS256 JWTs signed with the server's JWT
 * secret (secrets.json); an external OAuth issuer is used when `oauthIssuer` and `oauthJwksUrl`
 * are both set.
 */
export const AUTH_SETTINGS = {
  shape: {
    /** `iss` of the access tokens this hub issues and accepts. */
    jwtIssuer: z.string().min(1).max(256).default('baton'),
    /** `aud` of the access tokens this hub issues and accepts. */
    jwtAudience: z.string().min(1).max(256).default('baton'),
    /** Lifetime of an access token (ms). */
    accessTokenTtlMs: ms(60_000, 86_400_000).default(900_000),
    /** Lifetime of a refresh token family, from the exchange of the key (ms). */
    refreshTokenTtlMs: ms(60_000, 365 * 86_400_000).default(30 * 86_400_000),
    /** Failed authentications allowed per client address (and per key prefix) in any 60 s window. */
    authFailuresPerMinute: int(1, 10_000).default(10),
    /** How long an address or key prefix is refused once over the limit (ms). */
    authBlockMs: ms(1_000, 86_400_000).default(60_000),
    /** External issuer (`iss`) whose tokens are accepted; empty: none. */
    oauthIssuer: urlOrEmpty.default(''),
    /** JWKS of the external issuer. */
    oauthJwksUrl: urlOrEmpty.default(''),
    /** Audience the external tokens must carry; empty: `jwtAudience`. */
    oauthAudience: z.string().max(256).default(''),
    /** Claim of the external token that names the role. */
    oauthRoleClaim: z.string().regex(/^[A-Za-z0-9_.:/-]{1,100}$/).default('role'),
    /** `claimValue=role` pairs; empty: the claim must name a role itself. */
    oauthRoleMap: list(z.string().regex(/^[^=,\s]{1,100}=[a-z][a-z0-9_-]{0,31}$/, 'expected claimValue=role'), 50).default([]),
    /** Project the principals of external tokens belong to. */
    oauthProject: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/).default('default'),
    /** Public URL of this hub (protected-resource metadata); empty: from the request's Host. */
    oauthResourceUrl: urlOrEmpty.default(''),
  },
  env: {
    jwtIssuer: 'BATON_JWT_ISSUER',
    jwtAudience: 'BATON_JWT_AUDIENCE',
    accessTokenTtlMs: 'BATON_ACCESS_TOKEN_TTL_MS',
    refreshTokenTtlMs: 'BATON_REFRESH_TOKEN_TTL_MS',
    authFailuresPerMinute: 'BATON_AUTH_FAILURES_PER_MINUTE',
    authBlockMs: 'BATON_AUTH_BLOCK_MS',
    oauthIssuer: 'BATON_OAUTH_ISSUER',
    oauthJwksUrl: 'BATON_OAUTH_JWKS_URL',
    oauthAudience: 'BATON_OAUTH_AUDIENCE',
    oauthRoleClaim: 'BATON_OAUTH_ROLE_CLAIM',
    oauthRoleMap: 'BATON_OAUTH_ROLE_MAP',
    oauthProject: 'BATON_OAUTH_PROJECT',
    oauthResourceUrl: 'BATON_OAUTH_RESOURCE_URL',
  },
} as const;
