/**
 * The deferred-audit writer under faults. The worker thread runs from the built package only,
 * so these cases load dist/ (`npm run build` first). A worker killed while reads flow is
 * restarted and loses no audit row; one that keeps dying hands its batches to the main
 * connection; one that hangs, before or after committing, is terminated and its batch written
 * once; closing with a hung worker is bounded; a store that refuses writes gets its batches
 * retried, never dropped silently; `close()` always returns.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Hub as HubT } from '../../src/hub.js';
import type { startHttp as StartHttpT } from '../../src/api/http/server.js';
import type * as DeferredT from '../../src/ops/deferred.js';
import type * as SqliteT from '../../src/store/sqlite.js';
import { DeferredWriter, inlineSink } from '../../src/ops/deferred.js';
import { SqliteDb } from '../../src/store/sqlite.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { sql } from '../../src/store/sql.js';
import type { AuditEntry, verifyAudit as VerifyAuditT } from '../../src/store/journal.js';
import { auditEntry, tempDir, testConfig } from '../helpers.js';

const dist = join(import.meta.dirname, '../../dist');
const { Hub } = (await import(join(dist, 'hub.js'))) as { Hub: typeof HubT };
const { startHttp } = (await import(join(dist, 'api/http/server.js'))) as { startHttp: typeof StartHttpT };
const D = (await import(join(dist, 'ops/deferred.js'))) as typeof DeferredT;
const S = (await import(join(dist, 'store/sqlite.js'))) as typeof SqliteT;
const M = (await import(join(dist, 'store/migrations.js'))) as { MIGRATIONS: typeof MIGRATIONS };
const J = (await import(join(dist, 'store/journal.js'))) as { verifyAudit: typeof VerifyAuditT };

const silent = pino({ level: 'silent' });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Fails the test instead of hanging it when `p` never settles. */
function bounded<T>(p: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_r, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]);
}

const entry = (): AuditEntry => auditEntry();

describe('deferred-audit worker: supervised', () => {
  it('a worker killed while reads flow is restarted; every read is audited; readyz shows it; close returns', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const data = join(tmp.dir, 'data');
    const hub = await Hub.open(testConfig(data, { rateLimit: false } as never), { log: silent, deferredWorker: true });
    const key = hub.firstStartKey!;
    const http = await startHttp(hub, { host: '127.0.0.1', port: 0 });
    const get = (): Promise<number> =>
      fetch(`${http.url}/api/v1/tasks`, { headers: { authorization: `Bearer ${key}` } }).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      });
    let reads = 0;
    for (let round = 0; round < 20; round++) {
      const burst = Array.from({ length: 10 }, () => get());
      if (round === 5 || round === 12) await hub.killDeferredWorker();
      for (const s of await bounded(Promise.all(burst), 'a burst of reads')) expect(s).toBe(200);
      reads += 10;
      await new Promise((r) => setTimeout(r, 20));
    }
    const readyz = await fetch(`${http.url}/readyz`).then((r) => r.json() as Promise<{ checks: { audit_writer: { restarts: number; dropped: number } } }>);
    expect(readyz.checks.audit_writer.restarts).toBe(2); // one per kill
    expect(readyz.checks.audit_writer.dropped).toBe(0);
    await bounded(http.close(), 'http.close');
    await bounded(hub.close(), 'hub.close');

    const again = await Hub.open(testConfig(data), { log: silent });
    try {
      // Each read once: a batch handed on after a kill is not written again (deferred_marks).
      const n = await again.db.read((ex) =>
        ex.get<{ rows: number; requests: number }>(sql`SELECT count(*) AS rows, count(DISTINCT request_id) AS requests FROM audit WHERE op = 'task_list'`),
      );
      expect(n).toEqual({ rows: reads, requests: reads });
      expect(await again.verifyAudit()).toMatchObject({ ok: true });
    } finally {
      await again.close();
    }
  });

  it('a worker that keeps dying hands its batches to the main connection (inline), losing none', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const file = join(tmp.dir, 'baton.db');
    const db = new S.SqliteDb(file);
    await db.migrate(M.MIGRATIONS, Date.now());
    const auditKey = Buffer.alloc(32, 3);
    const sink = new D.WorkerSink({ file, busyTimeoutMs: 5000, auditKey, fallback: D.inlineSink(db, auditKey), log: silent, maxRestarts: 0, backoffMs: 10 });
    const writer = new D.DeferredWriter(sink.write, silent, { intervalMs: 5 });
    cleanups.push(() => db.close());
    for (let i = 0; i < 50; i++) writer.addAudit(entry());
    const inFlight = writer.flush();
    await sink.kill(); // no restarts allowed: its batches go to the main connection
    for (let i = 0; i < 50; i++) writer.addAudit(entry());
    await bounded(inFlight, 'flush');
    await bounded(writer.flush(), 'flush');
    for (let i = 0; i < 200 && sink.health().state !== 'inline'; i++) await new Promise((r) => setTimeout(r, 10));
    expect(sink.health()).toMatchObject({ state: 'inline', restarts: 0, pending: 0 });
    for (let i = 0; i < 50; i++) writer.addAudit(entry());
    await bounded(writer.close(), 'writer.close');
    await bounded(sink.close(), 'sink.close');
    const n = await db.read((ex) => ex.get<{ rows: number; requests: number }>(sql`SELECT count(*) AS rows, count(DISTINCT request_id) AS requests FROM audit`));
    expect(n).toEqual({ rows: 150, requests: 150 });
  });
});

/** A migrated database file, a worker sink on it (falling back to the main connection) and a writer. */
async function workerSetup(options: Partial<DeferredT.WorkerSinkOptions> = {}) {
  const tmp = tempDir();
  cleanups.push(tmp.cleanup);
  const file = join(tmp.dir, 'baton.db');
  const db = new S.SqliteDb(file);
  await db.migrate(M.MIGRATIONS, Date.now());
  cleanups.push(() => db.close());
  const auditKey = Buffer.alloc(32, 7);
  const sink = new D.WorkerSink({ file, busyTimeoutMs: 5000, auditKey, fallback: D.inlineSink(db, auditKey), log: silent, backoffMs: 10, ...options });
  cleanups.push(() => sink.close());
  const writer = new D.DeferredWriter(sink.write, silent, { intervalMs: 5 });
  /** Audit rows in the file, and how many distinct requests they are (a batch written twice: rows > requests). */
  const counted = (): Promise<{ rows: number; requests: number }> =>
    db.read(async (ex) => (await ex.get<{ rows: number; requests: number }>(sql`SELECT count(*) AS rows, count(DISTINCT request_id) AS requests FROM audit`))!);
  const verified = (): Promise<{ ok: boolean }> => db.read((ex) => J.verifyAudit(ex, auditKey));
  return { db, sink, writer, counted, verified };
}

describe('deferred-audit worker: hung', () => {
  it('a worker that committed a batch and then hung is terminated; the batch handed on is not written twice', async () => {
    // Long enough for a new worker to start and answer on a loaded machine (300 ms was not: a
    // second restart), short enough to keep the test quick.
    const { sink, writer, counted, verified } = await workerSetup({ replyTimeoutMs: 2_000 });
    sink.hang('after-commit');
    for (let i = 0; i < 40; i++) writer.addAudit(entry());
    await bounded(writer.flush(), 'flush'); // committed, no answer; terminated after 2 s, handed to a new worker
    expect(sink.health()).toMatchObject({ state: 'alive', restarts: 1, pending: 0 });
    expect(await counted()).toEqual({ rows: 40, requests: 40 });
    for (let i = 0; i < 10; i++) writer.addAudit(entry());
    await bounded(writer.flush(), 'flush'); // the new worker writes as usual
    expect(await counted()).toEqual({ rows: 50, requests: 50 });
    expect(await verified()).toMatchObject({ ok: true });
  });

  for (const when of ['before-commit', 'after-commit'] as const) {
    it(`closing with a worker hung ${when} is bounded: what it held and what is queued is written on the main connection, once`, async () => {
      const { sink, writer, counted, verified } = await workerSetup({ replyTimeoutMs: 120_000 });
      sink.hang(when);
      for (let i = 0; i < 30; i++) writer.addAudit(entry());
      const flushing = writer.flush(); // handed to the worker, which hangs
      await new Promise((r) => setTimeout(r, 200));
      for (let i = 0; i < 20; i++) writer.addAudit(entry()); // queued behind it
      // Without the bound, closing waits for the reply timeout (two minutes here) times the restarts.
      await bounded(D.closeDeferred(writer, sink, silent, 300), 'closeDeferred', 15_000);
      await bounded(flushing, 'the hung batch');
      expect(sink.health()).toMatchObject({ state: 'closed', pending: 0 });
      expect(writer.health()).toMatchObject({ queued: 0, dropped: 0 });
      expect(await counted()).toEqual({ rows: 50, requests: 50 });
      expect(await verified()).toMatchObject({ ok: true });
    });
  }
});

describe('deferred writer: a refused batch is retried, not dropped', () => {
  it('retries while the store refuses writes, writes everything once it accepts again; close() returns either way', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const db = new SqliteDb(join(tmp.dir, 'baton.db'));
    await db.migrate(MIGRATIONS, Date.now());
    cleanups.push(() => db.close());
    const key = Buffer.alloc(32, 5);
    const writer = new DeferredWriter(inlineSink(db, key), silent, { intervalMs: 5, maxQueued: 1000 });
    db.block({ code: 'storage_full', message: 'test: disk full', at: Date.now() });
    for (let i = 0; i < 30; i++) writer.addAudit(entry());
    await bounded(writer.flush(), 'flush while refused');
    expect(writer.health()).toMatchObject({ queued: 30, failing: true, dropped: 0 });
    db.block(null);
    // Until the retried batch has committed: rows leave the queue when the batch starts, `failing`
    // clears when it commits (checking the queue alone raced the commit on a loaded machine).
    for (let i = 0; i < 200 && (writer.health().queued > 0 || writer.health().failing); i++) await new Promise((r) => setTimeout(r, 10));
    expect(writer.health()).toMatchObject({ queued: 0, failing: false, dropped: 0 });
    const n = await db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM audit`));
    expect(n!.n).toBe(30);

    // Refused for good: the queue is capped (dropped rows are counted and logged), close() returns.
    db.block({ code: 'storage_readonly', message: 'test: gone', at: Date.now() });
    for (let i = 0; i < 1500; i++) writer.addAudit(entry());
    await bounded(writer.close(), 'close while refused');
    expect(writer.health().dropped).toBe(500);
    expect(writer.health().queued).toBe(1000);
  });

  it('while writes fail, new rows wait for the backoff (no attempt per call); a backlog is written in batches of maxBatch', async () => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const db = new SqliteDb(join(tmp.dir, 'baton.db'));
    await db.migrate(MIGRATIONS, Date.now());
    cleanups.push(() => db.close());
    const inner = inlineSink(db, Buffer.alloc(32, 5));
    const batches: number[] = [];
    const writer = new DeferredWriter((audit, agents, tokens) => (batches.push(audit.length), inner(audit, agents, tokens)), silent, {
      intervalMs: 1_000,
      maxBatch: 10,
    });
    db.block({ code: 'storage_full', message: 'test: disk full', at: Date.now() });
    for (let i = 0; i < 10; i++) writer.addAudit(entry()); // a full batch: written at once, refused
    for (let i = 0; i < 200 && !writer.health().failing; i++) await new Promise((r) => setTimeout(r, 5));
    expect(batches).toEqual([10]);
    // 50 more rows, five batches' worth, while the store refuses: none starts an attempt of its own.
    for (let i = 0; i < 50; i++) writer.addAudit(entry());
    await new Promise((r) => setTimeout(r, 100));
    expect(batches).toEqual([10]);
    // The store accepts again: the 60 rows go in batches of at most 10, all of them, in order.
    db.block(null);
    await bounded(writer.close(), 'close');
    expect(batches.slice(1)).toEqual([10, 10, 10, 10, 10, 10]);
    const n = await db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM audit`));
    expect(n!.n).toBe(60);
  });
});
