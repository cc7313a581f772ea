import { connect, type Socket } from 'node:net';
import { Client as V2Client, StreamableHTTPClientTransport as V2Http } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Http } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach, describe, expect, it } from 'vitest';
import type { HttpHandle } from '../../src/api/http/server.js';
import { sql } from '../../src/store/sql.js';
import { call, createKey, openHub, serve, woken, type TestHub } from '../helpers.js';

/**
 * Abandoned waits (issue 7 item 1) and revocation inside waits (issue 8 item 4), through real
 * sockets. The hubs run with waitRecheckMs 0: a waiter wakes only on the doorbell, the client
 * leaving, or its deadline, so every step below is driven by an event, not by a timer.
 */
const LEGACY = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };

interface Raw {
  socket: Socket;
  /** Everything the server wrote, once it closes the connection or the test ends it. */
  text: Promise<string>;
}

/** A raw HTTP/1.1 POST on its own socket, so the test can drop the connection mid-wait. */
function rawPost(url: string, path: string, key: string, body: unknown, headers: Record<string, string> = {}): Raw {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  socket.on('error', () => undefined);
  const text = JSON.stringify(body);
  const head = [
    `POST ${path} HTTP/1.1`,
    `host: ${u.host}`,
    `authorization: Bearer ${key}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(text)}`,
    'connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ].join('\r\n');
  socket.write(`${head}\r\n\r\n${text}`);
  let out = '';
  socket.on('data', (c: Buffer) => (out += c.toString('utf8')));
  return { socket, text: new Promise((resolve) => socket.on('close', () => resolve(out))) };
}

/** Polls `cond` every 10 ms; gives up (returning false) after `ms` so a broken feature fails an assertion, not the runner. */
async function until(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

/** Audit rows of one op (the deferred ones flushed first). */
async function audited(t: TestHub, op: string): Promise<{ outcome: string; code: string | null }[]> {
  await t.hub.deferred.flush();
  return t.hub.db.read((ex) => ex.all<{ outcome: string; code: string | null }>(sql`SELECT outcome, code FROM audit WHERE op = ${op} ORDER BY id`));
}

describe('a client that leaves mid-wait gets nothing committed for it', () => {
  const open: { t: TestHub; https: HttpHandle[] }[] = [];
  afterEach(async () => {
    for (const { t, https } of open.splice(0)) {
      for (const h of https) await h.close();
      await t.close();
    }
  });

  async function setup(): Promise<{ t: TestHub; lean: HttpHandle; sdk: HttpHandle; worker: string }> {
    const t = await openHub({ config: { waitRecheckMs: 0 } });
    const lean = await serve(t.hub, true);
    const sdk = await serve(t.hub, false);
    open.push({ t, https: [lean, sdk] });
    return { t, lean, sdk, worker: await createKey(t, 'w1', 'worker') };
  }

  /** Starts the waiting request, drops it once it waits, then creates a task: it must stay unclaimed. */
  async function abandonClaim(t: TestHub, start: () => Raw): Promise<void> {
    const raw = start();
    expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
    raw.socket.destroy();
    // The server notices the close and ends the wait.
    expect(await until(() => t.hub.bus.waiting === 0, 3_000)).toBe(true);
    const created = await call<{ tasks: { id: string }[] }>(t.hub, t.admin, 'task_create', { tasks: [{ title: 'after the client left' }] });
    const id = created.tasks[0]!.id;
    // The abandoned call ends with an audited refusal; a ghost claim would be audited "ok".
    expect(await until(async () => (await audited(t, 'task_claim')).length > 0)).toBe(true);
    expect(await audited(t, 'task_claim')).toEqual([{ outcome: 'error', code: 'unavailable' }]);
    const task = await call<{ task: { status: string; attempts: number } }>(t.hub, t.admin, 'task_get', { id });
    expect(task.task.status).toBe('ready');
    expect(task.task.attempts).toBe(0);
  }

  it('REST POST /api/v1/tasks/claim with wait_ms', async () => {
    const { t, lean, worker } = await setup();
    await abandonClaim(t, () => rawPost(lean.url, '/api/v1/tasks/claim', worker, { wait_ms: 30_000 }));
  });

  it('MCP tools/call task_claim on the lean path', async () => {
    const { t, lean, worker } = await setup();
    const body = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 30_000 } } };
    await abandonClaim(t, () => rawPost(lean.url, '/mcp', worker, body, LEGACY));
    expect(lean.stats.lean).toBe(1);
  });

  it('MCP tools/call task_claim on the SDK path (lean off)', async () => {
    const { t, sdk, worker } = await setup();
    const body = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 30_000 } } };
    await abandonClaim(t, () => rawPost(sdk.url, '/mcp', worker, body, LEGACY));
    expect(sdk.stats.sdk).toBe(1);
  });

  it('a JSON-RPC batch (which the lean path hands to the SDK)', async () => {
    const { t, lean, worker } = await setup();
    const body = [{ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 30_000 } } }];
    await abandonClaim(t, () => rawPost(lean.url, '/mcp', worker, body, { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-03-26' }));
    expect(lean.stats.sdk).toBe(1);
  });

  it('an abandoned message_inbox wait leaves the mail unread', async () => {
    const { t, lean, worker } = await setup();
    const body = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'message_inbox', arguments: { wait_ms: 30_000 } } };
    const raw = rawPost(lean.url, '/mcp', worker, body, LEGACY);
    expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
    raw.socket.destroy();
    expect(await until(() => t.hub.bus.waiting === 0, 3_000)).toBe(true);
    await call(t.hub, t.admin, 'message_send', { to_agents: ['w1'], body: 'for nobody yet' });
    expect(await until(async () => (await audited(t, 'message_inbox')).length > 0)).toBe(true);
    expect(await audited(t, 'message_inbox')).toEqual([{ outcome: 'error', code: 'unavailable' }]);
    const w1 = await t.hub.authenticate(worker);
    const inbox = await call<{ messages: { body: string; read_at: string | null }[]; unread: number }>(t.hub, w1, 'message_inbox', { mark_read: false });
    expect(inbox.messages.map((m) => [m.body, m.read_at])).toEqual([['for nobody yet', null]]);
  });

  // A request pipelined behind another on a keep-alive socket: node emits no 'close' on its queued
  // response when the socket dies, so only the socket's own close tells that its client left.
  for (const path of ['/api/v1/tasks/claim', '/mcp']) {
    it(`twelve waits pipelined on one keep-alive socket (${path}): none claims after the socket is gone`, async () => {
      const { t, lean, worker } = await setup();
      const warnings: string[] = [];
      const onWarning = (w: Error): void => void warnings.push(w.name);
      process.on('warning', onWarning);
      const u = new URL(lean.url);
      const socket = connect(Number(u.port), u.hostname);
      socket.on('error', () => undefined);
      for (let id = 1; id <= 12; id++) {
        const body = JSON.stringify(path === '/mcp' ? { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 30_000 } } } : { wait_ms: 30_000 });
        const head = [`POST ${path} HTTP/1.1`, `host: ${u.host}`, `authorization: Bearer ${worker}`, 'content-type: application/json', `content-length: ${Buffer.byteLength(body)}`];
        if (path === '/mcp') head.push(`accept: ${LEGACY.accept}`, `mcp-protocol-version: ${LEGACY['mcp-protocol-version']}`);
        socket.write(`${head.join('\r\n')}\r\n\r\n${body}`);
      }
      expect(await until(() => t.hub.bus.waiting === 12)).toBe(true);
      socket.destroy();
      expect(await until(() => t.hub.bus.waiting === 0, 3_000)).toBe(true);
      process.off('warning', onWarning);
      // One close listener on the socket, not one per pipelined request (node warns past ten).
      expect(warnings).not.toContain('MaxListenersExceededWarning');
      const created = await call<{ tasks: { id: string }[] }>(t.hub, t.admin, 'task_create', { tasks: [{ title: 'a' }, { title: 'b' }] });
      expect(await until(async () => (await audited(t, 'task_claim')).length === 12)).toBe(true);
      expect(await audited(t, 'task_claim')).toEqual(Array.from({ length: 12 }, () => ({ outcome: 'error', code: 'unavailable' })));
      for (const { id } of created.tasks) expect((await call<{ task: { status: string } }>(t.hub, t.admin, 'task_get', { id })).task.status).toBe('ready');
      // Nothing stays in flight: a graceful stop finds no request left to wait for.
      expect(await lean.drain(2_000)).toBe(true);
    });
  }

  // An SDK client that gives up on a call (its AbortSignal) sends notifications/cancelled in a POST
  // of its own and keeps the call's POST open: only the cancel says the caller no longer wants it.
  const SDKS = ['v1', 'v2'] as const;
  for (const sdk of SDKS) {
    for (const progress of [false, true]) {
      it(`an MCP cancel over HTTP ends a waiting claim, nothing claimed (${sdk} SDK${progress ? ', with progress' : ''})`, async () => {
        const { t, lean, worker } = await setup();
        const endpoint = new URL('/mcp', lean.url);
        const requestInit = { headers: { Authorization: `Bearer ${worker}` } };
        const controller = new AbortController();
        const options = { signal: controller.signal, timeout: 60_000, ...(progress ? { onprogress: () => undefined } : {}) };
        let client: { close(): Promise<void> };
        let pending: Promise<unknown>;
        if (sdk === 'v1') {
          const c = new V1Client({ name: 'cancel-v1', version: '1.0.0' });
          await c.connect(new V1Http(endpoint, { requestInit }));
          pending = c.callTool({ name: 'task_claim', arguments: { wait_ms: 30_000 } }, undefined, options);
          client = c;
        } else {
          const c = new V2Client({ name: 'cancel-v2', version: '1.0.0' });
          await c.connect(new V2Http(endpoint, { requestInit }));
          pending = c.callTool({ name: 'task_claim', arguments: { wait_ms: 30_000 } }, options);
          client = c;
        }
        const settled = pending.then(() => 'answered', () => 'rejected');
        try {
          expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
          controller.abort('user pressed Esc');
          expect(await settled).toBe('rejected');
          // The server ends the wait, though the call's own POST is still open.
          expect(await until(() => t.hub.bus.waiting === 0, 3_000)).toBe(true);
          const created = await call<{ tasks: { id: string }[] }>(t.hub, t.admin, 'task_create', { tasks: [{ title: 'after the cancel' }] });
          expect(await until(async () => (await audited(t, 'task_claim')).length > 0)).toBe(true);
          expect(await audited(t, 'task_claim')).toEqual([{ outcome: 'error', code: 'unavailable' }]);
          const task = await call<{ task: { status: string } }>(t.hub, t.admin, 'task_get', { id: created.tasks[0]!.id });
          expect(task.task.status).toBe('ready');
        } finally {
          await client.close();
        }
      });
    }
  }

  it('a cancel with another key, or for another id, ends nothing', async () => {
    const { t, lean, worker } = await setup();
    const other = await createKey(t, 'w2', 'worker');
    const raw = rawPost(lean.url, '/mcp', worker, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 30_000 } } }, LEGACY);
    expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
    for (const [key, requestId] of [[other, 7], [worker, 8], [worker, '7']] as const) {
      const r = await fetch(new URL('/mcp', lean.url), {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...LEGACY },
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'not yours' } }),
      });
      expect(r.status).toBe(202);
    }
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'for the one who waited' }] });
    const text = await woken(raw.text);
    expect(text.startsWith('HTTP/1.1 200')).toBe(true);
    expect(text).toContain('for the one who waited');
  });

  it('a client that stays gets its claim (the same wait, not abandoned)', async () => {
    const { t, lean, worker } = await setup();
    const raw = rawPost(lean.url, '/api/v1/tasks/claim', worker, { wait_ms: 30_000 });
    expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
    await call(t.hub, t.admin, 'task_create', { tasks: [{ title: 'for the one who waited' }] });
    const text = await woken(raw.text);
    expect(text.startsWith('HTTP/1.1 200')).toBe(true);
    expect(text).toContain('for the one who waited');
  });
});

describe('revocation is seen inside a wait on every path', () => {
  for (const lean of [true, false]) {
    it(`${lean ? 'lean' : 'SDK'} path: a claim waiting when its key is revoked ends unauthenticated and claims nothing`, async () => {
      const t = await openHub({ config: { waitRecheckMs: 0 } });
      const http = await serve(t.hub, lean);
      try {
        const made = await call<{ key: string; token: { id: string } }>(t.hub, t.admin, 'token_create', { name: 'w-rev', role: 'worker' });
        const body = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'task_claim', arguments: { wait_ms: 30_000 } } };
        const raw = rawPost(http.url, '/mcp', made.key, body, LEGACY);
        expect(await until(() => t.hub.bus.waiting === 1)).toBe(true);
        await call(t.hub, t.admin, 'token_revoke', { id: made.token.id });
        const created = await call<{ tasks: { id: string }[] }>(t.hub, t.admin, 'task_create', { tasks: [{ title: 'not for a revoked key' }] });
        const text = await raw.text;
        expect(text).not.toContain('not for a revoked key');
        expect(text).toMatch(/unauthenticated|invalid credentials/);
        const task = await call<{ task: { status: string; attempts: number } }>(t.hub, t.admin, 'task_get', { id: created.tasks[0]!.id });
        expect(task.task).toMatchObject({ status: 'ready', attempts: 0 });
        // The lean path answered it (a refused credential is an HTTP 401 there), or the SDK did.
        expect(http.stats.sdk).toBe(lean ? 0 : 1);
      } finally {
        await http.close();
        await t.close();
      }
    });
  }
});

describe('the runner commits a waiting op only for a caller still there', () => {
  /** A signal that reads as aborted from its `after`-th read on: the caller leaves at a chosen step. */
  const leavesAt = (after: number): AbortSignal => {
    let reads = 0;
    return {
      get aborted() {
        return ++reads >= after;
      },
      addEventListener: () => undefined,
      removeEventListener: () => undefined,
    } as unknown as AbortSignal;
  };

  for (const [when, after] of [
    ['before the attempt', 1],
    ['inside the transaction, before the handler', 2],
    ['while the handler ran (its claim is rolled back)', 3],
  ] as const) {
    it(`a caller that left ${when} claims nothing`, async () => {
      const t = await openHub();
      try {
        const w = await t.hub.authenticate(await createKey(t, 'w', 'worker'));
        const created = await call<{ tasks: { id: string }[] }>(t.hub, t.admin, 'task_create', { tasks: [{ title: 'ready now' }] });
        const err = await t.hub
          .call('task_claim', { wait_ms: 1_000 }, w, { requestId: 'req_gone', transport: 'rest', signal: leavesAt(after) })
          .catch((e: unknown) => e);
        expect(err).toMatchObject({ code: 'unavailable', message: 'client went away' });
        const task = await call<{ task: { status: string; attempts: number } }>(t.hub, t.admin, 'task_get', { id: created.tasks[0]!.id });
        expect(task.task).toMatchObject({ status: 'ready', attempts: 0 });
        expect(await audited(t, 'task_claim')).toEqual([{ outcome: 'error', code: 'unavailable' }]);
      } finally {
        await t.close();
      }
    });
  }
});
