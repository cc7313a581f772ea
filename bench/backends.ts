/**
 * Claim+complete on each backend, in process (`hub.call`, no HTTP): the store's share of a
 * cycle, SQLite against PostgreSQL, same machine, same run. 16 agents loop claim → complete
 * until the board is empty. Usage: `npm run build && node --import tsx bench/backends.ts`
 * (BENCH_TASKS, default 2000; BATON_TEST_DATABASE_URL, default the local server).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';

const TASKS = Number(process.env.BENCH_TASKS ?? 2000);
const AGENTS = 16;
const URL = process.env.BATON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function run(backend: 'sqlite' | 'postgres'): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const schema = `bench_${process.pid}`;
  const store = backend === 'postgres' ? { databaseUrl: URL, databaseSchema: schema } : {};
  const hub = await Hub.open(ConfigSchema.parse({ dataDir: join(dir, 'data'), logLevel: 'silent', rateLimit: false, ...store }), {
    log: pino({ level: 'silent' }),
  });
  try {
    const meta = { requestId: 'bench', transport: 'internal' as const };
    const lead = await hub.localPrincipal('lead', 'lead');
    for (let i = 0; i < TASKS; i += 500) {
      const n = Math.min(500, TASKS - i);
      await hub.call('task_create', { tasks: Array.from({ length: n }, (_, j) => ({ title: `t${i + j}` })) }, lead, meta);
    }
    const agents = await Promise.all(Array.from({ length: AGENTS }, (_, i) => hub.localPrincipal(`w${i}`, 'worker')));
    const start = performance.now();
    let done = 0;
    await Promise.all(
      agents.map(async (p) => {
        for (;;) {
          const { task } = (await hub.call('task_claim', {}, p, meta)) as { task: { id: string; lease: { token: number } } | null };
          if (task === null) return;
          await hub.call('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } }, p, meta);
          done++;
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    if (done !== TASKS) throw new Error(`completed ${done} of ${TASKS}`);
    return done / seconds;
  } finally {
    await hub.close();
    rmSync(dir, { recursive: true, force: true });
    if (backend === 'postgres') {
      const c = new pg.Client({ connectionString: URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    }
  }
}

for (const backend of ['sqlite', 'postgres'] as const) {
  const rate = await run(backend);
  process.stdout.write(`${backend}: ${TASKS} claim+complete cycles, ${AGENTS} agents, in process: ${rate.toFixed(0)} cycles/s\n`);
}
