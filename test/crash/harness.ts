/**
 * The crash harness: child processes killed with SIGKILL at seeded random moments, agents that
 * record every acknowledged write, and the invariants checked on the data dir afterwards. A run
 * prints its seed; `BATON_CRASH_SEED=<n>` replays the same choices (process scheduling still
 * varies, so a replay reproduces the schedule of kills and the task graph, not every interleaving).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { Agent as HttpAgent, request } from 'node:http';
import { join } from 'node:path';
import { expect } from 'vitest';
import { pino } from 'pino';
import { Hub } from '../../src/hub.js';
import { sql } from '../../src/store/sql.js';
import { SqliteDb } from '../../src/store/sqlite.js';
import { BIN, call, createKey, spawnServe, tempDir, testConfig, type ServeChild, type TestHub } from '../helpers.js';

// ---------------------------------------------------------------- seeded randomness

export interface Rng {
  (): number;
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
  /** An independent stream for one actor (its choices do not shift with other actors' timing). */
  fork(k: number): Rng;
  readonly seed: number;
}

/** mulberry32: small, fast, good enough to pick kill moments and graph shapes. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return Object.assign(next, {
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!,
    fork: (k: number) => rng(Math.imul(seed ^ 0x9e3779b9, k + 1) ^ (k * 0x85ebca6b)),
    seed,
  });
}

/** The run's seed (BATON_CRASH_SEED replays one), printed so a failure can be replayed. */
export function crashRng(name: string): Rng {
  const given = process.env.BATON_CRASH_SEED;
  const seed = given !== undefined && given !== '' ? Number(given) >>> 0 : Math.floor(Math.random() * 2 ** 32);
  process.stderr.write(`[crash ${name}] seed ${seed} (replay: BATON_CRASH_SEED=${seed})\n`);
  return rng(seed);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until true; throws after `ms` (a guard against hangs, never a timing assertion). */
export async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting (${ms} ms): ${typeof what === 'string' ? what : what()}`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------- the data dir

export interface Prepared {
  /** The temp root; the data dir is `data` inside it. */
  dir: string;
  data: string;
  lead: string;
  keys: Map<string, string>;
  taskIds: string[];
  cleanup(): void;
}

/**
 * A data dir with a lead key, one worker key per name, and `tasks` tasks (max_attempts 100, so
 * leases lost to kills never dead-letter one), about a third of them depending on one or two
 * earlier tasks. Made in-process, then closed: the processes under test open it afterwards.
 */
export async function prepare(r: Rng, workers: readonly string[], tasks: number): Promise<Prepared> {
  const tmp = tempDir('baton-crash-');
  const data = join(tmp.dir, 'data');
  const hub = await Hub.open(testConfig(data), { checkOutputs: true, log: pino({ level: 'silent' }) });
  const admin = await hub.authenticate(hub.firstStartKey!);
  const t: TestHub = { hub, dir: tmp.dir, adminKey: hub.firstStartKey!, admin, close: () => hub.close() };
  try {
    const lead = await createKey(t, 'lead', 'lead');
    const keys = new Map<string, string>();
    for (const w of workers) keys.set(w, await createKey(t, w, 'worker'));
    const leadP = await hub.authenticate(lead);
    const taskIds: string[] = [];
    for (let start = 0; start < tasks; start += 100) {
      const n = Math.min(100, tasks - start);
      const specs = Array.from({ length: n }, (_, i) => {
        const deps = new Set<string>();
        if (start + i > 0 && r() < 0.35) {
          for (let k = r.int(1, 2); k > 0; k--) {
            const j = r.int(Math.max(0, start + i - 30), start + i - 1);
            deps.add(j >= start ? `r${j}` : taskIds[j]!);
          }
        }
        return { ref: `r${start + i}`, title: `crash task ${start + i}`, max_attempts: 100, ...(deps.size > 0 ? { depends_on: [...deps] } : {}) };
      });
      const out = await call<{ tasks: { id: string }[] }>(hub, leadP, 'task_create', { tasks: specs });
      taskIds.push(...out.tasks.map((x) => x.id));
    }
    return { dir: tmp.dir, data, lead, keys, taskIds, cleanup: tmp.cleanup };
  } finally {
    await hub.close();
  }
}

// ---------------------------------------------------------------- processes

/** Settings for every process under test: short leases (a killed holder's lease runs out fast). */
export const CRASH_ENV: Record<string, string> = {
  BATON_RATE_LIMIT: 'false',
  BATON_LOG_LEVEL: 'warn',
  BATON_LEASE_MS: '2000',
  BATON_SWEEP_INTERVAL_MS: '100',
};

function childEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...CRASH_ENV, ...extra };
}

export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function kill9(child: ChildProcess): Promise<void> {
  const done = exited(child);
  child.kill('SIGKILL');
  await done;
}

/** The last 64 KiB of a stream, for failure messages. */
function tail(stream: NodeJS.ReadableStream | null): () => string {
  let buf = '';
  stream?.on('data', (d: Buffer) => {
    buf = (buf + d.toString()).slice(-65536);
  });
  return () => buf;
}

export type Served = ServeChild;

export function startServe(data: string, extra: Record<string, string> = {}, args: string[] = []): Promise<Served> {
  return spawnServe(['--data', data, ...args], childEnv(extra));
}

// ---------------------------------------------------------------- clients

/** The connection failed or the peer died: the outcome of the call is unknown. */
export class Gone extends Error {}

/** A tool's answer: its structured content, or the error code it was refused with. */
export type Answer = { ok: true; data: Record<string, unknown> } | { ok: false; code: string };

export interface ToolClient {
  tool(name: string, args: Record<string, unknown>): Promise<Answer>;
  close(): void;
}

function post(url: string, path: string, key: string, body: string, agent: HttpAgent, headers: Record<string, string> = {}): Promise<{ status: number; text: string }> {
  const u = new URL(path, url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => reject(new Gone(e.message)));
      },
    );
    req.on('error', (e) => reject(new Gone(e.message)));
    req.end(body);
  });
}

const REST_PATHS: Record<string, (args: Record<string, unknown>) => [string, Record<string, unknown>]> = {
  task_create: (a) => ['/api/v1/tasks', a],
  task_claim: (a) => ['/api/v1/tasks/claim', a],
  task_complete: ({ id, ...rest }) => [`/api/v1/tasks/${String(id)}/complete`, rest],
  message_inbox: (a) => ['/api/v1/messages/inbox', a],
};

/** REST (`/api/v1`) or MCP over HTTP (the lean JSON-RPC path) against a server whose URL may change. */
export function httpClient(via: 'rest' | 'mcp', url: () => string, key: string): ToolClient {
  let agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  let id = 0;
  return {
    async tool(name, args) {
      try {
        if (via === 'rest') {
          const [path, body] = REST_PATHS[name]!(args);
          const res = await post(url(), path, key, JSON.stringify(body), agent);
          if (res.status >= 500 && res.text === '') throw new Gone(`HTTP ${res.status}`);
          const json = JSON.parse(res.text) as Record<string, unknown> & { error?: { code: string } };
          return res.status === 200 ? { ok: true, data: json } : { ok: false, code: json.error?.code ?? `http_${res.status}` };
        }
        const body = JSON.stringify({ jsonrpc: '2.0', id: ++id, method: 'tools/call', params: { name, arguments: args } });
        const res = await post(url(), '/mcp', key, body, agent, { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' });
        const json = JSON.parse(res.text) as { result?: { isError?: boolean; structuredContent: Record<string, unknown> }; error?: unknown };
        if (json.result === undefined) return { ok: false, code: `rpc: ${res.text.slice(0, 200)}` };
        const sc = json.result.structuredContent as { error?: { code: string } };
        return json.result.isError === true ? { ok: false, code: sc.error?.code ?? 'unknown' } : { ok: true, data: json.result.structuredContent };
      } catch (err) {
        // A fresh pool after any failure: a socket to a killed server must not be reused.
        agent.destroy();
        agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
        if (err instanceof Gone) throw err;
        throw new Gone(String(err));
      }
    },
    close: () => agent.destroy(),
  };
}

/** A `baton mcp` child process spoken to with newline-delimited JSON-RPC (no SDK: the kill is of this very process). */
export interface StdioMcp extends ToolClient {
  child: ChildProcess;
  stderr(): string;
}

export async function stdioMcp(data: string, key: string, extra: Record<string, string> = {}): Promise<StdioMcp> {
  const child = spawn(process.execPath, [BIN, 'mcp', '--data', data], { env: childEnv({ BATON_TOKEN: key, ...extra }), stdio: ['pipe', 'pipe', 'pipe'] });
  const stderr = tail(child.stderr);
  const pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  let id = 0;
  let buf = '';
  let dead = false;
  const fail = (why: string): void => {
    dead = true;
    for (const p of pending.values()) p.reject(new Gone(why));
    pending.clear();
  };
  child.once('exit', (code, signal) => fail(`baton mcp exited (${code ?? signal})`));
  child.stdin!.on('error', () => undefined);
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() === '') continue;
      const msg = JSON.parse(line) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
      if (msg.id === undefined) continue;
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error !== undefined) p?.reject(new Error(`rpc error: ${msg.error.message}`));
      else p?.resolve(msg.result ?? {});
    }
  });
  const rpc = (method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> => {
    if (dead) return Promise.reject(new Gone('baton mcp is gone'));
    return new Promise((resolve, reject) => {
      const n = ++id;
      pending.set(n, { resolve, reject });
      child.stdin!.write(JSON.stringify({ jsonrpc: '2.0', id: n, method, params }) + '\n');
    });
  };
  await rpc('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'crash', version: '1' } });
  child.stdin!.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
  return {
    child,
    stderr,
    async tool(name, args) {
      const r = (await rpc('tools/call', { name, arguments: args })) as { isError?: boolean; structuredContent: Record<string, unknown> };
      const sc = r.structuredContent as { error?: { code: string } };
      return r.isError === true ? { ok: false, code: sc.error?.code ?? 'unknown' } : { ok: true, data: r.structuredContent };
    },
    close: () => child.stdin!.end(),
  };
}

// ---------------------------------------------------------------- the storm

export interface ClaimAck {
  agent: string;
  id: string;
  token: number;
  attempt: number;
}
export interface CompleteAck {
  agent: string;
  id: string;
  token: number;
  summary: string;
}

/** Everything the hub acknowledged, across all agents and all kills. */
export class Ledger {
  /** Tasks created during the storm: idempotency key → the id each acknowledgement gave. */
  readonly created = new Map<string, string[]>();
  /** A task_create is on its way (a killer may aim at it). */
  creating = false;
  readonly claims: ClaimAck[] = [];
  readonly completions: CompleteAck[] = [];
  /** Calls whose outcome is unknown (the connection or process died under them). */
  gone = 0;
  refused = new Map<string, number>();

  refusal(code: string): void {
    this.refused.set(code, (this.refused.get(code) ?? 0) + 1);
  }
}

/**
 * One agent's claim → complete loop until `stop()`. A call that dies with its connection is
 * retried on the next client (`client()` may return a new one after a restart), or the held task
 * is forgotten (as an agent that restarted would), chosen at random: a forgotten task comes back
 * when its lease runs out; a retried completion that had committed gets its own answer back.
 */
export async function storm(
  name: string,
  client: () => ToolClient | Promise<ToolClient>,
  ledger: Ledger,
  r: Rng,
  stop: () => boolean,
): Promise<void> {
  let held: { id: string; token: number } | null = null;
  // Whether the calls failing now began failing with the last call: the agent then decides once
  // whether it forgets its task or keeps retrying it until the hub answers.
  let cut = false;
  while (!stop()) {
    let c: ToolClient;
    try {
      c = await client();
    } catch {
      await sleep(100);
      continue;
    }
    try {
      if (held === null) {
        const a = await c.tool('task_claim', r() < 0.3 ? { wait_ms: 300 } : {});
        cut = false;
        if (!a.ok) {
          ledger.refusal(a.code);
          await sleep(50);
          continue;
        }
        const task = a.data.task as { id: string; attempts: number; lease: { token: number } } | null;
        if (task === null) {
          await sleep(r.int(20, 150));
          continue;
        }
        ledger.claims.push({ agent: name, id: task.id, token: task.lease.token, attempt: task.attempts });
        held = { id: task.id, token: task.lease.token };
      }
      if (r() < 0.2) await sleep(r.int(1, 40));
      const summary = `${name} did ${held.id} with lease ${held.token}`;
      const a = await c.tool('task_complete', { id: held.id, lease_token: held.token, result: { summary } });
      cut = false;
      if (a.ok) ledger.completions.push({ agent: name, id: held.id, token: held.token, summary });
      else ledger.refusal(a.code);
      held = null;
    } catch (err) {
      if (!(err instanceof Gone)) throw err;
      ledger.gone++;
      if (!cut && r() < 0.5) held = null;
      cut = true;
      await sleep(r.int(50, 200));
    }
  }
}

/**
 * A lead creating small batches during the storm, each task with an idempotency key and some
 * depending on earlier tasks (done or not). A batch whose answer was lost is sent again, the same
 * keys: the hub must map them to the tasks it created, not create them twice.
 */
export async function creator(
  client: () => ToolClient | Promise<ToolClient>,
  ledger: Ledger,
  r: Rng,
  earlier: readonly string[],
  stop: () => boolean,
): Promise<void> {
  const known = [...earlier];
  let batch = 0;
  while (!stop()) {
    const keys = Array.from({ length: r.int(1, 4) }, (_, i) => `crash-${r.seed}-${batch}-${i}`);
    const specs = keys.map((key, i) => ({
      title: `created in the storm ${key}`,
      max_attempts: 100,
      idempotency_key: key,
      ...(r() < 0.5 ? { depends_on: [r.pick(known)] } : i > 0 && r() < 0.5 ? { depends_on: [keys[i - 1]!] } : {}),
      ref: key,
    }));
    for (;;) {
      try {
        const c = await client();
        ledger.creating = true;
        const a = await c.tool('task_create', { tasks: specs }).finally(() => (ledger.creating = false));
        if (!a.ok) throw new Error(`task_create refused: ${a.code}`);
        const out = a.data.tasks as { id: string }[];
        keys.forEach((key, i) => {
          ledger.created.set(key, [...(ledger.created.get(key) ?? []), out[i]!.id]);
          known.push(out[i]!.id);
        });
        break;
      } catch (err) {
        if (!(err instanceof Gone)) throw err;
        ledger.gone++;
        await sleep(r.int(50, 200));
      }
    }
    batch++;
    await sleep(r.int(20, 200));
  }
}

// ---------------------------------------------------------------- the invariants

export async function openDb(data: string): Promise<SqliteDb> {
  return new SqliteDb(join(data, 'baton.db'));
}

export async function notDone(db: SqliteDb): Promise<number> {
  return db.read(async (ex) => (await ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM tasks WHERE status <> 'done'`))!.n);
}

export interface Verdict {
  tasks: number;
  done: number;
  claimEvents: number;
}

/**
 * Checks, with every process under test stopped: each task done exactly once (one `task.done`
 * event, none for tasks not done) or still claimable; every acknowledged claim durable (its
 * `task.claimed` event, its token ≤ the task's); no two acknowledged claims of a task with the same
 * lease token; every acknowledged completion durable with its own result; nothing claimed before
 * its dependencies were done; attempts within max_attempts; `PRAGMA integrity_check` ok;
 * `baton audit verify` exits 0. `allDone`: the run drained, so every task must be done.
 */
export async function checkInvariants(p: Prepared, ledger: Ledger, allDone: boolean): Promise<Verdict> {
  const db = await openDb(p.data);
  let verdict: Verdict;
  try {
    const facts = await db.read(async (ex) => ({
      integrity: await ex.all<{ integrity_check: string }>(sql`PRAGMA integrity_check`),
      tasks: await ex.all<{ id: string; status: string; attempts: number; max_attempts: number; lease_token: number; finish_owner: string | null; finish_token: number | null; finish_op: string | null }>(
        sql`SELECT id, status, attempts, max_attempts, lease_token, finish_owner, finish_token, finish_op FROM tasks`,
      ),
      doneEvents: await ex.all<{ subject: string; n: number }>(sql`SELECT subject, count(*) AS n FROM events WHERE type = 'task.done' GROUP BY subject`),
      claimed: await ex.all<{ subject: string; owner: string; attempt: number }>(
        sql`SELECT subject, json_extract(data, '$.owner') AS owner, json_extract(data, '$.attempt') AS attempt FROM events WHERE type = 'task.claimed'`,
      ),
      violations: await ex.all<{ task_id: string; depends_on: string }>(sql`SELECT d.task_id, d.depends_on FROM task_deps d
        JOIN events c ON c.subject = d.task_id AND c.type = 'task.claimed'
        LEFT JOIN events f ON f.subject = d.depends_on AND f.type = 'task.done'
        WHERE f.id IS NULL OR f.id > c.id`),
    }));
    expect(facts.integrity.map((row) => row.integrity_check)).toEqual(['ok']);
    // Seeded tasks, plus those created in the storm (an unanswered create may have committed:
    // its retry then got the same tasks back).
    expect(facts.tasks.length).toBe(p.taskIds.length + ledger.created.size);

    const byId = new Map(facts.tasks.map((t) => [t.id, t]));
    const doneCount = new Map(facts.doneEvents.map((e) => [e.subject, e.n]));
    const twice = facts.doneEvents.filter((e) => e.n > 1).map((e) => e.subject);
    expect(twice, 'tasks completed more than once').toEqual([]);
    for (const t of facts.tasks) {
      if (t.status === 'done') expect(doneCount.get(t.id), `done task ${t.id} has one task.done event`).toBe(1);
      else {
        expect(doneCount.get(t.id), `task ${t.id} (${t.status}) has no task.done event`).toBeUndefined();
        expect(['ready', 'blocked', 'claimed', 'running'], `task ${t.id}`).toContain(t.status);
      }
      expect(t.attempts).toBeLessThanOrEqual(t.max_attempts);
    }
    if (allDone) expect(facts.tasks.filter((t) => t.status !== 'done').map((t) => `${t.id}:${t.status}`)).toEqual([]);
    expect(facts.violations, 'claimed before a dependency was done').toEqual([]);

    // Acknowledged claims: durable, and never two with one token.
    const claimedEvents = new Set(facts.claimed.map((c) => `${c.subject}/${c.owner}/${c.attempt}`));
    const tokens = new Set<string>();
    for (const c of ledger.claims) {
      expect(claimedEvents.has(`${c.id}/${c.agent}/${c.attempt}`), `acknowledged claim ${JSON.stringify(c)} is recorded`).toBe(true);
      expect(byId.get(c.id)!.lease_token).toBeGreaterThanOrEqual(c.token);
      expect(tokens.has(`${c.id}/${c.token}`), `lease token ${c.token} of ${c.id} granted twice`).toBe(false);
      tokens.add(`${c.id}/${c.token}`);
    }
    // Acknowledged completions: at most one per task, durable, with their own result.
    const completed = new Map<string, CompleteAck>();
    for (const c of ledger.completions) {
      expect(completed.has(c.id), `${c.id} acknowledged as completed twice`).toBe(false);
      completed.set(c.id, c);
      const t = byId.get(c.id)!;
      expect(t.status, `acknowledged completion of ${c.id}`).toBe('done');
      expect([t.finish_op, t.finish_owner, t.finish_token]).toEqual(['task_complete', c.agent, c.token]);
    }
    // Acknowledged creations: durable, and one task per idempotency key however often it was sent.
    for (const [key, ids] of ledger.created) {
      expect(new Set(ids).size, `idempotency key ${key} gave one task`).toBe(1);
      expect(byId.has(ids[0]!), `created task ${ids[0]} (${key}) is stored`).toBe(true);
    }
    verdict = { tasks: facts.tasks.length, done: facts.tasks.filter((t) => t.status === 'done').length, claimEvents: facts.claimed.length };
  } finally {
    await db.close();
  }

  // The results, read through the hub (content fields may be stored encrypted).
  const hub = await Hub.open(testConfig(p.data), { log: pino({ level: 'silent' }) });
  try {
    const reader = await hub.authenticate(p.lead);
    for (const c of ledger.completions) {
      const { task } = await call<{ task: { result: { summary: string } | null } }>(hub, reader, 'task_get', { id: c.id });
      expect(task.result?.summary, `result of ${c.id}`).toBe(c.summary);
    }
  } finally {
    await hub.close();
  }

  const audit = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile(process.execPath, [BIN, 'audit', 'verify', '--data', p.data], { env: childEnv({}) }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, out: stdout + stderr });
    });
  });
  expect(audit, 'baton audit verify').toMatchObject({ code: 0 });
  expect(audit.out).toMatch(/audit chain ok/);
  return verdict;
}
