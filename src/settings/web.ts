import { z } from 'zod';
import { int, ms } from './kit.js';

/**
 * Browser sessions, the event stream and metrics (issue 10; src/api/http/session.ts, stream.ts,
 * metrics.ts). A session is a key exchanged for an HttpOnly cookie; it ends when idle for
 * `sessionIdleMs`, `sessionMaxMs` after login, at logout, or when its key is revoked.
 */
export const WEB_SETTINGS = {
  shape: {
    /** A browser session unused this long ends (ms). */
    sessionIdleMs: ms(60_000, 7 * 86_400_000).default(30 * 60_000),
    /** A browser session ends this long after login, used or not (ms). */
    sessionMaxMs: ms(60_000, 30 * 86_400_000).default(12 * 3_600_000),
    /** A comment line is sent on every open event stream this often, so proxies keep it open (ms). */
    streamHeartbeatMs: ms(100, 300_000).default(15_000),
    /** Open event streams per principal; more are refused (429). */
    streamMaxPerPrincipal: int(1, 1_000).default(8),
    /** Open event streams in all; more are refused (429). */
    streamMaxTotal: int(1, 100_000).default(2_000),
    /** An event stream whose unsent output exceeds this (a consumer not reading) is closed (bytes). */
    streamBufferBytes: int(1_024, 64 * 1024 * 1024).default(1024 * 1024),
    /** Bearer credential for `GET /metrics` besides an admin key; empty: admin keys only. At least 32 characters. */
    metricsToken: z
      .string()
      .max(512)
      .refine((v) => v === '' || v.length >= 32, 'expected at least 32 characters (or empty: admin keys only)')
      .default(''),
  },
  env: {
    sessionIdleMs: 'BATON_SESSION_IDLE_MS',
    sessionMaxMs: 'BATON_SESSION_MAX_MS',
    streamHeartbeatMs: 'BATON_STREAM_HEARTBEAT_MS',
    streamMaxPerPrincipal: 'BATON_STREAM_MAX_PER_PRINCIPAL',
    streamMaxTotal: 'BATON_STREAM_MAX_TOTAL',
    streamBufferBytes: 'BATON_STREAM_BUFFER_BYTES',
    metricsToken: 'BATON_METRICS_TOKEN',
  },
} as const;
