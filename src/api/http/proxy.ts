import type { IncomingMessage } from 'node:http';
import type { BlockList } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../../config.js';
import { forwardedClient, inList, normalizeAddress, toBlockList } from '../../core/net.js';

/**
 * Who a request comes from, behind a load balancer (`trustedProxies`, issue 9): only when the TCP
 * peer is a trusted proxy are `X-Forwarded-For` (the client's address, core/net.ts
 * `forwardedClient`) and `X-Forwarded-Proto` (whether the client used https) believed. With no
 * proxy trusted (the default) both headers are ignored: any client can write them.
 *
 * Resolved once per request when the server receives it (`bind`), then read by everyone who needs
 * the client: the per-address budget and address lists (guard.ts), the authentication throttle and
 * key address bindings (auth-routes.ts `credentialOf`), the audit `address`, the session cookie's
 * `__Host-`/Secure choice (session.ts).
 */
export interface Client {
  /** The client's address (the TCP peer's unless a trusted proxy forwarded it). */
  readonly address: string;
  /** TLS to this hub, or `X-Forwarded-Proto: https` from a trusted proxy. */
  readonly https: boolean;
  /** The address came from a trusted proxy's `X-Forwarded-For`. */
  readonly forwarded: boolean;
}

const clients = new WeakMap<IncomingMessage, Client>();

function tlsSocket(req: IncomingMessage): boolean {
  return (req.socket as Partial<TLSSocket>).encrypted === true;
}

export class ProxyTrust {
  private readonly trusted: BlockList | null;

  constructor(config: Pick<Config, 'trustedProxies'>) {
    this.trusted = config.trustedProxies.length === 0 ? null : toBlockList(config.trustedProxies);
  }

  /** Works out the request's client and remembers it for `clientOf`. */
  bind(req: IncomingMessage): Client {
    const peer = normalizeAddress(req.socket.remoteAddress ?? '');
    let client: Client;
    if (this.trusted === null) client = { address: peer, https: tlsSocket(req), forwarded: false };
    else {
      const address = forwardedClient(peer, req.headers['x-forwarded-for'], this.trusted);
      const viaProxy = inList(this.trusted, peer);
      // The first value is the scheme the client itself used (a proxy after the first appends the
      // scheme of its own hop). A client may write it too, but only ever for its own cookie: the
      // worst a false `https` does is a Secure cookie its browser will not send back over http.
      const proto = viaProxy ? firstValue(req.headers['x-forwarded-proto']) : undefined;
      client = { address, https: tlsSocket(req) || proto === 'https', forwarded: address !== peer };
    }
    clients.set(req, client);
    return client;
  }
}

function firstValue(header: string | string[] | undefined): string | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  return v?.split(',', 1)[0]?.trim().toLowerCase();
}

/** The request's client: as bound when the server received it, else the TCP peer. */
export function clientOf(req: IncomingMessage): Client {
  return clients.get(req) ?? { address: normalizeAddress(req.socket.remoteAddress ?? ''), https: tlsSocket(req), forwarded: false };
}
