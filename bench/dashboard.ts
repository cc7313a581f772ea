/**
 * `npm run bench:dashboard` (bench/dashboard.ts): the dashboard in Debian's Chromium against a
 * real hub. Measures (issue 10's goals, printed next to each figure):
 *   - dashboard JavaScript, gzipped (≤ 150 KB);
 *   - agent write → visible in the DOM: an agent creates a task over MCP (HTTP), time until its
 *     card is in the page, p50/p99 over N writes (≤ 250 ms p99), on a small board and on the
 *     10,000-task board;
 *   - a 10,000-task board: from navigation to every column rendered and a card clickable (≤ 1 s).
 * Needs `npm run build` first (dist/web). Not part of `npm test`.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { startHttp } from '../src/api/http/server.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { httpAgent, tempDir } from '../test/helpers.js';
import { HAVE_CHROMIUM, openBrowser, signIn } from '../test/browser/browser.js';
import { percentile } from './lib.js';

const N = Number(process.env.BENCH_WRITES ?? 100);
const BIG = Number(process.env.BENCH_BOARD ?? 10_000);
const rows: string[] = [];
const say = (metric: string, value: string, target: string, ok: boolean): void => {
  const line = `| ${metric} | ${value} | ${target} | ${ok ? 'met' : 'MISSED'} |`;
  rows.push(line);
  console.error(line);
};

const assets = resolve(import.meta.dirname, '../dist/web/assets');
const js = readdirSync(assets).find((f) => f.endsWith('.js'));
if (js === undefined) throw new Error('dist/web is not built: run npm run build');
const gz = gzipSync(readFileSync(resolve(assets, js)), { level: 9 }).length;
say('dashboard JavaScript (gzipped)', `${(gz / 1024).toFixed(1)} KB`, '≤ 150 KB', gz <= 150 * 1024);
if (!HAVE_CHROMIUM) process.exit(0);

const tmp = tempDir('baton-bench-web-');
const hub = await Hub.open(ConfigSchema.parse({ dataDir: resolve(tmp.dir, 'data'), logLevel: 'silent', rateLimit: false }), { log: pino({ level: 'silent' }) });
const http = await startHttp(hub, { host: '127.0.0.1', port: 0 });
const admin = await hub.authenticate(hub.firstStartKey!);
let seq = 0;
const op = <T>(name: string, input: unknown): Promise<T> => hub.call(name, input, admin, { requestId: `req_bench${seq++}`, transport: 'internal' }) as Promise<T>;
const workerKey = (await op<{ key: string }>('token_create', { name: 'bench-agent', role: 'worker' })).key;
const agent = await httpAgent('v2', http.url, workerKey);
const browser = await openBrowser();
const page = browser.page;

/** The page's document, typed without the DOM library (this file is type-checked for Node). */
type Doc = { document: { querySelectorAll(selector: string): ArrayLike<{ textContent: string | null }> } };

async function writeToDom(label: string): Promise<void> {
  const times: number[] = [];
  for (let i = 0; i < N; i++) {
    const title = `${label} write ${i} ${Math.random().toString(36).slice(2)}`;
    const t0 = performance.now();
    await agent.ok('task_create', { tasks: [{ title, priority: 1 }] }); // 1 = most urgent: the top of its column
    await page.waitForFunction((t) => Array.from((globalThis as unknown as Doc).document.querySelectorAll('section[data-state="ready"] .title')).some((e) => e.textContent === t), title, { polling: 'raf', timeout: 10_000 });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const p99 = percentile(times, 99);
  say(`agent write → in the DOM, ${label} (p50 / p99, n=${N})`, `${percentile(times, 50).toFixed(0)} / ${p99.toFixed(0)} ms`, 'p99 ≤ 250 ms', p99 <= 250);
}

try {
  await signIn(page, `${http.url}/`, hub.firstStartKey!);
  await page.locator('[data-testid="live"]', { hasText: 'live' }).waitFor({ timeout: 15_000 });
  await writeToDom('small board');

  for (let made = 0; made < BIG; made += 500) {
    const n = Math.min(500, BIG - made);
    await op('task_create', { tasks: Array.from({ length: n }, (_, i) => ({ title: `Seeded task ${made + i}`, priority: ((made + i) % 9) + 2 })) });
  }
  // Spread the seeded tasks over the columns: claim 1,000 (claimed), finish 2,000 (done).
  const worker = await hub.authenticate(workerKey);
  const wop = <T>(name: string, input: unknown): Promise<T> => hub.call(name, input, worker, { requestId: `req_bench${seq++}`, transport: 'internal' }) as Promise<T>;
  for (let i = 0; i < Math.min(3_000, BIG / 3); i++) {
    const { task } = await wop<{ task: { id: string; lease: { token: number } } | null }>('task_claim', {});
    if (task && i % 3 !== 0) await wop('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'seeded' } });
  }
  const t0 = performance.now();
  await page.goto(`${http.url}/#/board`);
  await page.waitForFunction(() => Array.from((globalThis as unknown as Doc).document.querySelectorAll('section[data-state] .count')).filter((e) => e.textContent !== '').length === 7, undefined, { polling: 'raf', timeout: 20_000 });
  const first = page.locator('section[data-state="ready"] li a').first();
  await first.click({ timeout: 20_000 });
  await page.locator('article.task h1').waitFor({ timeout: 20_000 });
  const interactive = performance.now() - t0;
  say(`${BIG.toLocaleString('en-US')}-task board: navigation → columns rendered → a card opened`, `${interactive.toFixed(0)} ms`, '≤ 1,000 ms', interactive <= 1000);
  await page.goto(`${http.url}/#/board`);
  await page.locator('section[data-state="ready"] li').first().waitFor({ timeout: 20_000 });
  await writeToDom(`${BIG.toLocaleString('en-US')}-task board`);
} finally {
  await browser.close();
  await agent.close();
  await http.close();
  await hub.close();
  tmp.cleanup();
}
console.log(['| metric | value | target | |', '|---|---|---|---|', ...rows].join('\n'));
