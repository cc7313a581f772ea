import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { clientAddress } from './guard.js';

/**
 * Connections that have not yet authenticated, counted apart from the rest (S26). A connection
 * counts as pending until a request on it presented a credential that resolved (or whose body
 * arrived complete on the lean MCP path) or was answered with a success. When an address is at
 * its connection limit, a newcomer takes the slot of that address's oldest pending connection
 * instead of being refused: slow-body or keyless connections can hold slots only until someone
 * needs them, so they cannot lock an operator out. Authenticated connections are never evicted.
 */
export class PendingConnections {
  /** Per address, in arrival order (a Set iterates in insertion order). */
  private readonly byAddress = new Map<string, Set<Socket>>();
  /** Every pending connection → its address (read once: a closed socket forgets it). */
  private readonly all = new Map<Socket, string>();
  /** Sockets with our close listener (a connection can be tracked again after a refusal). */
  private readonly closing = new Set<Socket>();

  constructor(private readonly onEvict: (address: string) => void) {}

  /** Tracks every new connection (`secureConnection` on TLS, so the socket is the one requests see). */
  attach(server: Server, event: 'connection' | 'secureConnection'): void {
    server.on(event, (socket: Socket) => this.track(socket));
  }

  /** Counts a connection as pending: a new one, or one whose credential was just refused. */
  track(socket: Socket): void {
    if (socket.destroyed || this.all.has(socket)) return;
    const address = clientAddress(socket.remoteAddress);
    let mine = this.byAddress.get(address);
    if (mine === undefined) {
      mine = new Set();
      this.byAddress.set(address, mine);
    }
    mine.add(socket);
    this.all.set(socket, address);
    if (!this.closing.has(socket)) {
      this.closing.add(socket);
      socket.once('close', () => {
        this.closing.delete(socket);
        this.authenticated(socket);
      });
    }
  }

  /** Drops the address's oldest pending connection for a newcomer; false when it has none. */
  makeRoom(address: string): boolean {
    const oldest = this.byAddress.get(address)?.values().next().value;
    if (oldest === undefined) return false;
    this.authenticated(oldest);
    this.onEvict(address);
    oldest.destroy();
    return true;
  }

  /** The connection proved itself (or closed): it no longer counts as pending. */
  authenticated(socket: Socket): void {
    const address = this.all.get(socket);
    if (address === undefined) return;
    this.all.delete(socket);
    const mine = this.byAddress.get(address);
    if (mine === undefined) return;
    mine.delete(socket);
    if (mine.size === 0) this.byAddress.delete(address);
  }

  get size(): number {
    return this.all.size;
  }
}
