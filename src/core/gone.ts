/**
 * What a call needs of its caller's "gone" signal: whether the caller has left, and a listener for
 * a wait to end when it leaves. An AbortSignal is one; the HTTP surface passes a lazier one
 * (api/http/inflight.ts ClientSignal), since most calls never wait.
 */
export interface GoneSignal {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}
