/**
 * `npm run bench`: Baton's performance figures, each MCP figure next to a raw node:http ceiling
 * measured in the same run on the same machine. Prints a table; writes bench/out/results.json
 * and bench/out/BENCHMARKS.latest.md (copied into docs/BENCHMARKS.md with date and machine).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/client/stdio';
import { sql } from '../src/store/sql.js';
import { listTools } from '../src/api/mcp/tools.js';
import { cycleRun, inprocRun, makeKeys, ratioRounds, seedTasks, withHub } from './cycles.js';
import { bareNodeStarts, percentile, rpcClient, startProcess, type Proc } from './lib.js';

const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const DURATION = Number(process.env.BENCH_SECONDS ?? 5);
const rows: { metric: string; value: string; target?: string; ok?: boolean }[] = [];
const results: Record<string, unknown> = {};

function row(metric: string, value: string, target?: string, ok?: boolean): void {
  rows.push({ metric, value, target, ok });
  process.stderr.write(`  ${metric}: ${value}${target ? `  (target ${target}: ${ok ? 'met' : 'MISSED'})` : ''}\n`);
}

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

async function cannon(url: string, body: string, headers: Record<string, string>, connections: number) {
  const r = await autocannon({
    url: `${url}/mcp`,
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
    connections,
    duration: DURATION,
  });
  if (r.non2xx > 0 || r.errors > 0) throw new Error(`load run had ${r.non2xx} non-2xx and ${r.errors} errors`);
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, total: r.requests.total };
}

/**
 * Each task completed at most once, claimed exactly once (no lease was lost in these runs), and
 * never claimed before all of its dependencies were done — read from the events spine.
 */
async function integrity(dir: string): Promise<{ done: number; duplicates: number; lost: number; violations: number }> {
  return withHub(dir, async (hub) => {
    const r = await hub.db.read(async (ex) => {
      const done = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM tasks WHERE status = 'done'`);
      const dup = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM (SELECT subject FROM events WHERE type = 'task.done' GROUP BY subject HAVING count(*) > 1) d`);
      const lost = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM tasks WHERE status = 'done' AND attempts <> 1`);
      const violations = await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM task_deps d
        JOIN events c ON c.subject = d.task_id AND c.type = 'task.claimed'
        LEFT JOIN events f ON f.subject = d.depends_on AND f.type = 'task.done'
        WHERE f.id IS NULL OR f.id > c.id`);
      return { done: done!.n, duplicates: dup!.n, lost: lost!.n, violations: violations!.n };
    });
    return r;
  });
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const procs: Proc[] = [];
  try {
    process.stderr.write(`baton bench: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, ${DURATION}s per load run\n`);

    // --- the ceiling
    const raw = await startProcess([resolve(import.meta.dirname, 'raw-server.mjs')], {}, /listening (\d+)/, 'stdout');
    procs.push(raw);
    const callBody = (name: string, args: Record<string, unknown>) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } });
    // The best of two runs: a momentary dip in the ceiling would flatter every ratio below it.
    const samples = [];
    for (let i = 0; i < 2; i++) samples.push(await cannon(raw.url, callBody('x', {}), { accept: 'application/json, text/event-stream' }, 50));
    const ceiling = samples.reduce((a, b) => (b.rps > a.rps ? b : a));
    await raw.stop();
    row('raw node:http ceiling (fixed JSON-RPC reply), 50 conns, best of 2', `${fmt(ceiling.rps)} req/s (runs: ${samples.map((x) => fmt(x.rps)).join(', ')})`);
    results.ceiling = ceiling;

    // --- the hub's data: keys and tasks
    const dataDir = join(work, 'data');
    const seed = await withHub(dataDir, async (hub, admin) => {
      const readers = await makeKeys(hub, admin, 'reader', 1, 'observer');
      const leads = await makeKeys(hub, admin, 'lead', 1, 'lead');
      const workers = await makeKeys(hub, admin, 'agent', 64, 'worker');
      const roleSizes: Record<string, number> = {};
      for (const role of ['admin', 'lead', 'worker', 'observer']) {
        roleSizes[role] = Buffer.byteLength(JSON.stringify({ tools: listTools(hub, { ...admin, role }, 'all') }));
        roleSizes[`${role} core`] = Buffer.byteLength(JSON.stringify({ tools: listTools(hub, { ...admin, role }, 'core') }));
        roleSizes[`${role} standard`] = Buffer.byteLength(JSON.stringify({ tools: listTools(hub, { ...admin, role }, 'standard') }));
      }
      const { tasks } = (await hub.call('task_create', { tasks: [{ title: 'the read target' }] }, admin, { requestId: 'b', transport: 'internal' })) as { tasks: { id: string }[] };
      // Enough for every run below, the ratio rounds' warm-ups included (~9 × 6 s at up to ~6k cycles/s).
      await seedTasks(hub, admin, Number(process.env.BENCH_TASKS ?? 400_000));
      return { reader: readers[0]!, lead: leads[0]!, workers, roleSizes, readId: tasks[0]!.id };
    });

    // --- a cheap read tool over MCP HTTP: lean path and SDK path
    // Rate limits off: the bench drives one key per agent far beyond what a real agent sends.
    const serveEnv = { BATON_LOG_LEVEL: 'warn', BATON_RATE_LIMIT: 'false' };
    const lean = await startProcess([BIN, 'serve', '--port', '0', '--data', dataDir], serveEnv, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
    procs.push(lean);
    const auth = { authorization: `Bearer ${seed.reader}`, accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
    // The cheap read tool of the target is plan_get (one statement); task_get (a full task with
    // its dependencies, two statements, ~1.4 KB) is shown beside it.
    const plan = await cannon(lean.url, callBody('plan_get', {}), auth, 50);
    const ratio = plan.rps / ceiling.rps;
    row('cheap read tool (plan_get) over MCP HTTP, lean path, 50 conns', `${fmt(plan.rps)} calls/s = ${fmt(ratio * 100, 1)} % of ceiling`, '≥ 25 %', ratio >= 0.25);
    const read = await cannon(lean.url, callBody('task_get', { id: seed.readId }), auth, 50);
    row('read tool (task_get) over MCP HTTP, lean path, 50 conns', `${fmt(read.rps)} calls/s = ${fmt((read.rps / ceiling.rps) * 100, 1)} % of ceiling`);
    const read64 = await cannon(lean.url, callBody('task_get', { id: seed.readId }), auth, 64);
    row('tool-call latency, 64 concurrent agents (task_get)', `p50 ${read64.p50} ms, p99 ${read64.p99} ms`, 'p99 ≤ 25 ms', read64.p99 <= 25);
    results.read = { plan, ratio, task_get: read, at64: read64 };

    // --- claim + complete cycles over MCP HTTP with 1, 16, 64 agents
    for (const n of [1, 16, 64]) {
      const r = await cycleRun(lean.url, seed.workers.slice(0, n), DURATION);
      const target = n === 16 ? '≥ 3,000/s' : undefined;
      row(`claim+complete over MCP HTTP, ${n} agent${n > 1 ? 's' : ''}`, `${fmt(r.cps)} cycles/s (${fmt(r.cps / ceiling.rps * 200, 1)} % of ceiling per call); call p50 ${fmt(r.p50, 2)} ms, p99 ${fmt(r.p99, 2)} ms`, target, n === 16 ? r.cps >= 3000 : undefined);
      if (n === 64) row('p99 tool-call latency, 64 agents claiming and completing', `${fmt(r.p99, 2)} ms`, '≤ 25 ms', r.p99 <= 25);
      results[`cycles_http_${n}`] = r;
    }
    // --- messages over MCP HTTP: 16 agents each send to the next and read their inbox
    {
      const n = 16;
      const clients = seed.workers.slice(0, n).map((k) => rpcClient(lean.url, k));
      let sent = 0;
      let delivered = 0;
      const deadline = performance.now() + DURATION * 1000;
      await Promise.all(
        clients.map(async (c, i) => {
          while (performance.now() < deadline) {
            await c.tool('message_send', { to_agents: [`agent${(i + 1) % n}`], body: `hello ${sent}`, visibility: 'private' });
            sent++;
            const box = await c.tool<{ messages: unknown[] }>('message_inbox', { unread_only: true, limit: 100 });
            delivered += box.messages.length;
          }
        }),
      );
      for (const c of clients) c.close();
      row('messages over MCP HTTP, 16 agents (send, then read own inbox)', `${fmt(sent / DURATION)} sent/s, ${fmt(delivered / DURATION)} delivered/s`);
      results.messages_http_16 = { sent: sent / DURATION, delivered: delivered / DURATION };
    }

    // --- events_wait wake-up in one server: a message from one HTTP agent wakes another's wait
    {
      const waiter = rpcClient(lean.url, seed.workers[20]!);
      const sender = rpcClient(lean.url, seed.workers[21]!);
      let cursor = (await waiter.tool<{ cursor: string }>('events_wait', {})).cursor;
      const lat: number[] = [];
      for (let i = 0; i < 50; i++) {
        const waiting = waiter.tool<{ cursor: string; events: unknown[] }>('events_wait', { after: cursor, wait_ms: 10_000, types: ['message.received'] });
        await new Promise((r) => setTimeout(r, 5));
        const t0 = performance.now();
        await sender.tool('message_send', { to_agents: ['agent20'], body: `ping ${i}` });
        const got = await waiting;
        lat.push(performance.now() - t0);
        cursor = got.cursor;
      }
      waiter.close();
      sender.close();
      const p99 = percentile(lat, 99);
      row('events_wait wake-up, one server (message send → waiting agent answered)', `p50 ${fmt(percentile(lat, 50), 1)} ms, p99 ${fmt(p99, 1)} ms`, 'p99 ≤ 50 ms', p99 <= 50);
      results.events_wake_inproc_ms = lat;
    }

    await lean.stop();

    const sdkServer = await startProcess([BIN, 'serve', '--port', '0', '--no-lean', '--data', dataDir], serveEnv, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
    procs.push(sdkServer);
    const sdkRead = await cannon(sdkServer.url, callBody('plan_get', {}), auth, 50);
    row('cheap read tool (plan_get) over MCP HTTP, SDK handler only (--no-lean), 50 conns', `${fmt(sdkRead.rps)} calls/s = ${fmt((sdkRead.rps / ceiling.rps) * 100, 1)} % of ceiling`);
    results.read_sdk = sdkRead;
    await sdkServer.stop();

    // --- in-process cycles, 1 agent: the runner and store without any transport
    await withHub(dataDir, async (hub) => {
      const r = await inprocRun(hub, 1, DURATION);
      row('claim+complete in-process, 1 concurrent', `${fmt(r.cps)} cycles/s`);
      results.cycles_inproc_1 = r.cps;
    });

    // --- the issue-7 ratios, 16 agents: MCP HTTP with the durable default (synchronous=FULL
    // semantics) against the fast setting (NORMAL) and against the in-process runner. One run of
    // each side moved by ±15 % on this shared machine, the two sides of a ratio in opposite
    // directions; so the sides alternate over three rounds (order rotated each round, a fresh
    // server per HTTP round, one unmeasured second first on every side) and the ratios are of
    // medians, shown with their range and with CPU time per cycle (cycles.ts ratioRounds).
    {
      const sides = await ratioRounds(dataDir, seed.workers.slice(0, 16), { rounds: 3, seconds: DURATION, log: (line) => process.stderr.write(`    ${line}\n`) });
      const d = sides.durable!;
      const f = sides.fast!;
      const p = sides.inproc!;
      const us = (ms: number): string => `${fmt(ms * 1000)} µs`;
      row('claim+complete in-process, 16 concurrent (median of 3 rounds)', `${fmt(p.cps)} cycles/s (range ${fmt(p.lo)}–${fmt(p.hi)}); CPU ${us(p.cpu)} per cycle`);
      row('claim+complete over MCP HTTP, 16 agents, durable default (median of 3 rounds)', `${fmt(d.cps)} cycles/s (range ${fmt(d.lo)}–${fmt(d.hi)}); server CPU ${us(d.cpu)} per cycle`);
      row('claim+complete over MCP HTTP, 16 agents, fast setting (median of 3 rounds)', `${fmt(f.cps)} cycles/s (range ${fmt(f.lo)}–${fmt(f.hi)}); server CPU ${us(f.cpu)} per cycle`);
      const durableShare = d.cps / f.cps;
      row(
        'claim+complete over MCP HTTP, 16 agents: durable default vs fast setting (medians)',
        `${fmt(durableShare * 100, 1)} % (per round ${d.samples.map((x, i) => fmt((x.cps / f.samples[i]!.cps) * 100, 1)).join(', ')} %); CPU per cycle fast ÷ durable ${fmt((f.cpu / d.cpu) * 100, 1)} %`,
        '≥ 90 %',
        durableShare >= 0.9,
      );
      const httpShare = d.cps / p.cps;
      row(
        'claim+complete, 16 agents: MCP HTTP (durable default) as a share of the in-process runner (medians)',
        `${fmt(httpShare * 100, 1)} % (per round ${d.samples.map((x, i) => fmt((x.cps / p.samples[i]!.cps) * 100, 1)).join(', ')} %); CPU per cycle in-process ÷ HTTP server ${fmt((p.cpu / d.cpu) * 100, 1)} %`,
        '≥ 60 %',
        httpShare >= 0.6,
      );
      results.durability = { full: d.cps, normal: f.cps, ratio: durableShare, cpu_full_ms: d.cpu, cpu_normal_ms: f.cpu };
      results.cycles_inproc_16 = p.cps;
      results.http_share_of_inproc_16 = httpShare;
      results.ratio_rounds = { durable: d.samples, fast: f.samples, inproc: p.samples };
    }

    // --- stdio: 8 `baton mcp` processes on one SQLite file
    {
      const clients = await Promise.all(
        seed.workers.slice(0, 8).map(async (key, i) => {
          const client = new Client({ name: `bench${i}`, version: '1' });
          await client.connect(new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp', '--data', dataDir], env: { ...getDefaultEnvironment(), BATON_TOKEN: key, BATON_LOG_LEVEL: 'warn', BATON_RATE_LIMIT: 'false' } }));
          return client;
        }),
      );
      let cycles = 0;
      const deadline = performance.now() + DURATION * 1000;
      await Promise.all(
        clients.map(async (c) => {
          while (performance.now() < deadline) {
            const r = (await c.callTool({ name: 'task_claim', arguments: {} })) as { structuredContent: { task: { id: string; lease: { token: number } } | null } };
            const task = r.structuredContent.task;
            if (task === null) break;
            await c.callTool({ name: 'task_complete', arguments: { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } } });
            cycles++;
          }
        }),
      );
      await Promise.all(clients.map((c) => c.close()));
      row('claim+complete over stdio, 8 processes on one SQLite file', `${fmt(cycles / DURATION)} cycles/s (${fmt(((cycles / DURATION) * 2 / ceiling.rps) * 100, 1)} % of ceiling per call)`);
      results.cycles_stdio_8 = cycles / DURATION;
    }

    // --- cross-process wake-up: a claim waiting in one `baton mcp` process, a task created in another
    {
      const connect = async (key: string): Promise<Client> => {
        const client = new Client({ name: 'wake', version: '1' });
        await client.connect(new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp', '--data', dataDir], env: { ...getDefaultEnvironment(), BATON_TOKEN: key, BATON_LOG_LEVEL: 'warn', BATON_RATE_LIMIT: 'false' } }));
        return client;
      };
      const waiter = await connect(seed.workers[10]!);
      const maker = await connect(seed.lead);
      const lat: number[] = [];
      for (let i = 0; i < 20; i++) {
        const cap = `wake-${i}`;
        const waiting = waiter.callTool({ name: 'task_claim', arguments: { wait_ms: 10_000, capabilities: [cap] } });
        await new Promise((r) => setTimeout(r, 50));
        const t0 = performance.now();
        await maker.callTool({ name: 'task_create', arguments: { tasks: [{ title: cap, capabilities: [cap], assignee: 'agent10' }] } });
        await waiting;
        lat.push(performance.now() - t0);
      }
      row('task_claim wake-up across processes (create in one baton mcp, waiting claim in another)', `p50 ${fmt(percentile(lat, 50), 1)} ms, p99 ${fmt(percentile(lat, 99), 1)} ms`, '~100 ms', percentile(lat, 99) <= 100);
      results.wake_ms = lat;

      // events_wait across processes: a message sent in one process wakes a wait in another
      const ew: number[] = [];
      let cursor = ((await waiter.callTool({ name: 'events_wait', arguments: {} })) as { structuredContent: { cursor: string } }).structuredContent.cursor;
      for (let i = 0; i < 30; i++) {
        const waiting = waiter.callTool({ name: 'events_wait', arguments: { after: cursor, wait_ms: 10_000, types: ['message.received'] } });
        await new Promise((r) => setTimeout(r, 20));
        const t0 = performance.now();
        await maker.callTool({ name: 'message_send', arguments: { to_agents: ['agent10'], body: `ping ${i}` } });
        const got = (await waiting) as { structuredContent: { cursor: string } };
        ew.push(performance.now() - t0);
        cursor = got.structuredContent.cursor;
      }
      const ewp99 = percentile(ew, 99);
      row('events_wait wake-up across baton mcp processes (message send → waiting agent answered)', `p50 ${fmt(percentile(ew, 50), 1)} ms, p99 ${fmt(ewp99, 1)} ms`, 'p99 ≤ 50 ms', ewp99 <= 50);
      results.events_wake_cross_ms = ew;
      await Promise.all([waiter.close(), maker.close()]);
    }

    // --- cold start of `baton mcp` to its first tools/list
    {
      const times: number[] = [];
      for (let i = 0; i < 10; i++) {
        const started = performance.now();
        const client = new Client({ name: 'cold', version: '1' });
        await client.connect(new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp', '--data', dataDir], env: { ...getDefaultEnvironment(), BATON_TOKEN: seed.workers[0]!, BATON_LOG_LEVEL: 'warn', BATON_RATE_LIMIT: 'false' } }));
        await client.listTools();
        times.push(performance.now() - started);
        await client.close();
      }
      const median = percentile(times, 50);
      row('cold start of baton mcp to first tools/list (median of 10)', `${fmt(median)} ms (max ${fmt(Math.max(...times))} ms)`, '≤ 300 ms', median <= 300);
      results.cold_start_ms = times;
      // The same machine's floor, in the same run (issue 11: ≤ 3× a bare node start).
      const bare = await bareNodeStarts(10);
      const bareMedian = percentile(bare, 50);
      row('bare `node -e 0` start (median of 10, same run)', `${fmt(bareMedian)} ms`, undefined, undefined);
      row('cold start of baton mcp ÷ bare node start', `${fmt(median / bareMedian, 2)}×`, '≤ 3×', median <= 3 * bareMedian);
      results.bare_node_start_ms = bare;
    }

    // --- bytes of tools/list per role
    for (const [role, bytes] of Object.entries(seed.roleSizes)) {
      const limit = role === 'worker' ? 16 * 1024 : role === 'worker core' ? 4 * 1024 : undefined;
      const target = role === 'worker' ? '≤ 16 KB (tools/list shows limits since issue 8)' : role === 'worker core' ? '≤ 4 KB (issue 11)' : undefined;
      row(`tools/list bytes, ${role}`, `${fmt(bytes)} B`, target, limit === undefined ? undefined : bytes <= limit);
    }
    results.tools_list_bytes = seed.roleSizes;

    // --- integrity over everything above
    const check = await integrity(dataDir);
    row(
      'tasks done in all runs; duplicated; lost (claimed more than once); claimed before a dependency was done',
      `${fmt(check.done)}; ${check.duplicates}; ${check.lost}; ${check.violations}`,
      'all 0',
      check.duplicates === 0 && check.lost === 0 && check.violations === 0,
    );
    results.integrity = check;
  } finally {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  }

  const date = new Date().toISOString().slice(0, 10);
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  const table = [
    `Measured ${date} on ${machine}; load generator on the same machine; ${DURATION} s per load run.`,
    '',
    '| metric | result | target |',
    '|---|---|---|',
    ...rows.map((r) => `| ${r.metric} | ${r.value} | ${r.target === undefined ? '' : `${r.target} ${r.ok ? '✅' : '❌'}`} |`),
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  const out = resolve(import.meta.dirname, 'out');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'results.json'), JSON.stringify({ date, machine, results }, null, 2));
  writeFileSync(join(out, 'BENCHMARKS.latest.md'), table + '\n');
  if (rows.some((r) => r.ok === false)) process.exitCode = 1;
}

await main();
