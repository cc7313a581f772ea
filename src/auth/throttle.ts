/**
 * Throttling of failed authentication (S6): per client address and per key prefix, a sliding
 * 60-second window of failures; over `perMinute` failures, that address (or prefix) is refused
 * for `blockMs` — every request, even one that then presents a correct key — with 429 and
 * `Retry-After`. State is in memory, per process: several server processes each keep their own
 * count (the limit then holds per process), and a restart forgets it.
 */
const WINDOW_MS = 60_000;
/** Entries kept at most; the oldest are forgotten first (bounded memory under a spray of addresses). */
const MAX_ENTRIES = 50_000;

interface Entry {
  failures: number[];
  blockedUntil: number;
  /** Requests refused during the current block. */
  refused: number;
}

export interface ThrottleVerdict {
  /** Which limit refuses: the address or the key prefix. */
  scope: 'address' | 'prefix';
  retryAfterS: number;
  /** The first request refused in this block (later ones are not audited one by one). */
  first: boolean;
}

export class AuthThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly perMinute: number,
    private readonly blockMs: number,
  ) {}

  /** Null when the request may try to authenticate; else how long to wait. */
  check(address: string | undefined, prefix: string | undefined, now: number): ThrottleVerdict | null {
    for (const [scope, id] of keysOf(address, prefix)) {
      const e = this.entries.get(id);
      if (e !== undefined && e.blockedUntil > now) {
        e.refused++;
        return { scope, retryAfterS: Math.max(1, Math.ceil((e.blockedUntil - now) / 1000)), first: e.refused === 1 };
      }
    }
    return null;
  }

  /** Records one failure; returns the limit it tripped (a block starts now), or null. */
  fail(address: string | undefined, prefix: string | undefined, now: number): ThrottleVerdict | null {
    let tripped: ThrottleVerdict | null = null;
    for (const [scope, id] of keysOf(address, prefix)) {
      let e = this.entries.get(id);
      if (e === undefined) {
        if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
        e = { failures: [], blockedUntil: 0, refused: 0 };
        this.entries.set(id, e);
      }
      e.failures = e.failures.filter((t) => t > now - WINDOW_MS);
      e.failures.push(now);
      if (e.failures.length > this.perMinute && e.blockedUntil <= now) {
        e.blockedUntil = now + this.blockMs;
        e.failures = [];
        e.refused = 0;
        tripped ??= { scope, retryAfterS: Math.ceil(this.blockMs / 1000), first: true };
      }
    }
    return tripped;
  }
}

function keysOf(address: string | undefined, prefix: string | undefined): ['address' | 'prefix', string][] {
  const out: ['address' | 'prefix', string][] = [];
  if (address !== undefined) out.push(['address', `a:${address}`]);
  if (prefix !== undefined) out.push(['prefix', `p:${prefix}`]);
  return out;
}
