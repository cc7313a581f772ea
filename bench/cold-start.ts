import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { percentile } from './lib.js';

/**
 * `npm run bench:cold` (issue 11): the cold start of `baton mcp` — spawn to its first tools/list
 * answer, for a worker key — beside a bare `node -e 0`, all interleaved run by run (the machine is
 * shared: load moves every figure, interleaving keeps the comparison fair), medians and minimums.
 *
 * Each `bin=...` argument adds a Baton to compare (e.g. a build of another commit unpacked
 * elsewhere); default this checkout's bin/baton.js. Each `node=...` argument adds a Node binary
 * (e.g. `node=$(npx -y -p node@24 -- which node)`); default the one running this. The client side
 * is raw JSON-RPC lines on the child's stdin (initialize, initialized, tools/list written at once),
 * so this process costs the measurement almost nothing. BENCH_N runs (default 20).
 */
const N = Number(process.env.BENCH_N ?? 20);
const args = process.argv.slice(2);
const bins = args.filter((a) => a.startsWith('bin=')).map((a) => resolve(a.slice(4)));
const nodes = args.filter((a) => a.startsWith('node=')).map((a) => a.slice(5));
if (bins.length === 0) bins.push(resolve(import.meta.dirname, '../bin/baton.js'));
if (nodes.length === 0) nodes.push(process.execPath);

const LINES =
  [
    { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1' } } },
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 2, method: 'tools/list' },
  ]
    .map((m) => JSON.stringify(m))
    .join('\n') + '\n';

function timeOnce(cmd: string, argv: string[], env: Record<string, string | undefined>, mcp: boolean): Promise<number> {
  return new Promise((res, rej) => {
    const started = performance.now();
    const child = spawn(cmd, argv, { stdio: [mcp ? 'pipe' : 'ignore', mcp ? 'pipe' : 'ignore', 'inherit'], env });
    child.once('error', rej);
    if (!mcp) {
      child.once('exit', () => res(performance.now() - started));
      return;
    }
    let out = '';
    let done = false;
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      // The tools/list answer is the line with id 2 (the initialize answer comes first).
      if (!done && /"id":2[,}]/.test(out) && out.includes('"tools"')) {
        done = true;
        res(performance.now() - started);
        child.stdin!.end();
      }
    });
    child.once('exit', (code) => {
      if (!done) rej(new Error(`baton mcp exited ${code} before answering tools/list: ${out.slice(0, 300)}`));
    });
    child.stdin!.write(LINES);
  });
}

const work = mkdtempSync(join(tmpdir(), 'baton-bench-cold-'));
try {
  const dataDir = join(work, 'data');
  const run = promisify(execFile);
  await run(process.execPath, [bins[0]!, 'init', '--data', dataDir]);
  const key = (await run(process.execPath, [bins[0]!, 'token', 'create', '--data', dataDir, '--name', 'w1', '--role', 'worker'])).stdout.trim();
  const env = { ...process.env, BATON_TOKEN: key, BATON_LOG_LEVEL: 'warn' };

  // The machine is shared: its load goes beside the figures (1-minute load average, before and after).
  const loadBefore = loadavg()[0]!;
  const series = new Map<string, number[]>();
  const add = (label: string, t: number): void => void (series.get(label) ?? series.set(label, []).get(label)!).push(t);
  for (let i = 0; i < N; i++) {
    for (const node of nodes) {
      add(`${node}\tbare`, await timeOnce(node, ['-e', '0'], env, false));
      for (const bin of bins) add(`${node}\t${bin}`, await timeOnce(node, [bin, 'mcp', '--data', dataDir], env, true));
    }
  }
  const fmt = (n: number): string => n.toFixed(1);
  process.stdout.write(`load average ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after (${cpus().length} CPUs)\n`);
  for (const node of nodes) {
    const version = (await run(node, ['--version'])).stdout.trim();
    const bare = series.get(`${node}\tbare`)!;
    const bareMedian = percentile(bare, 50);
    process.stdout.write(`Node ${version}: bare node -e 0 median ${fmt(bareMedian)} ms (min ${fmt(Math.min(...bare))}), ${N} interleaved runs\n`);
    for (const bin of bins) {
      const t = series.get(`${node}\t${bin}`)!;
      const median = percentile(t, 50);
      process.stdout.write(`  ${bin}: baton mcp → tools/list median ${fmt(median)} ms = ${(median / bareMedian).toFixed(2)}× bare (min ${fmt(Math.min(...t))}; target ≤ 3×)\n`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
