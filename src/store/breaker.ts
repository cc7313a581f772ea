import { isBatonError, type BatonError } from '../core/errors.js';
import type { Db, WriteMode, WriteOptions, Executor, IntegrityReport, Migration, StoreFault, WriteFault } from './db.js';
import { storeFailure, storeFailureKind } from './faults.js';
import { sql } from './sql.js';

/**
 * A circuit breaker around a `Db` (S39). Without it, every request to a hub whose PostgreSQL is
 * down waits for its own connection attempt and fails late, and requests pile up behind the
 * pool. After `threshold` consecutive refusals of the store itself (`unavailable` because it
 * cannot be reached, lost a commit, or timed out; never plain contention, which proves the store
 * answers) the breaker opens: every read and write is refused at once with `unavailable` and a
 * `retry_after_s` (HTTP: 503 + Retry-After), and `/readyz` says `degraded` with the reason. While
 * open it probes the store on its own every `cooldownMs` (one `SELECT 1`: half-open); the first
 * probe that answers closes it, so the hub recovers without a restart or any traffic.
 */
export interface BreakerOptions {
  /** Consecutive store refusals that open the circuit. */
  readonly threshold: number;
  /** Time between probes while open (ms). */
  readonly cooldownMs: number;
  /** Told when the circuit opens or closes (the log). */
  readonly onChange?: (state: CircuitState) => void;
}

export interface CircuitState {
  readonly state: 'closed' | 'open' | 'half_open';
  /** What the store said last (generic: never a URL, a host or SQL). */
  readonly reason: string | null;
  /** When it opened (ms since epoch), while not closed. */
  readonly since: number | null;
  /** Consecutive refusals counted so far. */
  readonly failures: number;
}

/**
 * A refusal that says the store itself is gone (not: busy, a fault code, an op's own error such
 * as its client having left, nor the breaker's own refusal).
 */
export function isOutage(err: unknown): boolean {
  return storeFailureKind(err) === 'outage' && (err as BatonError).details?.circuit === undefined;
}

export class BreakerDb implements Db {
  private failures = 0;
  private state: CircuitState['state'] = 'closed';
  private reason: string | null = null;
  private since: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    readonly inner: Db,
    private readonly options: BreakerOptions,
  ) {}

  get profile(): Db['profile'] {
    return this.inner.profile;
  }

  circuit(): CircuitState {
    return { state: this.state, reason: this.reason, since: this.since, failures: this.failures };
  }

  read<T>(fn: (ex: Executor) => Promise<T>): Promise<T> {
    return this.guard(() => this.inner.read(fn));
  }

  write<T>(fn: (ex: Executor) => Promise<T>, mode?: WriteMode, project?: string, options?: WriteOptions): Promise<T> {
    return this.guard(() => this.inner.write(fn, mode, project, options));
  }

  subscribe(onCommit: () => void): () => void {
    return this.inner.subscribe(onCommit);
  }

  migrate(migrations: readonly Migration[], now: number): Promise<number> {
    return this.inner.migrate(migrations, now);
  }

  fault(): StoreFault | null {
    return this.inner.fault();
  }

  block(fault: WriteFault | null): void {
    this.inner.block(fault);
  }

  checkIntegrity(deep: boolean): Promise<IntegrityReport> {
    return this.guard(() => this.inner.checkIntegrity(deep));
  }

  lastIntegrity(): IntegrityReport | null {
    return this.inner.lastIntegrity();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.inner.close();
  }

  private refusal(): BatonError {
    const retry = Math.max(1, Math.ceil(this.options.cooldownMs / 1000));
    return storeFailure('outage', 'unavailable', `the store is unavailable (${this.reason ?? 'not answering'}); retry in ${retry} s`, { retry_after_s: retry, circuit: 'open' });
  }

  private async guard<T>(call: () => Promise<T>): Promise<T> {
    if (this.state !== 'closed') throw this.refusal();
    try {
      const out = await call();
      this.failures = 0;
      return out;
    } catch (err) {
      if (isOutage(err)) this.failed(err as BatonError);
      else this.failures = 0;
      throw err;
    }
  }

  private failed(err: BatonError): void {
    this.failures++;
    this.reason = err.message;
    if (this.state === 'closed' && this.failures >= this.options.threshold) this.open();
  }

  private open(): void {
    this.state = 'open';
    this.since = Date.now();
    this.options.onChange?.(this.circuit());
    this.schedule();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => void this.probe(), this.options.cooldownMs);
    // A hub shutting down must not be held open by its breaker.
    this.timer.unref();
  }

  /** Half-open: one read past the breaker; it answers → closed, else open for another cooldown. */
  private async probe(): Promise<void> {
    this.timer = null;
    if (this.closed) return;
    this.state = 'half_open';
    try {
      await this.inner.read((ex) => ex.get(sql`SELECT 1 AS ok`));
      this.state = 'closed';
      this.failures = 0;
      this.reason = null;
      this.since = null;
      this.options.onChange?.(this.circuit());
    } catch (err) {
      if (isBatonError(err) && err.code === 'unavailable') this.reason = err.message;
      this.state = 'open';
      this.schedule();
    }
  }
}

/** The circuit of a store opened through the factory, or null when it has no breaker. */
export function circuitOf(db: Db): CircuitState | null {
  return db instanceof BreakerDb ? db.circuit() : null;
}
