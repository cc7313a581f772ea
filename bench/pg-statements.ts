/**
 * Round trips and CPU per claim+complete on PostgreSQL (issue 9): 16 agents over MCP HTTP (the
 * lean JSON-RPC path, bearer keys) on one in-process hub, one project, against the local
 * PostgreSQL. Counts the statements the pg client sends per cycle (by kind), and the CPU per
 * cycle of this process and of the hub's PostgreSQL backends (from /proc, by their
 * application_name): figures that hold on a shared machine, where rates do not.
 * Usage: `node --import tsx bench/pg-statements.ts` (BENCH_TASKS, default 400, at most 500;
 * BATON_TEST_DATABASE_URL).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { pino } from 'pino';
import { startHttp } from '../src/api/http/server.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { rpcClient } from './lib.js';

const TASKS = Math.min(500, Number(process.env.BENCH_TASKS ?? 400));
const URL = process.env.BATON_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

let counting = false;
let statements = 0;
const kinds = new Map<string, number>();
type Query = (this: pg.Client, q: unknown, ...rest: unknown[]) => unknown;
const proto = pg.Client.prototype as unknown as { query: Query };
const original = proto.query;
proto.query = function (this: pg.Client, q: unknown, ...rest: unknown[]) {
  if (counting) {
    statements++;
    const text = (typeof q === 'string' ? q : (q as { text: string }).text).replace(/\s+/g, ' ').trim().slice(0, 48);
    kinds.set(text, (kinds.get(text) ?? 0) + 1);
  }
  return original.call(this, q, ...rest);
};

/** Socket writes (syscalls) to PostgreSQL while counting: node-postgres writes each statement on its own unless corked. */
let pgWrites = 0;
const pgPort = Number(new globalThis.URL(URL).port || 5432);
type WriteGeneric = (this: net.Socket, ...args: unknown[]) => unknown;
const socketProto = net.Socket.prototype as unknown as { _writeGeneric: WriteGeneric };
const writeGeneric = socketProto._writeGeneric;
socketProto._writeGeneric = function (this: net.Socket, ...args: unknown[]) {
  if (counting && this.remotePort === pgPort) pgWrites++;
  return writeGeneric.apply(this, args);
};

/** CPU ms (user + system) a process has used, from /proc. */
function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

async function backends(schema: string): Promise<number[]> {
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  try {
    const r = await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1', [`baton:${schema}%`]);
    return r.rows.map((x) => x.pid);
  } finally {
    await c.end();
  }
}

const dir = mkdtempSync(join(tmpdir(), 'baton-pgstat-'));
const schema = `bench_stmt_${process.pid}`;
const hub = await Hub.open(ConfigSchema.parse({ dataDir: join(dir, 'data'), logLevel: 'silent', rateLimit: false, databaseUrl: URL, databaseSchema: schema }), {
  log: pino({ level: 'silent' }),
});
const server = await startHttp(hub, { host: '127.0.0.1', port: 0, lean: true });
try {
  const meta = { requestId: 'bench', transport: 'internal' as const };
  const admin = await hub.authenticate(hub.firstStartKey!);
  const key = async (name: string, role: string): Promise<string> => ((await hub.call('token_create', { name, role }, admin, meta)) as { key: string }).key;
  const lead = await hub.authenticate(await key('lead', 'lead'));
  await hub.call('task_create', { tasks: Array.from({ length: TASKS }, (_, i) => ({ title: `t${i}` })) }, lead, meta);
  const keys = await Promise.all(Array.from({ length: 16 }, (_, i) => key(`w${i}`, 'worker')));
  const before = new Map((await backends(schema)).map((p) => [p, cpuOf(p)]));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  counting = true;
  let done = 0;
  await Promise.all(
    keys.map(async (k) => {
      const c = rpcClient(server.url, k);
      try {
        for (;;) {
          const { task } = await c.tool<{ task: { id: string; lease: { token: number } } | null }>('task_claim', {});
          if (task === null) return;
          await c.tool('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
          done++;
        }
      } finally {
        c.close();
      }
    }),
  );
  counting = false;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const pgMs = (await backends(schema)).reduce((t, p) => t + cpuOf(p) - (before.get(p) ?? 0), 0);
  process.stdout.write(
    `${done} claim+complete cycles, 16 agents, one project: ${(done / seconds).toFixed(0)} cycles/s; ` +
      `${(statements / done).toFixed(1)} statements/cycle in ${(pgWrites / done).toFixed(1)} socket writes; CPU per cycle: this process ${((cpu.user + cpu.system) / 1000 / done).toFixed(2)} ms ` +
      `(hub and load generator), PostgreSQL backends ${(pgMs / done).toFixed(2)} ms\n`,
  );
  for (const [k, v] of [...kinds].sort((a, b) => b[1] - a[1])) process.stdout.write(`  ${(v / done).toFixed(2)}  ${k}\n`);
} finally {
  await server.close();
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
  const c = new pg.Client({ connectionString: URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await c.end();
}
