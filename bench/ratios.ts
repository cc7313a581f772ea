/**
 * `node --import tsx bench/ratios.ts` (after `npm run build`): the two issue-7 ratios alone, as
 * `npm run bench` takes them (cycles.ts `ratioRounds`): claim+complete with 16 agents, rounds that
 * rotate the three sides (MCP HTTP durable, MCP HTTP fast, the in-process runner), medians and
 * their spread, and CPU time per cycle of the serving side — on a shared machine CPU per cycle
 * moves far less than rate. Env: BENCH_SECONDS (default 5), RATIO_ROUNDS (default 3),
 * RATIO_SIDES (default `durable,fast,inproc`; `split` adds the HTTP-on-a-worker experiment,
 * bench/split-server.mjs), BENCH_TASKS, BENCH_CLIENT (`http`, node's client, the default; `raw`: a
 * hand-written client on raw sockets that takes a third of the CPU, cycles.ts cycleRun).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeKeys, ratioRounds, seedTasks, withHub, type Side } from './cycles.js';

const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Number(process.env.RATIO_ROUNDS ?? 3);
const SIDES = (process.env.RATIO_SIDES ?? 'durable,fast,inproc').split(',') as Side[];
for (const side of SIDES) {
  if (!['durable', 'fast', 'inproc', 'split'].includes(side)) throw new Error(`RATIO_SIDES: unknown side '${side}' (durable, fast, inproc, split)`);
}
const fmt = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

const work = mkdtempSync(join(tmpdir(), 'baton-ratios-'));
try {
  process.stderr.write(`baton ratios: ${cpus().length} cores, node ${process.version}, ${ROUNDS} rounds × ${SIDES.join('/')} × ${DURATION} s\n`);
  const dataDir = join(work, 'data');
  // Enough tasks that no round runs out (warm-ups included): the fastest side does ~6k cycles/s here.
  const tasks = Number(process.env.BENCH_TASKS ?? ROUNDS * SIDES.length * (DURATION + 1) * 7_000);
  const keys = await withHub(dataDir, async (hub, admin) => {
    const k = await makeKeys(hub, admin, 'agent', 16, 'worker');
    await seedTasks(hub, admin, tasks);
    return k;
  });
  const r = await ratioRounds(dataDir, keys, { rounds: ROUNDS, seconds: DURATION, sides: SIDES, log: (line) => process.stderr.write(`  ${line}\n`) });
  const out: string[] = [];
  for (const side of SIDES) {
    const s = r[side]!;
    out.push(`${side}: median ${fmt(s.cps)} cycles/s (range ${fmt(s.lo)}–${fmt(s.hi)}), CPU ${fmt(s.cpu * 1000)} µs/cycle`);
  }
  const { durable: d, fast: f, inproc: p } = r;
  if (d !== undefined && f !== undefined) {
    const perRound = d.samples.map((x, i) => fmt((x.cps / f.samples[i]!.cps) * 100, 1));
    out.push(`durable ÷ fast: ${fmt((d.cps / f.cps) * 100, 1)} % (medians; per round ${perRound.join(', ')} %); CPU per cycle fast ÷ durable ${fmt((f.cpu / d.cpu) * 100, 1)} %`);
  }
  const sp = r.split;
  if (sp !== undefined && p !== undefined) {
    const perRound = sp.samples.map((x, i) => fmt((x.cps / p.samples[i]!.cps) * 100, 1));
    out.push(`split (experiment) ÷ in-process: ${fmt((sp.cps / p.cps) * 100, 1)} % (medians; per round ${perRound.join(', ')} %)`);
  }
  if (d !== undefined && p !== undefined) {
    const perRound = d.samples.map((x, i) => fmt((x.cps / p.samples[i]!.cps) * 100, 1));
    out.push(`HTTP durable ÷ in-process: ${fmt((d.cps / p.cps) * 100, 1)} % (medians; per round ${perRound.join(', ')} %); CPU per cycle in-process ÷ HTTP server ${fmt((p.cpu / d.cpu) * 100, 1)} %`);
  }
  process.stdout.write(out.join('\n') + '\n');
} finally {
  rmSync(work, { recursive: true, force: true });
}
