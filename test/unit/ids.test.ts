import { describe, expect, it } from 'vitest';
import { ID_PATTERN, base32, newId, type IdKind } from '../../src/core/ids.js';

const KINDS: IdKind[] = ['tsk', 'agt', 'tok', 'prj', 'req', 'evt'];

describe('newId (S9)', () => {
  it.each(KINDS)('makes %s ids of the form kind_ + 26 base32 characters', (kind) => {
    for (let i = 0; i < 200; i++) {
      const id = newId(kind);
      expect(id).toMatch(new RegExp(`^${kind}_[a-z2-7]{26}$`));
      expect(id).toMatch(ID_PATTERN(kind));
    }
  });

  it('makes 10k distinct ids', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 10_000; i++) ids.add(newId('tsk'));
    expect(ids.size).toBe(10_000);
  });

  it('is not sequential: random characters spread over the whole alphabet', () => {
    const firstChars = new Set<string>();
    const lastChars = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const body = newId('req').slice(4);
      firstChars.add(body[0]!);
      lastChars.add(body[25]!);
    }
    expect(firstChars.size).toBe(32);
    // The last character carries only 3 bits (128 = 25·5 + 3).
    expect(lastChars.size).toBe(8);
  });
});

describe('ID_PATTERN', () => {
  const body = 'abcdefghijklmnopqrstuvwxyz'.slice(0, 26);

  it('accepts a well-formed id of its kind only', () => {
    expect(ID_PATTERN('tsk').test(`tsk_${body}`)).toBe(true);
    expect(ID_PATTERN('agt').test(`tsk_${body}`)).toBe(false);
  });

  it.each([
    ['too short', `tsk_${body.slice(1)}`],
    ['too long', `tsk_${body}a`],
    ['upper case', `tsk_${body.toUpperCase()}`],
    ['digit outside base32', `tsk_${body.slice(1)}1`],
    ['padding', `tsk_${body.slice(1)}=`],
    ['missing underscore', `tsk${body}`],
    ['prefix text', `xtsk_${body}`],
    ['suffix text', `tsk_${body}\n`],
  ])('refuses %s', (_label, id) => {
    expect(ID_PATTERN('tsk').test(id)).toBe(false);
  });
});

describe('base32', () => {
  // RFC 4648 test vectors, lower case, no padding.
  it.each([
    ['', ''],
    ['f', 'my'],
    ['fo', 'mzxq'],
    ['foo', 'mzxw6'],
    ['foob', 'mzxw6yq'],
    ['fooba', 'mzxw6ytb'],
    ['foobar', 'mzxw6ytboi'],
  ])('encodes %j as %j', (input, expected) => {
    expect(base32(new TextEncoder().encode(input))).toBe(expected);
  });

  it('encodes 16 bytes as 26 characters', () => {
    expect(base32(new Uint8Array(16))).toBe('a'.repeat(26));
    expect(base32(new Uint8Array(16).fill(0xff))).toBe(`${'7'.repeat(25)}4`);
  });
});
