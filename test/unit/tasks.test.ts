import { describe, expect, it } from 'vitest';
import {
  FINAL_STATES,
  HELD_STATES,
  TASK_STATES,
  afterFailure,
  backoffDelay,
  findCycle,
  isFinal,
  isHeld,
  presence,
  topoOrder,
  type BackoffPolicy,
} from '../../src/core/tasks.js';

function graph(edges: Record<string, string[]>): Map<string, string[]> {
  return new Map(Object.entries(edges));
}

/** A reported cycle must start and end at the same node and follow real edges. */
function expectValidCycle(g: ReadonlyMap<string, readonly string[]>, cycle: string[] | null): void {
  expect(cycle).not.toBeNull();
  const c = cycle!;
  expect(c.length).toBeGreaterThanOrEqual(2);
  expect(c[0]).toBe(c[c.length - 1]);
  for (let i = 0; i + 1 < c.length; i++) expect(g.get(c[i]!)).toContain(c[i + 1]);
  // Each node appears once, apart from the repeated first/last one.
  expect(new Set(c.slice(0, -1)).size).toBe(c.length - 1);
}

describe('findCycle', () => {
  it('returns null for an empty graph', () => {
    expect(findCycle(new Map())).toBeNull();
  });

  it('returns null for a graph without cycles', () => {
    expect(findCycle(graph({ a: ['b', 'c'], b: ['d'], c: ['d'], d: [] }))).toBeNull();
    expect(findCycle(graph({ a: [], b: [], c: ['a', 'b'] }))).toBeNull();
  });

  it('does not mistake a diamond (shared dependency reached twice) for a cycle', () => {
    expect(findCycle(graph({ top: ['l', 'r'], l: ['bottom'], r: ['bottom'], bottom: [] }))).toBeNull();
  });

  it('finds a self loop', () => {
    expect(findCycle(graph({ a: ['a'] }))).toEqual(['a', 'a']);
  });

  it('finds a self loop behind other edges', () => {
    expect(findCycle(graph({ a: ['b'], b: ['c', 'b'], c: [] }))).toEqual(['b', 'b']);
  });

  it('finds a 2-cycle', () => {
    const g = graph({ a: ['b'], b: ['a'] });
    expect(findCycle(g)).toEqual(['a', 'b', 'a']);
  });

  it('names the exact path of a long cycle, starting and ending at the same node', () => {
    const g = graph({ a: ['b'], b: ['c'], c: ['d'], d: ['e'], e: ['a'] });
    const cycle = findCycle(g);
    expect(cycle).toEqual(['a', 'b', 'c', 'd', 'e', 'a']);
    expectValidCycle(g, cycle);
  });

  it('reports only the cycle, not the path that led into it', () => {
    const g = graph({ x: ['y'], y: ['a'], a: ['b'], b: ['c'], c: ['a'] });
    expect(findCycle(g)).toEqual(['a', 'b', 'c', 'a']);
  });

  it('finds a cycle in a later component after exploring acyclic ones', () => {
    const g = graph({ p: ['q'], q: [], r: ['p'], m: ['n'], n: ['o'], o: ['m'] });
    const cycle = findCycle(g);
    expect(cycle).toEqual(['m', 'n', 'o', 'm']);
    expectValidCycle(g, cycle);
  });

  it('finds a cycle reached through a second branch after a finished first branch', () => {
    const g = graph({ a: ['b', 'c'], b: ['d'], c: ['e'], d: [], e: ['c'] });
    const cycle = findCycle(g);
    expect(cycle).toEqual(['c', 'e', 'c']);
    expectValidCycle(g, cycle);
  });

  it('ignores edges to nodes that are not in the graph', () => {
    expect(findCycle(graph({ a: ['missing'], b: ['a', 'gone'] }))).toBeNull();
    // A missing node is not followed, so it cannot close a cycle either.
    expect(findCycle(graph({ a: ['ghost'], b: ['ghost'] }))).toBeNull();
  });

  it('still finds a cycle when some edges point outside the graph', () => {
    const g = graph({ a: ['nope', 'b'], b: ['zzz', 'a'] });
    expect(findCycle(g)).toEqual(['a', 'b', 'a']);
  });

  it('walks a 100k-deep chain without overflowing the stack', () => {
    const n = 100_000;
    const g = new Map<string, string[]>();
    for (let i = 0; i < n; i++) g.set(`n${i}`, i + 1 < n ? [`n${i + 1}`] : []);
    expect(findCycle(g)).toBeNull();
  });

  it('finds the cycle closing a 100k-deep chain', () => {
    const n = 100_000;
    const g = new Map<string, string[]>();
    for (let i = 0; i < n; i++) g.set(`n${i}`, [`n${(i + 1) % n}`]);
    const cycle = findCycle(g);
    expect(cycle).toHaveLength(n + 1);
    expect(cycle![0]).toBe('n0');
    expect(cycle![n - 1]).toBe(`n${n - 1}`);
    expect(cycle![n]).toBe('n0');
  });

  it('handles a node with 100k dependencies', () => {
    const n = 100_000;
    const g = new Map<string, string[]>();
    const deps: string[] = [];
    for (let i = 0; i < n; i++) {
      deps.push(`d${i}`);
      g.set(`d${i}`, []);
    }
    g.set('hub', deps);
    expect(findCycle(g)).toBeNull();
    g.set(`d${n - 1}`, ['hub']);
    const cycle = findCycle(g);
    expectValidCycle(g, cycle);
    expect(new Set(cycle)).toEqual(new Set(['hub', `d${n - 1}`]));
    expect(cycle).toHaveLength(3);
  });
});

describe('topoOrder', () => {
  function expectRespectsDeps(order: number[], deps: number[][]): void {
    const pos = new Map(order.map((v, i) => [v, i]));
    deps.forEach((ds, i) => {
      for (const d of ds) expect(pos.get(d)!).toBeLessThan(pos.get(i)!);
    });
  }

  it('returns an empty order for an empty batch', () => {
    expect(topoOrder(0, [])).toEqual([]);
  });

  it('keeps batch order when nothing depends on anything', () => {
    expect(topoOrder(3, [[], [], []])).toEqual([0, 1, 2]);
    // Missing dependency lists count as none.
    expect(topoOrder(3, [])).toEqual([0, 1, 2]);
  });

  it('puts dependencies first in a reversed chain', () => {
    expect(topoOrder(3, [[1], [2], []])).toEqual([2, 1, 0]);
  });

  it('orders a diamond so every task follows its dependencies', () => {
    const deps = [[1, 2], [3], [3], []];
    const order = topoOrder(4, deps);
    expect(order).toHaveLength(4);
    expect(new Set(order).size).toBe(4);
    expect(order[0]).toBe(3);
    expect(order[3]).toBe(0);
    expectRespectsDeps(order, deps);
  });

  it('copes with a dependency listed twice', () => {
    expect(topoOrder(2, [[1, 1], []])).toEqual([1, 0]);
  });

  it('leaves cyclic tasks out, so callers can detect a cycle by the length', () => {
    const order = topoOrder(3, [[1], [0], []]);
    expect(order).toEqual([2]);
    expect(order.length).toBeLessThan(3);
  });

  it('orders a large random DAG', () => {
    const n = 2000;
    const deps: number[][] = [];
    let seed = 42;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let i = 0; i < n; i++) {
      const ds: number[] = [];
      // Only depend on higher indexes: acyclic by construction.
      for (let k = 0; k < 3; k++) if (i + 1 < n) ds.push(i + 1 + Math.floor(rand() * (n - i - 1)));
      deps.push(ds);
    }
    const order = topoOrder(n, deps);
    expect(order).toHaveLength(n);
    expectRespectsDeps(order, deps);
  });
});

describe('backoffDelay', () => {
  const policy: BackoffPolicy = { baseMs: 1000, maxMs: 60_000 };

  it('grows exponentially: base, 2·base, 4·base, …', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy))).toEqual([
      1000, 2000, 4000, 8000, 16_000, 32_000,
    ]);
  });

  it('is capped at maxMs', () => {
    expect(backoffDelay(7, policy)).toBe(60_000); // 64 000 uncapped
    expect(backoffDelay(50, policy)).toBe(60_000);
    expect(backoffDelay(1_000_000, policy)).toBe(60_000);
  });

  it('treats attempts below 1 as the first attempt and floors fractions', () => {
    expect(backoffDelay(0, policy)).toBe(1000);
    expect(backoffDelay(-7, policy)).toBe(1000);
    expect(backoffDelay(2.9, policy)).toBe(2000);
  });

  it('stays finite for huge attempt counts even with a huge cap', () => {
    const d = backoffDelay(10_000, { baseMs: 1000, maxMs: Number.MAX_SAFE_INTEGER });
    expect(Number.isFinite(d)).toBe(true);
    expect(d).toBe(1000 * 2 ** 30);
  });

  it('never decreases as attempts grow', () => {
    let prev = 0;
    for (let n = 1; n <= 100; n++) {
      const d = backoffDelay(n, policy);
      expect(d).toBeGreaterThanOrEqual(prev);
      expect(d).toBeLessThanOrEqual(policy.maxMs);
      prev = d;
    }
  });

  it('returns 0 with a zero base', () => {
    expect(backoffDelay(5, { baseMs: 0, maxMs: 1000 })).toBe(0);
  });
});

describe('afterFailure', () => {
  const policy: BackoffPolicy = { baseMs: 500, maxMs: 10_000 };
  const now = 1_700_000_000_000;

  it('retries with backoff while attempts remain', () => {
    expect(afterFailure(1, 3, now, policy)).toEqual({ state: 'ready', availableAt: now + 500 });
    expect(afterFailure(2, 3, now, policy)).toEqual({ state: 'ready', availableAt: now + 1000 });
  });

  it('caps the retry delay', () => {
    expect(afterFailure(10, 100, now, policy)).toEqual({ state: 'ready', availableAt: now + 10_000 });
  });

  it('dead-letters when attempts reach max_attempts', () => {
    expect(afterFailure(3, 3, now, policy)).toEqual({ state: 'failed' });
    expect(afterFailure(1, 1, now, policy)).toEqual({ state: 'failed' });
  });

  it('dead-letters when attempts exceed max_attempts', () => {
    expect(afterFailure(4, 3, now, policy)).toEqual({ state: 'failed' });
  });

  it('dead-letters at once when retry is false', () => {
    expect(afterFailure(1, 10, now, policy, false)).toEqual({ state: 'failed' });
  });

  it('retries by default (retry = true)', () => {
    expect(afterFailure(1, 10, now, policy, true).state).toBe('ready');
    expect(afterFailure(1, 10, now, policy).state).toBe('ready');
  });
});

describe('task states', () => {
  it('isHeld is true exactly for claimed and running', () => {
    const held = TASK_STATES.filter(isHeld);
    expect(held).toEqual(['claimed', 'running']);
    expect([...HELD_STATES].sort()).toEqual([...held].sort());
  });

  it('isFinal is true exactly for done, failed and cancelled', () => {
    const final = TASK_STATES.filter(isFinal);
    expect(final).toEqual(['done', 'failed', 'cancelled']);
    expect([...FINAL_STATES].sort()).toEqual([...final].sort());
  });

  it('no state is both held and final; blocked and ready are neither', () => {
    for (const s of TASK_STATES) expect(isHeld(s) && isFinal(s)).toBe(false);
    for (const s of ['blocked', 'ready'] as const) {
      expect(isHeld(s)).toBe(false);
      expect(isFinal(s)).toBe(false);
    }
  });

  it('lists the seven states of the design', () => {
    expect([...TASK_STATES]).toEqual(['blocked', 'ready', 'claimed', 'running', 'done', 'failed', 'cancelled']);
  });
});

describe('presence', () => {
  const now = 10_000_000;

  it('is offline when the agent was never seen', () => {
    expect(presence(null, now)).toBe('offline');
  });

  it('is online up to and including one minute', () => {
    expect(presence(now, now)).toBe('online');
    expect(presence(now - 60_000, now)).toBe('online');
  });

  it('is idle after one minute up to and including fifteen minutes', () => {
    expect(presence(now - 60_001, now)).toBe('idle');
    expect(presence(now - 15 * 60_000, now)).toBe('idle');
  });

  it('is offline after fifteen minutes', () => {
    expect(presence(now - 15 * 60_000 - 1, now)).toBe('offline');
    expect(presence(0, now)).toBe('offline');
  });

  it('treats a last-seen time slightly in the future (clock skew) as online', () => {
    expect(presence(now + 5_000, now)).toBe('online');
  });
});
