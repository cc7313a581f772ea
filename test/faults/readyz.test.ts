/**
 * /readyz check by check over a real socket: a hub that drains, a store write fault and a
 * finished integrity check each show up (503 while one fails), /healthz stays 200 throughout.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openHub, serve, type TestHub } from '../helpers.js';
import type { HttpHandle } from '../../src/api/http/server.js';

let t: TestHub;
let http: HttpHandle;
afterEach(async () => {
  await http.close();
  await t.close();
});

interface Ready {
  status: string;
  checks: Record<string, { ok: boolean; status: string; mode?: string }>;
}

describe('/readyz', () => {
  it('reports draining, a store fault and the last integrity check; /healthz stays up', async () => {
    t = await openHub();
    http = await serve(t.hub);
    const ready = async (): Promise<{ code: number; body: Ready }> => {
      const r = await fetch(`${http.url}/readyz`);
      return { code: r.status, body: (await r.json()) as Ready };
    };
    const healthz = async (): Promise<number> => (await fetch(`${http.url}/healthz`)).status;

    let r = await ready();
    expect(r.code).toBe(200);
    expect(r.body.checks.audit_writer).toMatchObject({ ok: true, status: 'inline' });
    expect(r.body.checks.integrity).toMatchObject({ ok: true, status: 'not_run' });

    t.hub.db.block({ code: 'storage_full', message: 'disk full at /secret/path', at: Date.now() });
    r = await ready();
    expect(r.code).toBe(503);
    expect(r.body.checks.store).toEqual({ ok: false, status: 'storage_full' });
    expect(JSON.stringify(r.body)).not.toContain('/secret/path');
    expect(await healthz()).toBe(200);
    t.hub.db.block(null);

    await t.hub.db.checkIntegrity(false);
    r = await ready();
    expect(r.code).toBe(200);
    expect(r.body.checks.integrity).toMatchObject({ ok: true, status: 'ok', mode: 'quick' });
    const head = await fetch(`${http.url}/readyz`, { method: 'HEAD' });
    expect(head.status).toBe(200);

    // A graceful stop drains the runner: from then on the hub is not ready (for good).
    t.hub.runner.drain();
    r = await ready();
    expect(r.code).toBe(503);
    expect(r.body.status).toBe('not_ready');
    expect(r.body.checks.draining).toEqual({ ok: false, status: 'draining' });
    expect(await healthz()).toBe(200);
  });
});
