import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { LIMITS } from '../../src/ops/schemas.js';
import { createKey, openHub, serve, type TestHub } from '../helpers.js';

/** A batch of `count` tasks, each depending on up to `per` earlier ones (acyclic). */
function batch(count: number, per: number, tag: string): { title: string; ref: string; depends_on: string[] }[] {
  return Array.from({ length: count }, (_, i) => ({
    title: `t${i}`,
    ref: `${tag}${i}`,
    depends_on: Array.from({ length: Math.min(per, i) }, (_, k) => `${tag}${i - k - 1}`),
  }));
}

describe('task_create bounds the dependencies of one batch (item 10)', () => {
  let t: TestHub;
  let http: HttpHandle;
  let key: string;
  beforeAll(async () => {
    t = await openHub();
    http = await serve(t.hub);
    key = await createKey(t, 'planner', 'lead');
  });
  afterAll(async () => {
    await http.close();
    await t.close();
  });
  const post = async (tasks: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(`${http.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tasks }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it(`refuses more than ${LIMITS.batchEdges} dependencies in all with too_large naming the limit; creates nothing`, async () => {
    expect(LIMITS.batchEdges).toBe(5_000);
    // 500 tasks × 100 dependencies: each task within its own limit, the batch far over.
    const huge = batch(500, 100, 'h');
    expect(huge.reduce((n, x) => n + x.depends_on.length, 0)).toBeGreaterThan(LIMITS.batchEdges);
    const r = await post(huge);
    expect(r.status).toBe(400);
    const error = r.body.error as { code: string; message: string };
    expect(error.code).toBe('too_large');
    expect(error.message).toContain('at most 5000 dependencies in one batch');
    // Just over the bound.
    const over = batch(128, 50, 'o'); // 1,225 + 78 × 50 = 5,125
    const edges = over.reduce((n, x) => n + x.depends_on.length, 0);
    expect(edges).toBeGreaterThan(LIMITS.batchEdges);
    expect((await post(over)).body.error).toMatchObject({ code: 'too_large' });
    const list = await fetch(`${http.url}/api/v1/tasks`, { headers: { authorization: `Bearer ${key}` } });
    expect(((await list.json()) as { tasks: unknown[] }).tasks).toHaveLength(0);
  });

  it('accepts a batch at the bound and orders it by its dependencies', async () => {
    const atBound = batch(51, 100, 'b');
    let edges = atBound.reduce((n, x) => n + x.depends_on.length, 0);
    // Top up with one more task depending on as many earlier ones as keep the total at the bound.
    while (edges < LIMITS.batchEdges) {
      const i = atBound.length;
      const deps = Array.from({ length: Math.min(100, i, LIMITS.batchEdges - edges) }, (_, k) => `b${i - k - 1}`);
      atBound.push({ title: `t${i}`, ref: `b${i}`, depends_on: deps });
      edges += deps.length;
    }
    expect(edges).toBe(LIMITS.batchEdges);
    const r = await post(atBound.slice().reverse()); // dependents first: the hub must order them
    expect(r.status).toBe(200);
    const created = r.body.tasks as { ref: string; status: string }[];
    expect(created).toHaveLength(atBound.length);
    expect(created.find((x) => x.ref === 'b0')?.status).toBe('ready');
    expect(created.filter((x) => x.status === 'blocked')).toHaveLength(atBound.length - 1);
  });
});
