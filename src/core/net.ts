import { BlockList, isIP } from 'node:net';

/**
 * Network addresses, in one place for everyone who checks them: the HTTP address lists (S24),
 * keys bound to addresses (S2), the loopback rule (S20) and production checks (S36).
 */

/** `localhost`, 127.0.0.0/8 and ::1 (bracketed or not). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** `::ffff:1.2.3.4` (an IPv4 client on a dual-stack socket) is 1.2.3.4. */
export function normalizeAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m !== null ? m[1]! : address;
}

/** An IP address or CIDR range (IPv4 or IPv6). */
export function isAddressOrCidr(value: string): boolean {
  const slash = value.indexOf('/');
  const addr = slash === -1 ? value : value.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) return false;
  if (slash === -1) return true;
  const bits = value.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/** A matcher for addresses and CIDR ranges; entries that are neither are skipped. */
export function toBlockList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const e of entries) {
    if (!isAddressOrCidr(e)) continue;
    const slash = e.indexOf('/');
    const addr = normalizeAddress(slash === -1 ? e : e.slice(0, slash));
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (slash === -1) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(e.slice(slash + 1)), type);
  }
  return list;
}

/** Whether `address` (normalised first) is in `list`; a non-address never is. */
export function inList(list: BlockList, address: string): boolean {
  const a = normalizeAddress(address);
  const family = isIP(a);
  return family !== 0 && list.check(a, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * One `X-Forwarded-For` entry as an address: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]`,
 * `[::1]:5678` (normalised); null when it is not one (a name, `unknown`, garbage).
 */
export function forwardedEntry(entry: string): string | null {
  let e = entry.trim();
  const bracket = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(e);
  if (bracket !== null) e = bracket[1]!;
  else if (/^\d+\.\d+\.\d+\.\d+:\d{1,5}$/.test(e)) e = e.slice(0, e.lastIndexOf(':'));
  return isIP(e) === 0 ? null : normalizeAddress(e);
}

/**
 * The client's address behind trusted proxies: the TCP peer when it is not trusted (then the
 * header is whatever the client wrote and is ignored); else `X-Forwarded-For` read from the right
 * (each proxy appends the address it got the request from), skipping trusted hops, and the first
 * address that is not trusted is the client. Entries left of it were written by that client and
 * can say anything. A malformed entry stops the walk at the hop that passed it on. Several
 * header lines count as one list, in order (RFC 9110 field combination).
 */
export function forwardedClient(peer: string, forwardedFor: string | readonly string[] | undefined, trusted: BlockList): string {
  let current = normalizeAddress(peer);
  if (forwardedFor === undefined || !inList(trusted, current)) return current;
  const entries = (typeof forwardedFor === 'string' ? [forwardedFor] : forwardedFor).flatMap((v) => v.split(','));
  for (let i = entries.length - 1; i >= 0; i--) {
    if (!inList(trusted, current)) break;
    const next = forwardedEntry(entries[i]!);
    if (next === null) break;
    current = next;
  }
  return current;
}
