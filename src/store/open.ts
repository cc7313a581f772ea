import { join } from 'node:path';
import type { Config } from '../config.js';
import { BreakerDb, type CircuitState } from './breaker.js';
import type { Db, StoreFault } from './db.js';
import type { Durability } from './sqlite.js';

/** The SQLite database's file name in the data dir. */
export const DB_FILE = 'baton.db';
/** The data-dir files a backup carries (the hub's secrets): the only names a restore writes. */
export const SECRET_FILES = ['secrets.json', 'keyring.json'] as const;

/**
 * The backend factory: the only place that chooses a backend. A PostgreSQL URL opens the
 * PostgreSQL store (its driver is loaded only then); otherwise the SQLite file. Callers (the
 * hub, the deferred-audit worker, the doctor, `baton migrate`) get a `Db` and never name a backend.
 */
export interface StoreConfig {
  /** `postgres://…`: PostgreSQL. Absent: the SQLite `file`. */
  readonly url?: string | undefined;
  /** The SQLite database file (ignored for PostgreSQL). */
  readonly file: string;
  readonly busyTimeoutMs?: number;
  readonly durability?: Durability;
  /** How often waiters' cross-process doorbell polls (SQLite only; PostgreSQL is notified). */
  readonly pollMs?: number;
  readonly poolSize?: number;
  readonly statementTimeoutMs?: number;
  /** PostgreSQL: the schema Baton's tables live in (tests give each file its own). Default `public`. */
  readonly schema?: string;
  readonly onFault?: (err: unknown, fault: StoreFault) => void;
  /** PostgreSQL: consecutive outages that open the store's circuit breaker (breaker.ts); 0 = no breaker. */
  readonly breakerThreshold?: number;
  /** PostgreSQL: how often an open breaker probes the store (ms). */
  readonly breakerCooldownMs?: number;
  /** Told when the breaker opens or closes. */
  readonly onCircuit?: (state: CircuitState) => void;
}

/** The store settings of a hub's config (the data dir resolved by the caller). */
export function storeConfigOf(config: Config, dataDir: string): StoreConfig {
  return {
    url: config.databaseUrl,
    file: join(dataDir, DB_FILE),
    busyTimeoutMs: config.busyTimeoutMs,
    durability: config.durability,
    pollMs: config.pollMs,
    poolSize: config.poolSize,
    statementTimeoutMs: config.statementTimeoutMs,
    schema: config.databaseSchema,
    breakerThreshold: config.breakerThreshold,
    breakerCooldownMs: config.breakerCooldownMs,
  };
}

export type Backend = 'sqlite' | 'postgres';

export function backendOf(config: Pick<StoreConfig, 'url'>): Backend {
  return config.url !== undefined && config.url !== '' ? 'postgres' : 'sqlite';
}

export async function openStore(config: StoreConfig): Promise<Db> {
  if (backendOf(config) === 'postgres') {
    const { PostgresDb } = await import('./postgres.js');
    const db = await PostgresDb.open({
      url: config.url!,
      poolSize: config.poolSize,
      statementTimeoutMs: config.statementTimeoutMs,
      schema: config.schema,
      busyTimeoutMs: config.busyTimeoutMs,
      onFault: config.onFault,
    });
    // Only the networked backend gets a breaker: a SQLite file has no connection to lose, and its
    // faults (disk full, damage, read-only) are reported by fault() and refused per write already.
    const threshold = config.breakerThreshold ?? 5;
    if (threshold === 0) return db;
    return new BreakerDb(db, { threshold, cooldownMs: config.breakerCooldownMs ?? 2000, onChange: config.onCircuit });
  }
  const { SqliteDb } = await import('./sqlite.js');
  return new SqliteDb(config.file, {
    busyTimeoutMs: config.busyTimeoutMs,
    durability: config.durability,
    pollMs: config.pollMs,
    onFault: config.onFault,
  });
}
