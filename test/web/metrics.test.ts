import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import type { Principal } from '../../src/auth/principal.js';
import { ManualClock } from '../../src/core/clock.js';
import { BatonError } from '../../src/core/errors.js';
import { clientGone } from '../../src/ops/runner.js';
import { call, createKey, openHub, serve, type TestHub } from '../helpers.js';
import { errorCode, http } from './http.js';
import { SseClient } from './sse.js';

/** `GET /metrics`: who may read it, and that each series moves with what it counts. */
const TOKEN = 'metrics-token-'.padEnd(40, 'x');
let t: TestHub;
let h: HttpHandle;
let worker: string;
let workerP: Principal;
const clock = new ManualClock(Date.UTC(2026, 5, 1));

beforeAll(async () => {
  t = await openHub({ clock, config: { metricsToken: TOKEN, rateLimitWritePerMin: 5, waitRecheckMs: 0, authFailuresPerMinute: 3, rateLimitAddressPerMin: 40 } });
  h = await serve(t.hub);
  worker = await createKey(t, 'w1', 'worker');
  workerP = await t.hub.authenticate(worker);
});
afterAll(async () => {
  await h.close();
  await t.close();
});

async function scrape(auth = `Bearer ${t.adminKey}`): Promise<string> {
  const r = await http(h.url, 'GET', '/metrics', { headers: { authorization: auth } });
  expect(r.status, r.text).toBe(200);
  expect(r.headers['content-type']).toContain('text/plain');
  return r.text;
}

/** The value of one series (exact name and labels as printed), or undefined. */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('GET /metrics', () => {
  it('needs a server admin credential or the metrics token', async () => {
    expect((await http(h.url, 'GET', '/metrics')).status).toBe(401);
    expect((await http(h.url, 'GET', '/metrics', { headers: { authorization: 'Bearer wrong-token-of-the-right-length-xxxxxxxxxx' } })).status).toBe(401);
    const w = await http(h.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${worker}` } });
    expect(w.status).toBe(403);
    expect(errorCode(w)).toBe('forbidden');
    // A project's own admin is not a server admin: counts over every project are not its to see (S9).
    const other = await call<{ key: string }>(t.hub, t.admin, 'token_create', { name: 'boss', role: 'admin', project: 'elsewhere' });
    expect((await http(h.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${other.key}` } })).status).toBe(403);
    await scrape(`Bearer ${TOKEN}`);
    await scrape();
    // Past the failure throttle (3 a minute), even the right metrics token is refused before it is
    // compared (a guess learns nothing); a valid admin key still works (S6).
    for (let i = 0; i < 3; i++) await http(h.url, 'GET', '/metrics', { headers: { authorization: `Bearer guess-${i}`.padEnd(45, 'y') } });
    expect((await http(h.url, 'GET', '/metrics', { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(429);
    await scrape();
    clock.advance(61_000); // past the failure throttle's window
  });

  it('counts op calls by op and outcome with latency histograms, and rate-limit refusals', async () => {
    const before = await scrape();
    const ok0 = value(before, 'baton_op_calls_total{op="task_create",outcome="ok"}') ?? 0;
    for (let i = 0; i < 3; i++) await call(t.hub, workerP, 'task_create', { tasks: [{ title: `m${i}` }] });
    await expect(call(t.hub, workerP, 'token_create', { name: 'x', role: 'worker' })).rejects.toThrow();
    await expect(call(t.hub, workerP, 'no_such_op', {})).rejects.toThrow();
    // Over the per-principal write limit (5 a minute).
    for (let i = 0; i < 4; i++) await call(t.hub, workerP, 'task_create', { tasks: [{ title: `z${i}` }] }).catch(() => undefined);
    const after = await scrape();
    expect(value(after, 'baton_op_calls_total{op="task_create",outcome="ok"}')).toBe(ok0 + 5);
    expect(value(after, 'baton_op_calls_total{op="task_create",outcome="rate_limited"}')).toBe(2);
    expect(value(after, 'baton_op_calls_total{op="token_create",outcome="forbidden"}')).toBe(1);
    expect(value(after, 'baton_op_calls_total{op="unknown",outcome="not_found"}')).toBe(1);
    expect(value(after, 'baton_op_duration_seconds_count{op="task_create"}')).toBe(ok0 + 7);
    expect(value(after, 'baton_op_duration_seconds_bucket{le="+Inf",op="task_create"}')).toBe(ok0 + 7);
    // Cumulative buckets, as Prometheus reads them: never decreasing, the last finite one holding every call under 60 s.
    const buckets = after
      .split('\n')
      .filter((l) => l.startsWith('baton_op_duration_seconds_bucket{') && l.includes('op="task_create"'))
      .map((l) => Number(l.slice(l.lastIndexOf(' ') + 1)));
    expect(buckets).toHaveLength(16);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]).toBeGreaterThanOrEqual(buckets[i - 1]!);
    expect(value(after, 'baton_op_duration_seconds_bucket{le="60",op="task_create"}')).toBe(ok0 + 7);
    expect(value(after, 'baton_op_duration_seconds_sum{op="task_create"}')).toBeGreaterThan(0);
    expect(value(after, 'baton_rate_limited_total{layer="op"}')).toBe(2);
    clock.advance(61_000);
  });

  it('tasks by state, the ready queue by priority, and lease expiries', async () => {
    const lead = await t.hub.authenticate(await createKey(t, 'lead1', 'lead'));
    await call(t.hub, lead, 'task_create', { tasks: [{ title: 'p1', priority: 1 }, { title: 'p1b', priority: 1 }, { title: 'p9', priority: 9 }] });
    const m = await scrape();
    const ready = value(m, 'baton_tasks{state="ready"}')!;
    expect(ready).toBeGreaterThanOrEqual(3);
    expect(value(m, 'baton_queue_ready{priority="1"}')).toBe(2);
    expect(value(m, 'baton_queue_ready{priority="9"}')).toBe(1);
    expect(value(m, 'baton_leases_expired_total')).toBe(0);
    await call(t.hub, lead, 'task_claim', { lease_ms: 1_000 });
    const claimed = await scrape();
    expect(value(claimed, 'baton_tasks{state="claimed"}')).toBe(1);
    expect(value(claimed, 'baton_queue_ready{priority="1"}')).toBe(1);
    clock.advance(2_000);
    await t.hub.sweep();
    const swept = await scrape();
    expect(value(swept, 'baton_leases_expired_total')).toBe(1);
    expect(value(swept, 'baton_tasks{state="claimed"}')).toBeUndefined();
  });

  it('auth failures, waiters, stream subscribers, store transactions, process metrics', async () => {
    const m0 = await scrape();
    const failures0 = value(m0, 'baton_auth_failures_total')!;
    for (let i = 0; i < 2; i++) expect((await http(h.url, 'GET', '/api/v1/tasks', { headers: { authorization: `Bearer bat_${'Q'.repeat(43)}` } })).status).toBe(401);
    const s = await SseClient.open(h.url, '/api/v1/events/stream', { authorization: `Bearer ${worker}` });
    expect(s.status).toBe(200);
    const wait = call(t.hub, workerP, 'events_wait', { wait_ms: 60_000, types: ['plan.updated'] });
    // Both are waiting once their first rounds are done (and, on PostgreSQL, the ring of its
    // LISTEN coming up has been answered).
    for (let i = 0; i < 200 && t.hub.bus.waiting !== 2; i++) await new Promise((r) => setTimeout(r, 25));
    const m = await scrape();
    expect(value(m, 'baton_auth_failures_total')).toBe(failures0 + 2);
    expect(value(m, 'baton_stream_subscribers')).toBe(1);
    // The long poll and the stream loop each wait on the doorbell.
    expect(value(m, 'baton_waiters')).toBe(2);
    expect(value(m, 'baton_store_transaction_seconds_count{kind="write"}')).toBeGreaterThan(0);
    expect(value(m, 'baton_store_transaction_seconds_count{kind="read"}')).toBeGreaterThan(0);
    expect(value(m, 'baton_store_errors_total{kind="write"}') ?? 0).toBe(0);
    expect(value(m, 'baton_process_resident_memory_bytes')).toBeGreaterThan(0);
    // The per-address budget of unauthenticated requests (40 a minute); scrapes with a credential are not counted.
    let limited = 0;
    for (let i = 0; i < 45; i++) if ((await http(h.url, 'GET', '/healthz')).status === 429) limited++;
    expect(limited).toBeGreaterThan(0);
    expect(value(await scrape(), 'baton_rate_limited_total{layer="address"}')).toBe(limited);
    s.close();
    const lead = await t.hub.authenticate(await createKey(t, 'lead2', 'lead'));
    await call(t.hub, lead, 'plan_update', { goal: 'wake the long poll' });
    await wait;
    clock.advance(61_000);
  });
  it('store errors count what the store raised (a refused write), not an op\'s own refusal nor a caller that left', async () => {
    const errors = async (): Promise<number> => {
      const m = await scrape();
      return (value(m, 'baton_store_errors_total{kind="read"}') ?? 0) + (value(m, 'baton_store_errors_total{kind="write"}') ?? 0);
    };
    const before = await errors();
    // Thrown inside a transaction of the hub's (metered) store: the caller leaving, an op's refusal.
    await expect(t.hub.db.read(async () => Promise.reject(clientGone()))).rejects.toThrow(/client went away/);
    await expect(t.hub.db.write(async () => Promise.reject(new BatonError('not_found', 'no such task')))).rejects.toThrow(/no such task/);
    expect(await errors()).toBe(before);
    // The store refuses a write (its disk is full): a store error.
    t.hub.db.block({ code: 'storage_full', message: 'test: disk full', at: Date.now() });
    try {
      const r = await http(h.url, 'POST', '/api/v1/tasks', { headers: { authorization: `Bearer ${t.adminKey}` }, body: { tasks: [{ title: 'x' }] } });
      expect(r.status).toBe(503);
    } finally {
      t.hub.db.block(null);
    }
    // At least the refused write; the deferred sink's flush (the request's audit row, last-seen
    // touches) may meet the block too when its timer fires meanwhile, and counts as well.
    expect(await errors()).toBeGreaterThanOrEqual(before + 1);
  });
});
