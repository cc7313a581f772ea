/**
 * The queue anchor (issue 9): pg-boss fetch+complete with 16 in-process workers, against Baton's
 * claim+complete over MCP HTTP (the lean JSON-RPC path, bearer keys, audit) on the same
 * PostgreSQL, same machine, same run: one Baton instance, then two instances on one schema with
 * the agents spread over both. Usage:
 * `node --import tsx bench/pgboss.ts` (BENCH_TASKS, default 2000; BATON_TEST_DATABASE_URL).
 * Throughput only (cycles/s); each run gets a fresh schema, dropped afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent as HttpAgent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { pino } from 'pino';
import { startHttp } from '../src/api/http/server.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';

const TASKS = Number(process.env.BENCH_TASKS ?? 2000);
const WORKERS = 16;
const URL = process.env.BATON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
}

async function pgBoss(): Promise<number> {
  const schema = `bench_boss_${process.pid}`;
  const boss = new PgBoss({ connectionString: URL, schema, max: WORKERS });
  boss.on('error', () => undefined);
  await boss.start();
  try {
    await boss.createQueue('work');
    for (let i = 0; i < TASKS; i += 500) {
      await boss.insert(Array.from({ length: Math.min(500, TASKS - i) }, (_, j) => ({ name: 'work', data: { title: `t${i + j}` } })));
    }
    const start = performance.now();
    let done = 0;
    await Promise.all(
      Array.from({ length: WORKERS }, async () => {
        for (;;) {
          const [job] = await boss.fetch<{ title: string }>('work', { batchSize: 1 });
          if (job === undefined) return;
          await boss.complete('work', job.id);
          done++;
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    if (done !== TASKS) throw new Error(`pg-boss completed ${done} of ${TASKS}`);
    return done / seconds;
  } finally {
    await boss.stop({ graceful: false, wait: true });
    await dropSchema(schema);
  }
}

function post(url: string, key: string, body: string, agent: HttpAgent): Promise<string> {
  const u = new globalThis.URL('/mcp', url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-11-25',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function tool(url: string, key: string, agent: HttpAgent, name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  const text = await post(url, key, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }), agent);
  const json = JSON.parse(text) as { result?: { isError?: boolean; structuredContent: Record<string, unknown> } };
  if (json.result === undefined || json.result.isError === true) throw new Error(`${name}: ${text.slice(0, 300)}`);
  return json.result.structuredContent;
}

/** Baton over MCP HTTP on PostgreSQL with `instances` hubs (each its own pool and HTTP server) on one schema. */
async function baton(instances: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'baton-bench-'));
  const schema = `bench_baton_${process.pid}_${instances}`;
  const config = ConfigSchema.parse({ dataDir: join(dir, 'data'), logLevel: 'silent', rateLimit: false, databaseUrl: URL, databaseSchema: schema });
  const hubs: Hub[] = [];
  const servers: { url: string; close(): Promise<void> }[] = [];
  try {
    for (let i = 0; i < instances; i++) {
      const hub = await Hub.open(config, { log: pino({ level: 'silent' }) });
      hubs.push(hub);
      servers.push(await startHttp(hub, { host: '127.0.0.1', port: 0, lean: true }));
    }
    const first = hubs[0]!;
    const meta = { requestId: 'bench', transport: 'internal' as const };
    const admin = await first.authenticate(first.firstStartKey!);
    const key = async (name: string, role: string): Promise<string> =>
      ((await first.call('token_create', { name, role }, admin, meta)) as { key: string }).key;
    const lead = await first.authenticate(await key('lead', 'lead'));
    for (let i = 0; i < TASKS; i += 500) {
      const n = Math.min(500, TASKS - i);
      await first.call('task_create', { tasks: Array.from({ length: n }, (_, j) => ({ title: `t${i + j}` })) }, lead, meta);
    }
    const workers = await Promise.all(Array.from({ length: WORKERS }, async (_, i) => ({ key: await key(`w${i}`, 'worker'), url: servers[i % instances]!.url })));
    const start = performance.now();
    let done = 0;
    await Promise.all(
      workers.map(async (w) => {
        const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
        try {
          for (;;) {
            const { task } = (await tool(w.url, w.key, agent, 'task_claim', {})) as { task: { id: string; lease: { token: number } } | null };
            if (task === null) return;
            await tool(w.url, w.key, agent, 'task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
            done++;
          }
        } finally {
          agent.destroy();
        }
      }),
    );
    const seconds = (performance.now() - start) / 1000;
    if (done !== TASKS) throw new Error(`baton completed ${done} of ${TASKS}`);
    return done / seconds;
  } finally {
    for (const s of servers) await s.close();
    for (const h of hubs) await h.close();
    rmSync(dir, { recursive: true, force: true });
    await dropSchema(schema);
  }
}

const boss = await pgBoss();
const one = await baton(1);
const two = await baton(2);
process.stdout.write(
  `${TASKS} tasks, ${WORKERS} workers, PostgreSQL ${URL.replace(/\/\/[^@]*@/, '//')}\n` +
    `pg-boss 10.4.2 fetch+complete (in process): ${boss.toFixed(0)} cycles/s\n` +
    `Baton claim+complete over MCP HTTP, one instance: ${one.toFixed(0)} cycles/s (${(one / boss).toFixed(2)}x pg-boss)\n` +
    `Baton, two instances on one schema: ${two.toFixed(0)} cycles/s (${(two / one).toFixed(2)}x one instance)\n`,
);
