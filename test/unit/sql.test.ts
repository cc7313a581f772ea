import { describe, expect, it } from 'vitest';
import { empty, isSql, join, list, render, sql, trusted, type Sql } from '../../src/store/sql.js';

const pg = (i: number): string => `$${i}`;

function show(q: Sql): { text: string; values: unknown[] } {
  return { text: render(q, pg), values: [...q.values] };
}

describe('sql tag (S17)', () => {
  it('renders a query without values as its text', () => {
    expect(show(sql`SELECT 1`)).toEqual({ text: 'SELECT 1', values: [] });
  });

  it('binds every interpolated value as a parameter', () => {
    const id = 'tsk_abc';
    const n = 5;
    expect(show(sql`SELECT * FROM tasks WHERE id = ${id} AND priority < ${n}`)).toEqual({
      text: 'SELECT * FROM tasks WHERE id = $1 AND priority < $2',
      values: ['tsk_abc', 5],
    });
  });

  it('binds values of every type as they are, never as text', () => {
    const buf = Buffer.from([1, 2, 3]);
    const obj = { a: 1 };
    const q = sql`VALUES (${null}, ${undefined}, ${true}, ${0}, ${''}, ${buf}, ${obj}, ${10n})`;
    expect(render(q, pg)).toBe('VALUES ($1, $2, $3, $4, $5, $6, $7, $8)');
    expect(q.values).toEqual([null, undefined, true, 0, '', buf, obj, 10n]);
    expect(q.values[5]).toBe(buf);
    expect(q.values[6]).toBe(obj);
  });

  it('binds adjacent values as separate parameters', () => {
    expect(show(sql`${1}${2}${3}`)).toEqual({ text: '$1$2$3', values: [1, 2, 3] });
  });

  it.each([
    "'); DROP TABLE tasks; --",
    "x' OR '1'='1",
    '1; DELETE FROM tokens',
    '$1',
    '?',
    '`; --',
  ])('keeps the injection string %j a bound value, never text', (evil) => {
    const q = sql`SELECT * FROM tasks WHERE title = ${evil}`;
    const text = render(q, pg);
    expect(text).toBe('SELECT * FROM tasks WHERE title = $1');
    expect(q.values).toEqual([evil]);
    if (evil.length > 2) expect(text).not.toContain(evil);
  });

  it('keeps injection strings bound inside nested fragments, lists and joins', () => {
    const evil = "'); DROP TABLE tasks; --";
    const where = join([sql`a = ${evil}`, sql`b IN ${list([evil, 'ok'])}`], trusted(' AND '));
    const q = sql`SELECT * FROM t WHERE ${where}`;
    const text = render(q, pg);
    expect(text).toBe('SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)');
    expect(text).not.toContain('DROP');
    expect(q.values).toEqual([evil, evil, 'ok']);
  });

  it('does not splice a plain object that merely looks like a fragment', () => {
    const fake = { parts: ['1; DROP TABLE tasks; --'], values: [] };
    const q = sql`SELECT ${fake}`;
    expect(render(q, pg)).toBe('SELECT $1');
    expect(q.values).toEqual([fake]);
    expect(isSql(fake)).toBe(false);
  });
});

describe('nested fragments', () => {
  it('splices a fragment and renumbers its parameters in order', () => {
    const cond = sql`status = ${'ready'} AND priority <= ${3}`;
    const q = sql`SELECT * FROM tasks WHERE project_id = ${'prj_1'} AND ${cond} LIMIT ${10}`;
    expect(show(q)).toEqual({
      text: 'SELECT * FROM tasks WHERE project_id = $1 AND status = $2 AND priority <= $3 LIMIT $4',
      values: ['prj_1', 'ready', 3, 10],
    });
  });

  it('splices fragments at the start and end of a template', () => {
    const head = sql`SELECT ${1}`;
    const tail = sql`LIMIT ${2}`;
    expect(show(sql`${head} FROM t ${tail}`)).toEqual({ text: 'SELECT $1 FROM t LIMIT $2', values: [1, 2] });
    expect(show(sql`${head}`)).toEqual({ text: 'SELECT $1', values: [1] });
  });

  it('splices fragments without values', () => {
    expect(show(sql`SELECT * FROM t${sql` WHERE x IS NULL`} LIMIT ${5}`)).toEqual({
      text: 'SELECT * FROM t WHERE x IS NULL LIMIT $1',
      values: [5],
    });
  });

  it('splices adjacent fragments', () => {
    expect(show(sql`${sql`a=${1}`}${sql`,b=${2}`}${sql``}${sql`,c=${3}`}`)).toEqual({
      text: 'a=$1,b=$2,c=$3',
      values: [1, 2, 3],
    });
  });

  it('splices several levels deep, preserving parameter order', () => {
    const inner = sql`c = ${'C'}`;
    const middle = sql`b = ${'B'} AND (${inner} OR d = ${'D'})`;
    const outer = sql`a = ${'A'} AND ${middle} AND e = ${'E'}`;
    const q = sql`SELECT * FROM t WHERE ${outer} LIMIT ${99}`;
    expect(show(q)).toEqual({
      text: 'SELECT * FROM t WHERE a = $1 AND b = $2 AND (c = $3 OR d = $4) AND e = $5 LIMIT $6',
      values: ['A', 'B', 'C', 'D', 'E', 99],
    });
  });

  it('keeps the number of text parts one more than the number of values', () => {
    const q = sql`x ${sql`y ${1} ${sql`z ${2}`}`} ${3} ${sql``}`;
    expect(q.parts.length).toBe(q.values.length + 1);
  });

  it('does not change the fragments it splices', () => {
    const frag = sql`b = ${2}`;
    const before = { parts: [...frag.parts], values: [...frag.values] };
    const a = sql`a = ${1} AND ${frag}`;
    const b = sql`${frag} OR c = ${3}`;
    expect(a.values).toEqual([1, 2]);
    expect(b.values).toEqual([2, 3]);
    expect({ parts: [...frag.parts], values: [...frag.values] }).toEqual(before);
  });

  it('can reuse one fragment twice in one query', () => {
    const f = sql`x = ${7}`;
    expect(show(sql`${f} OR ${f}`)).toEqual({ text: 'x = $1 OR x = $2', values: [7, 7] });
  });
});

describe('join', () => {
  it('joins with ", " by default', () => {
    expect(show(join([sql`a = ${1}`, sql`b = ${2}`, sql`c = ${3}`]))).toEqual({
      text: 'a = $1, b = $2, c = $3',
      values: [1, 2, 3],
    });
  });

  it('joins with a given separator', () => {
    expect(show(join([sql`a = ${1}`, sql`b = ${2}`], trusted(' AND ')))).toEqual({
      text: 'a = $1 AND b = $2',
      values: [1, 2],
    });
  });

  it('returns a single fragment unchanged', () => {
    const f = sql`a = ${1}`;
    expect(join([f])).toBe(f);
  });

  it('returns the empty fragment for no fragments', () => {
    const j = join([]);
    expect(j).toBe(empty);
    expect(show(j)).toEqual({ text: '', values: [] });
    expect(show(sql`SELECT 1${join([])}`)).toEqual({ text: 'SELECT 1', values: [] });
  });

  it('joins many fragments in order', () => {
    const frags = Array.from({ length: 200 }, (_, i) => sql`c = ${i}`);
    const q = join(frags);
    expect(q.values).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const text = render(q, pg);
    expect(text.startsWith('c = $1, c = $2, ')).toBe(true);
    expect(text.endsWith(', c = $200')).toBe(true);
    expect(text.split(', ')).toHaveLength(200);
  });
});

describe('list', () => {
  it('renders a parenthesised parameter per value', () => {
    expect(show(list(['a', 'b', 'c']))).toEqual({ text: '($1, $2, $3)', values: ['a', 'b', 'c'] });
    expect(show(list([42]))).toEqual({ text: '($1)', values: [42] });
  });

  it('renders (NULL) for an empty list, which matches nothing', () => {
    expect(show(list([]))).toEqual({ text: '(NULL)', values: [] });
    expect(show(sql`SELECT * FROM t WHERE id IN ${list([])} AND x = ${1}`)).toEqual({
      text: 'SELECT * FROM t WHERE id IN (NULL) AND x = $1',
      values: [1],
    });
  });

  it('numbers list parameters after earlier ones', () => {
    expect(show(sql`SELECT * FROM t WHERE p = ${'p'} AND id IN ${list(['x', 'y'])} LIMIT ${3}`)).toEqual({
      text: 'SELECT * FROM t WHERE p = $1 AND id IN ($2, $3) LIMIT $4',
      values: ['p', 'x', 'y', 3],
    });
  });

  it('binds fragment-looking and hostile values instead of splicing them', () => {
    const q = list(['1); DROP TABLE t; --', null]);
    expect(render(q, pg)).toBe('($1, $2)');
    expect(q.values).toEqual(['1); DROP TABLE t; --', null]);
  });
});

describe('trusted', () => {
  it('turns a literal into fixed text with no values', () => {
    expect(show(trusted('ORDER BY priority'))).toEqual({ text: 'ORDER BY priority', values: [] });
    expect(show(sql`SELECT * FROM t ${trusted('ORDER BY priority')} LIMIT ${5}`)).toEqual({
      text: 'SELECT * FROM t ORDER BY priority LIMIT $1',
      values: [5],
    });
  });

  it('accepts only string literal types, never a runtime string', () => {
    const runtime: string = ['ORDER', 'BY', 'x'].join(' ');
    // The type system is the guard: this line must not compile (checked by `tsc --noEmit`).
    // @ts-expect-error a runtime string is not a literal type
    const unsafe = (): Sql => trusted(runtime);
    expect(typeof unsafe).toBe('function');
  });
});

describe('isSql', () => {
  it('recognises only values made by this module', () => {
    expect(isSql(sql`x`)).toBe(true);
    expect(isSql(trusted('x'))).toBe(true);
    expect(isSql(empty)).toBe(true);
    expect(isSql(list([1]))).toBe(true);
    for (const v of [null, undefined, 'SELECT 1', 1, {}, { parts: ['x'], values: [] }, []]) expect(isSql(v)).toBe(false);
  });
});

describe('render', () => {
  it('passes 1-based indexes to the placeholder function', () => {
    const seen: number[] = [];
    const text = render(sql`a ${'x'} b ${'y'} c ${'z'}`, (i) => {
      seen.push(i);
      return `:p${i}`;
    });
    expect(text).toBe('a :p1 b :p2 c :p3');
    expect(seen).toEqual([1, 2, 3]);
  });

  it('renders SQLite-style placeholders', () => {
    expect(render(sql`UPDATE t SET a = ${1} WHERE id = ${'x'}`, () => '?')).toBe('UPDATE t SET a = ? WHERE id = ?');
  });

  it('renders the same call site consistently across calls with different values', () => {
    const q = (id: string, n: number): Sql => sql`SELECT * FROM t WHERE id = ${id} LIMIT ${n}`;
    expect(show(q('a', 1))).toEqual({ text: 'SELECT * FROM t WHERE id = $1 LIMIT $2', values: ['a', 1] });
    expect(show(q('b', 2))).toEqual({ text: 'SELECT * FROM t WHERE id = $1 LIMIT $2', values: ['b', 2] });
  });

  // BUG (src/store/sql.ts render): the text cache is keyed on the template parts only, not on the
  // placeholder function, so a call site rendered once for one dialect returns that dialect's text
  // for every other dialect in the same process. Remove `.fails` once fixed.
  it('renders one call site with each dialect\'s own placeholders', () => {
    const q = (id: string): Sql => sql`SELECT * FROM t WHERE id = ${id}`;
    expect(render(q('a'), pg)).toBe('SELECT * FROM t WHERE id = $1');
    expect(render(q('a'), () => '?')).toBe('SELECT * FROM t WHERE id = ?');
  });
});
