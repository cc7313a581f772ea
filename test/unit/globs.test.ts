import { describe, expect, it } from 'vitest';
import { globCovers, globsOverlap, GLOB_BUDGET, GlobBudget, MAX_LENGTH, MAX_STARS, segmentsOverlap, normalizeGlob, overlapWitness, segmentWitness } from '../../src/core/globs.js';

const norm = (s: string): string => {
  const r = normalizeGlob(s);
  if (!r.ok) throw new Error(`refused ${s}: ${r.reason}`);
  return r.glob;
};

describe('normalizeGlob', () => {
  it.each([
    ['src/a.ts', 'src/a.ts'],
    ['./src//a.ts', 'src/a.ts'],
    ['src/', 'src'],
    ['src\\win\\file.ts', 'src/win/file.ts'],
    ['src/x/../a.ts', 'src/a.ts'],
    ['src/**/**/a', 'src/**/a'],
    ['src/a**b', 'src/a*b'],
    ['src/***', 'src/*'],
    ['**', '**'],
    ['src/*.ts', 'src/*.ts'],
    ['docs/?.md', 'docs/?.md'],
  ])('%s → %s', (input, out) => {
    expect(norm(input)).toBe(out);
  });

  it.each([
    ['', 'empty'],
    ['/etc/passwd', 'absolute'],
    ['C:/x', 'absolute'],
    ['c:\\x', 'absolute'],
    ['~/x', 'absolute'],
    ['..', 'escapes'],
    ['../x', 'escapes'],
    ['a/../../x', 'escapes'],
    ['a/../C:/x', 'absolute'],
    ['./~/x', 'absolute'],
    ['a\u0000b', 'NUL'],
    ['a\nb', 'control'],
    ['src/*/../x', 'wildcard'],
    ['**/../x', 'wildcard'],
    ['.', 'root'],
    ['./', 'root'],
    ['a/..', 'root'],
    ['src/[ab].ts', '"["'],
    ['src/{a,b}.ts', '"{"'],
    ['x'.repeat(MAX_LENGTH + 1), 'longer'],
    [Array.from({ length: MAX_STARS + 1 }, () => '*').join('/'), 'wildcards'],
  ])('refuses %j (%s)', (input, why) => {
    const r = normalizeGlob(input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toContain(why);
  });
});

describe('segmentWitness', () => {
  it.each([
    ['a.ts', 'a.ts', true],
    ['a.ts', 'b.ts', false],
    ['*.ts', 'a.*', true],
    ['*.ts', '*.js', false],
    ['?', '??', false],
    ['a?c', '*b*', true],
    ['*a', 'b*', true],
    ['a*', 'b*', false],
    ['*x*y*', '*y*x*', true],
    ['*', '*', true],
  ])('%s ∩ %s: %s', (p, q, expected) => {
    const w = segmentWitness(p, q);
    expect(w !== null).toBe(expected);
    if (w !== null) {
      expect(globCovers(p, w)).toBe(true);
      expect(globCovers(q, w)).toBe(true);
    }
  });
});

describe('globsOverlap', () => {
  it.each([
    ['src/**', 'src/a.ts', true],
    ['src/*.ts', 'src/a.*', true],
    ['a/**', 'a', true],
    ['src', 'src/deep/file.ts', true], // a directory lock covers its contents
    ['src/a.ts', 'src/a.ts', true],
    ['src/a.ts', 'src/b.ts', false],
    ['src/*.ts', 'src/*.js', false],
    ['src/*.ts', 'test/*.ts', false],
    ['src/*/x.ts', 'src/a/y.ts', false],
    ['src/*/x.ts', 'src/a/x.ts', true],
    ['**/x.ts', 'lib/y.ts', true], // lib/y.ts/x.ts is beneath lib/y.ts
    ['**/*.md', 'docs/a.txt', true], // same: docs/a.txt/z.md
    ['**', 'anything', true],
    ['src/*', 'src', true],
    ['a/?', 'a/bc', false], // `?` is one character: a/b… and a/bc… share nothing
    ['a/?', 'a/b', true],
    ['a/?/c', 'a/bc/c', false],
    ['a/**/z', 'a/b/c/z', true],
    ['a/**/z', 'b/**', false],
    ['*/a', 'b/*', true],
    ['src/**/test/*.ts', 'lib/x.js', false],
    ['src/**/test/*.ts', 'src/x/test/y.js', true], // conservative: y.js might be a directory holding test/a.ts
    ['src/**/test/*.ts', 'src/**/*.js', true], // src/test/a.ts/x.js: beneath the ts match
  ])('%s vs %s: %s', (p, q, expected) => {
    const a = norm(p);
    const b = norm(q);
    expect(globsOverlap(a, b)).toBe(expected);
    expect(globsOverlap(b, a)).toBe(expected);
    const w = overlapWitness(a, b);
    expect(w !== null).toBe(expected);
    if (w !== null) {
      expect(globCovers(a, w)).toBe(true);
      expect(globCovers(b, w)).toBe(true);
    }
  });
});

describe('globCovers', () => {
  it.each([
    ['src/**', 'src', true],
    ['src/**', 'src/a/b/c.ts', true],
    ['src', 'src/a.ts', true],
    ['src', 'srcx/a.ts', false],
    ['src/*.ts', 'src/a.ts', true],
    ['src/*.ts', 'src/sub/a.ts', false],
    ['src/*.ts', 'src/a.ts/inner', true],
    ['*.md', 'README.md', true],
    ['*.md', 'docs/README.md', false],
    ['**/*.md', 'docs/README.md', true],
    ['a?c', 'abc', true],
    ['a?c', 'ac', false],
    ['a*', 'a*', true],
    ['a*b', 'a*', false],
  ])('%s covers %s: %s', (p, path, expected) => {
    expect(globCovers(norm(p), path)).toBe(expected);
  });
});

// ---------------------------------------------------------------- property checks

/** A small deterministic PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;

function randomSegment(r: () => number, wild: boolean): string {
  const len = 1 + Math.floor(r() * 3);
  let s = '';
  for (let i = 0; i < len; i++) s += pick(r, wild ? ['a', 'b', '.', '*', '?'] : ['a', 'b', '.']);
  return s;
}

function randomPattern(r: () => number): string {
  const n = 1 + Math.floor(r() * 3);
  const segs: string[] = [];
  for (let i = 0; i < n; i++) segs.push(r() < 0.2 ? '**' : randomSegment(r, true));
  const g = normalizeGlob(segs.join('/'));
  return g.ok ? g.glob : 'a';
}

function randomPath(r: () => number): string {
  const n = 1 + Math.floor(r() * 4);
  const segs: string[] = [];
  for (let i = 0; i < n; i++) {
    let s = randomSegment(r, false);
    if (s === '.' || s === '..') s = 'a';
    segs.push(s);
  }
  return segs.join('/');
}

describe('overlap properties (generated)', () => {
  it('never misses a true overlap: a path covered by both patterns means they overlap', () => {
    const r = rng(42);
    const patterns = Array.from({ length: 120 }, () => randomPattern(r));
    const paths = Array.from({ length: 600 }, () => randomPath(r));
    let both = 0;
    for (let i = 0; i < patterns.length; i++) {
      for (let j = i; j < patterns.length; j++) {
        const p = patterns[i]!;
        const q = patterns[j]!;
        const overlap = globsOverlap(p, q);
        expect(globsOverlap(q, p)).toBe(overlap);
        const shared = paths.find((x) => globCovers(p, x) && globCovers(q, x));
        if (shared !== undefined) {
          both++;
          if (!overlap) throw new Error(`missed overlap: ${p} vs ${q} both cover ${shared}`);
        }
      }
    }
    // The generator does produce overlapping pairs (the check above ran on real cases).
    expect(both).toBeGreaterThan(500);
  });

  it('is exact: whenever it reports an overlap, its witness path is covered by both patterns', () => {
    const r = rng(7);
    let overlapping = 0;
    let disjoint = 0;
    for (let k = 0; k < 4000; k++) {
      const p = randomPattern(r);
      const q = randomPattern(r);
      const w = overlapWitness(p, q);
      expect(w !== null).toBe(globsOverlap(p, q));
      if (w === null) {
        disjoint++;
        continue;
      }
      overlapping++;
      if (!globCovers(p, w) || !globCovers(q, w)) throw new Error(`bad witness ${w} for ${p} vs ${q}`);
    }
    expect(overlapping).toBeGreaterThan(100);
    expect(disjoint).toBeGreaterThan(100);
  });

  it('a concrete path (no wildcards) as a pattern overlaps a glob exactly when the glob covers it or a path beneath it', () => {
    const r = rng(99);
    for (let k = 0; k < 2000; k++) {
      const p = randomPattern(r);
      const x = randomPath(r);
      if (globCovers(p, x)) expect(globsOverlap(p, x)).toBe(true);
    }
  });

  it('the segment table agrees with the witness search on generated segments', () => {
    const r = rng(5);
    const alphabet = ['a', 'b', '*', '?'];
    const seg = (): string => {
      const n = 1 + Math.floor(r() * 7);
      return Array.from({ length: n }, () => alphabet[Math.floor(r() * alphabet.length)]!).join('');
    };
    // Long ones too: the table keeps rows as 32-bit words, so carries between words must hold.
    const longSeg = (): string => {
      const n = 25 + Math.floor(r() * 60);
      return Array.from({ length: n }, () => (r() < 0.04 ? '*' : r() < 0.05 ? '?' : r() < 0.9 ? 'a' : 'b')).join('');
    };
    let yes = 0;
    for (let k = 0; k < 6000; k++) {
      const p = k % 3 === 0 ? longSeg() : seg();
      const q = k % 3 === 0 ? longSeg() : seg();
      const w = segmentWitness(p, q) !== null;
      expect(segmentsOverlap(p, q)).toBe(w);
      if (w) yes++;
    }
    expect(yes).toBeGreaterThan(500);
  });

  it('bounds the work on adversarial star patterns: a fixed budget is spent or the call is refused with too_complex', () => {
    // The issue-8 bomb, cut to the caps: one long segment, every star used, never matching.
    const bomb = (c: string, last: string): string =>
      norm(('*' + c.repeat(MAX_LENGTH / 8 - 1)).repeat(8).slice(0, MAX_LENGTH - 1) + last);
    const a = bomb('a', 'b');
    const b = bomb('a', 'c');
    expect(a.length).toBe(MAX_LENGTH);
    // One pair fits the budget and is decided exactly.
    const one = new GlobBudget();
    expect(globsOverlap(a, b, one)).toBe(false);
    expect(one.remaining, 'the pair was charged to the budget').toBeLessThan(GLOB_BUDGET);
    // Many such pairs in one call exhaust it and are refused, after a bounded amount of work.
    const many = new GlobBudget();
    let refused: unknown;
    let compared = 0;
    try {
      for (let i = 0; i < 500; i++) {
        globsOverlap(a, bomb('a', String(i % 10)) + `/${i}`, many);
        compared++;
      }
    } catch (err) {
      refused = err;
    }
    expect((refused as { code?: string } | undefined)?.code).toBe('too_complex');
    // Each worst-case pair costs its table (257 rows × 9 words), charged before it is filled.
    expect(compared).toBeLessThan(GLOB_BUDGET / 2_000);
    expect(compared).toBeGreaterThan(GLOB_BUDGET / 3_000);
  });
});
