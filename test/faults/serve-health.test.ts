/**
 * Health of a real `baton serve` (child process over dist/: `npm run build` first): /healthz says
 * the process is alive, /readyz says whether it should get traffic, check by check. A data dir
 * removed under the running hub makes writes fail with `storage_readonly` instead of being
 * acknowledged into an unlinked file; the process stays up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BIN, createKey, openHub, tempDir } from '../helpers.js';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

function startServe(args: string[], cwd?: string): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, BATON_RATE_LIMIT: 'false' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  let buf = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${buf}`)), 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, stderr: () => buf });
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(buf));
    });
  });
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A `baton serve` over a data dir of its own (SQLite: the data dir's own file is what is watched), and a lead's headers. */
async function servedHub(): Promise<{ data: string; child: ChildProcess; url: string; auth: Record<string, string> }> {
  const t = await openHub({ backend: 'sqlite' });
  const data = join(t.dir, 'data');
  const key = await createKey(t, 'w1', 'lead');
  await t.hub.close();
  const { child, url } = await startServe(['--data', data]);
  return { data, child, url, auth: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } };
}

/** After a loss in the data dir: the next write is refused with storage_readonly, and /readyz (polled) turns 503. */
async function refusedAfterLoss(url: string, add: (title: string) => Promise<Response>): Promise<{ status: number; body: { checks: Record<string, { status: string }> } }> {
  const refused = await add('after');
  expect(refused.status).toBe(503);
  expect(await refused.json()).toMatchObject({ error: { code: 'storage_readonly' } });
  return until(
    () => fetch(`${url}/readyz`).then(async (r) => ({ status: r.status, body: (await r.json()) as { checks: Record<string, { status: string }> } })),
    (r) => r.status === 503,
  );
}

describe('baton serve: /healthz, /readyz and a removed data dir', () => {
  it('reports ready with every check, then refuses writes once the data dir is removed, and stays up', async () => {
    const { data, child, url, auth } = await servedHub();

    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });
    const ready = await fetch(`${url}/readyz`);
    const body = (await ready.json()) as { status: string; checks: Record<string, { ok: boolean; status: string }> };
    expect(ready.status).toBe(200);
    expect(body.status).toBe('ready');
    expect(body.checks).toMatchObject({
      data_dir: { ok: true, status: 'present' },
      store: { ok: true, status: 'writable' },
      migrations: { ok: true, status: 'current' },
      audit_writer: { ok: true, status: 'alive' },
      draining: { ok: true },
      integrity: { ok: true, status: 'not_run' },
    });
    // No paths in the unauthenticated answer.
    expect(JSON.stringify(body)).not.toContain(data);

    const add = (title: string) => fetch(`${url}/api/v1/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ tasks: [{ title }] }) });
    expect((await add('before')).status).toBe(200);

    rmSync(data, { recursive: true, force: true });
    // At once, before the periodic watch has run: the write checks first.
    const notReady = await refusedAfterLoss(url, add);
    expect(notReady.status).toBe(503);
    expect(notReady.body.checks.data_dir!.status).toBe('removed');
    expect(notReady.body.checks.store!.status).toBe('storage_readonly');

    const again = await add('again');
    expect(again.status).toBe(503);
    expect(await again.json()).toMatchObject({ error: { code: 'storage_readonly' } });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    expect(child.exitCode).toBeNull();
    // Reads still answer from the open file; their audit rows are held (not written into the
    // unlinked file by the worker's connection) and /readyz shows them queued.
    expect((await fetch(`${url}/api/v1/tasks`, { headers: auth })).status).toBe(200);
    const held = await until(
      () => fetch(`${url}/readyz`).then(async (r) => ((await r.json()) as { checks: { audit_writer: { status: string; queued: number } } }).checks.audit_writer),
      (w) => w.status === 'failing',
    );
    expect(held.status).toBe('failing');
    expect(held.queued).toBeGreaterThan(0);
  });

  // A deleted WAL: writes acknowledged into the unlinked file would be gone at the next start. A
  // deleted index (-shm): the next process would build one of its own beside this one's.
  for (const file of ['baton.db-wal', 'baton.db-shm']) {
    it(`${file} deleted under the running hub: writes are refused, /readyz says removed`, async () => {
      const { data, child, url, auth } = await servedHub();
      const add = (title: string) => fetch(`${url}/api/v1/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ tasks: [{ title }] }) });
      expect((await add('before')).status).toBe(200);
      const path = join(data, file);
      expect(existsSync(path)).toBe(true);
      rmSync(path);
      const notReady = await refusedAfterLoss(url, add);
      expect(notReady.body.checks.data_dir!.status).toBe('removed');
      expect(child.exitCode).toBeNull();
    });
  }

  it('creates ./.baton in a directory that has none, and says where on stderr', async () => {
    const tmp = tempDir();
    try {
      const { stderr } = await startServe([], tmp.dir);
      expect(stderr()).toContain(`creating a new data dir in ${join(tmp.dir, '.baton')}`);
      expect(existsSync(join(tmp.dir, '.baton', 'baton.db'))).toBe(true);
    } finally {
      tmp.cleanup();
    }
  });
});
