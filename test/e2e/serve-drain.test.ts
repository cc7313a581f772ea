/**
 * A graceful stop (issue 7 item 6): `baton serve` under load gets SIGTERM. Every request sent
 * before the signal gets a complete HTTP answer (no reset), long polls answer at once with
 * their empty result, the process exits 0, and every write that committed was answered.
 */
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Hub } from '../../src/hub.js';
import { sql } from '../../src/store/sql.js';
import { createKey, openHub, serve, spawnServe, storeEnvOf, testConfig } from '../helpers.js';

interface Answer {
  status: number;
  body: string;
}

const LEGACY = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };

interface RawConnection {
  socket: Socket;
  read: (until: (s: string) => boolean) => Promise<string>;
}

/** A raw keep-alive connection: what it has read so far, read until a condition (or its close). */
function rawConnection(u: URL): RawConnection {
  const socket = connect(Number(u.port), u.hostname);
  socket.on('error', () => undefined);
  let out = '';
  const waiters: (() => void)[] = [];
  socket.on('data', (c: Buffer) => {
    out += c.toString('utf8');
    for (const w of waiters.splice(0)) w();
  });
  socket.on('close', () => {
    for (const w of waiters.splice(0)) w();
  });
  const read = async (until: (s: string) => boolean): Promise<string> => {
    const end = Date.now() + 10_000; // bounded only to avoid a hang
    while (!until(out) && !socket.destroyed && Date.now() < end) {
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
    return out;
  };
  return { socket, read };
}

describe('baton serve: graceful stop', () => {
  it('SIGTERM under load: no request is reset, long polls answer empty, exit 0, every committed write answered', async () => {
    const t = await openHub();
    const data = join(t.dir, 'data');
    const worker = await createKey(t, 'drain-worker', 'worker');
    const lead = await createKey(t, 'drain-lead', 'lead');
    await t.hub.close();
    const { child, url, exit: exited } = await spawnServe(['--data', data], { BATON_RATE_LIMIT: 'false', BATON_LOG_LEVEL: 'warn', ...storeEnvOf(data) });
    const u = new URL(url);
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    const send = (key: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> =>
      new Promise((resolve, reject) => {
        const text = JSON.stringify(body);
        const r = request(
          {
            agent,
            host: u.hostname,
            port: u.port,
            method: 'POST',
            path,
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers },
          },
          (res) => {
            let out = '';
            res.on('data', (c: Buffer) => (out += c.toString('utf8')));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: out }));
            res.on('error', reject);
          },
        );
        r.on('error', reject);
        r.end(text);
      });
    const tool = (key: string, name: string, args: Record<string, unknown>) =>
      send(key, '/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }, LEGACY);

    // Long polls on every path: REST, the lean MCP path, a batch (the SDK path), an inbox wait.
    const polls = [
      send(worker, '/api/v1/tasks/claim', { wait_ms: 60_000, capabilities: ['never'] }),
      tool(worker, 'task_claim', { wait_ms: 60_000, capabilities: ['never'] }),
      send(worker, '/mcp', [{ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 60_000, capabilities: ['never'] } } }], {
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2025-03-26',
      }),
      tool(worker, 'message_inbox', { wait_ms: 60_000 }),
    ];
    // Writers: each sends one task_create after another until the signal.
    let signalled = false;
    const outcomes: { ok: boolean; status: number; error?: string }[] = [];
    let created = 0;
    const writer = async (n: number): Promise<void> => {
      for (let i = 0; !signalled; i++) {
        try {
          const a = await send(lead, '/api/v1/tasks', { tasks: [{ title: `w${n}-${i}`, capabilities: ['load'] }] });
          outcomes.push({ ok: true, status: a.status });
          if (a.status === 200) created++;
        } catch (err) {
          outcomes.push({ ok: false, status: 0, error: (err as Error).message });
        }
      }
    };
    const writers = Array.from({ length: 6 }, (_, n) => writer(n));
    // Let the load run and the polls settle into their waits.
    await new Promise((r) => setTimeout(r, 800));
    child.kill('SIGTERM');
    signalled = true;
    await Promise.all(writers);
    const answers = await Promise.allSettled(polls);

    expect(await exited).toBe(0);
    // Zero resets: every request sent before the signal got a complete answer.
    expect(outcomes.filter((o) => !o.ok)).toEqual([]);
    expect(outcomes.every((o) => o.status === 200 || o.status === 503)).toBe(true);
    expect(created).toBeGreaterThan(0);
    // Long polls: their empty result, not an error.
    expect(answers.map((a) => a.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled']);
    const [rest, lean, batch, inbox] = answers.map((a) => (a as PromiseFulfilledResult<Answer>).value);
    expect(rest).toMatchObject({ status: 200 });
    expect(JSON.parse(rest!.body)).toEqual({ task: null });
    expect(JSON.parse(lean!.body).result.structuredContent).toEqual({ task: null });
    expect(batch!.status).toBe(200);
    expect(batch!.body).toContain('"structuredContent":{"task":null}');
    expect(JSON.parse(inbox!.body).result.structuredContent).toMatchObject({ messages: [] });
    agent.destroy();

    // Every write that committed was answered: as many load tasks as 200 answers.
    const again = await Hub.open(testConfig(data), { log: pino({ level: 'silent' }) });
    try {
      const row = await again.db.read((ex) => ex.get<{ n: number }>(sql`SELECT count(*) AS n FROM tasks WHERE title LIKE 'w%'`));
      expect(row?.n).toBe(created);
    } finally {
      await again.close();
    }
  });

  it('HttpHandle.drain: a new request on an open connection gets 503 shutting_down with Connection: close; the one in flight finishes', async () => {
    const t = await openHub();
    const http = await serve(t.hub);
    const u = new URL(http.url);
    const raw = (): RawConnection => rawConnection(u);
    try {
      const idle = raw();
      idle.socket.write(`GET /healthz HTTP/1.1\r\nhost: ${u.host}\r\n\r\n`);
      expect(await idle.read((s) => s.includes('"status"'))).toMatch(/^HTTP\/1\.1 200/);
      // A request in flight: its body has not arrived yet.
      const body = JSON.stringify({});
      const busy = raw();
      busy.socket.write(
        `POST /api/v1/tasks/claim HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${t.adminKey}\r\n` +
          `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
      );
      await new Promise((r) => setTimeout(r, 100));
      let drained: boolean | null = null;
      const draining = http.drain(30_000).then((ok) => (drained = ok));
      idle.socket.write(`GET /api/v1/whoami HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${t.adminKey}\r\n\r\n`);
      const second = (await idle.read((s) => s.split('HTTP/1.1').length > 2 && s.includes('shutting_down'))).split('HTTP/1.1 ')[2] ?? '';
      expect(second).toMatch(/^503/);
      expect(second.toLowerCase()).toContain('connection: close');
      expect(second.toLowerCase()).toContain('retry-after: 2');
      expect(second).toContain('"code":"shutting_down"');
      expect(drained).toBe(null);
      busy.socket.write(body);
      expect(await busy.read((s) => s.includes('"task"'))).toMatch(/^HTTP\/1\.1 200/);
      await draining;
      expect(drained).toBe(true);
    } finally {
      await http.close();
      await t.close();
    }
  });

  it('HttpHandle.drain with nothing in flight: requests sent just after it began on idle keep-alive connections get 503 shutting_down, not a reset', async () => {
    const t = await openHub();
    const http = await serve(t.hub);
    const u = new URL(http.url);
    try {
      const idle = Array.from({ length: 6 }, () => rawConnection(u));
      for (const c of idle) c.socket.write(`GET /healthz HTTP/1.1\r\nhost: ${u.host}\r\n\r\n`);
      for (const c of idle) expect(await c.read((s) => s.includes('"status"'))).toMatch(/^HTTP\/1\.1 200/);
      const draining = http.drain(30_000);
      await new Promise((r) => setTimeout(r, 30)); // a client sending just after the signal
      for (const c of idle) c.socket.write(`GET /api/v1/whoami HTTP/1.1\r\nhost: ${u.host}\r\nauthorization: Bearer ${t.adminKey}\r\n\r\n`);
      for (const c of idle) {
        const second = (await c.read((s) => s.includes('shutting_down'))).split('HTTP/1.1 ')[2] ?? '';
        expect(second).toMatch(/^503/);
        expect(second).toContain('"code":"shutting_down"');
      }
      expect(await draining).toBe(true);
    } finally {
      await http.close();
      await t.close();
    }
  });
});
