import { createHash } from 'node:crypto';
import type { Credential } from '../../auth/jwt.js';
import { isId, isObject, type Id } from '../mcp/json-shape.js';
import type { ClientSignal } from './inflight.js';

/**
 * MCP cancellation over stateless HTTP. A client that gives up on a call (the SDKs' AbortSignal,
 * a user pressing Esc) sends `notifications/cancelled` with the call's JSON-RPC id in a POST of
 * its own and may keep the call's POST open, so the call's socket never tells that it was given
 * up: a waiting claim or inbox would go on and commit for a caller that no longer wants it.
 * Waiting calls in flight are listed here by (credential, JSON-RPC id); a cancel presented with
 * the same credential ends them as a departed client's would (nothing committed). Only the holder
 * of the credential a call was made with can cancel it; two sessions sharing one key and one id
 * at once both end (an ended wait is retried; a cancel that ends nothing would leave a claim held
 * for a whole lease). Only calls that wait are listed: the hot path pays two property reads.
 */
export class WaitCancels {
  private readonly waits = new Map<string, Set<ClientSignal>>();
  /**
   * Cancels that named no wait in flight, kept a few seconds (insertion order: oldest first): the
   * cancel's POST can be read before the call's (whose body is still arriving, or whose
   * connection is still in its TLS handshake), and the call, once listed, would go on.
   */
  private readonly early = new Map<string, number>();

  /** Lists the request's waiting calls (a body or a batch); the returned function unlists them. */
  register(key: Credential, body: unknown, signal: ClientSignal): (() => void) | null {
    let names: string[] | null = null;
    for (const message of Array.isArray(body) ? body : [body]) {
      if (!isWaitingCall(message)) continue;
      (names ??= []).push(nameOf(key, message.id));
    }
    if (names === null) return null;
    if (this.early.size > 0 && names.some((name) => this.takeEarly(name))) signal.abort();
    for (const name of names) {
      let set = this.waits.get(name);
      if (set === undefined) this.waits.set(name, (set = new Set()));
      set.add(signal);
    }
    return () => {
      for (const name of names) {
        const set = this.waits.get(name);
        set?.delete(signal);
        if (set?.size === 0) this.waits.delete(name);
      }
    };
  }

  /** Ends the waits the body's `notifications/cancelled` name (same credential); how many ended. */
  cancel(key: Credential, body: unknown): number {
    let ended = 0;
    for (const message of Array.isArray(body) ? body : [body]) {
      if (!isObject(message) || message.method !== 'notifications/cancelled' || 'id' in message) continue;
      const params = message.params;
      if (!isObject(params) || !isId(params.requestId)) continue;
      const name = nameOf(key, params.requestId);
      const waiting = this.waits.get(name);
      if (waiting === undefined) {
        this.keepEarly(name);
        continue;
      }
      for (const signal of waiting) {
        if (!signal.aborted) ended++;
        signal.abort();
      }
    }
    return ended;
  }

  private keepEarly(name: string): void {
    const now = performance.now();
    for (const [n, at] of this.early) {
      if (now - at < EARLY_CANCEL_MS && this.early.size < EARLY_CANCEL_MAX) break;
      this.early.delete(n);
    }
    this.early.delete(name);
    this.early.set(name, now);
  }

  private takeEarly(name: string): boolean {
    const at = this.early.get(name);
    if (at === undefined) return false;
    this.early.delete(name);
    return performance.now() - at < EARLY_CANCEL_MS;
  }

  /** Waiting calls listed, and cancels kept for calls not yet listed (tests). */
  get size(): number {
    return this.waits.size + this.early.size;
  }
}

/** How long a cancel that named no wait in flight is kept for its call (ms), and how many at most. */
const EARLY_CANCEL_MS = 5_000;
const EARLY_CANCEL_MAX = 1_024;

/** A tools/call whose arguments ask to wait (`wait_ms` above 0): the calls a cancel can still stop before they commit. */
function isWaitingCall(message: unknown): message is { id: Id } {
  if (!isObject(message) || message.method !== 'tools/call' || !isId(message.id)) return false;
  const params = message.params;
  if (!isObject(params)) return false;
  const args = params.arguments;
  return isObject(args) && typeof args.wait_ms === 'number' && args.wait_ms > 0;
}

/** The credential is kept only as a digest, with the id's JSON (1 and "1" are different ids). */
function nameOf(key: Credential, id: Id): string {
  return `${createHash('sha256').update(key.token ?? '').digest('base64url')} ${JSON.stringify(id)}`;
}
