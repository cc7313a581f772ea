import { createHash } from 'node:crypto';

/**
 * Throttling of failed authentication (S6), per client address and per presented credential: a
 * sliding 60-second window of failures; over `perMinute` failures, that address (or credential)
 * is blocked for `blockMs`.
 *
 * A block refuses failures only, never a valid credential. All local agents share 127.0.0.1, so
 * a block that refused every request from an address let one misconfigured client (a typo, a
 * health check with an old key) lock out every agent on the machine. So:
 * - a request that presents no usable credential (none, or one that cannot be a key or token)
 *   from a blocked address is refused at once, before any store round (`check`);
 * - a request that presents a well-formed credential is always checked (one keyed hash and one
 *   indexed lookup); it succeeds if the credential is valid, and only if it fails is it answered
 *   429 instead of 401 (`fail`). Guessing stays as costly as before: a 256-bit key is not
 *   guessed, and every guess is still counted, audited and refused.
 * The credential is identified by a hash of the whole credential, not by its shown prefix: eleven
 * wrong keys that share a victim key's 10-character prefix (the prefix is shown in token lists)
 * blocked that prefix, and so the victim, from every address.
 *
 * State is in memory, per process: several server processes each keep their own count (the limit
 * then holds per process), and a restart forgets it.
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

export type ThrottleScope = 'address' | 'credential';

export interface ThrottleVerdict {
  /** Which limit refuses: the client address or the presented credential. */
  scope: ThrottleScope;
  retryAfterS: number;
  /** The first request refused in this block (later ones are not audited one by one). */
  first: boolean;
}

export interface FailureOutcome {
  /** A block that this failure started (the failure itself is still answered 401). */
  tripped: ThrottleVerdict | null;
  /** A block already running: this failure is refused with 429. */
  refused: ThrottleVerdict | null;
}

/** The throttle's name for a credential: a hash of all of it (never stored, never logged). */
export function credentialId(credential: string): string {
  return createHash('sha256').update(credential).digest('base64url').slice(0, 22);
}

export class AuthThrottle {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly perMinute: number,
    private readonly blockMs: number,
  ) {}

  /** Is this address blocked? For requests without a usable credential only: they are refused at once. */
  check(address: string | undefined, now: number): ThrottleVerdict | null {
    return address === undefined ? null : this.refusal('address', `a:${address}`, now);
  }

  /** Records one failure of `credential` (a credentialId) from `address`. */
  fail(address: string | undefined, credential: string | undefined, now: number): FailureOutcome {
    const out: FailureOutcome = { tripped: null, refused: null };
    for (const [scope, id] of keysOf(address, credential)) {
      out.refused ??= this.refusal(scope, id, now);
      let e = this.entries.get(id);
      if (e === undefined) {
        if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
        e = { failures: [], blockedUntil: 0, refused: 0 };
        this.entries.set(id, e);
      }
      if (e.blockedUntil > now) continue; // failures during a block are refused, not counted again
      e.failures = e.failures.filter((t) => t > now - WINDOW_MS);
      e.failures.push(now);
      if (e.failures.length > this.perMinute) {
        e.blockedUntil = now + this.blockMs;
        e.failures = [];
        e.refused = 0;
        out.tripped ??= { scope, retryAfterS: Math.ceil(this.blockMs / 1000), first: true };
      }
    }
    return out;
  }

  private refusal(scope: ThrottleScope, id: string, now: number): ThrottleVerdict | null {
    const e = this.entries.get(id);
    if (e === undefined || e.blockedUntil <= now) return null;
    e.refused++;
    return { scope, retryAfterS: Math.max(1, Math.ceil((e.blockedUntil - now) / 1000)), first: e.refused === 1 };
  }
}

function keysOf(address: string | undefined, credential: string | undefined): [ThrottleScope, string][] {
  const out: [ThrottleScope, string][] = [];
  if (address !== undefined) out.push(['address', `a:${address}`]);
  if (credential !== undefined) out.push(['credential', `c:${credential}`]);
  return out;
}
