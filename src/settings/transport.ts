import { z } from 'zod';
import { isAddressOrCidr } from '../core/net.js';
import { bool, int, list, ms } from './kit.js';

/**
 * Transport and network settings (S19–S26): TLS files, plain-HTTP refusal beyond loopback,
 * allowed Host names, the CORS allowlist, client address allow/deny lists, rate limits and
 * connection limits. Lists are checked here, at start, and compiled once by src/api/http/guard.ts.
 */

/** An origin as a browser sends it: scheme, host and optional port; nothing else. */
function isOrigin(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === v.toLowerCase().replace(/\/$/, '');
  } catch {
    return false;
  }
}

const hostname = z
  .string()
  .min(1)
  .max(253)
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)$/, 'expected a host name, an IPv4 address or a bracketed IPv6 address');
const cidr = z.string().min(1).max(64).refine(isAddressOrCidr, 'expected an IP address or CIDR block');
const origin = z.string().min(1).max(300).refine(isOrigin, 'expected an origin such as https://app.example:8443');

export const TRANSPORT_SETTINGS = {
  shape: {
    /** PEM certificate file; with tlsKey, the hub serves HTTPS only (TLS 1.2 or newer). */
    tlsCert: z.string().max(4096).default(''),
    /** PEM private key file of tlsCert. */
    tlsKey: z.string().max(4096).default(''),
    /** Serve plain HTTP on a non-loopback address (e.g. behind a TLS-terminating proxy). */
    allowInsecureHttp: bool().default(false),
    /** HSTS max-age (seconds) sent when TLS is on; 0 sends no HSTS header. */
    hstsMaxAgeS: int(0, 63_072_000).default(31_536_000),
    /** Host names accepted in `Host` and `Origin` besides loopback names and the bind address. */
    allowedHosts: list(hostname, 100).default([]),
    /** Origins that get CORS access (exact scheme://host[:port]); empty: CORS off. Their host must also be allowed. */
    corsOrigins: list(origin, 100).default([]),
    /** Client addresses allowed to connect (IPs or CIDR blocks, v4/v6); empty: every address. */
    ipAllow: list(cidr, 1000).default([]),
    /** Client addresses refused (IPs or CIDR blocks); wins over ipAllow. */
    ipDeny: list(cidr, 1000).default([]),
    /**
     * Load balancers and reverse proxies (IPs or CIDR blocks, v4/v6) whose `X-Forwarded-For` and
     * `X-Forwarded-Proto` are believed (src/api/http/proxy.ts); empty: no proxy, both headers ignored.
     */
    trustedProxies: list(
      cidr.refine((v) => !/\/0+$/.test(v), 'a /0 block would trust every client to name its own address: list the proxies'),
      100,
    ).default([]),
    /** Rate limits on or off (all of them). */
    rateLimit: bool().default(true),
    /** HTTP requests per client address per minute (token bucket: the whole minute may come as a burst). */
    rateLimitAddressPerMin: int(1, 10_000_000).default(6_000),
    /** Read-class op calls per principal per minute. */
    rateLimitReadPerMin: int(1, 10_000_000).default(6_000),
    /** Write-class op calls per principal per minute. */
    rateLimitWritePerMin: int(1, 10_000_000).default(3_000),
    /** Admin-class op calls (admin/debug tier permissions) per principal per minute. */
    rateLimitAdminPerMin: int(1, 10_000_000).default(600),
    /** Open connections in total; more are dropped. */
    maxConnections: int(1, 1_000_000).default(1_024),
    /** Open connections per client address. */
    maxConnectionsPerAddress: int(1, 1_000_000).default(256),
    /** New connections per client address per minute. */
    connectionRatePerMin: int(1, 10_000_000).default(1_200),
    /** A connection idle this long (between requests, or before its first request) is closed (ms). */
    idleTimeoutMs: ms(100, 600_000).default(65_000),
  },
  env: {
    tlsCert: 'BATON_TLS_CERT',
    tlsKey: 'BATON_TLS_KEY',
    allowInsecureHttp: 'BATON_ALLOW_INSECURE_HTTP',
    hstsMaxAgeS: 'BATON_HSTS_MAX_AGE_S',
    allowedHosts: 'BATON_ALLOWED_HOSTS',
    corsOrigins: 'BATON_CORS_ORIGINS',
    ipAllow: 'BATON_IP_ALLOW',
    ipDeny: 'BATON_IP_DENY',
    trustedProxies: 'BATON_TRUSTED_PROXIES',
    rateLimit: 'BATON_RATE_LIMIT',
    rateLimitAddressPerMin: 'BATON_RATE_LIMIT_ADDRESS_PER_MIN',
    rateLimitReadPerMin: 'BATON_RATE_LIMIT_READ_PER_MIN',
    rateLimitWritePerMin: 'BATON_RATE_LIMIT_WRITE_PER_MIN',
    rateLimitAdminPerMin: 'BATON_RATE_LIMIT_ADMIN_PER_MIN',
    maxConnections: 'BATON_MAX_CONNECTIONS',
    maxConnectionsPerAddress: 'BATON_MAX_CONNECTIONS_PER_ADDRESS',
    connectionRatePerMin: 'BATON_CONNECTION_RATE_PER_MIN',
    idleTimeoutMs: 'BATON_IDLE_TIMEOUT_MS',
  },
} as const;
