import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { GoneSignal } from '../../core/gone.js';

/**
 * A request's client-gone signal. Most calls only ask whether the client has left (a flag); only
 * a call that pauses to wait listens for it, and only then is an AbortController made: creating
 * one per request was ~2 % of `baton serve`'s CPU under claim+complete load (docs/BENCHMARKS.md).
 */
export class ClientSignal implements GoneSignal {
  private gone = false;
  private controller: AbortController | null = null;

  get aborted(): boolean {
    return this.gone;
  }

  /** The client left before its answer was complete. */
  abort(): void {
    if (this.gone) return;
    this.gone = true;
    this.controller?.abort();
  }

  /** A real AbortSignal, for an API that needs one (made on first use; aborted if the client already left). */
  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.gone) this.controller.abort();
    }
    return this.controller.signal;
  }

  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void {
    this.signal.addEventListener(type, listener, options);
  }

  removeEventListener(type: 'abort', listener: () => void): void {
    this.controller?.signal.removeEventListener(type, listener);
  }
}


/**
 * Requests in flight, for a graceful stop. Each request gets a signal (ClientSignal) that fires when its
 * client goes away before the answer is complete (the socket closed under it): the runner then
 * ends its wait without committing anything for it. A drain marks every open response
 * `Connection: close` and ends when none is left (or its time is up).
 */
export class InFlight {
  private readonly open = new Set<ServerResponse>();
  /** The requests in flight on each socket, ended when it closes (track). */
  private readonly bySocket = new WeakMap<Socket, Set<() => void>>();
  private draining = false;
  private idle: (() => void) | null = null;

  /**
   * Tracks one request; the returned signal aborts if its client leaves before the answer is
   * complete. Its socket's close counts as well as the response's: a request pipelined behind
   * another on a keep-alive socket has no socket of its own response yet, and node emits no
   * 'close' on such a queued response when the socket dies (its wait would go on and commit
   * for nobody, and the response stay in `open` through the next drain).
   */
  track(req: IncomingMessage, res: ServerResponse): ClientSignal {
    const gone = new ClientSignal();
    this.open.add(res);
    const socket = req.socket;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      this.bySocket.get(socket)?.delete(end);
      if (!res.writableFinished) gone.abort();
      this.open.delete(res);
      if (this.draining && this.open.size === 0) this.idle?.();
    };
    res.once('close', end);
    // One 'close' listener per socket, however many requests are pipelined on it (one each made
    // node warn of a leak past ten, and cost a linear removal per answer).
    let ends = this.bySocket.get(socket);
    if (ends === undefined) {
      const set = new Set<() => void>();
      this.bySocket.set(socket, (ends = set));
      socket.once('close', () => {
        for (const f of [...set]) f();
      });
    }
    ends.add(end);
    return gone;
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get count(): number {
    return this.open.size;
  }

  /** From now on new requests are refused; resolves true when none is in flight, false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    this.draining = true;
    // Answers still to come close their connection: no request follows them on it.
    for (const res of this.open) if (!res.headersSent) res.shouldKeepAlive = false;
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idle = null;
        resolve(false);
      }, timeoutMs);
      this.idle = () => {
        clearTimeout(timer);
        this.idle = null;
        resolve(true);
      };
    });
  }
}
