/**
 * Lock patterns: project-relative paths with simple globs (S16 applies as for plain paths).
 *
 * Syntax: segments separated by `/`; `*` matches any run of characters within a segment, `?` one
 * character, and a whole segment `**` matches zero or more segments. `[` and `{` are refused (no
 * classes or alternation yet). Everything else is literal.
 *
 * Semantics: a pattern covers every path it matches *and everything beneath it*, so a lock on
 * `src/auth` (a directory) covers `src/auth/login.ts`, and `src/**` covers `src` itself.
 * Two patterns overlap when some path is covered by both. The test below is exact for this syntax
 * (it finds a witness path whenever one exists), which the unit tests check both ways.
 */

import { BatonError } from './errors.js';

export type GlobResult = { ok: true; glob: string } | { ok: false; reason: string };

/**
 * The overlap test of two segments costs |p|·|q| steps, of two patterns up to the product of
 * their segment counts times that. 1024-character patterns with 16 stars took seconds per lock
 * call (issue 8); these caps bound one pair of segments to 257 rows of 9 words (`segmentsOverlap`),
 * and the work budget below bounds a whole call.
 */
export const MAX_LENGTH = 256;
/** Each `*` widens the overlap search; a cap keeps a conflict check cheap whatever the input. */
export const MAX_STARS = 8;

/**
 * Work allowed to one call's overlap checks, in units of pairs compared, automaton states and
 * bit-set words. A worst-case pair at the caps costs about 2,400 units (0.03–0.05 ms); ordinary
 * wildcard pairs (`**\/*.ts` against `src/**\/*.js`) cost 20–40; most pairs are decided by the
 * literal-prefix check for 1. The budget (about 40 worst-case pairs, some 2,500 wildcard pairs)
 * runs out in about 1 ms on an idle core; bench/glob-bomb.ts measured a whole refused attack call
 * (schema, overlap up to the budget, refusal) at p50 2–4 ms on the shared 2-core machine (load
 * average 8–13). A call holds the hub's write lock no longer than that; past the budget it is
 * refused with `too_complex`.
 */
export const GLOB_BUDGET = 100_000;

export class GlobBudget {
  constructor(public remaining: number = GLOB_BUDGET) {}

  spend(n: number): void {
    this.remaining -= n;
    if (this.remaining < 0) {
      throw new BatonError('too_complex', 'lock patterns too complex to compare: use fewer wildcards or shorter patterns');
    }
  }
}

/** No budget: for callers (tests) that compare a single pair of capped patterns. */
const unbounded = (): GlobBudget => new GlobBudget(Number.POSITIVE_INFINITY);

const rooted = (p: string): boolean => p.startsWith('/') || /^[a-zA-Z]:/.test(p) || p.startsWith('~');
const isWild = (segment: string): boolean => segment.includes('*') || segment.includes('?');

/** Normalises a lock pattern, or says why it is refused. */
export function normalizeGlob(input: string): GlobResult {
  if (input.length === 0) return { ok: false, reason: 'empty path' };
  if (input.length > MAX_LENGTH) return { ok: false, reason: `longer than ${MAX_LENGTH} characters` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(input)) return { ok: false, reason: 'control characters (NUL) are not allowed' };
  if (input.includes('[') || input.includes('{')) {
    return { ok: false, reason: '"[" and "{" globs are not supported; use *, ? and **' };
  }
  const slashed = input.replace(/\\/g, '/');
  if (rooted(slashed)) return { ok: false, reason: 'expected a project-relative path, not an absolute one' };
  const out: string[] = [];
  for (const raw of slashed.split('/')) {
    if (raw === '' || raw === '.') continue;
    if (raw === '..') {
      const last = out[out.length - 1];
      if (last === undefined) return { ok: false, reason: 'path escapes the project (..)' };
      // `x/*/..` or `**/..` names no single directory: refuse rather than guess.
      if (isWild(last)) return { ok: false, reason: '".." after a wildcard is not allowed' };
      out.pop();
      continue;
    }
    // `a**b` inside a segment is just `*`; `**/**` is one `**`.
    const segment = raw === '**' ? raw : raw.replace(/\*+/g, '*');
    if (segment === '**' && out[out.length - 1] === '**') continue;
    out.push(segment);
  }
  if (out.reduce((k, s) => k + (s.match(/\*+/g)?.length ?? 0), 0) > MAX_STARS) {
    return { ok: false, reason: `more than ${MAX_STARS} * wildcards` };
  }
  if (out.length === 0) return { ok: false, reason: 'path names the project root; use ** to lock everything' };
  const glob = out.join('/');
  // Checked again after normalising: `a/../C:/x` and `./~/x` must not turn into rooted paths.
  if (rooted(glob)) return { ok: false, reason: 'expected a project-relative path, not an absolute one' };
  return { ok: true, glob };
}

// ---------------------------------------------------------------- within one segment

/**
 * A string matched by both segment patterns (`*` any run, `?` one character, else literal), or
 * null. Product automaton over (i, j) with epsilon moves for `*`; exact.
 */
export function segmentWitness(p: string, q: string, budget: GlobBudget = unbounded()): string | null {
  const n = p.length;
  const m = q.length;
  const key = (i: number, j: number): number => i * (m + 1) + j;
  // Typed arrays, not a Map: the product automaton is walked once per state (a Map cost ~10x).
  const from = new Int32Array((n + 1) * (m + 1)).fill(-2);
  const via = new Array<string>((n + 1) * (m + 1));
  const start = key(0, 0);
  from[start] = -1;
  via[start] = '';
  const queue = new Int32Array((n + 1) * (m + 1));
  let tail = 0;
  queue[tail++] = start;
  const visit = (f: number, k: number, ch: string): void => {
    if (from[k] !== -2) return;
    from[k] = f;
    via[k] = ch;
    queue[tail++] = k;
  };
  for (let head = 0; head < tail; head++) {
    budget.spend(1);
    const k0 = queue[head]!;
    const i = Math.floor(k0 / (m + 1));
    const j = k0 - i * (m + 1);
    if (i === n && j === m) {
      let s = '';
      for (let k = k0; k !== start; k = from[k]!) s = via[k]! + s;
      // Segments are never empty; both patterns being all `*` is the only way to get here empty.
      return s === '' ? 'x' : s;
    }
    const a = p[i];
    const b = q[j];
    if (a === '*') visit(k0, key(i + 1, j), '');
    if (b === '*') visit(k0, key(i, j + 1), '');
    if (a === undefined || b === undefined) continue;
    const ch = a === '*' || a === '?' ? (b === '*' || b === '?' ? 'x' : b) : b === '*' || b === '?' || a === b ? a : null;
    if (ch === null) continue;
    if (a === '*' && b === '*') continue; // both stay: a self-loop
    visit(k0, key(a === '*' ? i : i + 1, b === '*' ? j : j + 1), ch);
  }
  return null;
}

/**
 * Whether two segment patterns share a string: the same product automaton as above, decided row
 * by row (one row per position in p) with the row held as a bit set over the positions in q, so
 * a row costs a few word operations instead of |q| cell visits. Every move increases i or j:
 * - down (i+1, j): p[i] is `*` (it matches nothing more), or q[j] is `*` and consumes p[i];
 * - across (i, j+1): q[j] is `*` (it matches nothing more), or p[i] is `*` and consumes q[j];
 * - diagonal: neither is `*` and the characters agree (`?` agrees with any).
 * Charged in full (rows × words) before it starts. The 256-character worst case is 257 rows of
 * 9 words: about 0.1 ms, against 2 ms for the cell table it replaced.
 */
export function segmentsOverlap(p: string, q: string, budget: GlobBudget = unbounded()): boolean {
  const n = p.length;
  const m = q.length;
  const words = (m >>> 5) + 1; // bits 0..m
  budget.spend((n + 1) * words);
  const qStar = new Uint32Array(words);
  const stars: number[] = [];
  for (let j = 0; j < m; j++) {
    if (q.charCodeAt(j) === STAR) {
      qStar[j >>> 5]! |= 1 << (j & 31);
      stars.push(j);
    }
  }
  const any = new Uint32Array(words); // j < m with q[j] not `*`: what `?` in p agrees with
  const byChar = new Map<number, Uint32Array>();
  for (let j = 0; j < m; j++) {
    const c = q.charCodeAt(j);
    if (c === STAR) continue;
    any[j >>> 5]! |= 1 << (j & 31);
  }
  const agree = (c: number): Uint32Array => {
    let mask = byChar.get(c);
    if (mask === undefined) {
      mask = new Uint32Array(words);
      for (let j = 0; j < m; j++) {
        const d = q.charCodeAt(j);
        if (d === c || d === QUESTION) mask[j >>> 5]! |= 1 << (j & 31);
      }
      byChar.set(c, mask);
    }
    return mask;
  };
  // Positions j < m, for "p[i] is `*` consumes q[j]": everything below bit m.
  const below = new Uint32Array(words);
  for (let j = 0; j < m; j++) below[j >>> 5]! |= 1 << (j & 31);
  let row = new Uint32Array(words);
  let next = new Uint32Array(words);
  row[0] = 1;
  for (let i = 0; ; i++) {
    const a = i < n ? p.charCodeAt(i) : -1;
    // Close the row under moves across.
    if (a === STAR) {
      // From the lowest reachable j, every j' > j is reachable (p's `*` eats q's characters).
      let w = 0;
      while (w < words && row[w] === 0) w++;
      if (w < words) {
        const low = row[w]! & -row[w]!;
        row[w] = (row[w]! | ~(low - 1)) >>> 0;
        for (let k = w + 1; k < words; k++) row[k] = 0xffffffff;
      }
    } else {
      for (const j of stars) if ((row[j >>> 5]! >>> (j & 31)) & 1) row[(j + 1) >>> 5]! |= 1 << ((j + 1) & 31);
    }
    if (i === n) return ((row[m >>> 5]! >>> (m & 31)) & 1) === 1;
    // Moves down and diagonal into the next row.
    const diag = a === STAR ? null : a === QUESTION ? any : agree(a);
    let carry = 0;
    let live = 0;
    for (let w = 0; w < words; w++) {
      const r = row[w]!;
      const down = a === STAR ? r : r & qStar[w]!;
      const d = diag === null ? 0 : r & diag[w]! & below[w]!;
      const v = (down | ((d << 1) | carry)) >>> 0;
      carry = d >>> 31;
      next[w] = v;
      live |= v;
    }
    if (live === 0) return false;
    [row, next] = [next, row];
  }
}

const STAR = '*'.charCodeAt(0);
const QUESTION = '?'.charCodeAt(0);

// ---------------------------------------------------------------- whole patterns

const segmentsOf = (glob: string): string[] => glob.split('/');

/**
 * A concrete path covered by both patterns (normalised globs), or null when they cannot overlap.
 * A pattern covers what it matches and everything beneath, i.e. it behaves as `P/**`; so this
 * intersects `P/**` with `Q/**` over segments, where `**` consumes any number of segments.
 */
export function overlapWitness(p: string, q: string, budget: GlobBudget = unbounded()): string | null {
  return overlapSearch(p, q, budget, (a, b) => segmentWitness(a, b, budget));
}

function overlapSearch(
  p: string,
  q: string,
  budget: GlobBudget,
  segment: (a: string, b: string) => string | null,
): string | null {
  const ps = [...segmentsOf(p), '**'];
  const qs = [...segmentsOf(q), '**'];
  const n = ps.length;
  const m = qs.length;
  const key = (i: number, j: number): number => i * (m + 1) + j;
  const parent = new Map<number, { from: number; seg: string | null }>();
  const start = key(0, 0);
  parent.set(start, { from: -1, seg: null });
  const queue: [number, number][] = [[0, 0]];
  const visit = (fi: number, fj: number, i: number, j: number, seg: string | null): void => {
    const k = key(i, j);
    if (parent.has(k)) return;
    parent.set(k, { from: key(fi, fj), seg });
    queue.push([i, j]);
  };
  // The same two segments meet again at other states (a `**` replays them): decide each pair once.
  const memo = new Map<string, string | null>();
  const segmentPair = (a: string, b: string): string | null => {
    const k = `${a}\u0000${b}`;
    let w = memo.get(k);
    if (w === undefined) {
      w = segment(a, b);
      memo.set(k, w);
    }
    return w;
  };
  for (let head = 0; head < queue.length; head++) {
    budget.spend(1);
    const [i, j] = queue[head]!;
    if (i === n && j === m) {
      const segs: string[] = [];
      for (let k = key(i, j); k !== start; ) {
        const step = parent.get(k)!;
        if (step.seg !== null) segs.unshift(step.seg);
        k = step.from;
      }
      // Both patterns reduced to `**`: every path is covered by both.
      return segs.length === 0 ? 'x' : segs.join('/');
    }
    const a = ps[i];
    const b = qs[j];
    if (a === '**') visit(i, j, i + 1, j, null);
    if (b === '**') visit(i, j, i, j + 1, null);
    if (a === undefined || b === undefined) continue;
    if (a === '**' && b === '**') continue; // both stay: a self-loop
    const seg = segmentPair(a === '**' ? '*' : a, b === '**' ? '*' : b);
    if (seg === null) continue;
    visit(i, j, a === '**' ? i : i + 1, b === '**' ? j : j + 1, seg);
  }
  return null;
}

/** The literal segments a pattern starts with (before its first wildcard). */
function literalPrefix(segs: readonly string[]): number {
  let k = 0;
  while (k < segs.length && !isWild(segs[k]!)) k++;
  return k;
}

/**
 * Do two normalised patterns overlap? A cheap literal-prefix check first (most lock pairs differ
 * in their first segments), then the exact test.
 */
export function globsOverlap(p: string, q: string, budget: GlobBudget = unbounded()): boolean {
  budget.spend(1);
  if (p === q) return true;
  const ps = segmentsOf(p);
  const qs = segmentsOf(q);
  const shared = Math.min(literalPrefix(ps), literalPrefix(qs));
  for (let k = 0; k < shared; k++) if (ps[k] !== qs[k]) return false;
  // One is a literal ancestor of (or equal to) the other: `src` covers all of `src/...`.
  if (shared === ps.length || shared === qs.length) return true;
  const yes = (a: string, b: string): string | null => (segmentsOverlap(a, b, budget) ? 'x' : null);
  return overlapSearch(ps.slice(shared).join('/'), qs.slice(shared).join('/'), budget, yes) !== null;
}

// ---------------------------------------------------------------- concrete paths

function segmentMatches(pattern: string, s: string): boolean {
  // Iterative wildcard match with backtracking to the last `*`.
  let i = 0;
  let j = 0;
  let star = -1;
  let mark = 0;
  while (j < s.length) {
    const c = pattern[i];
    if (c !== undefined && (c === '?' || (c !== '*' && c === s[j]))) {
      i++;
      j++;
    } else if (c === '*') {
      star = i++;
      mark = j;
    } else if (star >= 0) {
      i = star + 1;
      j = ++mark;
    } else return false;
  }
  while (pattern[i] === '*') i++;
  return i === pattern.length;
}

/**
 * Is the concrete project-relative `path` (taken literally, even if it contains `*` or `?`)
 * covered by the normalised pattern: matched by it, or beneath something it matches?
 */
export function globCovers(pattern: string, path: string): boolean {
  const ps = segmentsOf(pattern);
  const xs = path.split('/');
  // reach[i]: pattern prefix ps[0..i) can match the path prefix consumed so far.
  let reach = new Array<boolean>(ps.length + 1).fill(false);
  reach[0] = true;
  const close = (r: boolean[]): boolean[] => {
    for (let i = 0; i < ps.length; i++) if (r[i] === true && ps[i] === '**') r[i + 1] = true;
    return r;
  };
  reach = close(reach);
  if (reach[ps.length] === true) return true;
  for (const x of xs) {
    const next = new Array<boolean>(ps.length + 1).fill(false);
    for (let i = 0; i < ps.length; i++) {
      if (reach[i] !== true) continue;
      const seg = ps[i]!;
      if (seg === '**') next[i] = true;
      else if (segmentMatches(seg, x)) next[i + 1] = true;
    }
    reach = close(next);
    // The whole pattern matched a prefix of the path: the rest lies beneath it.
    if (reach[ps.length] === true) return true;
  }
  return false;
}
