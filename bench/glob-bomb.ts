/**
 * Issue 8, item 1: latency of another project's `whoami` while workers bombard the lock overlap
 * check with worst-case patterns (at the caps: MAX_LENGTH characters, MAX_STARS stars, never
 * matching). Run: `npx tsx bench/glob-bomb.ts [seconds]`. Prints whoami p50/p99/max during the
 * attack and what the attack calls got (too_complex refusals, conflicts). In-process (hub and
 * clients share one event loop, as a hub's callers share its loop); goal: p99 ≤ 20 ms.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { startHttp } from '../src/api/http/server.js';
import { ConfigSchema } from '../src/config.js';
import { MAX_LENGTH, MAX_STARS } from '../src/core/globs.js';
import { Hub } from '../src/hub.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const seconds = Number(process.argv[2] ?? '5');
const bomb = (tail: string): string =>
  ('*' + 'a'.repeat(MAX_LENGTH / MAX_STARS - 1)).repeat(MAX_STARS).slice(0, MAX_LENGTH - tail.length) + tail;

const dir = mkdtempSync(join(tmpdir(), 'baton-glob-bomb-'));
const hub = await Hub.open(
  ConfigSchema.parse({ dataDir: join(dir, 'data'), logLevel: 'silent', rateLimit: false }),
  { log: pino({ level: 'silent' }) },
);
const http = await startHttp(hub, { host: '127.0.0.1', port: 0, lean: true });
const admin = await hub.authenticate(hub.firstStartKey!);
const key = async (name: string, role: string, project?: string): Promise<string> =>
  ((await hub.call('token_create', { name, role, ...(project === undefined ? {} : { project }) }, admin, {
    requestId: `req_${name}`,
    transport: 'internal',
  })) as { key: string }).key;

const req = async (k: string, method: string, path: string, body?: unknown): Promise<number> => {
  const r = await fetch(`${http.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  await r.arrayBuffer();
  return r.status;
};

const holder = await key('holder', 'worker');
const attackers = await Promise.all([1, 2, 3, 4].map((i) => key(`attacker${i}`, 'worker')));
const bystander = await key('bystander', 'worker', 'elsewhere');
const held = Array.from({ length: 50 }, (_, i) => bomb(`b${String(i).padStart(2, '0')}`));
if ((await req(holder, 'POST', '/locks', { paths: held })) !== 200) throw new Error('holder could not lock');

let until = 0;
const outcomes = new Map<number, number>();
const attack = async (k: string, n: number): Promise<void> => {
  for (let i = 0; performance.now() < until; i++) {
    const wanted = Array.from({ length: 50 }, (_, j) => bomb(`z${n}${String((i + j) % 100).padStart(2, '0')}`));
    const status = await req(k, 'POST', '/locks', { paths: wanted });
    outcomes.set(status, (outcomes.get(status) ?? 0) + 1);
  }
};
const watch = async (): Promise<number[]> => {
  const latencies: number[] = [];
  while (performance.now() < until) {
    const t = performance.now();
    if ((await req(bystander, 'GET', '/whoami')) !== 200) throw new Error('whoami failed');
    latencies.push(performance.now() - t);
  }
  return latencies.sort((a, b) => a - b);
};
const summary = (l: number[]): string => {
  const pct = (p: number): string => l[Math.min(l.length - 1, Math.floor(p * l.length))]!.toFixed(1);
  return `n=${l.length} p50=${pct(0.5)} ms p99=${pct(0.99)} ms max=${l[l.length - 1]!.toFixed(1)} ms`;
};
// Baseline first (the machine's own noise), then the same watch during the attack.
until = performance.now() + seconds * 1000;
const quiet = await watch();
until = performance.now() + seconds * 1000;
const [loud] = await Promise.all([watch(), ...attackers.map((k, n) => attack(k, n))]);
console.log(`glob bomb, ${seconds}s each; whoami of another project, quiet: ${summary(quiet)}`);
console.log(`  during 4 attackers x 50 worst-case patterns vs 50 held: ${summary(loud)}`);
console.log(`  attack calls by status: ${JSON.stringify(Object.fromEntries(outcomes))}`);
await http.close();
await hub.close();
rmSync(dir, { recursive: true, force: true });
