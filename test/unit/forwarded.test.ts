import { describe, expect, it } from 'vitest';
import { forwardedClient, forwardedEntry, toBlockList } from '../../src/core/net.js';

describe('X-Forwarded-For behind trusted proxies (core/net.ts)', () => {
  const trusted = toBlockList(['10.0.0.0/8', 'fd00::/8', '192.0.2.1']);

  it('reads one entry as an address, with or without a port, IPv6 bracketed or not', () => {
    expect(forwardedEntry(' 198.51.100.7 ')).toBe('198.51.100.7');
    expect(forwardedEntry('198.51.100.7:4711')).toBe('198.51.100.7');
    expect(forwardedEntry('2001:db8::1')).toBe('2001:db8::1');
    expect(forwardedEntry('[2001:db8::1]:443')).toBe('2001:db8::1');
    expect(forwardedEntry('::ffff:198.51.100.7')).toBe('198.51.100.7');
    for (const bad of ['unknown', '', 'host.example', '1.2.3', '[::1', '_hidden']) expect(forwardedEntry(bad)).toBeNull();
  });

  it('believes the header only from a trusted peer, and walks it from the right', () => {
    expect(forwardedClient('203.0.113.5', '198.51.100.7', trusted)).toBe('203.0.113.5');
    expect(forwardedClient('::ffff:10.1.1.1', '198.51.100.7', trusted)).toBe('198.51.100.7');
    expect(forwardedClient('10.1.1.1', undefined, trusted)).toBe('10.1.1.1');
    expect(forwardedClient('10.1.1.1', '6.6.6.6, 198.51.100.7, 10.9.9.9', trusted)).toBe('198.51.100.7');
    expect(forwardedClient('fd00::5', '2001:db8::7, fd00::9', trusted)).toBe('2001:db8::7');
    // Header lines in order (the first alone, or the lines reversed, would name 6.6.6.6).
    expect(forwardedClient('10.1.1.1', ['6.6.6.6', '198.51.100.7, 10.9.9.9'], trusted)).toBe('198.51.100.7');
    // Every hop trusted: the leftmost is the client (an internal caller).
    expect(forwardedClient('10.1.1.1', '10.2.2.2, 192.0.2.1', trusted)).toBe('10.2.2.2');
    // A malformed entry: the hop that passed it on is what is known.
    expect(forwardedClient('10.1.1.1', '198.51.100.7, garbage, 10.9.9.9', trusted)).toBe('10.9.9.9');
    expect(forwardedClient('10.1.1.1', '', trusted)).toBe('10.1.1.1');
  });
});
