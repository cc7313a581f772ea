/**
 * `npm run bench:soak`: a long run (SOAK_SECONDS, default 600) of 64 agents claiming and
 * completing over MCP HTTP against one `baton serve`, with a lead creating tasks as fast as they
 * are done and messages flowing, while retention prunes events, finished tasks and read mail.
 * Every 30 s it samples the server's RSS, the database size (main file + WAL) and the bytes in
 * use by the audit trail and by everything else. Memory and the data under retention should be
 * flat once warm: the last third's mean against the first third's (after a
 * warm-up of one sample interval) is printed as growth %. Each retention run the server logs
 * (removed, ms) is printed as it ends. SOAK_DBSTAT=0 leaves out the bytes in use (a dbstat scan
 * of the whole file per sample, which itself slows the hub once the file is large): with a short
 * SOAK_SAMPLE_MS the cycles per sample show what a prune does to the rate. Bench only: never
 * part of `npm test`.
 */
import { readFileSync, statSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';
import { openSqlite } from '../src/store/sqlite-driver.js';
import { rpcClient, startProcess } from './lib.js';

const BIN = resolve(import.meta.dirname, '../bin/baton.js');
const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const SAMPLE_MS = Number(process.env.SOAK_SAMPLE_MS ?? 30_000);
const AGENTS = Number(process.env.SOAK_AGENTS ?? 64);
const DBSTAT = process.env.SOAK_DBSTAT !== '0';

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

/**
 * Bytes in use by the audit trail and by everything else, from SQLite's dbstat (a read-only
 * connection; pages of deleted rows that SQLite keeps for reuse count as free, not as used).
 * The audit trail is kept for `auditRetentionDays` (whole days) by design, so a 10-minute run
 * shows its growth rate; everything else should be flat under retention.
 */
function usedMiB(dir: string): { audit: number; rest: number } {
  const db = openSqlite(join(dir, 'baton.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT name, sum(pgsize - unused) AS used FROM dbstat GROUP BY name').all() as unknown as { name: string; used: number }[];
    let audit = 0;
    let rest = 0;
    for (const r of rows) {
      if (r.name === 'audit' || r.name.startsWith('audit_') || r.name.startsWith('sqlite_autoindex_audit')) audit += r.used;
      else rest += r.used;
    }
    return { audit: audit / 2 ** 20, rest: rest / 2 ** 20 };
  } finally {
    db.close();
  }
}

function dbMiB(dir: string): number {
  let bytes = 0;
  for (const f of ['baton.db', 'baton.db-wal']) {
    try {
      bytes += statSync(join(dir, f)).size;
    } catch {
      // no WAL yet
    }
  }
  return bytes / 2 ** 20;
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'baton-soak-'));
  const dataDir = join(work, '.baton');
  // Short retention so that a 10-minute run exercises pruning many times over.
  const retention = {
    BATON_EVENT_RETENTION_MS: process.env.BATON_EVENT_RETENTION_MS ?? '60000',
    BATON_TASK_RETENTION_MS: process.env.BATON_TASK_RETENTION_MS ?? '60000',
    BATON_MESSAGE_RETENTION_MS: process.env.BATON_MESSAGE_RETENTION_MS ?? '60000',
  };
  const hub = await Hub.open(ConfigSchema.parse({ dataDir, logLevel: 'silent' }), { log: pino({ level: 'silent' }) });
  const admin = await hub.localPrincipal('soak-admin', 'admin');
  const mint = async (name: string, role: string): Promise<string> =>
    ((await hub.call('token_create', { name, role }, admin, { requestId: 'soak', transport: 'internal' })) as { key: string }).key;
  const lead = await mint('soak-lead', 'lead');
  const workers: string[] = [];
  for (let i = 0; i < AGENTS; i++) workers.push(await mint(`soak${i}`, 'worker'));
  await hub.close();

  const server = await startProcess(
    [BIN, 'serve', '--port', '0', '--data', dataDir],
    { BATON_LOG_LEVEL: 'info', BATON_RATE_LIMIT: 'false', ...retention },
    /listening on http:\/\/127\.0\.0\.1:(\d+)/,
    'stderr',
  );
  const pid = server.child.pid!;
  const samples: { t: number; rss: number; db: number; audit: number; rest: number; cycles: number }[] = [];
  let cycles = 0;
  let empty = 0;
  let stop = false;
  const started = performance.now();
  // The server's own log line for each retention run (info), as it ends.
  server.child.stderr!.on('data', (d: Buffer) => {
    for (const line of d.toString().split('\n')) {
      if (line.includes('"msg":"retention"')) process.stderr.write(`  [${Math.round((performance.now() - started) / 1000)} s] ${line}\n`);
    }
  });
  const sampler = setInterval(() => {
    const s = { t: Math.round((performance.now() - started) / 1000), rss: rssMiB(pid), db: dbMiB(dataDir), ...(DBSTAT ? usedMiB(dataDir) : { audit: NaN, rest: NaN }), cycles };
    samples.push(s);
    process.stderr.write(
      `  t=${s.t}s rss=${s.rss.toFixed(1)} MiB file=${s.db.toFixed(1)} MiB used: audit ${s.audit.toFixed(1)} MiB, rest ${s.rest.toFixed(1)} MiB; cycles=${s.cycles} empty claims=${empty}\n`,
    );
  }, SAMPLE_MS);

  const producer = (async () => {
    const c = rpcClient(server.url, lead);
    let n = 0;
    while (!stop) {
      const { tasks } = await c.tool<{ tasks: unknown[] }>('task_list', { status: ['ready'], limit: 1 }).catch((err: unknown) => {
        process.stderr.write(`  producer: task_list failed: ${String(err)}\n`);
        return { tasks: [1] };
      });
      if (tasks.length > 0 && n > 0) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      await c.tool('task_create', { tasks: Array.from({ length: 200 }, (_, i) => ({ title: `soak ${n + i}` })) });
      n += 200;
    }
    c.close();
  })();

  await Promise.all(
    workers.map(async (key, i) => {
      const c = rpcClient(server.url, key);
      while (!stop) {
        if (performance.now() - started > SECONDS * 1000) {
          stop = true;
          break;
        }
        const { task } = await c.tool<{ task: { id: string; lease: { token: number } } | null }>('task_claim', { wait_ms: 1000 });
        if (task === null) {
          empty++;
          continue;
        }
        await c.tool('task_complete', { id: task.id, lease_token: task.lease.token, result: { summary: 'ok' } });
        cycles++;
        if (cycles % 50 === 0) {
          await c.tool('message_send', { to_agents: [`soak${(i + 1) % AGENTS}`], body: 'progress' });
          await c.tool('message_inbox', { unread_only: true, limit: 50 });
        }
      }
      c.close();
    }),
  );
  stop = true;
  await producer;
  clearInterval(sampler);
  await server.stop();
  rmSync(work, { recursive: true, force: true });

  const warm = samples.slice(1);
  const third = Math.max(1, Math.floor(warm.length / 3));
  const growth = (pick: (s: (typeof samples)[number]) => number): number =>
    (mean(warm.slice(-third).map(pick)) / mean(warm.slice(0, third).map(pick)) - 1) * 100;
  process.stdout.write(
    `\nsoak: ${AGENTS} agents, ${SECONDS} s, ${cycles} cycles (${(cycles / SECONDS).toFixed(0)}/s); ` +
      `RSS growth ${growth((s) => s.rss).toFixed(1)} %, database file growth ${growth((s) => s.db).toFixed(1)} %, ` +
      `data in use but the audit trail ${growth((s) => s.rest).toFixed(1)} % (last third vs first third after warm-up); ` +
      `audit trail ${(((samples.at(-1)?.audit ?? 0) - (samples[0]?.audit ?? 0)) / Math.max(1, ((samples.at(-1)?.t ?? 0) - (samples[0]?.t ?? 0)) / 60)).toFixed(1)} MiB/min\n` +
      '| t | RSS | file | in use: audit | in use: rest | cycles |\n|---|---|---|---|---|---|\n' +
      samples.map((s) => `| ${s.t} s | ${s.rss.toFixed(1)} MiB | ${s.db.toFixed(1)} MiB | ${s.audit.toFixed(1)} MiB | ${s.rest.toFixed(1)} MiB | ${s.cycles} |`).join('\n') +
      '\n',
  );
}

await main();
