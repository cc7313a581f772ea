/**
 * Event-stream fan-out (issue 10): N stream subscribers on one `baton serve` process, a writer
 * creating tasks one at a time over REST; for every (event, subscriber) pair, the time from the
 * writer's request to the frame's arrival at the subscriber. Also the hub's RSS before and with
 * the subscribers. Not part of `npm test`; `npm run bench:stream` (after `npm run build`).
 *
 * Reported: the write's own round trip (`write_*`), the delivery latency from the writer's
 * request (`p50_ms`, `p99_ms`: what a viewer waits for an agent's write), the slowest subscriber
 * per event (`last_subscriber_p99_ms`), and from the writer's answer (`after_answer_*`: the
 * fan-out itself; negative when the frame beats the answer).
 *
 * Usage: node --import tsx bench/stream-fanout.ts [subscribers=1000] [events=200] [agents=100]
 * The subscribers are spread over `agents` keys (workers), so the project's viewers span many
 * visibility groups (each agent has its own audience); the load generator (the subscribers'
 * sockets and parsing) runs in this process, on the same machine.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request, type IncomingMessage } from 'node:http';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { percentile, startProcess } from './lib.js';

const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const SUBSCRIBERS = Number(process.argv[2] ?? 1000);
const EVENTS = Number(process.argv[3] ?? 200);
const AGENTS = Number(process.argv[4] ?? 100);

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

async function seed(dir: string): Promise<{ admin: string; keys: string[] }> {
  const hub = await Hub.open(ConfigSchema.parse({ dataDir: dir, logLevel: 'silent', rateLimit: false }), { log: pino({ level: 'silent' }) });
  const admin = hub.firstStartKey!;
  const p = await hub.authenticate(admin);
  const keys: string[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const out = (await hub.call('token_create', { name: `viewer${i}`, role: 'worker' }, p, { requestId: 'bench', transport: 'internal' })) as { key: string };
    keys.push(out.key);
  }
  await hub.close();
  return { admin, keys };
}

/** Arrival times by task id (the subject of its task.created frame), per subscriber. */
function subscribe(url: string, key: string, onFrame: (subject: string, at: number) => void): Promise<IncomingMessage> {
  const u = new URL('/api/v1/events/stream?types=task.created', url);
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, headers: { authorization: `Bearer ${key}` }, agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`stream: ${res.statusCode}`));
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const at = performance.now();
        buf += chunk;
        for (;;) {
          const end = buf.indexOf('\n\n');
          if (end === -1) break;
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const m = /"subject":"(tsk_[a-z0-9]+)"/.exec(block);
          if (m !== null) onFrame(m[1]!, at);
        }
      });
      resolvePromise(res);
    });
    req.on('error', reject);
    req.end();
  });
}

function get(url: string, path: string, key: string): Promise<string> {
  const u = new URL(path, url);
  return new Promise((resolvePromise, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, headers: { authorization: `Bearer ${key}` } }, (res) => {
      let out = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (out += c));
      res.on('end', () => resolvePromise(out));
    });
    req.on('error', reject);
    req.end();
  });
}

function post(url: string, key: string, body: unknown): Promise<string> {
  const u = new URL('/api/v1/tasks', url);
  const text = JSON.stringify(body);
  return new Promise((resolvePromise, reject) => {
    const req = request(
      { host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } },
      (res) => {
        let out = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (out += c));
        res.on('end', () => (res.statusCode === 200 ? resolvePromise(out) : reject(new Error(`${res.statusCode}: ${out}`))));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-stream-bench-'));
  const data = join(dir, 'data');
  try {
    const { admin, keys } = await seed(data);
    const env = {
      BATON_RATE_LIMIT: 'false',
      BATON_MAX_CONNECTIONS: String(SUBSCRIBERS + 100),
      BATON_MAX_CONNECTIONS_PER_ADDRESS: String(SUBSCRIBERS + 100),
      BATON_STREAM_MAX_PER_PRINCIPAL: String(Math.ceil(SUBSCRIBERS / AGENTS)),
      BATON_STREAM_MAX_TOTAL: String(SUBSCRIBERS + 10),
      BATON_LOG_LEVEL: 'warn',
    };
    const hub = await startProcess([BIN, 'serve', '--port', '0', '--data', data], env, /listening on http:\/\/127\.0\.0\.1:(\d+)/, 'stderr');
    const pid = hub.child.pid!;
    try {
      await new Promise((r) => setTimeout(r, 500));
      const rssIdle = rssOf(pid);
      const sent = new Map<string, number>();
      // Arrivals by task id: a frame may arrive before the writer has read its own answer.
      const arrivals = new Map<string, number[]>();
      let arrived = 0;
      const streams: IncomingMessage[] = [];
      for (let i = 0; i < SUBSCRIBERS; i++) {
        streams.push(
          await subscribe(hub.url, keys[i % keys.length]!, (subject, at) => {
            let list = arrivals.get(subject);
            if (list === undefined) arrivals.set(subject, (list = []));
            list.push(at);
            arrived++;
          }),
        );
      }
      await new Promise((r) => setTimeout(r, 500));
      const rssSubscribed = rssOf(pid);
      const started = performance.now();
      let written = 0;
      const writes: number[] = [];
      const answered = new Map<string, number>();
      for (let i = 0; i < EVENTS; i++) {
        const t0 = performance.now();
        const out = JSON.parse(await post(hub.url, admin, { tasks: [{ title: `fan-out ${i}` }] })) as { tasks: { id: string }[] };
        sent.set(out.tasks[0]!.id, t0);
        writes.push(performance.now() - t0);
        answered.set(out.tasks[0]!.id, performance.now());
        written++;
        // A steady pace (about 20 writes a second) rather than a burst: each write is its own ring.
        await new Promise((r) => setTimeout(r, 50));
      }
      // Let the last frames arrive.
      for (let i = 0; i < 100 && arrived < written * SUBSCRIBERS; i++) await new Promise((r) => setTimeout(r, 50));
      const elapsed = (performance.now() - started) / 1000;
      const rssEnd = rssOf(pid);
      // The hub's own view of a round (read + format + a write per viewer), without this process's parsing.
      const metrics = await get(hub.url, '/metrics', admin);
      const buckets = [...metrics.matchAll(/^baton_stream_fanout_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])] as const);
      const rounds = buckets.at(-1)?.[1] ?? 0;
      const roundP99 = buckets.find(([, n]) => n >= rounds * 0.99)?.[0];
      const roundP50 = buckets.find(([, n]) => n >= rounds * 0.5)?.[0];
      const roundSum = Number(/^baton_stream_fanout_seconds_sum (\S+)$/m.exec(metrics)?.[1] ?? NaN);
      for (const s of streams) s.destroy();
      const latencies: number[] = [];
      const lasts: number[] = [];
      const sinceAnswer: number[] = [];
      for (const [subject, t1] of answered) for (const at of arrivals.get(subject) ?? []) sinceAnswer.push(at - t1);
      for (const [subject, t0] of sent) {
        const list = (arrivals.get(subject) ?? []).map((at) => at - t0);
        latencies.push(...list);
        if (list.length > 0) lasts.push(Math.max(...list));
      }
      const result = {
        subscribers: SUBSCRIBERS,
        agents: AGENTS,
        events: EVENTS,
        deliveries: latencies.length,
        expected: EVENTS * SUBSCRIBERS,
        missing: EVENTS * SUBSCRIBERS - latencies.length,
        write_p50_ms: percentile(writes, 50),
        write_p99_ms: percentile(writes, 99),
        p50_ms: percentile(latencies, 50),
        p99_ms: percentile(latencies, 99),
        max_ms: latencies.reduce((a, b) => Math.max(a, b), 0),
        last_subscriber_p99_ms: percentile(lasts, 99),
        after_answer_p50_ms: percentile(sinceAnswer, 50),
        after_answer_p99_ms: percentile(sinceAnswer, 99),
        hub_rounds: rounds,
        hub_round_mean_ms: (roundSum / rounds) * 1000,
        hub_round_p50_at_most_s: roundP50,
        hub_round_p99_at_most_s: roundP99,
        rss_idle_mb: rssIdle,
        rss_subscribed_mb: rssSubscribed,
        rss_end_mb: rssEnd,
        seconds: elapsed,
      };
      console.log(JSON.stringify(result, null, 2));
    } finally {
      await hub.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
