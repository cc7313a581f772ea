import { describe, expect, it } from 'vitest';
import { normalizeProjectPath } from '../../src/core/paths.js';

describe('normalizeProjectPath (S16)', () => {
  it.each([
    ['a/b/c', 'a/b/c'],
    ['a', 'a'],
    ['./a', 'a'],
    ['./a/./b', 'a/b'],
    ['a//b', 'a/b'],
    ['a\\b', 'a/b'],
    ['a\\b\\c.ts', 'a/b/c.ts'],
    ['a/b/', 'a/b'],
    ['a/b//', 'a/b'],
    ['a/b/../c', 'a/c'],
    ['a/../b', 'b'],
    ['src/**/*.ts', 'src/**/*.ts'],
    ['..foo', '..foo'],
    ['a/..b/c', 'a/..b/c'],
    ['....', '....'],
    ['.hidden/file', '.hidden/file'],
    ['dir with spaces/ü.txt', 'dir with spaces/ü.txt'],
    ['a/~/b', 'a/~/b'],
  ])('accepts %j as %j', (input, expected) => {
    expect(normalizeProjectPath(input)).toBe(expected);
  });

  it.each([
    ['empty', ''],
    ['parent', '..'],
    ['parent with trailing slash', '../'],
    ['parent then name', '../x'],
    ['escape after descending', 'a/../../x'],
    ['escape deep inside', 'a/b/../../../x'],
    ['backslash parent', '..\\x'],
    ['backslash escape', 'a\\..\\..\\x'],
    ['current dir', '.'],
    ['current dir slash', './'],
    ['collapses to current dir', 'a/..'],
    ['absolute', '/etc/passwd'],
    ['absolute root', '/'],
    ['backslash absolute', '\\etc\\passwd'],
    ['UNC path', '\\\\server\\share\\x'],
    ['drive letter backslash', 'C:\\x'],
    ['drive letter slash', 'c:/x'],
    ['drive relative', 'C:x'],
    ['home', '~/x'],
    ['home alone', '~'],
    ['other user home', '~root/.ssh'],
    ['NUL', 'a\u0000b'],
    ['newline', 'a\nb'],
    ['carriage return', 'a\rb'],
    ['tab', 'a\tb'],
    ['escape char', 'a\u001bb'],
    ['unit separator', 'a\u001fb'],
    ['DEL', 'a\u007fb'],
  ])('refuses %s (%j)', (_label, input) => {
    expect(normalizeProjectPath(input)).toBeNull();
  });

  it('accepts paths up to 1024 characters and refuses longer ones', () => {
    const ok = 'a'.repeat(1024);
    expect(normalizeProjectPath(ok)).toBe(ok);
    expect(normalizeProjectPath('a'.repeat(1025))).toBeNull();
    expect(normalizeProjectPath(`${'d/'.repeat(600)}x`)).toBeNull();
  });

  it('never returns a path that escapes, is absolute, or has a backslash', () => {
    const pieces = ['a', '..', '.', '', '\\', '/', 'b', '~', 'C:'];
    let seed = 7;
    const pick = (): string => {
      seed = (seed * 48271) % 2147483647;
      return pieces[seed % pieces.length]!;
    };
    for (let n = 0; n < 5000; n++) {
      let input = '';
      const len = 1 + (n % 8);
      for (let k = 0; k < len; k++) input += pick() + (k % 2 === 0 ? '/' : '');
      const out = normalizeProjectPath(input);
      if (out === null) continue;
      expect(out.startsWith('/')).toBe(false);
      expect(out.includes('\\')).toBe(false);
      expect(out.split('/')).not.toContain('..');
      expect(out.split('/')).not.toContain('.');
      expect(out).not.toBe('');
      expect(out.endsWith('/')).toBe(false);
    }
  });

  // BUG (src/core/paths.ts): the leading '/', drive and '~' checks run on the raw input, before
  // posix.normalize, so a './' or 'x/../' prefix smuggles them through and the result is one the
  // function itself refuses (not idempotent). Remove `.fails` once fixed.
  it.each(['./~/x', 'a/../~/x', './C:/x', 'a\\..\\C:\\x', 'x/../c:'])(
    'refuses %j, whose normalised form starts with a home or drive prefix',
    (input) => {
      expect(normalizeProjectPath(input)).toBeNull();
    },
  );

  it('returns only paths it would accept again unchanged (idempotent), for plain inputs', () => {
    for (const input of ['a/b/c', './a', 'a//b', 'a\\b', 'a/b/../c', 'x/./y/', '..foo/bar']) {
      const out = normalizeProjectPath(input);
      expect(out).not.toBeNull();
      expect(normalizeProjectPath(out!)).toBe(out);
    }
  });
});
