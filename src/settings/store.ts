import { z } from 'zod';
import { int, ms } from './kit.js';

/** Settings of the store area (fragment spread into ConfigSchema; env names beside each). */
export const STORE_SETTINGS = {
  shape: {
    /**
     * `full` (default): an acknowledged write is on disk (SQLite synchronous = FULL; group commit
     * shares one fsync per batch, inside its COMMIT). `full-threaded`: as durable, the fsync runs
     * on the thread pool while the process serves other requests (answers wait for it): for disks
     * whose fsync is slow. `normal`: faster, survives a crash of the process but not a power loss
     * or an OS crash (the last commits before it may roll back).
     */
    durability: z.enum(['full', 'full-threaded', 'normal']).default('full'),
    /**
     * A PostgreSQL URL (`postgres://user:pass@host:5432/db`): the hub keeps its data there instead
     * of the SQLite file in the data dir (which still holds secrets and keys). Unset: SQLite.
     * Never logged (it may carry a password).
     */
    databaseUrl: z
      .string()
      .regex(/^postgres(ql)?:\/\/\S+$/, 'a postgres:// or postgresql:// URL')
      .optional(),
    /** PostgreSQL: the schema Baton's tables live in (created if missing); several hubs may share one database under different schemas. */
    databaseSchema: z
      .string()
      .regex(/^[a-z_][a-z0-9_]{0,62}$/, 'lower-case letters, digits and _ (at most 63), not starting with a digit')
      .default('public'),
    /** PostgreSQL: connections in the pool (per hub process). */
    poolSize: int(1, 200).default(10),
    /** PostgreSQL: statement_timeout of every connection (ms); a statement past it fails, its transaction rolls back. */
    statementTimeoutMs: ms(100, 600_000).default(30_000),
    /**
     * PostgreSQL: consecutive store outages (cannot connect, connection lost, statement timeout;
     * not contention) after which the circuit breaker opens: calls are refused at once with
     * 503 `unavailable` + Retry-After and /readyz says degraded, until a probe answers. 0 = off.
     */
    breakerThreshold: int(0, 1000).default(5),
    /** PostgreSQL: time between the open breaker's probes of the store (ms); also its Retry-After. */
    breakerCooldownMs: ms(100, 300_000).default(2_000),
  },
  env: {
    durability: 'BATON_DURABILITY',
    databaseUrl: 'BATON_DATABASE_URL',
    databaseSchema: 'BATON_DATABASE_SCHEMA',
    poolSize: 'BATON_POOL_SIZE',
    statementTimeoutMs: 'BATON_STATEMENT_TIMEOUT_MS',
    breakerThreshold: 'BATON_BREAKER_THRESHOLD',
    breakerCooldownMs: 'BATON_BREAKER_COOLDOWN_MS',
  },
} as const;
