import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { createKey, httpAgent, openHub, serve, type Agent, type TestHub } from '../helpers.js';

/**
 * Issue 8, item 14: what tools/list advertises tells a client what will be refused, and every
 * advertised keyword is the enforced one (the full schema over REST holds all of them).
 */
type Node = Record<string, unknown>;

/** Every object schema with properties, with its path. */
function objects(node: unknown, path: string, out: [string, Node][] = []): [string, Node][] {
  if (Array.isArray(node)) node.forEach((n, i) => objects(n, `${path}[${i}]`, out));
  else if (typeof node === 'object' && node !== null) {
    const n = node as Node;
    if (n.type === 'object' && typeof n.properties === 'object') out.push([path, n]);
    for (const [k, v] of Object.entries(n)) {
      if (k === 'properties') for (const [name, s] of Object.entries(v as Node)) objects(s, `${path}.${name}`, out);
      else objects(v, `${path}/${k}`, out);
    }
  }
  return out;
}

/** Is every keyword of `shown` present with the same value in `full` (recursively)? */
function subsetOf(shown: unknown, full: unknown, path: string): string[] {
  if (typeof shown !== 'object' || shown === null) return JSON.stringify(shown) === JSON.stringify(full) ? [] : [path];
  if (typeof full !== 'object' || full === null) return [path];
  return Object.entries(shown).flatMap(([k, v]) => subsetOf(v, (full as Node)[k], `${path}.${k}`));
}

describe('advertised schemas tell clients what is refused (S14, S15)', () => {
  let t: TestHub;
  let h: HttpHandle;
  let key: string;
  let agent: Agent;
  let tools: { name: string; inputSchema: unknown }[];
  const props = (tool: string): Node => (tools.find((x) => x.name === tool)!.inputSchema as { properties: Node }).properties;

  beforeAll(async () => {
    t = await openHub();
    h = await serve(t.hub);
    key = await createKey(t, 'schema-w', 'worker');
    agent = await httpAgent('v2', h.url, key);
    tools = await agent.tools();
  });
  afterAll(async () => {
    await agent.close();
    await h.close();
    await t.close();
  });

  it('every object in every advertised input schema says additionalProperties: false', () => {
    const open = tools.flatMap((tool) => objects(tool.inputSchema, tool.name).filter(([, n]) => n.additionalProperties !== false).map(([p]) => p));
    expect(open).toEqual([]);
  });

  it('the bounds an agent is likely to hit are advertised: batch sizes, title and body lengths, priority, limit, wait_ms', () => {
    const tasks = props('task_create').tasks as Node;
    expect(tasks).toMatchObject({ minItems: 1, maxItems: 500 });
    const item = (tasks.items as { properties: Node }).properties;
    expect(item.title).toMatchObject({ maxLength: 200 });
    expect(item.description).toMatchObject({ maxLength: 10_000 });
    expect(item.priority).toMatchObject({ minimum: 1, maximum: 10 });
    expect(props('task_list').limit).toMatchObject({ minimum: 1, maximum: 200 });
    expect((props('task_claim').wait_ms as Node).maximum).toEqual(expect.any(Number));
    expect((props('message_send').body as Node).maxLength).toEqual(expect.any(Number));
  });

  it('what is advertised is what is enforced: past each shown bound the call is refused, at it accepted', async () => {
    const title = (n: number): Record<string, unknown> => ({ tasks: [{ title: 'x'.repeat(n) }] });
    // A worker may not create tasks: use a lead for the writes, same schemas.
    const lead = await httpAgent('v1', h.url, await createKey(t, 'schema-lead', 'lead'));
    try {
      expect((await lead.call('task_create', title(200))).isError).toBe(false);
      const long = await lead.call('task_create', title(201));
      expect(long.isError).toBe(true);
      const refused = (r: { isError: boolean; data: Record<string, unknown> }): string => (r.isError ? (r.data.error as { code: string }).code : 'accepted');
      expect(refused(long)).toMatch(/^(invalid_input|too_large)$/);
      expect(refused(await lead.call('task_create', { tasks: [{ title: 'p', priority: 11 }] }))).toMatch(/^(invalid_input|too_large)$/);
      expect(refused(await lead.call('task_create', { tasks: [{ title: 'p', priority: 10 }] }))).toBe('accepted');
      expect(refused(await lead.call('task_create', { tasks: [{ title: 'u', colour: 'red' }] }))).toBe('invalid_input');
      const max = (props('task_claim').wait_ms as { maximum: number }).maximum;
      expect(refused(await agent.call('task_claim', { wait_ms: max + 1 }))).toMatch(/^(invalid_input|too_large)$/);
      expect(refused(await agent.call('task_list', { limit: 201 }))).toMatch(/^(invalid_input|too_large)$/);
      expect(refused(await agent.call('task_list', { limit: 200 }))).toBe('accepted');
    } finally {
      await lead.close();
    }
  });

  it('every advertised keyword matches the full schema served over REST, which keeps everything', async () => {
    const r = await fetch(new URL('/api/v1/schemas', h.url), { headers: { authorization: `Bearer ${key}` } });
    expect(r.status).toBe(200);
    const full = new Map(((await r.json()) as { ops: { name: string; input: unknown }[] }).ops.map((o) => [o.name, o.input]));
    expect([...full.keys()].sort()).toEqual(tools.map((x) => x.name).sort());
    for (const tool of tools) expect(subsetOf(tool.inputSchema, full.get(tool.name), tool.name)).toEqual([]);
    expect(JSON.stringify(full.get('task_get'))).toContain('"pattern"');
    const one = await fetch(new URL('/api/v1/schemas/task_claim', h.url), { headers: { authorization: `Bearer ${key}` } });
    expect(((await one.json()) as { output: { type: string } }).output.type).toBe('object');
    // An op the role is not granted is not found; without a key, 401.
    expect((await fetch(new URL('/api/v1/schemas/token_create', h.url), { headers: { authorization: `Bearer ${key}` } })).status).toBe(404);
    expect((await fetch(new URL('/api/v1/schemas', h.url))).status).toBe(401);
  });
});
