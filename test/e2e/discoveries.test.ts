import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import { isBatonError } from '../../src/core/errors.js';
import { CATALOG } from '../../src/ops/index.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, httpAgent, openHub, serve, type TestHub } from '../helpers.js';

interface Found {
  id: string;
  content: string;
  tags: string[];
  task_ids: string[];
  files: string[];
  author: string;
  created_at: string;
}
interface SearchOut {
  discoveries: Found[];
  next_cursor: string | null;
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (isBatonError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal');
}

const T0 = Date.UTC(2025, 0, 1);

describe('discoveries', () => {
  let t: TestHub;
  let clock: ManualClock;
  let alice: Principal;
  let bob: Principal;
  let observer: Principal;
  let other: Principal;

  const add = (p: Principal, input: Record<string, unknown>): Promise<{ id: string; created_at: string }> =>
    call(t.hub, p, 'discovery_add', input);
  const search = (p: Principal, input: Record<string, unknown> = {}): Promise<SearchOut> =>
    call<SearchOut>(t.hub, p, 'discovery_search', input);
  const count = async (): Promise<number> =>
    (await t.hub.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM discoveries`)))!.n;

  beforeAll(async () => {
    clock = new ManualClock(T0);
    t = await openHub({ clock });
    alice = await t.hub.authenticate(await createKey(t, 'alice', 'worker'));
    bob = await t.hub.authenticate(await createKey(t, 'bob', 'lead'));
    observer = await t.hub.authenticate(await createKey(t, 'obs', 'observer'));
    other = await t.hub.authenticate(await createKey(t, 'eve', 'admin', 'other-project'));
  });
  afterAll(async () => {
    await t.close();
  });

  it('adds a discovery with tags, linked tasks and files, and finds it again exactly as written', async () => {
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, bob, 'task_create', { tasks: [{ title: 'x' }] });
    const taskId = tasks[0]!.id;
    const out = await add(alice, {
      content: 'The Retry loop in ./src/a.ts swallows EPIPE',
      tags: ['bug', 'io', 'bug'],
      task_ids: [taskId],
      files: ['./src/a.ts', 'src//b.ts'],
    });
    expect(out.id).toMatch(/^dsc_[a-z2-7]{26}$/);
    expect(out.created_at).toBe(new Date(T0).toISOString());
    const { discoveries } = await search(observer, { text: 'retry LOOP' });
    expect(discoveries).toEqual([
      {
        id: out.id,
        content: 'The Retry loop in ./src/a.ts swallows EPIPE',
        tags: ['bug', 'io'],
        task_ids: [taskId],
        files: ['src/a.ts', 'src/b.ts'],
        author: 'alice',
        created_at: out.created_at,
      },
    ]);
    // The event names the tags, never the content.
    const ev = await t.hub.db.read((ex) =>
      ex.get<{ type: string; data: string; audience: string }>(
        sql`SELECT type, data, audience FROM events WHERE subject = ${out.id}`,
      ),
    );
    expect(ev).toEqual({ type: 'discovery.added', data: JSON.stringify({ tags: ['bug', 'io'] }), audience: 'project' });
  });

  it('is immutable: no op changes or removes a discovery, and adding the same text makes a new one', async () => {
    const ops = CATALOG.filter((op) => op.name.startsWith('discovery_'));
    expect(ops.map((o) => [o.name, o.kind])).toEqual([
      ['discovery_add', 'write'],
      ['discovery_search', 'read'],
    ]);
    // No other op's route or command addresses a discovery.
    for (const op of CATALOG) {
      if (op.name.startsWith('discovery_')) continue;
      expect(op.rest.path.startsWith('/discoveries'), op.name).toBe(false);
      expect(op.cli.group, op.name).not.toBe('discovery');
    }
    const a = await add(alice, { content: 'same words' });
    const b = await add(alice, { content: 'same words' });
    expect(a.id).not.toBe(b.id);
    const { discoveries } = await search(alice, { text: 'same words' });
    expect(discoveries.map((d) => d.id).sort()).toEqual([a.id, b.id].sort());
    // Unknown fields cannot smuggle an id in to overwrite one.
    expect((await refusal(add(alice, { id: a.id, content: 'overwrite' }))).code).toBe('invalid_input');
    expect((await search(alice, { text: 'overwrite' })).discoveries).toEqual([]);
  });

  it('searches by text, tag, author and time, newest first, with paging', async () => {
    {
      const c = new ManualClock(T0);
      const h = await openHub({ clock: c });
      try {
        const w = await h.hub.authenticate(await createKey(h, 'w1', 'worker'));
        const l = await h.hub.authenticate(await createKey(h, 'l1', 'lead'));
        const ids: string[] = [];
        // 10 discoveries one minute apart; even ones by w1 tagged "db", odd ones by l1 tagged "db2".
        for (let i = 0; i < 10; i++) {
          const who = i % 2 === 0 ? w : l;
          const r = await call<{ id: string }>(h.hub, who, 'discovery_add', {
            content: `finding ${i} ${i % 3 === 0 ? 'about the CACHE' : 'about the queue'}`,
            tags: [i % 2 === 0 ? 'db' : 'db2', `n${i}`],
          });
          ids.push(r.id);
          c.advance(60_000);
        }
        const s = (input: Record<string, unknown>): Promise<SearchOut> => call<SearchOut>(h.hub, w, 'discovery_search', input);
        const idsOf = (o: SearchOut): string[] => o.discoveries.map((d) => d.id);
        const pick = (...ns: number[]): string[] => ns.map((n) => ids[n]!);

        expect(idsOf(await s({}))).toEqual([...ids].reverse());
        expect(idsOf(await s({ text: 'cache' }))).toEqual(pick(9, 6, 3, 0));
        expect(idsOf(await s({ tag: 'db' }))).toEqual(pick(8, 6, 4, 2, 0));
        expect(idsOf(await s({ tag: 'db2' }))).toEqual(pick(9, 7, 5, 3, 1));
        expect(idsOf(await s({ tag: 'd' }))).toEqual([]);
        expect(idsOf(await s({ author: 'l1' }))).toEqual(pick(9, 7, 5, 3, 1));
        expect(idsOf(await s({ author: 'nobody' }))).toEqual([]);
        const at = (i: number): string => new Date(T0 + i * 60_000).toISOString();
        expect(idsOf(await s({ since: at(7) }))).toEqual(pick(9, 8, 7));
        expect(idsOf(await s({ until: at(1) }))).toEqual(pick(1, 0));
        expect(idsOf(await s({ since: at(2), until: at(5), tag: 'db' }))).toEqual(pick(4, 2));
        // An offset time means the same instant as its UTC form.
        expect(idsOf(await s({ since: '2025-01-01T01:07:00+01:00' }))).toEqual(pick(9, 8, 7));
        expect(idsOf(await s({ text: 'queue', author: 'w1' }))).toEqual(pick(8, 4, 2));

        // Paging: 3 at a time through all ten, no repeats, no gaps; the last page has no cursor.
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const p: SearchOut = await s({ limit: 3, ...(cursor === undefined ? {} : { cursor }) });
          seen.push(...idsOf(p));
          cursor = p.next_cursor ?? undefined;
          pages++;
        } while (cursor !== undefined);
        expect(pages).toBe(4);
        expect(seen).toEqual([...ids].reverse());
        // Paging keeps the filter.
        const p1 = await s({ tag: 'db', limit: 2 });
        expect(idsOf(p1)).toEqual(pick(8, 6));
        expect(idsOf(await s({ tag: 'db', limit: 2, cursor: p1.next_cursor }))).toEqual(pick(4, 2));
        // A page exactly at the end says so.
        expect((await s({ limit: 10 })).next_cursor).toBeNull();

        expect((await refusal(s({ cursor: 'not-a-cursor' }))).code).toBe('invalid_input');
        expect((await refusal(s({ since: 'yesterday' }))).code).toBe('invalid_input');
        expect((await refusal(s({ since: '2025-01-01T00:00:00' }))).code).toBe('invalid_input');
        expect((await refusal(s({ until: '2025-13-01T00:00:00Z' }))).code).toBe('invalid_input');
        expect((await refusal(s({ until: '2025-01-01T00:00:00Z'.padEnd(41, '0') }))).code).toBe('too_large');
        expect(idsOf(await s({ until: '2025-01-01T00:01Z' }))).toEqual(pick(1, 0));
        expect((await refusal(s({ limit: 101 }))).code).toBe('invalid_input');
        expect((await refusal(s({ text: 'x'.repeat(201) }))).code).toBe('too_large');
        expect((await refusal(s({ author: '../x' }))).code).toBe('invalid_input');
      } finally {
        await h.close();
      }
    }
  });

  it('refuses bad input and unknown linked tasks, writing nothing', async () => {
    const before = await count();
    const cases: [Record<string, unknown>, string][] = [
      [{ content: '' }, 'invalid_input'],
      [{}, 'invalid_input'],
      [{ content: 'x'.repeat(10_001) }, 'too_large'],
      [{ content: 'x', tags: Array.from({ length: 21 }, (_, i) => `t${i}`) }, 'too_large'],
      [{ content: 'x', tags: ['y'.repeat(51)] }, 'too_large'],
      [{ content: 'x', tags: [''] }, 'invalid_input'],
      [{ content: 'x', task_ids: Array.from({ length: 21 }, () => 'tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa') }, 'too_large'],
      [{ content: 'x', task_ids: ['nope'] }, 'invalid_input'],
      [{ content: 'x', task_ids: ['tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa'] }, 'not_found'],
      [{ content: 'x', files: ['../etc/passwd'] }, 'invalid_input'],
      [{ content: 'x', files: ['/etc/passwd'] }, 'invalid_input'],
      [{ content: 'x', files: Array.from({ length: 101 }, (_, i) => `f${i}`) }, 'too_large'],
    ];
    for (const [input, code] of cases) {
      expect((await refusal(add(alice, input))).code, JSON.stringify(input).slice(0, 80)).toBe(code);
    }
    expect((await refusal(add(observer, { content: 'watching' }))).code).toBe('forbidden');
    expect(await count()).toBe(before);
    // An observer may search.
    expect((await search(observer, {})).discoveries.length).toBeGreaterThan(0);
  });

  it('never crosses projects: search sees only its project, and another project\'s task is not found', async () => {
    const { tasks } = await call<{ tasks: { id: string }[] }>(t.hub, other, 'task_create', { tasks: [{ title: 'theirs' }] });
    const theirs = await add(other, { content: 'secret of the other project', tags: ['bug'], task_ids: [tasks[0]!.id] });
    expect((await search(alice, { text: 'secret of the other' })).discoveries).toEqual([]);
    expect((await search(alice, { tag: 'bug' })).discoveries.map((d) => d.id)).not.toContain(theirs.id);
    expect((await search(alice, { author: 'eve' })).discoveries).toEqual([]);
    expect((await search(other, {})).discoveries.map((d) => d.id)).toEqual([theirs.id]);
    const before = await count();
    expect((await refusal(add(alice, { content: 'link theirs', task_ids: [tasks[0]!.id] }))).code).toBe('not_found');
    expect(await count()).toBe(before);
  });

  it('works over MCP (Streamable HTTP) and REST', async () => {
    let http: HttpHandle | undefined;
    try {
      http = await serve(t.hub);
      const key = await createKey(t, 'mcp-w', 'worker');
      const agent = await httpAgent('v2', http.url, key);
      const added = await agent.ok<{ id: string }>('discovery_add', { content: 'MCP finding: zstd beats gzip here', tags: ['perf'] });
      const found = await agent.ok<SearchOut>('discovery_search', { tag: 'perf', author: 'mcp-w' });
      expect(found.discoveries.map((d) => d.id)).toEqual([added.id]);
      expect(found.discoveries[0]!.content).toBe('MCP finding: zstd beats gzip here');
      const bad = await agent.call('discovery_add', { content: '' });
      expect(bad.isError).toBe(true);
      expect(bad.data).toMatchObject({ error: { code: 'invalid_input' } });
      const tools = (await agent.tools()).map((x) => x.name);
      expect(tools).toEqual(expect.arrayContaining(['discovery_add', 'discovery_search']));
      await agent.close();

      const res = await fetch(`${http.url}/api/v1/discoveries?tag=perf&text=ZSTD`, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as SearchOut).discoveries.map((d) => d.id)).toEqual([added.id]);
      for (const method of ['PUT', 'PATCH', 'DELETE']) {
        const r = await fetch(`${http.url}/api/v1/discoveries/${added.id}`, {
          method,
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: method === 'DELETE' ? undefined : JSON.stringify({ content: 'changed' }),
        });
        expect(r.status, method).toBe(404);
      }
      const again = await call<SearchOut>(t.hub, alice, 'discovery_search', { tag: 'perf' });
      expect(again.discoveries[0]!.content).toBe('MCP finding: zstd beats gzip here');
    } finally {
      await http?.close();
    }
  });
});
