import type { Config } from '../config.js';
import { TIERS, type Permission } from '../core/roles.js';
import type { OpDef } from './catalog.js';

/**
 * Rate limits (S25): token buckets keyed by a principal, a client address or anything else. A
 * bucket holds `perMinute` tokens (the whole minute may come as a burst) and refills continuously.
 * Time is passed in (ms), so tests drive it with a ManualClock. The number of keys is bounded:
 * past `maxKeys`, full buckets are dropped, then the oldest ones.
 */
interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;

  constructor(
    readonly perMinute: number,
    private readonly maxKeys = 50_000,
  ) {
    this.perMs = perMinute / 60_000;
  }

  /** Takes one token for `key`: 0 when granted, else the seconds until one is available (≥ 1). */
  take(key: string, now: number): number {
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      b = { tokens: this.perMinute, at: now };
      this.buckets.set(key, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.perMinute, b.tokens + (now - b.at) * this.perMs);
      b.at = now;
    }
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.perMs / 1000));
  }

  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + Math.max(0, now - b.at) * this.perMs >= this.perMinute) this.buckets.delete(k);
    }
    if (this.buckets.size < this.maxKeys) return;
    let n = Math.max(1, this.maxKeys >> 2);
    for (const k of this.buckets.keys()) {
      if (n-- <= 0) break;
      this.buckets.delete(k);
    }
  }
}

export type OpClass = 'read' | 'write' | 'admin';

const ADMIN_PERMISSIONS: ReadonlySet<Permission> = new Set([...TIERS.admin, ...TIERS.debug]);

/** An op's class: admin when its permission is of the admin or debug tier, else by its kind. */
export function opClass(op: Pick<OpDef, 'kind' | 'permission'>): OpClass {
  if (ADMIN_PERMISSIONS.has(op.permission)) return 'admin';
  return op.kind === 'write' ? 'write' : 'read';
}

/** Per-principal limits, one bucket set per op class. */
export class OpRateLimiter {
  private readonly byClass: Readonly<Record<OpClass, TokenBuckets>>;

  constructor(limits: { read: number; write: number; admin: number }) {
    this.byClass = {
      read: new TokenBuckets(limits.read),
      write: new TokenBuckets(limits.write),
      admin: new TokenBuckets(limits.admin),
    };
  }

  /** null when rate limits are off. */
  static fromConfig(config: Config): OpRateLimiter | null {
    if (!config.rateLimit) return null;
    return new OpRateLimiter({
      read: config.rateLimitReadPerMin,
      write: config.rateLimitWritePerMin,
      admin: config.rateLimitAdminPerMin,
    });
  }

  /** One call of `op` by `principalKey` (an agent id): 0 when allowed, else seconds to wait. */
  take(principalKey: string, op: Pick<OpDef, 'kind' | 'permission'>, now: number): number {
    return this.byClass[opClass(op)].take(principalKey, now);
  }

  /** One request of class `cls` answered outside an op (the browser session's routes). */
  takeClass(principalKey: string, cls: OpClass, now: number): number {
    return this.byClass[cls].take(principalKey, now);
  }
}
