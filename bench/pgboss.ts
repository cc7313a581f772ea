/**
 * The queue anchor (issue 9): pg-boss fetch+complete with 16 in-process workers, against Baton's
 * claim+complete over MCP HTTP (the lean JSON-RPC path, bearer keys, audit) on the same
 * PostgreSQL, same machine, same run: one Baton instance, then two instances on one schema with
 * the agents spread over both. Usage:
 * `node --import tsx bench/pgboss.ts` (BENCH_TASKS, default 2000, measured after BENCH_WARMUP
 * cycles, default 400, on each side; BATON_TEST_DATABASE_URL;
 * BENCH_PROJECTS, default 1: the agents and tasks spread over that many projects, each with a
 * lead; one project is the queue case, several show per-project writers side by side;
 * BENCH_SERVE, default `process`: each Baton instance is a `baton serve` process of the built
 * bundle, run `npm run build` first; `inline`: the hubs run in this process, beside the load;
 * SERVE_NODE_ARGS: node flags for those processes, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`;
 * SERVE_ENTRY: the bin/baton.js to run, e.g. another build's for an A/B; BENCH_SKIP_BOSS=1 skips pg-boss;
 * BENCH_AFFINITY=project puts each project's agents on one instance, projects spread over them).
 * Throughput only (cycles/s); each run gets a fresh schema, dropped afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { pino } from 'pino';
import { startHttp } from '../src/api/http/server.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { processCpuMs } from './cycles.js';
import { rpcClient, startProcess, type Proc } from './lib.js';

const TASKS = Number(process.env.BENCH_TASKS ?? 2000);
/** Cycles run before the clock starts, on each side (a fresh process's JIT, connections, prepared statements). */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 400);
/** Tasks on each side's board: the warm-up's and the measured ones. */
const BOARD = TASKS + WARMUP;
const AFFINITY = process.env.BENCH_AFFINITY === 'project';

/** Counts finished cycles; the rate is of those after the first WARMUP, from the moment the warm-up ended. */
class Meter {
  private done = 0;
  private start = performance.now();

  constructor(private readonly onStart: () => void = () => undefined) {
    if (WARMUP === 0) this.onStart();
  }

  tick(): void {
    this.done++;
    if (this.done === WARMUP) {
      this.start = performance.now();
      this.onStart();
    }
  }

  get cycles(): number {
    return this.done;
  }

  /** Measured cycles per second. */
  rate(): number {
    return (this.done - WARMUP) / ((performance.now() - this.start) / 1000);
  }
}
const WORKERS = 16;
const PROJECTS = Math.max(1, Math.min(WORKERS, Number(process.env.BENCH_PROJECTS ?? 1)));
const URL = process.env.BATON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
/** `process` (default): each instance a `baton serve` (the built bundle), as deployed; `inline`: hubs in this process. */
const SERVE = process.env.BENCH_SERVE === 'inline' ? 'inline' : 'process';
/** The `baton serve` entry (SERVE_ENTRY: another build's bin/baton.js, for an A/B). */
const BIN = resolve(process.env.SERVE_ENTRY ?? resolve(import.meta.dirname, '../bin/baton.js'));
/** Node flags for the `baton serve` processes (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`). */
const NODE_ARGS = (process.env.SERVE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

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
    for (let i = 0; i < BOARD; i += 500) {
      await boss.insert(Array.from({ length: Math.min(500, BOARD - i) }, (_, j) => ({ name: 'work', data: { title: `t${i + j}` } })));
    }
    const meter = new Meter();
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        for (;;) {
          const [job] = await boss.fetch<{ title: string }>('work', { batchSize: 1 });
          if (job === undefined) return;
          await boss.complete('work', job.id);
          meter.tick();
        }
      }),
    );
    if (meter.cycles !== BOARD) throw new Error(`pg-boss completed ${meter.cycles} of ${BOARD}`);
    return meter.rate();
  } finally {
    await boss.stop({ graceful: false, wait: true });
    await dropSchema(schema);
  }
}

/** Baton over MCP HTTP on PostgreSQL with `instances` hubs (each its own pool and HTTP server) on one schema. */
async function baton(instances: number): Promise<{ rate: number; serverCpuMs: number | null }> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const data = join(dir, 'data');
  const schema = `bench_baton_${process.pid}_${instances}`;
  const config = ConfigSchema.parse({ dataDir: data, logLevel: 'silent', rateLimit: false, databaseUrl: URL, databaseSchema: schema });
  const hubs: Hub[] = [];
  const servers: { url: string; close(): Promise<void> }[] = [];
  const procs: Proc[] = [];
  try {
    // The board and the keys are made in process; in SERVE=process mode that hub is closed before
    // the `baton serve` processes start (they share its data dir for the secrets).
    const first = await Hub.open(config, { log: pino({ level: 'silent' }) });
    hubs.push(first);
    const meta = { requestId: 'bench', transport: 'internal' as const };
    const admin = await first.authenticate(first.firstStartKey!);
    const projectOf = (i: number): string | undefined => (PROJECTS === 1 ? undefined : `p${i % PROJECTS}`);
    const key = async (name: string, role: string, project: string | undefined): Promise<string> =>
      ((await first.call('token_create', { name, role, project }, admin, meta)) as { key: string }).key;
    for (let p = 0; p < PROJECTS; p++) {
      const lead = await first.authenticate(await key(`lead${p}`, 'lead', projectOf(p)));
      const share = Math.floor(BOARD / PROJECTS) + (p < BOARD % PROJECTS ? 1 : 0);
      for (let i = 0; i < share; i += 500) {
        const n = Math.min(500, share - i);
        await first.call('task_create', { tasks: Array.from({ length: n }, (_, j) => ({ title: `t${i + j}` })) }, lead, meta);
      }
    }
    const keys = await Promise.all(Array.from({ length: WORKERS }, (_, i) => key(`w${i}`, 'worker', projectOf(i))));
    if (SERVE === 'process') {
      await first.close();
      hubs.length = 0;
      const env = { BATON_DATABASE_URL: URL, BATON_DATABASE_SCHEMA: schema, BATON_RATE_LIMIT: 'false', BATON_LOG_LEVEL: 'warn' };
      for (let i = 0; i < instances; i++) {
        procs.push(await startProcess([...NODE_ARGS, BIN, 'serve', '--data', data, '--port', '0'], env, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr'));
      }
    } else {
      for (let i = 1; i < instances; i++) hubs.push(await Hub.open(config, { log: pino({ level: 'silent' }) }));
      for (const hub of hubs) servers.push(await startHttp(hub, { host: '127.0.0.1', port: 0, lean: true }));
    }
    const urls = SERVE === 'process' ? procs.map((p) => p.url) : servers.map((s) => s.url);
    // Worker i is in project i % PROJECTS and on instance i % instances: with two instances and an
    // even number of projects, each project's agents are on both.
    // BENCH_AFFINITY=project: a project's agents all on one instance (projects spread over the
    // instances, as a balancer routing by project would), so no project's lock is contended.
    const instanceOf = (i: number): number => (AFFINITY ? i % PROJECTS : Math.floor(i / PROJECTS)) % instances;
    const workers = keys.map((k, i) => ({ key: k, url: urls[instanceOf(i)]! }));
    const cpuOfServers = (): number => procs.reduce((sum, p) => sum + processCpuMs(p.child.pid!), 0);
    let cpuBefore = cpuOfServers();
    const meter = new Meter(() => (cpuBefore = cpuOfServers()));
    await Promise.all(
      workers.map(async (w) => {
        const client = rpcClient(w.url, w.key);
        try {
          for (;;) {
            const { task } = await client.tool<{ task: { id: string; lease: { token: number } } | null }>('task_claim', {});
            if (task === null) return;
            await client.tool('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
            meter.tick();
          }
        } finally {
          client.close();
        }
      }),
    );
    if (meter.cycles !== BOARD) throw new Error(`baton completed ${meter.cycles} of ${BOARD}`);
    const cpu = cpuOfServers() - cpuBefore;
    return { rate: meter.rate(), serverCpuMs: SERVE === 'process' ? cpu / (BOARD - WARMUP) : null };
  } finally {
    for (const p of procs) await p.stop();
    for (const s of servers) await s.close();
    for (const h of hubs) await h.close();
    rmSync(dir, { recursive: true, force: true });
    await dropSchema(schema);
  }
}

const boss = process.env.BENCH_SKIP_BOSS === '1' ? NaN : await pgBoss();
const one = await baton(1);
const two = await baton(2);
const cpu = (r: { serverCpuMs: number | null }): string => (r.serverCpuMs === null ? '' : `; baton serve CPU ${r.serverCpuMs.toFixed(2)} ms per cycle`);
process.stdout.write(
  `${TASKS} cycles measured after ${WARMUP} of warm-up, ${WORKERS} workers, ${PROJECTS} project(s), PostgreSQL ${URL.replace(/\/\/[^@]*@/, '//')}, Baton ${SERVE === 'process' ? 'as baton serve processes' : 'in this process'}\n` +
    `pg-boss 10.4.2 fetch+complete (in process): ${boss.toFixed(0)} cycles/s\n` +
    `Baton claim+complete over MCP HTTP, one instance: ${one.rate.toFixed(0)} cycles/s (${(one.rate / boss).toFixed(2)}x pg-boss)${cpu(one)}\n` +
    `Baton, two instances on one schema: ${two.rate.toFixed(0)} cycles/s (${(two.rate / one.rate).toFixed(2)}x one instance)${cpu(two)}\n`,
);
