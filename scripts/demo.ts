// `npm run demo`: a hub on a temp data dir, a handful of simulated agents (real MCP clients over
// Streamable HTTP) working a small plan with dependencies, messages, locks, one failure that is
// retried and one approval that waits for a human. Prints the dashboard URL and a login key.
// Ctrl-C stops everything and removes the data dir. Options: --port N (default: any free port).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { pino } from 'pino';
import { startHttp } from '../src/api/http/server.js';
import { ConfigSchema } from '../src/config.js';
import { Hub } from '../src/hub.js';

const portArg = process.argv.indexOf('--port');
const port = portArg === -1 ? 0 : Number(process.argv[portArg + 1]);
const dir = mkdtempSync(join(tmpdir(), 'baton-demo-'));
const hub = await Hub.open(ConfigSchema.parse({ dataDir: join(dir, 'data'), logLevel: 'warn' }), { log: pino({ level: 'warn' }) });
const http = await startHttp(hub, { host: '127.0.0.1', port });
const adminKey = hub.firstStartKey!;
const admin = await hub.authenticate(adminKey);
let seq = 0;
const mint = async (name: string, role: string): Promise<string> =>
  ((await hub.call('token_create', { name, role }, admin, { requestId: `req_demo${seq++}`, transport: 'internal' })) as { key: string }).key;

interface Sim {
  name: string;
  call<T = Record<string, unknown>>(tool: string, args?: Record<string, unknown>): Promise<T>;
  close(): Promise<void>;
}

async function agent(name: string, role: string): Promise<Sim> {
  const key = await mint(name, role);
  const client = new Client({ name: `demo-${name}`, version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL('/mcp', http.url), { requestInit: { headers: { Authorization: `Bearer ${key}` } } }));
  return {
    name,
    async call<T>(tool: string, args: Record<string, unknown> = {}) {
      const r = (await client.callTool({ name: tool, arguments: args })) as { isError?: boolean; structuredContent?: unknown };
      if (r.isError) throw new Error(`${name} ${tool}: ${JSON.stringify(r.structuredContent)}`);
      return r.structuredContent as T;
    },
    close: () => client.close(),
  };
}

const stopping = new AbortController();
const pause = (ms: number): Promise<void> => sleep(ms, undefined, { signal: stopping.signal }).catch(() => undefined);
const jitter = (a: number, b: number): number => a + Math.floor(Math.random() * (b - a));

const lead = await agent('lead', 'lead');
const workers = await Promise.all(['ada', 'bruno', 'chen', 'dara'].map((n) => agent(n, 'worker')));
const observerKey = await mint('watcher', 'observer');

await lead.call('plan_update', {
  goal: 'Ship the invoice export feature',
  body: '# Invoice export\n\n1. Agree the CSV format\n2. Build the exporter and its API\n3. UI button and download\n4. Tests, then a staging deploy (needs a human yes)\n',
});

/** One round of the plan: a small graph with dependencies. Round 1 has the flaky task and the approval. */
async function plan(round: number): Promise<void> {
  const r = round === 1 ? '' : ` (round ${round})`;
  await lead.call('task_create', {
    tasks: [
      { ref: 'fmt', title: `Agree the CSV format${r}`, priority: 8, labels: ['design'] },
      { ref: 'exp', title: `Exporter: stream rows to CSV${r}`, priority: 7, depends_on: ['fmt'], labels: ['backend'] },
      { ref: 'api', title: `GET /invoices/export endpoint${r}`, priority: 6, depends_on: ['exp'], labels: ['backend'] },
      { ref: 'ui', title: `Export button in the invoice list${r}`, priority: 5, depends_on: ['fmt'], labels: ['frontend'] },
      { ref: 'flaky', title: `Integration test against the sandbox bank${r}`, priority: 5, depends_on: ['api'], labels: ['tests'], max_attempts: 3 },
      { ref: 'ship', title: `Deploy to staging${r}`, priority: 4, depends_on: ['flaky', 'ui'], labels: ['ops'] },
    ],
  });
  await lead.call('message_send', { to_all: true, subject: `Plan${r} is on the board`, body: 'Claim what matches you; say when you lock shared files.' });
}

type Claimed = { task: { id: string; title: string; lease: { token: number } | null; attempts: number } | null };

async function work(w: Sim): Promise<void> {
  await w.call('session_start', { goal: 'Work the invoice export plan' }).catch(() => undefined);
  while (!stopping.signal.aborted) {
    try {
      const { task } = await w.call<Claimed>('task_claim', { wait_ms: 20_000, lease_ms: 60_000 });
      if (task === null || task.lease === null) continue;
      const token = task.lease.token;
      await w.call('task_start', { id: task.id, lease_token: token });
      const file = task.title.includes('button') ? 'web/invoices/export-button.tsx' : task.title.includes('endpoint') ? 'src/api/invoices.ts' : 'src/export/csv.ts';
      const lock = await w.call<{ lock?: { id: string } }>('lock_acquire', { paths: [file], reason: task.title.slice(0, 80), task_id: task.id, ttl_s: 120, wait_ms: 5_000 }).catch(() => ({ lock: undefined }));
      await pause(jitter(3_000, 8_000));
      await w.call('task_heartbeat', { id: task.id, lease_token: token });
      if (task.title.startsWith('Integration test') && task.attempts === 1) {
        // The one failure: the first attempt fails and goes back to the queue to be retried.
        await w.call('task_fail', { id: task.id, lease_token: token, error: 'sandbox bank returned 502 Bad Gateway', retry: true });
        await w.call('message_send', { to_role: 'lead', subject: 'Sandbox flaky', body: `${task.title}: 502 from the sandbox, retrying.`, importance: 'high' });
      } else {
        if (task.title.startsWith('Deploy to staging')) {
          // Waits for the human: decide it in the dashboard's Approvals view.
          const req = await w.call<{ id: string }>('approval_request', { action: task.title, details: 'Deploys build to staging; runs the migration 0042_invoice_exports.', risk: 'high', task_id: task.id });
          await w.call('message_send', { to_all: true, subject: 'Waiting for approval', body: `${task.title} waits for a human in the Approvals inbox.` });
          for (;;) {
            const { approval } = await w.call<{ approval: { status: string } }>('approval_get', { id: req.id, wait_ms: 25_000 });
            await w.call('task_heartbeat', { id: task.id, lease_token: token }).catch(() => undefined);
            if (approval.status !== 'pending' || stopping.signal.aborted) break;
          }
        }
        await pause(jitter(1_000, 3_000));
        await w.call('task_complete', { id: task.id, lease_token: token, result: { summary: `Done: ${task.title}`, files_modified: [file] } });
        await w.call('session_checkpoint', { summary: `Finished: ${task.title}`, completed: [task.id] }).catch(() => undefined);
      }
      if (lock.lock) await w.call('lock_release', { id: lock.lock.id }).catch(() => undefined);
    } catch (e) {
      if (!stopping.signal.aborted) console.error(`[${w.name}]`, e instanceof Error ? e.message : e);
      await pause(2_000);
    }
  }
}

await plan(1);
const loops = workers.map((w) => work(w));
// New rounds keep the board moving (one every 90 s, at most 5).
const rounds = (async () => {
  for (let round = 2; round <= 5 && !stopping.signal.aborted; round++) {
    await pause(90_000);
    if (!stopping.signal.aborted) await plan(round).catch(() => undefined);
  }
})();

console.log(`
  Baton demo is running.

  Dashboard:    ${http.url}/
  Admin key:    ${adminKey}
  Observer key: ${observerKey}   (sees everything, can change nothing)

  Four agents (ada, bruno, chen, dara) work the plan; a lead posts it. One integration test fails
  once and is retried; "Deploy to staging" waits for you in Approvals. Ctrl-C stops the demo and
  deletes its data dir (${dir}).
`);

const stop = async (): Promise<void> => {
  if (stopping.signal.aborted) return;
  stopping.abort();
  console.log('stopping…');
  await http.drain(3_000);
  await Promise.allSettled(loops);
  await rounds;
  await Promise.allSettled([lead, ...workers].map((a) => a.close()));
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
