/**
 * Issue 8, item 1: latency of another project's `whoami` while workers bombard the lock overlap
 * check with worst-case patterns (at the caps: MAX_LENGTH characters, MAX_STARS stars, never
 * matching). Run: `npm run build && npx tsx bench/glob-bomb.ts [seconds]`. The hub runs as its
 * own process (`baton serve`, rate limits off so the attackers are not slowed down); this
 * process drives it over HTTP. Prints whoami p50/p99/max quiet, while the same four clients call
 * a cheap op back to back (the control), and during the attack, what the
 * attack calls got, and how long one refused attack call takes inside the hub (end to end; its
 * matching runs outside the write transaction, see ops/locks.ts). Goal: whoami p99 ≤ 20 ms
 * during the attack; results in docs/BENCHMARKS.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config.js';
import { MAX_LENGTH, MAX_STARS } from '../src/core/globs.js';
import { Hub } from '../src/hub.js';
import { startProcess } from './lib.js';

const seconds = Number(process.argv[2] ?? '5');
const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const bomb = (tail: string): string =>
  ('*' + 'a'.repeat(MAX_LENGTH / MAX_STARS - 1)).repeat(MAX_STARS).slice(0, MAX_LENGTH - tail.length) + tail;
const summary = (l: number[]): string => {
  l.sort((a, b) => a - b);
  const pct = (p: number): string => l[Math.min(l.length - 1, Math.floor(p * l.length))]!.toFixed(1);
  return `n=${l.length} p50=${pct(0.5)} ms p99=${pct(0.99)} ms max=${l[l.length - 1]!.toFixed(1)} ms`;
};

const dir = mkdtempSync(join(tmpdir(), 'baton-glob-bomb-'));
const dataDir = join(dir, 'data');
const held = Array.from({ length: 50 }, (_, i) => bomb(`b${String(i).padStart(2, '0')}`));

// Keys, the held locks, and the in-hub cost of one refused attack call (in-process, sequential).
const { holder, attackers, bystander, own } = await (async () => {
  const hub = await Hub.open(ConfigSchema.parse({ dataDir, logLevel: 'silent', rateLimit: false }), { log: pino({ level: 'silent' }) });
  const admin = await hub.authenticate(hub.firstStartKey!);
  const meta = (id: string): { requestId: string; transport: 'internal' } => ({ requestId: `req_${id}`, transport: 'internal' });
  const key = async (name: string, role: string, project?: string): Promise<string> =>
    ((await hub.call('token_create', { name, role, ...(project === undefined ? {} : { project }) }, admin, meta(name))) as { key: string }).key;
  const holderKey = await key('holder', 'worker');
  await hub.call('lock_acquire', { paths: held, ttl_s: 86_400 }, await hub.authenticate(holderKey), meta('hold'));
  const attackerKeys = await Promise.all([1, 2, 3, 4].map((i) => key(`attacker${i}`, 'worker')));
  const other = await key('bystander', 'worker', 'elsewhere');
  const attacker = await hub.authenticate(attackerKeys[0]!);
  const times: number[] = [];
  for (let i = 0; i < 200; i++) {
    const wanted = Array.from({ length: 50 }, (_, j) => bomb(`y${String((i + j) % 100).padStart(2, '0')}`));
    const t = performance.now();
    await hub.call('lock_acquire', { paths: wanted }, attacker, meta(`own${i}`)).catch(() => undefined);
    times.push(performance.now() - t);
  }
  await hub.close();
  return { holder: holderKey, attackers: attackerKeys, bystander: other, own: times };
})();
void holder;

const server = await startProcess([BIN, 'serve', '--port', '0', '--data', dataDir], { BATON_LOG_LEVEL: 'warn', BATON_RATE_LIMIT: 'false' }, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
const req = async (k: string, method: string, path: string, body?: unknown): Promise<number> => {
  const r = await fetch(`${server.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  await r.arrayBuffer();
  return r.status;
};

let until = 0;
const outcomes = new Map<number, number>();
const attack = async (k: string, n: number): Promise<void> => {
  for (let i = 0; performance.now() < until; i++) {
    const wanted = Array.from({ length: 50 }, (_, j) => bomb(`z${n}${String((i + j) % 100).padStart(2, '0')}`));
    const status = await req(k, 'POST', '/locks', { paths: wanted });
    outcomes.set(status, (outcomes.get(status) ?? 0) + 1);
  }
};
// The control: the same clients hammering the hub with a cheap call, to tell what the attack
// costs apart from what any four busy clients cost on this machine.
const hammer = async (k: string): Promise<void> => {
  while (performance.now() < until) await req(k, 'GET', '/whoami');
};
const watch = async (): Promise<number[]> => {
  const latencies: number[] = [];
  while (performance.now() < until) {
    const t = performance.now();
    if ((await req(bystander, 'GET', '/whoami')) !== 200) throw new Error('whoami failed');
    latencies.push(performance.now() - t);
  }
  return latencies;
};
try {
  // Baseline first (the machine's own noise), then the same watch during the attack.
  until = performance.now() + seconds * 1000;
  const quiet = await watch();
  until = performance.now() + seconds * 1000;
  const [busy] = await Promise.all([watch(), ...attackers.map((k) => hammer(k))]);
  until = performance.now() + seconds * 1000;
  const [loud] = await Promise.all([watch(), ...attackers.map((k, n) => attack(k, n))]);
  console.log(`glob bomb, ${seconds}s each; whoami of another project, quiet: ${summary(quiet)}`);
  console.log(`  during 4 clients calling whoami back to back (control): ${summary(busy)}`);
  console.log(`  during 4 attackers x 50 worst-case patterns vs 50 held: ${summary(loud)}`);
  console.log(`  attack calls by status: ${JSON.stringify(Object.fromEntries(outcomes))}`);
  console.log(`  one refused attack call inside the hub (sequential): ${summary(own)}`);
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
