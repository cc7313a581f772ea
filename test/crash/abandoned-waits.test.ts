/**
 * Abandoned waits: clients (separate processes, so the kill is real) waiting in `task_claim` with
 * `wait_ms` over REST, MCP over HTTP (the lean path, and a JSON-RPC batch through the SDK path)
 * and over stdio (a client with its own `baton mcp`) are SIGKILLed mid-wait; then work is
 * created, as much as every waiter, dead or alive, could take. Live waiters started alongside
 * get tasks (so the waits were real and the doorbell rang); the dead ones get none: every claim
 * is a live agent's, every other task is still ready with no attempt counted. Likewise clients
 * killed while waiting in `message_inbox`: mail sent after stays unread.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sql } from '../../src/store/sql.js';
import {
  CRASH_ENV,
  crashRng,
  httpClient,
  kill9,
  openDb,
  prepare,
  sleep,
  startServe,
  stdioMcp,
  until,
  type Answer,
  type Served,
} from './harness.js';

const GHOST = resolve(import.meta.dirname, 'ghost.mjs');
/**
 * No periodic re-check anywhere: a live waiter gets its task only through the doorbell (in the
 * hub, or across processes for the stdio one), so "the doorbell rang" is what its claim shows.
 */
const NO_RECHECK = { BATON_WAIT_RECHECK_MS: '0' };
const METRICS_TOKEN = 'abandoned-waits-metrics-token-0123456789';
const WAIT_MS = 30_000;
/** Ghost modes, each twice; a batch carries two claims. */
const MODES = ['rest', 'mcp', 'batch', 'stdio'] as const;
const LIVE = ['live-rest', 'live-mcp', 'live-stdio'] as const;
/** Ghosts waiting for mail instead: killed, then sent a message that must stay unread. */
const INBOX = ['inbox', 'inbox-mcp'] as const;

interface Ghost {
  name: string;
  mode: (typeof MODES)[number] | (typeof INBOX)[number];
  child: ChildProcess;
  out: () => string;
  /** Its `baton mcp` (stdio mode), orphaned when the ghost dies. */
  mcpPid?: number;
}

function startGhost(name: string, mode: Ghost['mode'], where: string, key: string): Promise<Ghost> {
  const child = spawn(process.execPath, [GHOST, mode, where, key, String(WAIT_MS)], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...CRASH_ENV, ...NO_RECHECK },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolveGhost, reject) => {
    const timer = setTimeout(() => reject(new Error(`ghost ${name} did not send: ${out}`)), 30_000);
    child.stdout.on('data', () => {
      const m = /^sent(?: pid (\d+))?$/m.exec(out);
      if (m === null) return;
      clearTimeout(timer);
      resolveGhost({ name, mode, child, out: () => out, ...(m[1] === undefined ? {} : { mcpPid: Number(m[1]) }) });
    });
    child.once('exit', (code) => reject(new Error(`ghost ${name} exited ${code}: ${out}`)));
  });
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('abandoned waits', () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('clients killed mid-wait over REST, MCP HTTP (lean, batch) and stdio claim nothing once work arrives; dead inbox waits mark nothing read', async () => {
    const r = crashRng('waits');
    const claimers = MODES.flatMap((mode) => [1, 2].map((i) => ({ name: `ghost-${mode}-${i}`, mode })));
    const readers = INBOX.map((mode) => ({ name: `ghost-${mode}`, mode }));
    const ghostSpecs: { name: string; mode: Ghost['mode'] }[] = [...claimers, ...readers];
    const p = await prepare(r, [...ghostSpecs.map((g) => g.name), ...LIVE, 'live-inbox'], 0);
    cleanups.push(() => p.cleanup());
    const served: Served = await startServe(p.data, { ...NO_RECHECK, BATON_METRICS_TOKEN: METRICS_TOKEN });
    cleanups.push(() => kill9(served.child));

    const ghosts = await Promise.all(
      ghostSpecs.map((g) => startGhost(g.name, g.mode, g.mode === 'stdio' ? p.data : served.url, p.keys.get(g.name)!)),
    );
    cleanups.push(async () => {
      for (const g of ghosts) {
        await kill9(g.child);
        if (g.mcpPid !== undefined && alive(g.mcpPid)) process.kill(g.mcpPid, 'SIGKILL');
      }
    });

    // Live waiters alongside, one per surface.
    const url = () => served.url;
    const liveRest = httpClient('rest', url, p.keys.get('live-rest')!);
    const liveMcp = httpClient('mcp', url, p.keys.get('live-mcp')!);
    const liveStdio = await stdioMcp(p.data, p.keys.get('live-stdio')!, NO_RECHECK);
    cleanups.push(() => kill9(liveStdio.child));
    const lives: Promise<Answer>[] = [liveRest, liveMcp, liveStdio].map((c) => c.tool('task_claim', { wait_ms: WAIT_MS }));
    const liveInbox = httpClient('rest', url, p.keys.get('live-inbox')!);
    const liveMail = liveInbox.tool('message_inbox', { wait_ms: WAIT_MS });

    // The waits have started before any ghost dies: the hub's own (REST, MCP, batch, inbox ghosts
    // and the three live HTTP waiters, at least 11) are counted by its metrics; the stdio ones run
    // in their own `baton mcp` and get a moment more.
    const waiters = async (): Promise<number> => {
      const text = await (await fetch(`${served.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })).text();
      return Number(/^baton_waiters (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    let started = 0;
    for (let i = 0; i < 300 && (started = await waiters()) < 11; i++) await sleep(50);
    expect(started).toBeGreaterThanOrEqual(11);
    await sleep(500);
    const killer = r.fork(0);
    for (const g of [...ghosts].sort(() => killer() - 0.5)) {
      await kill9(g.child);
      await sleep(killer.int(0, 50));
    }
    expect(ghosts.map((g) => g.out()).filter((o) => o.includes('answered'))).toEqual([]);
    await sleep(killer.int(0, 300));

    // Work for every waiter that ever was: 2 per mode (a batch: 4) plus the live ones; mail for
    // the dead readers and a live one.
    const tasks = claimers.length + 2 + LIVE.length;
    const created = await fetch(`${served.url}/api/v1/tasks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.lead}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tasks: Array.from({ length: tasks }, (_, i) => ({ title: `after the ghosts ${i}` })) }),
    });
    expect(created.status).toBe(200);
    const sent = await fetch(`${served.url}/api/v1/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${p.lead}`, 'content-type': 'application/json' },
      body: JSON.stringify({ to_agents: [...readers.map((g) => g.name), 'live-inbox'], body: 'after the ghosts' }),
    });
    expect(sent.status).toBe(200);
    const mail = await liveMail;
    expect(mail.ok && (mail.data.messages as unknown[]).length, 'the live reader got the mail').toBe(1);

    const answers = await Promise.all(lives);
    for (const [i, a] of answers.entries()) {
      expect(a.ok, `${LIVE[i]} claimed`).toBe(true);
      expect(a.ok ? a.data.task : null, `${LIVE[i]} got a task`).not.toBeNull();
    }
    // The orphaned `baton mcp` of each stdio ghost saw its stdin close and exits.
    for (const g of ghosts.filter((x) => x.mcpPid !== undefined)) {
      await until(() => !alive(g.mcpPid!), 20_000, `baton mcp of ${g.name} exits after its client died`);
    }
    // The dead readers' mail is still unread (asked without marking it read).
    for (const g of readers) {
      const reader = httpClient('rest', url, p.keys.get(g.name)!);
      const look = await reader.tool('message_inbox', { unread_only: true, mark_read: false });
      reader.close();
      expect(look.ok && look.data.unread, `${g.name}'s mail is unread`).toBe(1);
    }
    liveInbox.close();
    liveRest.close();
    liveMcp.close();
    liveStdio.close();
    await kill9(served.child);

    const db = await openDb(p.data);
    try {
      const facts = await db.read(async (ex) => ({
        claims: await ex.all<{ owner: string }>(sql`SELECT json_extract(data, '$.owner') AS owner FROM events WHERE type = 'task.claimed'`),
        tasks: await ex.all<{ status: string; attempts: number; lease_owner: string | null }>(sql`SELECT status, attempts, lease_owner FROM tasks`),
      }));
      expect(facts.claims.map((c) => c.owner).sort()).toEqual([...LIVE].sort());
      expect(facts.tasks.length).toBe(tasks);
      const held = facts.tasks.filter((t) => t.status !== 'ready');
      expect(held.map((t) => t.lease_owner).sort()).toEqual([...LIVE].sort());
      expect(held.every((t) => t.attempts === 1)).toBe(true);
      expect(facts.tasks.filter((t) => t.status === 'ready').every((t) => t.attempts === 0 && t.lease_owner === null)).toBe(true);
      process.stderr.write(
        `[crash waits] seed ${r.seed}: ${ghosts.length} clients killed mid-wait (${[...MODES, ...INBOX].join(', ')}), ${tasks} tasks created after, ` +
          `${facts.claims.length} claims, all by the ${LIVE.length} live waiters; the dead readers' mail unread\n`,
      );
    } finally {
      await db.close();
    }
  }, 90_000);
});
