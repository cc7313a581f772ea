/**
 * `node --import tsx bench/watch-latency.ts` (after `npm run build`): how soon `baton watch`
 * prints a line for mail sent to its agent from another process (issue 11: within 100 ms).
 * The watcher is the real CLI process; the sender is this process, through its own Hub on the
 * same data dir, so only the cross-process doorbell (SQLite data_version poll) can wake the
 * watcher. The re-check interval is off in the watcher (BATON_WAIT_RECHECK_MS=0), so a fast
 * figure cannot come from a periodic re-read. Prints median, p95 and max over ROUNDS messages.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { percentile } from './lib.js';

const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);

const dir = mkdtempSync(join(tmpdir(), 'baton-bench-watch-'));
const data = join(dir, '.baton');
try {
  const env = { ...process.env, BATON_LOG_LEVEL: '', BATON_WAIT_RECHECK_MS: '0' };
  execFileSync(process.execPath, [BIN, 'init', '--data', data], { env, stdio: 'ignore' });
  execFileSync(process.execPath, [BIN, 'setup', 'mcp-json', '--agent', 'watcher', '--project-dir', dir, '--data', data], { env, stdio: 'ignore' });
  const child = spawn(process.execPath, [BIN, 'watch', '--agent', 'watcher', '--json', '--data', data], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: ((at: number) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', () => lines.shift()?.(performance.now()));
  await new Promise<void>((ready) => child.stderr.on('data', (b: Buffer) => b.toString().includes('baton watch:') && ready()));
  const hub = await Hub.open(ConfigSchema.parse({ dataDir: data, logLevel: 'silent', rateLimit: false }), { log: pino({ level: 'silent' }) });
  const sender = await hub.localPrincipal('sender', 'worker');
  // Let the watcher enter its first wait.
  await new Promise((r) => setTimeout(r, 300));
  const ms: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const printed = new Promise<number>((r) => lines.push(r));
    // From before the send (its own write included): an upper bound on the delivery time.
    const before = performance.now();
    await hub.call('message_send', { to_agents: ['watcher'], body: `m${i}` }, sender, { requestId: `b${i}`, transport: 'internal' });
    ms.push((await printed) - before);
    await new Promise((r) => setTimeout(r, 50));
  }
  await hub.close();
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited; // it saves its cursor on the way out
  ms.sort((a, b) => a - b);
  const f = (n: number): string => n.toFixed(1);
  process.stdout.write(
    `baton watch: mail from another process to a printed line, ${ROUNDS} messages: median ${f(percentile(ms, 50))} ms, p95 ${f(percentile(ms, 95))} ms, max ${f(ms[ms.length - 1]!)} ms (target: 100 ms)\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
