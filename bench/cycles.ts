/**
 * The claim+complete cycle the issue-7 ratios compare, shared by `bench/run.ts` and
 * `bench/ratios.ts`: the same work per cycle over MCP HTTP and in process, and a seeded data dir.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pino } from 'pino';
import type { Principal } from '../src/auth/principal.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { percentile, rawRpcClient, rpcClient, startProcess } from './lib.js';

const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const SPLIT = resolve(import.meta.dirname, 'split-server.mjs');

const silent = pino({ level: 'silent' });

export async function withHub<T>(dir: string, fn: (hub: Hub, admin: Principal) => Promise<T>, env: Record<string, unknown> = {}): Promise<T> {
  const hub = await Hub.open(ConfigSchema.parse({ dataDir: dir, logLevel: 'silent', rateLimit: false, ...env }), { log: silent });
  try {
    const admin = await hub.localPrincipal('bench-admin', 'admin');
    return await fn(hub, admin);
  } finally {
    await hub.close();
  }
}

export async function makeKeys(hub: Hub, admin: Principal, prefix: string, n: number, role: string): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const out = (await hub.call('token_create', { name: `${prefix}${i}`, role }, admin, { requestId: 'bench', transport: 'internal' })) as { key: string };
    keys.push(out.key);
  }
  return keys;
}

/** Tasks in batches of 500; in each batch every 5th task depends on the two before it. */
export async function seedTasks(hub: Hub, admin: Principal, n: number): Promise<void> {
  for (let done = 0; done < n; done += 500) {
    const tasks = Array.from({ length: Math.min(500, n - done) }, (_, i) => ({
      ref: `r${i}`,
      title: `bench ${done + i}`,
      priority: 1 + ((done + i) % 10),
      ...(i % 5 === 4 ? { depends_on: [`r${i - 1}`, `r${i - 2}`] } : {}),
    }));
    await hub.call('task_create', { tasks }, admin, { requestId: 'bench', transport: 'internal' });
  }
}

export interface CycleResult {
  cps: number;
  cycles: number;
  p50: number;
  p99: number;
}

/**
 * N agents over MCP HTTP, each on its own key and keep-alive socket: task_claim → task_complete
 * until the deadline. BENCH_CLIENT=raw: each agent writes its requests by hand on a raw socket
 * (lib.ts rawRpcClient, ~60–80 µs of load-generator CPU per cycle instead of ~200–300 with
 * node's HTTP client), so on a 2-core machine the load generator takes less from the server.
 */
export async function cycleRun(url: string, keys: string[], seconds: number): Promise<CycleResult> {
  const client = process.env.BENCH_CLIENT ?? 'http';
  if (client !== 'http' && client !== 'raw') throw new Error(`BENCH_CLIENT: unknown client '${client}' (http, raw)`);
  const latencies: number[] = [];
  let cycles = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    keys.map(async (key) => {
      const c = (client === 'raw' ? rawRpcClient : rpcClient)(url, key, latencies);
      while (performance.now() < deadline) {
        const { task } = await c.tool<{ task: { id: string; lease: { token: number } } | null }>('task_claim', {});
        if (task === null) break;
        await c.tool('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
        cycles++;
      }
      c.close();
    }),
  );
  return { cps: cycles / seconds, cycles, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** The same cycle through the runner in this process (no transport), `conc` agents at once. */
export async function inprocRun(hub: Hub, conc: number, seconds: number): Promise<CycleResult> {
  const principals = await Promise.all(Array.from({ length: conc }, (_, i) => hub.localPrincipal(`inproc${i}`, 'worker')));
  let cycles = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    principals.map(async (p) => {
      while (performance.now() < deadline) {
        const { task } = (await hub.call('task_claim', {}, p, { requestId: 'b', transport: 'internal' })) as { task: { id: string; lease: { token: number } } | null };
        if (task === null) break;
        await hub.call('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } }, p, { requestId: 'b', transport: 'internal' });
        cycles++;
      }
    }),
  );
  return { cps: cycles / seconds, cycles, p50: NaN, p99: NaN };
}

/** CPU ms (user + system) in a /proc stat line: fields 14 and 15, after the parenthesized command name. */
function statCpuMs(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // USER_HZ is 100 on Linux
}

/** CPU time (ms, user + system, all threads) a process has used so far, from /proc (Linux); NaN elsewhere. */
export function processCpuMs(pid: number): number {
  try {
    return statCpuMs(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return NaN;
  }
}

/** CPU time (ms) each thread of a process has used so far, by thread id, from /proc (Linux); empty elsewhere. */
export function threadCpuMs(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) out.set(tid, statCpuMs(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')));
  } catch {
    // not Linux, or the process ended
  }
  return out;
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The three sides of the issue-7 ratios: MCP HTTP durable (the default), MCP HTTP fast, the
 * in-process runner; and `split`, an experiment (bench/split-server.mjs: HTTP on a worker thread,
 * the hub on the main thread, durable), compared on request only.
 */
export type Side = 'durable' | 'fast' | 'inproc' | 'split';

export interface Sample extends CycleResult {
  /** CPU ms per cycle of the side that serves: the `baton serve` process (all threads), or this process in process. */
  cpu: number;
  /** CPU ms per cycle of the load generator (this process), HTTP only. */
  clientCpu: number;
  /** CPU ms per cycle of each of the server's busiest threads (0.005 ms and more), busiest first; HTTP only. */
  threadCpu: number[];
}

/** Unmeasured run before each measured one, on every side: a fresh server's JIT warm-up is not what is compared. */
const WARMUP_S = 1;

async function httpRound(dataDir: string, keys: string[], side: Exclude<Side, 'inproc'>, seconds: number): Promise<Sample> {
  const env = { BATON_LOG_LEVEL: 'warn', BATON_RATE_LIMIT: 'false', BATON_DURABILITY: side === 'fast' ? 'normal' : 'full' };
  const args = side === 'split' ? [SPLIT, resolve(import.meta.dirname, '../dist'), dataDir] : [BIN, 'serve', '--port', '0', '--data', dataDir];
  const server = await startProcess(args, env, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
  try {
    await cycleRun(server.url, keys, WARMUP_S);
    const pid = server.child.pid!;
    const cpu0 = processCpuMs(pid);
    const threads0 = threadCpuMs(pid);
    const client0 = process.cpuUsage();
    const r = await cycleRun(server.url, keys, seconds);
    const client = process.cpuUsage(client0);
    const cpu = processCpuMs(pid) - cpu0;
    const threadCpu = [...threadCpuMs(pid)]
      .map(([tid, ms]) => (ms - (threads0.get(tid) ?? 0)) / r.cycles)
      .filter((ms) => ms >= 0.005)
      .sort((a, b) => b - a);
    return { ...r, cpu: cpu / r.cycles, clientCpu: (client.user + client.system) / 1000 / r.cycles, threadCpu };
  } finally {
    await server.stop();
  }
}

async function inprocRound(dataDir: string, agents: number, seconds: number): Promise<Sample> {
  return withHub(dataDir, async (hub) => {
    await inprocRun(hub, agents, WARMUP_S);
    const cpu0 = process.cpuUsage();
    const r = await inprocRun(hub, agents, seconds);
    const cpu = process.cpuUsage(cpu0);
    return { ...r, cpu: (cpu.user + cpu.system) / 1000 / r.cycles, clientCpu: NaN, threadCpu: [] };
  });
}

export interface SideSummary {
  /** Median rate over the rounds, and its range. */
  cps: number;
  lo: number;
  hi: number;
  /** Median CPU ms per cycle of the serving side. */
  cpu: number;
  samples: Sample[];
}

/**
 * Claim+complete with `keys.length` agents on each side, `rounds` times, the order rotated every
 * round (durable, fast, in-process; then fast, in-process, durable; …) so that no side always
 * runs first, on the fuller table, or in the same moment of a shared machine's load; each HTTP
 * round on a fresh `baton serve`. Same work per cycle on every side.
 */
export async function ratioRounds(
  dataDir: string,
  keys: string[],
  options: { rounds: number; seconds: number; sides?: Side[]; log?: (line: string) => void },
): Promise<Partial<Record<Side, SideSummary>>> {
  const sides = options.sides ?? ['durable', 'fast', 'inproc'];
  const samples: Partial<Record<Side, Sample[]>> = {};
  for (let round = 0; round < options.rounds; round++) {
    for (let i = 0; i < sides.length; i++) {
      const side = sides[(i + round) % sides.length]!;
      const s =
        side === 'inproc'
          ? await inprocRound(dataDir, keys.length, options.seconds)
          : await httpRound(dataDir, keys, side, options.seconds);
      (samples[side] ??= []).push(s);
      options.log?.(
        `round ${round + 1} ${side.padEnd(7)} ${Math.round(s.cps)} cycles/s, CPU ${Math.round(s.cpu * 1000)} µs/cycle` +
          `${Number.isNaN(s.clientCpu) ? '' : ` (busiest threads ${s.threadCpu.map((ms) => Math.round(ms * 1000)).join('/')} µs; load generator ${Math.round(s.clientCpu * 1000)} µs/cycle), call p50 ${s.p50.toFixed(2)} ms p99 ${s.p99.toFixed(2)} ms`}`,
      );
    }
  }
  const out: Partial<Record<Side, SideSummary>> = {};
  for (const [side, xs] of Object.entries(samples) as [Side, Sample[]][]) {
    const rates = xs.map((x) => x.cps);
    out[side] = { cps: median(rates), lo: Math.min(...rates), hi: Math.max(...rates), cpu: median(xs.map((x) => x.cpu)), samples: xs };
  }
  return out;
}
