/**
 * The queue anchor (issue 9): pg-boss fetch+complete with 16 in-process workers, against Baton's
 * claim+complete over MCP HTTP (the lean JSON-RPC path, bearer keys, audit) on the same
 * PostgreSQL, same machine, same run: one Baton instance, then two instances on one schema with
 * the agents spread over both. Usage:
 * `node --import tsx bench/pgboss.ts` (BENCH_TASKS, default 2000; BATON_TEST_DATABASE_URL;
 * BENCH_PROJECTS, default 1: the agents and tasks spread over that many projects, each with a
 * lead; one project is the queue case, several show per-project writers side by side).
 * Throughput only (cycles/s); each run gets a fresh schema, dropped afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { pino } from 'pino';
import { startHttp } from '../src/api/http/server.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { rpcClient } from './lib.js';

const TASKS = Number(process.env.BENCH_TASKS ?? 2000);
const WORKERS = 16;
const PROJECTS = Math.max(1, Math.min(WORKERS, Number(process.env.BENCH_PROJECTS ?? 1)));
const URL = process.env.BATON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
}

async function pgBoss(): Promise<number> {
  const schema = `bench_boss_${process.pid}`;
  const boss = new PgBoss({ connectionString: URL, schema, max: WORKERS });
  boss.on('error', () => undefined);
  await boss.start();
  try {
    await boss.createQueue('work');
    for (let i = 0; i < TASKS; i += 500) {
      await boss.insert(Array.from({ length: Math.min(500, TASKS - i) }, (_, j) => ({ name: 'work', data: { title: `t${i + j}` } })));
    }
    const start = performance.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        for (;;) {
          const [job] = await boss.fetch<{ title: string }>('work', { batchSize: 1 });
          if (job === undefined) return;
          await boss.complete('work', job.id);
          done++;
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    if (done !== TASKS) throw new Error(`pg-boss completed ${done} of ${TASKS}`);
    return done / seconds;
  } finally {
    await boss.stop({ graceful: false, wait: true });
    await dropSchema(schema);
  }
}

/** Baton over MCP HTTP on PostgreSQL with `instances` hubs (each its own pool and HTTP server) on one schema. */
async function baton(instances: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const schema = `bench_baton_${process.pid}_${instances}`;
  const config = ConfigSchema.parse({ dataDir: join(dir, 'data'), logLevel: 'silent', rateLimit: false, databaseUrl: URL, databaseSchema: schema });
  const hubs: Hub[] = [];
  const servers: { url: string; close(): Promise<void> }[] = [];
  try {
    for (let i = 0; i < instances; i++) {
      const hub = await Hub.open(config, { log: pino({ level: 'silent' }) });
      hubs.push(hub);
      servers.push(await startHttp(hub, { host: '127.0.0.1', port: 0, lean: true }));
    }
    const first = hubs[0]!;
    const meta = { requestId: 'bench', transport: 'internal' as const };
    const admin = await first.authenticate(first.firstStartKey!);
    const projectOf = (i: number): string | undefined => (PROJECTS === 1 ? undefined : `p${i % PROJECTS}`);
    const key = async (name: string, role: string, project: string | undefined): Promise<string> =>
      ((await first.call('token_create', { name, role, project }, admin, meta)) as { key: string }).key;
    for (let p = 0; p < PROJECTS; p++) {
      const lead = await first.authenticate(await key(`lead${p}`, 'lead', projectOf(p)));
      const share = Math.floor(TASKS / PROJECTS) + (p < TASKS % PROJECTS ? 1 : 0);
      for (let i = 0; i < share; i += 500) {
        const n = Math.min(500, share - i);
        await first.call('task_create', { tasks: Array.from({ length: n }, (_, j) => ({ title: `t${i + j}` })) }, lead, meta);
      }
    }
    // Worker i is in project i % PROJECTS and on instance i % instances: with two instances and an
    // even number of projects, each project's agents are on both.
    const workers = await Promise.all(
      Array.from({ length: WORKERS }, async (_, i) => ({ key: await key(`w${i}`, 'worker', projectOf(i)), url: servers[Math.floor(i / PROJECTS) % instances]!.url })),
    );
    const start = performance.now();
    let done = 0;
    await Promise.all(
      workers.map(async (w) => {
        const client = rpcClient(w.url, w.key);
        try {
          for (;;) {
            const { task } = await client.tool<{ task: { id: string; lease: { token: number } } | null }>('task_claim', {});
            if (task === null) return;
            await client.tool('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
            done++;
          }
        } finally {
          client.close();
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    if (done !== TASKS) throw new Error(`baton completed ${done} of ${TASKS}`);
    return done / seconds;
  } finally {
    for (const s of servers) await s.close();
    for (const h of hubs) await h.close();
    rmSync(dir, { recursive: true, force: true });
    await dropSchema(schema);
  }
}

const boss = await pgBoss();
const one = await baton(1);
const two = await baton(2);
process.stdout.write(
  `${TASKS} tasks, ${WORKERS} workers, ${PROJECTS} project(s), PostgreSQL ${URL.replace(/\/\/[^@]*@/, '//')}\n` +
    `pg-boss 10.4.2 fetch+complete (in process): ${boss.toFixed(0)} cycles/s\n` +
    `Baton claim+complete over MCP HTTP, one instance: ${one.toFixed(0)} cycles/s (${(one / boss).toFixed(2)}x pg-boss)\n` +
    `Baton, two instances on one schema: ${two.toFixed(0)} cycles/s (${(two / one).toFixed(2)}x one instance)\n`,
);
