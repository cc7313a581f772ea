import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { pino } from 'pino';
import { listTools } from '../src/api/mcp/tools.js';
import { INSTRUCTIONS } from '../src/api/mcp/identity.js';
import type { Principal } from '../src/auth/principal.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { bareNodeStarts, percentile } from './lib.js';

/**
 * `npm run bench:lean` (issue 11): what an agent pays to start and to stay oriented.
 * - cold start of `baton mcp` (a worker key) to its first tools/list answered, against a bare
 *   `node -e 0` start, interleaved in the same run (medians of N);
 * - tools/list bytes per role and tier (the tools array as JSON, as a client receives it), and
 *   the server instructions;
 * - `prime` for a busy agent: in-process latency (the op alone) and `baton prime` wall time (a
 *   hook's cost: process start included).
 */
const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const N = Number(process.env.BENCH_N ?? 15);
const fmt = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const meta = () => ({ requestId: `bench_${Math.random().toString(36).slice(2)}`, transport: 'internal' as const });

const work = mkdtempSync(join(tmpdir(), 'baton-bench-lean-'));
const dataDir = join(work, 'data');
const rows: [string, string][] = [];
try {
  const hub = await Hub.open(ConfigSchema.parse({ dataDir, logLevel: 'silent' }), { log: pino({ level: 'silent' }) });
  const admin = await hub.authenticate(hub.firstStartKey!);
  const call = (p: Principal, op: string, input: unknown): Promise<unknown> => hub.call(op, input, p, meta());
  const { key } = (await call(admin, 'token_create', { name: 'busy', role: 'worker', tools: 'core' })) as { key: string };
  const busy = await hub.authenticate(key);
  // A busy agent: 3 held tasks, 9 locks, 8 urgent messages, 7 handoffs, 6 decided approvals, 500 ready tasks.
  await call(admin, 'plan_update', { goal: 'Ship the billing service v2 with zero downtime' });
  for (let b = 0; b < 5; b++) {
    await call(admin, 'task_create', { tasks: Array.from({ length: 100 }, (_, i) => ({ title: `task ${b}-${i}: refactor the invoice renderer and its tests`, priority: 1 + (i % 9) })) });
  }
  const held: string[] = [];
  for (let i = 0; i < 3; i++) held.push(((await call(busy, 'task_claim', {})) as { task: { id: string } }).task.id);
  for (let i = 0; i < 9; i++) await call(busy, 'lock_acquire', { paths: [`src/module-${i}/**`], ...(i < 3 ? { task_id: held[i] } : {}) });
  for (let i = 0; i < 8; i++) await call(admin, 'message_send', { to_agents: ['busy'], importance: 'urgent', subject: `incident ${i}`, body: 'the build is red on main' });
  for (let i = 0; i < 7; i++) {
    const peer = await hub.localPrincipal(`peer-${i}`, 'worker');
    await call(peer, 'session_start', {});
    await call(peer, 'session_end', { handoff: { summary: `handoff ${i}: finish the migration`, to: { agent: 'busy' } } });
  }
  for (let i = 0; i < 6; i++) {
    const a = (await call(busy, 'approval_request', { action: `deploy ${i}`, risk: 'high' })) as { id: string };
    await call(admin, 'approval_decide', { id: a.id, decision: 'grant' });
  }

  // tools/list bytes per role and tier
  for (const role of ['worker', 'lead', 'admin', 'observer']) {
    for (const tier of ['core', 'standard', 'all'] as const) {
      const tools = listTools(hub, { ...admin, role }, tier);
      rows.push([`tools/list, ${role}, ${tier}`, `${tools.length} tools, ${fmt(Buffer.byteLength(JSON.stringify({ tools })))} B`]);
    }
  }
  rows.push(['server instructions', `${fmt(Buffer.byteLength(INSTRUCTIONS))} B`]);

  // prime in-process
  const times: number[] = [];
  let brief = '';
  for (let i = 0; i < 50; i++) {
    const started = performance.now();
    brief = ((await call(busy, 'prime', {})) as { brief: string }).brief;
    times.push(performance.now() - started);
  }
  rows.push(['prime (busy agent), in-process', `p50 ${fmt(percentile(times, 50), 2)} ms, p99 ${fmt(percentile(times, 99), 2)} ms; ${fmt(Buffer.byteLength(brief))} B (≤ 6,000)`]);
  await hub.close();

  // cold starts, interleaved with bare node starts
  const cold: number[] = [];
  const bare: number[] = [];
  const cli: number[] = [];
  for (let i = 0; i < N; i++) {
    bare.push(...(await bareNodeStarts(1)));
    const started = performance.now();
    const client = new Client({ name: 'cold', version: '1' });
    await client.connect(
      new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp', '--data', dataDir], env: { ...getDefaultEnvironment(), BATON_TOKEN: key, BATON_LOG_LEVEL: 'warn' } }),
    );
    await client.listTools();
    cold.push(performance.now() - started);
    await client.close();
    const t0 = performance.now();
    await promisify(execFile)(process.execPath, [BIN, 'prime', '--data', dataDir], { env: { ...process.env, BATON_TOKEN: key } });
    cli.push(performance.now() - t0);
  }
  const coldMedian = percentile(cold, 50);
  const bareMedian = percentile(bare, 50);
  rows.push([`bare node -e 0 start (median of ${N})`, `${fmt(bareMedian)} ms`]);
  rows.push([`cold start of baton mcp to first tools/list (median of ${N})`, `${fmt(coldMedian)} ms = ${fmt(coldMedian / bareMedian, 2)}× bare node (target ≤ 3×)`]);
  rows.push([`baton prime wall time, busy agent (median of ${N})`, `${fmt(percentile(cli, 50))} ms`]);
} finally {
  rmSync(work, { recursive: true, force: true });
}
const width = Math.max(...rows.map(([k]) => k.length));
process.stdout.write(`Node ${process.version}\n${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`);
