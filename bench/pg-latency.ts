/**
 * Latency on PostgreSQL (issue 9 goals), against real `baton serve` processes (needs
 * `npm run build`; `npm run bench:pg-latency` builds first):
 *
 * (a) Cross-instance wake-up: two `baton serve` on one PostgreSQL schema. An agent waits in
 *     `events_wait` on instance B; the lead creates a task through instance A. Measured: from the
 *     write's answer arriving at the lead (its ack) to the waiter's answer arriving (woken on B by
 *     A's NOTIFY). B's periodic re-check is off (BATON_WAIT_RECHECK_MS=0): only the doorbell can
 *     wake it. Negative: the waiter heard before the writer's ack did. Goal: p99 <= 50 ms.
 * (b) Claim latency under load: 64 agents over MCP HTTP loop claim -> complete on one
 *     `baton serve` until the board is empty; the claim's round trip, p50/p99, on SQLite and on
 *     PostgreSQL in the same run. Goal: PostgreSQL p99 <= 1.5x SQLite's.
 *
 * Env: BENCH_WAKE_SAMPLES (default 300), BENCH_TASKS (default 3200), BATON_TEST_DATABASE_URL;
 * BENCH_ONLY=wake or BENCH_ONLY=claims runs one part.
 * Each PostgreSQL run gets a fresh schema, dropped afterwards. Prints `uptime` first: other work
 * on the machine shows in the tails.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { percentile, rpcClient, startProcess, type Proc } from './lib.js';

const URL = process.env.BATON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const WAKE_SAMPLES = Number(process.env.BENCH_WAKE_SAMPLES ?? 300);
const TASKS = Number(process.env.BENCH_TASKS ?? 3200);
const AGENTS = 64;
const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
}

interface Setup {
  dir: string;
  data: string;
  env: Record<string, string>;
  /** Keys by name, made before any server starts (the data dir's secrets are shared). */
  keys: Map<string, string>;
  cleanup(): Promise<void>;
}

/** A data dir (and on PostgreSQL a schema) with the named keys, made in process; the hub is closed again. */
async function setup(backend: 'sqlite' | 'postgres', tag: string, keys: readonly (readonly [string, string])[]): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const data = join(dir, 'data');
  const schema = `bench_lat_${process.pid}_${tag}`;
  const store = backend === 'postgres' ? { databaseUrl: URL, databaseSchema: schema } : {};
  const hub = await Hub.open(ConfigSchema.parse({ dataDir: data, logLevel: 'silent', ...store }), { log: pino({ level: 'silent' }) });
  const made = new Map<string, string>();
  try {
    const admin = await hub.authenticate(hub.firstStartKey!);
    const meta = { requestId: 'bench', transport: 'internal' as const };
    for (const [name, role] of keys) made.set(name, ((await hub.call('token_create', { name, role }, admin, meta)) as { key: string }).key);
  } finally {
    await hub.close();
  }
  const env: Record<string, string> = {
    BATON_RATE_LIMIT: 'false',
    BATON_LOG_LEVEL: 'warn',
    ...(backend === 'postgres' ? { BATON_DATABASE_URL: URL, BATON_DATABASE_SCHEMA: schema } : {}),
  };
  return {
    dir,
    data,
    env,
    keys: made,
    cleanup: async () => {
      rmSync(dir, { recursive: true, force: true });
      if (backend === 'postgres') await dropSchema(schema);
    },
  };
}

function serve(s: Setup, extra: Record<string, string> = {}): Promise<Proc> {
  return startProcess([BIN, 'serve', '--data', s.data, '--port', '0'], { ...s.env, ...extra }, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
}

const fmt = (v: number): string => v.toFixed(1);

/** (a) write-ack on A -> wake answer on B, in ms. */
async function wakeUp(): Promise<{ lat: number[]; sinceSend: number[] }> {
  const s = await setup('postgres', 'wake', [
    ['lead', 'lead'],
    ['waiter', 'worker'],
  ]);
  const extra = { BATON_WAIT_RECHECK_MS: '0' };
  const a = await serve(s, extra);
  const b = await serve(s, extra);
  const writer = rpcClient(a.url, s.keys.get('lead')!);
  const waiter = rpcClient(b.url, s.keys.get('waiter')!);
  const lat: number[] = [];
  const sinceSend: number[] = [];
  try {
    // The cursor "now", then B's LISTEN is up (it rings once when it comes up).
    let cursor = (await waiter.tool<{ cursor: string }>('events_wait', {})).cursor;
    await sleep(500);
    for (let i = 0; i < WAKE_SAMPLES + 10; i++) {
      let woke = 0;
      const waiting = waiter.tool<{ events: unknown[]; cursor: string }>('events_wait', { after: cursor, wait_ms: 10_000, types: ['task.created'] }).then((r) => {
        woke = performance.now();
        return r;
      });
      // Let the wait reach B and park (its first read finds nothing).
      await sleep(30);
      const sent = performance.now();
      await writer.tool('task_create', { tasks: [{ title: `wake ${i}` }] });
      const acked = performance.now();
      const r = await waiting;
      if (r.events.length === 0) throw new Error('the wait ended without the event');
      cursor = r.cursor;
      // The first few warm up connections, pools and JIT.
      if (i >= 10) {
        lat.push(woke - acked);
        sinceSend.push(woke - sent);
      }
    }
  } finally {
    writer.close();
    waiter.close();
    await a.stop();
    await b.stop();
    await s.cleanup();
  }
  return { lat, sinceSend };
}

/** (b) claim round trips (ms) of AGENTS agents looping claim -> complete on one `baton serve`. */
async function claims(backend: 'sqlite' | 'postgres'): Promise<{ lat: number[]; seconds: number }> {
  const names = Array.from({ length: AGENTS }, (_, i) => [`w${i}`, 'worker'] as const);
  const s = await setup(backend, 'claim', [['lead', 'lead'], ...names]);
  const server = await serve(s);
  const lead = rpcClient(server.url, s.keys.get('lead')!);
  const lat: number[] = [];
  let seconds = 0;
  try {
    for (let i = 0; i < TASKS; i += 200) {
      await lead.tool('task_create', { tasks: Array.from({ length: Math.min(200, TASKS - i) }, (_, j) => ({ title: `t${i + j}` })) });
    }
    let done = 0;
    const start = performance.now();
    await Promise.all(
      names.map(async ([name]) => {
        const client = rpcClient(server.url, s.keys.get(name)!);
        try {
          for (;;) {
            const t0 = performance.now();
            const { task } = await client.tool<{ task: { id: string; lease: { token: number } } | null }>('task_claim', {});
            if (task === null) return;
            lat.push(performance.now() - t0);
            await client.tool('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
            done++;
          }
        } finally {
          client.close();
        }
      }),
    );
    seconds = (performance.now() - start) / 1000;
    if (done !== TASKS) throw new Error(`${backend}: completed ${done} of ${TASKS}`);
  } finally {
    lead.close();
    await server.stop();
    await s.cleanup();
  }
  return { lat, seconds };
}

const load = execFileSync('uptime', { encoding: 'utf8' }).trim();
process.stdout.write(`uptime before: ${load}\nPostgreSQL ${URL.replace(/\/\/[^@]*@/, '//')}\n`);

async function reportWake(): Promise<void> {
  const wake = await wakeUp();
  process.stdout.write(
    `(a) cross-instance wake-up, two baton serve on one schema, ${wake.lat.length} samples: write ack -> wake answer ` +
      `p50 ${fmt(percentile(wake.lat, 50))} ms, p99 ${fmt(percentile(wake.lat, 99))} ms, max ${fmt(Math.max(...wake.lat))} ms ` +
      `(from the write's send: p50 ${fmt(percentile(wake.sinceSend, 50))} ms, p99 ${fmt(percentile(wake.sinceSend, 99))} ms) [goal p99 <= 50 ms]\n`,
  );
}

async function reportClaims(): Promise<void> {
  const sqlite = await claims('sqlite');
  const postgres = await claims('postgres');
  const line = (name: string, r: { lat: number[]; seconds: number }): string =>
    `    ${name}: claim p50 ${fmt(percentile(r.lat, 50))} ms, p99 ${fmt(percentile(r.lat, 99))} ms, max ${fmt(Math.max(...r.lat))} ms; ${(TASKS / r.seconds).toFixed(0)} cycles/s\n`;
  const ratio = percentile(postgres.lat, 99) / percentile(sqlite.lat, 99);
  process.stdout.write(
    `(b) ${AGENTS} agents over MCP HTTP, claim -> complete until ${TASKS} tasks are done, one baton serve:\n` +
      line('SQLite    ', sqlite) +
      line('PostgreSQL', postgres) +
      `    PostgreSQL p99 / SQLite p99 = ${ratio.toFixed(2)} [goal <= 1.5]\n`,
  );
}

const only = process.env.BENCH_ONLY;
if (only !== 'claims') await reportWake();
if (only !== 'wake') await reportClaims();
process.stdout.write(`uptime after: ${execFileSync('uptime', { encoding: 'utf8' }).trim()}\n`);
