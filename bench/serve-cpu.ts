/**
 * `node --import tsx bench/serve-cpu.ts` (after `npm run build`): CPU time per claim+complete
 * cycle of `baton serve` alone (issue 7: HTTP vs in-process), 16 agents over MCP HTTP, a fresh
 * server per round, one unmeasured second first. CPU per cycle of the server process (all
 * threads, /proc) moves far less than its rate on a shared machine, so a change to the HTTP path
 * is judged by it. The seeded data dir is kept (BENCH_DATA) so that rounds of two builds can be
 * alternated on the same tasks table.
 *
 * Env: BENCH_SECONDS (default 4), BENCH_ROUNDS (default 3), BENCH_DATA (default a temp dir,
 * removed at the end), BENCH_TASKS (seeded when the dir is new; default 60,000), BENCH_AGENTS
 * (default 16), BATON_DURABILITY (default full), SERVE_NODE_ARGS (e.g. `--cpu-prof
 * --cpu-prof-dir=/tmp/prof`), SERVE_ENTRY (default bin/baton.js; a file whose default is to run
 * the CLI from dist/, for readable profiles), BENCH_VARIANTS (e.g. `a:X=0;b:X=1`: rounds alternate
 * between these server environments, each round running every variant, the order rotated; the
 * A/B of a setting under the same load).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { cycleRun, makeKeys, median, processCpuMs, seedTasks, withHub } from './cycles.js';
import { startProcess } from './lib.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 16);
const ENTRY = resolve(process.env.SERVE_ENTRY ?? resolve(import.meta.dirname, '../bin/baton.js'));
const NODE_ARGS = (process.env.SERVE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');

const own = process.env.BENCH_DATA === undefined;
const dataDir = process.env.BENCH_DATA ?? mkdtempSync(join(tmpdir(), 'baton-serve-cpu-'));
const keysFile = join(dataDir, 'bench-keys.json');
try {
  if (!existsSync(keysFile)) {
    const keys = await withHub(dataDir, async (hub, admin) => {
      const k = await makeKeys(hub, admin, 'agent', 64, 'worker');
      await seedTasks(hub, admin, Number(process.env.BENCH_TASKS ?? 60_000));
      return k;
    });
    writeFileSync(keysFile, JSON.stringify(keys));
  }
  const keys = (JSON.parse(readFileSync(keysFile, 'utf8')) as string[]).slice(0, AGENTS);
  const base = { BATON_LOG_LEVEL: 'warn', BATON_RATE_LIMIT: 'false', BATON_DURABILITY: process.env.BATON_DURABILITY ?? 'full' };
  const variants = (process.env.BENCH_VARIANTS ?? 'default:').split(';').map((v) => {
    const [name, settings = ''] = v.split(':');
    const env: Record<string, string> = { ...base };
    for (const kv of settings.split(',').filter((x) => x !== '')) {
      const [k, val = ''] = kv.split('=');
      env[k!] = val;
    }
    return { name: name!, env, cpus: [] as number[], rates: [] as number[] };
  });
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < variants.length; i++) {
      const v = variants[(i + round) % variants.length]!;
      // A variant's SERVE_ENTRY picks its build (an A/B of two builds).
      const entry = v.env.SERVE_ENTRY ?? ENTRY;
      const server = await startProcess([...NODE_ARGS, entry, 'serve', '--port', '0', '--data', dataDir], v.env, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
      let stderr = '';
      server.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      try {
        await cycleRun(server.url, keys, 1);
        const pid = server.child.pid!;
        const cpu0 = processCpuMs(pid);
        const r = await cycleRun(server.url, keys, SECONDS);
        const cpu = (processCpuMs(pid) - cpu0) / r.cycles;
        v.cpus.push(cpu);
        v.rates.push(r.cps);
        process.stdout.write(
          `round ${round + 1} ${v.name}: ${Math.round(r.cps)} cycles/s, server CPU ${Math.round(cpu * 1000)} µs/cycle, call p50 ${r.p50.toFixed(2)} ms p99 ${r.p99.toFixed(2)} ms\n`,
        );
      } finally {
        await server.stop();
        if (stderr.trim() !== '') process.stdout.write(stderr);
      }
    }
  }
  for (const v of variants) {
    const cpus = v.cpus.map((c) => Math.round(c * 1000)).join(', ');
    process.stdout.write(`${v.name}: median ${Math.round(median(v.rates))} cycles/s, server CPU ${Math.round(median(v.cpus) * 1000)} µs/cycle (${cpus})\n`);
  }
} finally {
  if (own) rmSync(dataDir, { recursive: true, force: true });
}
